"""A real Milvus server (``fai_infer.scale.milvus_server``) for the whole test session.

Started once, on a free port in a temporary folder, by the same command a user runs; skipped
with the reason when the ``milvus`` package is absent or the server cannot start here (no user or
network namespaces, say). At the end it is stopped with SIGTERM and nothing may be left
listening: not its port, nor any other socket it opened."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

SKIP = "a real Milvus server"


def listeners(pids: set[int] | None = None) -> set[tuple[str, int]]:
    """(local address as /proc/net writes it, port) of every TCP socket listening in this
    network namespace; only those the processes ``pids`` hold when given (other engineers'
    servers come and go on a shared machine)."""
    inodes = None if pids is None else socket_inodes(pids)
    found = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and (inodes is None or fields[9] in inodes):  # LISTEN
                address, port = fields[1].split(":")
                found.add((address, int(port, 16)))
    return found


def socket_inodes(pids: set[int]) -> set[str]:
    out = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    out.add(link[8:-1])
        except OSError:
            continue  # gone, or not ours to read
    return out


LOOPBACK = {"0100007F", "00000000000000000000000001000000",  # 127.0.0.1, ::1
            "0000000000000000FFFF00000100007F"}  # ::ffff:127.0.0.1


@dataclass
class RunningServer:
    uri: str
    port: int
    data: Path
    listening_before: set


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    pytest.importorskip("pymilvus", reason="pymilvus: the 'scale' extra is not installed")
    from fai_infer.scale.milvus_server import ServerError, free_port, package_bin, running_server

    try:
        package_bin()
    except ServerError as exc:
        pytest.skip(f"{SKIP}: {exc}")
    before = listeners()
    port = free_port()
    data = tmp_path_factory.mktemp("milvus-server")
    server = running_server(data, port)
    try:
        uri = server.__enter__()
    except ServerError as exc:
        pytest.skip(f"{SKIP} did not start here: {exc}")
    try:
        yield RunningServer(uri, port, data, before)
    finally:
        server.__exit__(None, None, None)
    left = {(a, p) for a, p in listeners() - before if p == port}
    assert not left, f"still listening after the server stopped: {left}"
