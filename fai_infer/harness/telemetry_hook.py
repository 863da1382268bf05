"""A start-up hook that turns onnxruntime's telemetry off in every Python process of this install.

onnxruntime 1.32 starts its telemetry (device id under ~/.cache/Microsoft, uploads to
mobile.events.data.microsoft.com) while ``import onnxruntime`` runs, reading
``ORT_DISABLE_TELEMETRY`` only then; nothing available afterwards stops it
(``disable_telemetry_events()`` does not: measured under ``unshare -n`` + strace, issue 23). So
when an application imports onnxruntime before fai_infer, ``fai_infer.model.ort`` is too late. The one
fix that holds whatever the import order is to set the variable before any import: a ``.pth``
file in site-packages, which Python's ``site`` module runs at interpreter start-up.
``make install`` (``make test``, ``make demo``) writes it; ``python -m fai_infer.harness.telemetry_hook``
writes it for an install made another way.
"""

from __future__ import annotations

import argparse
import os
import sysconfig
from pathlib import Path

PTH_NAME = "fai-ort-telemetry-off.pth"
# A .pth line that starts with "import" is executed by site.py at start-up.
# setdefault: a process started with an explicit ORT_DISABLE_TELEMETRY (a test of what happens
# without the hook, or someone's own choice) keeps it, and fai_infer then says so in one line.
PTH_LINE = "import os; os.environ.setdefault('ORT_DISABLE_TELEMETRY', '1')\n"


def site_packages() -> Path:
    """This interpreter's site-packages (where pip put onnxruntime)."""
    return Path(sysconfig.get_paths()["purelib"])


def install(target: str | os.PathLike | None = None) -> Path:
    """Write the hook into ``target`` (default: site-packages); returns its path."""
    path = Path(target or site_packages()) / PTH_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PTH_LINE)
    return path


def installed(target: str | os.PathLike | None = None) -> bool:
    path = Path(target or site_packages()) / PTH_NAME
    return path.is_file() and path.read_text() == PTH_LINE


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fai_infer.harness.telemetry_hook", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", help="site directory to write into (default: site-packages)")
    a = p.parse_args(argv)
    print(f"wrote {install(a.target)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
