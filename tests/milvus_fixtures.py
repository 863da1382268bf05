"""A real Milvus server (``fai_infer.harness.milvus_server``) for the whole test session.

Started once, on a free port in a temporary folder, by the same command a user runs; skipped
with the reason when the ``milvus`` package is absent or the server cannot start here (no user or
network namespaces, say). At the end it is stopped with SIGTERM and nothing may be left
listening: not its port, nor any other socket it opened."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import listeners

SKIP = "a real Milvus server"




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
    from fai_infer.harness.milvus_server import ServerError, free_port, package_bin, running_server

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
