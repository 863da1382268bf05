"""``python -m fai_infer.harness.ray_node start --address 127.0.0.1:PORT ...``: Ray's own
``ray start`` for a node that must stay on loopback.

Why: Ray's servers bind every interface unless the node's address is exactly 127.0.0.1, and
``ray start`` swaps 127.0.0.1 for the host's public address. Its switch against that
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) also refuses to start a second node. So this runs
the unchanged ``ray start`` with one difference: "this machine's address" is 127.0.0.1. Used
for the nodes of ``local_cluster.LocalCluster`` (tests and bench); a real cluster's nodes run
plain ``ray start`` on their own addresses.
"""

from __future__ import annotations

import sys

LOOPBACK = "127.0.0.1"


def main(argv: list[str] | None = None) -> int:
    from ray._private import services
    from ray.scripts.scripts import main as ray_main

    services.get_node_ip_address = lambda address=None: LOOPBACK  # noqa: ARG005 - Ray's signature
    sys.argv = ["ray", *(sys.argv[1:] if argv is None else argv)]
    try:
        ray_main()
    except SystemExit as exc:  # click exits; keep its status
        return int(exc.code or 0) if isinstance(exc.code, int) or exc.code is None else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
