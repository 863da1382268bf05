"""Run inside a loopback-only network namespace by tests/test_red_team_ray.py: logs DNS queries
(tests/offline_probe.py) and runs ``fai index PHOTOS --ray`` with a private local Ray."""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    dns_log, photos, out = sys.argv[1:4]
    from tests.offline_probe import dns_logger

    dns_logger(Path(dns_log))
    from fai_infer.cli.main import main as fai

    return fai(["index", photos, "--out", out, "--ray", "--ray-workers", "1"])


if __name__ == "__main__":
    sys.exit(main())
