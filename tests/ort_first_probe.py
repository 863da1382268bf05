"""Run inside a loopback-only network namespace by tests/test_red_team_offline.py: an app that
imports onnxruntime *before* fai_infer (as any embedding app may), then embeds for --seconds.

Logs DNS queries like tests/offline_probe.py and prints a JSON summary."""

from __future__ import annotations

import importlib

importlib.import_module("onnxruntime")  # first, before fai_infer (the test clears the variable)

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dns-log", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--seconds", type=float, default=25)
    a = p.parse_args()
    from tests.offline_probe import dns_logger

    dns_logger(Path(a.dns_log))
    from fai_infer import Encoder
    from tests.helpers import write_products

    photos = write_products(Path(a.work) / "shop", 8)
    enc = Encoder()
    t0, embeds = time.monotonic(), 0
    while time.monotonic() - t0 < a.seconds:
        enc.embed([str(photos[embeds % len(photos)])])
        embeds += 1
    print(json.dumps({"seconds": time.monotonic() - t0, "embeds": embeds}))


if __name__ == "__main__":
    main()
