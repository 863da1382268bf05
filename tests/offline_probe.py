"""Run inside a loopback-only network namespace by tests/test_offline.py (never on its own).

Logs every DNS query sent to 127.0.0.1:53 (the namespace's resolv.conf points there), starts the
shop demo on a small catalogue and, for ``--seconds``, embeds photos in this process (the kiosk
path) while searching through the demo's API (the UI path). Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from pathlib import Path


def qname(packet: bytes) -> str:
    """The first question's name of a DNS query (best effort: this is a logger, not a server)."""
    i, labels = 12, []
    while i < len(packet) and packet[i] and len(labels) < 64:
        labels.append(packet[i + 1 : i + 1 + packet[i]].decode("ascii", "replace"))
        i += 1 + packet[i]
    return ".".join(labels) or "?"


def dns_logger(log: Path) -> None:
    """Answer nothing, record every name asked over UDP and TCP."""
    lock = threading.Lock()

    def record(name: str) -> None:
        with lock, open(log, "a") as fh:
            fh.write(name + "\n")

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 53))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", 53))
    tcp.listen(8)

    def serve_udp() -> None:
        while True:
            record(qname(udp.recvfrom(4096)[0]))

    def serve_tcp() -> None:
        while True:
            conn, _ = tcp.accept()
            with conn:
                record(qname(conn.recv(4096)[2:]))

    for target in (serve_udp, serve_tcp):
        threading.Thread(target=target, daemon=True).start()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dns-log", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--seconds", type=float, default=16)
    a = p.parse_args()
    dns_logger(Path(a.dns_log))
    work = Path(a.work)

    import numpy as np

    from ui.launch import local_client, start_app
    from fai_infer import Encoder
    from tests.helpers import write_products

    photos = write_products(work / "shop", 12)
    ui: dict = {}

    def run_ui() -> None:
        try:
            ui["proc"], ui["url"] = start_app(work, ("--catalog", str(work / "shop")))
            ui["ready"] = time.monotonic()
        except Exception as exc:  # reported in the summary, the test fails on it
            ui["error"] = str(exc)[-2000:]

    starter = threading.Thread(target=run_ui)
    starter.start()
    enc = Encoder()
    image = np.full((200, 150, 3), 200, np.uint8)
    t0 = time.monotonic()
    embeds, searches, errors = 0, 0, []
    client = None
    while True:
        enc.embed([image])
        embeds += 1
        if "url" in ui:
            from gradio_client import handle_file

            try:
                client = client or local_client(ui["url"])
                client.predict(handle_file(str(photos[searches % len(photos)])), 3, "{}",
                               api_name="/similar")
                searches += 1
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(str(exc)[:200])
        ui_up = time.monotonic() - ui["ready"] if "ready" in ui else 0.0
        if time.monotonic() - t0 >= a.seconds and (ui_up >= a.seconds or "error" in ui):
            break
    if "proc" in ui:
        ui["proc"].terminate()
        ui["proc"].wait(10)
    starter.join()
    print(json.dumps({"kiosk_seconds": round(time.monotonic() - t0, 1), "embeds": embeds,
                      "ui_seconds": round(ui_up, 1), "ui_searches": searches,
                      "ui_errors": errors[:3], "ui_start_error": ui.get("error")}))


if __name__ == "__main__":
    main()
