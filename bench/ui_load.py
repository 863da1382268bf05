"""python -m bench.ui_load: N concurrent gradio_client clients x M searches against the demo.

Starts ``python -m ui.app`` on a free loopback port (or uses --url), fires the requests,
reports errors and p50/p99 latency. Traffic never leaves 127.0.0.1 and the loop is bounded.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench.timing import percentiles_ms

from ui import launch
from ui.launch import start_app


def run_load(url: str, photos: list[Path], clients: int, searches: int) -> dict:
    """``ui.launch.run_load`` plus p50/p99 latency."""
    result = launch.run_load(url, photos, clients, searches)
    return result | percentiles_ms(result.pop("latencies_s"))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.ui_load", description=__doc__)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--searches", type=int, default=100)
    p.add_argument("--url", default=None, help="a running demo (default: start one)")
    a = p.parse_args(argv)
    cache = Path(tempfile.mkdtemp(prefix="fai-load-"))
    proc = None
    url = a.url
    if url is None:
        proc, url = start_app(cache)
    try:
        photos = sorted((cache / "demo-shop" / "images").glob("*.jpg"))
        result = run_load(url, photos, a.clients, a.searches)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
