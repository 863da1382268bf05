"""Starting the demo server in another process and talking to it locally: what the browser,
offline and load tests and ``bench.ui_load`` share. Traffic never leaves 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

# A gradio_client.Client reports itself to huggingface.co unless analytics are off both here and
# in its constructor, and huggingface_hub fetches an "agent registry" from the Hub to build its
# headers unless offline (tests/test_offline.py saw both as DNS queries). Clients stay local.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"


def local_client(url: str):
    """A gradio_client.Client for the demo that sends nothing anywhere else."""
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False)

REPO = Path(__file__).resolve().parent.parent


def start_app(cache: Path, extra_args: tuple[str, ...] = (), timeout_s: float = 600
              ) -> tuple[subprocess.Popen, str]:
    """Start ``python -m ui.app`` on a free loopback port with its cache (and log) in
    ``cache``; return (process, url) once it answers. Raises with the app's log if it dies."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, FAI_CACHE=str(cache), PYTHONUNBUFFERED="1")
    log_path = cache / "ui.log"
    with open(log_path, "w") as log:  # a file, not a pipe: a chatty server never blocks
        proc = subprocess.Popen([sys.executable, "-m", "ui.app", "--port", str(port),
                                 *extra_args], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("ui.app exited early:\n" + log_path.read_text())
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"ui.app did not start within {timeout_s:.0f} s")


def run_load(url: str, photos: list[Path], clients: int, searches: int) -> dict:
    """``clients`` concurrent local clients x ``searches`` uploads each; every failure counted,
    every latency kept (bounded: clients x searches requests, loopback only)."""
    from gradio_client import handle_file

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        client = local_client(url)
        for j in range(searches):
            photo = photos[(i * searches + j) % len(photos)]
            t0 = time.perf_counter()
            try:
                hits = json.loads(client.predict(handle_file(str(photo)), 10, "{}",
                                                 api_name="/similar"))
                assert len(hits) == 10
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"clients": clients, "searches_each": searches, "ok": len(latencies),
            "errors": len(errors), "first_errors": errors[:3],
            "searches_per_s": len(latencies) / wall, "latencies_s": latencies}
