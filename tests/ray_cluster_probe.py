"""Run inside a loopback-only network namespace by tests/test_red_team_ray.py: logs DNS queries
(tests/offline_probe.py), starts a two-node ``LocalCluster`` (``ray start`` head + node), runs
``fai index PHOTOS --ray --ray-address`` across it as its own process and stops the cluster.
Prints the index report's per-node photo counts and the processes left (as JSON)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def main() -> int:
    dns_log, photos, out = sys.argv[1:4]
    from tests.offline_probe import dns_logger

    dns_logger(Path(dns_log))
    from fai_infer.harness.local_cluster import LocalCluster

    cluster = LocalCluster(nodes=2, cpus=1).start()
    try:
        res = subprocess.run([sys.executable, "-m", "fai_infer", "index", photos, "--out", out,
                              "--ray", "--ray-address", cluster.address, "--json"],
                             env=cluster.env(), capture_output=True, text=True, timeout=300)
    finally:
        left = cluster.stop()
    if res.returncode != 0:
        print(res.stdout[-2000:], res.stderr[-2000:], file=sys.stderr)
        return res.returncode
    nodes = json.loads(res.stdout)["ray"]["nodes"]
    print(json.dumps({"photos": [n["photos"] for n in nodes], "left": left}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
