"""``python -m fai_infer.harness.milvus_server``: a real Milvus server, closed by default.

Its life (loopback only, SIGTERM stops every process it started, a killed supervisor takes Milvus
with it), its one-line refusals, and issue 23: writers in separate processes adding columns and
values to one collection concurrently lose nothing, and a long-lived reader sees their changes.
The contract suite (test_contract.py) runs against the same session server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import OTHER_MODEL, ROOT
from tests.helpers import listeners, wait_gone

MODULE = "fai_infer.harness.milvus_server"
pytestmark = [pytest.mark.service]  # a real Milvus server in a loopback namespace


def server_cmd(*args: str, env: dict | None = None, timeout: float = 60
               ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", MODULE, *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout, env=env)


def one_line(res: subprocess.CompletedProcess) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


# -- the command line ---------------------------------------------------------------------
def test_help_documents_the_options_and_loopback():
    res = server_cmd("--help")
    assert res.returncode == 0
    for word in ("--data", "--port", "--start-timeout", "127.0.0.1", "SIGTERM"):
        assert word in res.stdout, word


def test_a_busy_port_is_one_line(tmp_path):
    pytest.importorskip("milvus", reason="milvus: the 'scale' extra is not installed")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_line(server_cmd("--data", str(tmp_path / "d"), "--port", str(port)))
    assert f"--port {port}" in line and "already in use" in line


def test_a_data_folder_that_cannot_be_written_is_one_line(tmp_path):
    pytest.importorskip("milvus", reason="milvus: the 'scale' extra is not installed")
    (tmp_path / "file").write_text("not a folder")
    line = one_line(server_cmd("--data", str(tmp_path / "file" / "sub"), "--port", "1"))
    assert "--data" in line and "not a writable folder" in line


def test_a_missing_server_binary_is_one_line_naming_the_extra(tmp_path):
    fake = tmp_path / "site" / "milvus"   # a 'milvus' package without the server binary
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{ROOT}"}
    line = one_line(server_cmd("--data", str(tmp_path / "d"), "--port", "1", env=env))
    assert "binary is missing" in line and "[scale]" in line


# -- its life -------------------------------------------------------------------------------
def group_of(pgid: int) -> dict[int, str]:
    """pid -> command name of every live process in a process group (from /proc; a zombie,
    exited and waiting for its new parent to reap it, holds nothing and is left out)."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            out[int(stat.parent.name)] = name
    return out


def start(data: Path, port: int) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-m", MODULE, "--data", str(data), "--port",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, start_new_session=True)
    line = proc.stdout.readline()
    if not line.startswith("milvus"):
        proc.wait(60)
        pytest.fail(f"the server did not start: {proc.stderr.read()}")
    return proc, json.loads((data / "server.json").read_text())


@pytest.mark.slow
def test_sigterm_stops_everything_and_only_loopback_listens(milvus_server, tmp_path):
    """A second server beside the session's (they coexist: each Milvus has its own network):
    here it holds exactly one listening socket, 127.0.0.1:PORT, Milvus itself runs in another
    network namespace, and SIGTERM ends every process it started."""
    from fai_infer.harness.milvus_server import free_port

    port = free_port()
    proc, info = start(tmp_path / "data", port)
    try:
        group = group_of(info["group"])
        assert "milvus" in group.values(), group
        assert listeners(set(group) | {proc.pid}) == {("0100007F", port)}
        assert ("0100007F", port) in listeners()
        milvus = next(pid for pid, name in group.items() if name == "milvus")
        assert os.readlink(f"/proc/{milvus}/ns/net") != os.readlink("/proc/self/ns/net")
        from pymilvus import MilvusClient

        client = MilvusClient(uri=f"http://127.0.0.1:{port}")
        assert "2.3.5" in client.get_server_version()
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0, proc.stderr.read()
    assert not group_of(info["group"]), "processes outlived the server"
    assert port not in {p for _, p in listeners()}, "its port still listens"
    assert not (tmp_path / "data" / "server.json").exists()


@pytest.mark.slow
def test_the_session_server_listens_on_loopback_only(milvus_server):
    info = json.loads((milvus_server.data / "server.json").read_text())
    pids = set(group_of(info["group"])) | {info["pid"]}
    held = listeners(pids)
    assert held == {("0100007F", milvus_server.port)}, held


@pytest.mark.slow
def test_a_killed_supervisor_takes_milvus_with_it(tmp_path):
    from fai_infer.harness.milvus_server import free_port

    pytest.importorskip("pymilvus", reason="pymilvus: the 'scale' extra is not installed")
    proc, info = start(tmp_path / "data", free_port())
    proc.kill()  # no chance to clean up: the namespace side notices its parent died
    proc.wait()
    assert wait_gone(group_of(info["group"]), timeout=60) == set()
    assert not group_of(info["group"])


@pytest.mark.slow
def test_two_servers_cannot_share_a_data_folder(milvus_server):
    from fai_infer.harness.milvus_server import free_port

    line = one_line(server_cmd("--data", str(milvus_server.data), "--port", str(free_port())))
    assert "another milvus_server is using this folder" in line


# -- issue 23: concurrent writers, long-lived readers ------------------------------------------
WRITER = """
import sys, numpy as np
from fai_infer import Encoder
from fai_infer.scale.milvus_catalog import MilvusCatalog
uri, name, tag, model = sys.argv[1:5]
cat = MilvusCatalog(uri, name, Encoder(model))
rng = np.random.default_rng(abs(hash(tag)) % 1000)
print("go", flush=True); sys.stdin.readline()   # both writers start together
for i in range(6):
    ids = [f"{tag}-{i}-{j}" for j in range(3)]
    rows = [{"colour": f"{tag}-colour-{i}", f"extra_{tag}": f"{tag}-{i}-{j}"} for j in range(3)]
    cat.add_embeddings(ids, rng.normal(size=(3, cat.encoder.dim)), None, rows)
cat.update_metadata([f"{tag}-0-0"], [{f"note_{tag}": "updated"}])
print("done", flush=True)
"""


@pytest.mark.slow
def test_concurrent_writers_lose_nothing_and_a_reader_sees_them(milvus_server):
    from fai_infer import Catalog, Encoder
    from fai_infer.scale.milvus_catalog import MilvusCatalog, push

    encoder = Encoder(OTHER_MODEL)
    rng = np.random.default_rng(3)
    base = Catalog(encoder)
    base.add_embeddings([f"b{i}" for i in range(30)], rng.normal(size=(30, encoder.dim)),
                        None, [{"colour": ["Red", "Blue"][i % 2]} for i in range(30)])
    push(base, milvus_server.uri, "issue23")
    reader = MilvusCatalog(milvus_server.uri, "issue23", encoder, manifest_ttl=0.5)
    assert reader.similar_to_vector(base.vector("b3"), k=1, where={"colour": "Blue"})
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, milvus_server.uri, "issue23",
                                 tag, str(OTHER_MODEL)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=ROOT) for tag in ("wa", "wb")]
    for w in writers:
        assert w.stdout.readline().strip() == "go", w.stderr.read()
    for w in writers:
        w.stdin.write("\n")
        w.stdin.flush()
    for w in writers:
        out, err = w.communicate(timeout=300)
        assert w.returncode == 0 and "done" in out, err

    fresh = MilvusCatalog(milvus_server.uri, "issue23", encoder, consistency="Strong")
    for cat in (fresh, reader):
        if cat is reader:
            reader.manifest_ttl = 0  # its interval is over: it looks again on its next read
            reader.similar_to_vector(base.vector("b3"), k=1)
        cols = cat.columns()
        for tag in ("wa", "wb"):
            assert {f"extra_{tag}", f"note_{tag}"} <= set(cols), sorted(cols)
            assert {f"{tag}-colour-{i}" for i in range(6)} <= set(cols["colour"])
            assert set(cols[f"extra_{tag}"]) == {f"{tag}-{i}-{j}" for i in range(6)
                                                 for j in range(3)}
        assert {"Red", "Blue"} <= set(cols["colour"])
    assert len(fresh) == 30 + 2 * 18  # Strong: every row the writers wrote
    # a filter naming a value the reader had never seen works at once (reload on a miss)
    slow_reader = MilvusCatalog(milvus_server.uri, "issue23", encoder, manifest_ttl=3600,
                                consistency="Strong")
    new = base.vector("b1")
    MilvusCatalog(milvus_server.uri, "issue23", encoder).add_embeddings(
        ["late"], new[None], None, [{"colour": "Ultraviolet"}])
    hits = slow_reader.similar_to_vector(new, k=3, where={"colour": "ultraviolet"})
    assert [h.id for h in hits] == ["late"]
    with pytest.raises(ValueError, match="no item has this value"):
        slow_reader.similar_to_vector(new, k=3, where={"colour": "Infrared"})
    for c in (reader, fresh, slow_reader):
        c.close()


# -- the merge itself, without a server (fast) ----------------------------------------------
def manifest():
    from fai_infer.scale.milvus_schema import Manifest

    man = Manifest(model_sha256="x", model_name="m", preprocess={}, dim=4,
                   columns=["colour", "price"])
    man.note_values([{"colour": "Red", "price": "10"}])
    return man


def test_writers_on_stale_copies_lose_nothing_when_merged():
    from fai_infer.scale.milvus_schema import DELTA_PREFIX, MANIFEST_KEY, Manifest, WriterDelta

    pushed = manifest().to_json()
    a, b = WriterDelta(), WriterDelta()
    a.note(Manifest.from_json(pushed), [{"colour": "Blue", "size": "M"}])
    b.note(Manifest.from_json(pushed), [{"colour": "green", "fit": "slim", "price": "n/a"}])
    a.note(Manifest.from_json(pushed), [{"colour": "Blue"}])  # repeated: changes nothing
    for order in ((a, b), (b, a)):
        props = {MANIFEST_KEY: pushed, f"{DELTA_PREFIX}1": order[0].to_json(),
                 f"{DELTA_PREFIX}2": order[1].to_json(), f"{DELTA_PREFIX}3": "{damaged"}
        man = Manifest.from_properties(props)
        assert man.values["colour"] == ["Blue", "Red", "green"]
        assert set(man.unfiltered) == {"size", "fit"} and man.values["fit"] == ["slim"]
        assert man.numeric["price"] and man.columns == ["colour", "price"]


def test_an_old_server_stores_not_a_number_as_nan():
    import math

    from fai_infer.scale.milvus_schema import row_fields

    man = manifest()
    assert row_fields("i", np.ones(4), "p", {"price": "n/a"}, man)["c1_n"] is None
    man.nulls = False  # Milvus before 2.5: no nullable fields
    assert math.isnan(row_fields("i", np.ones(4), "p", {"price": "n/a"}, man)["c1_n"])
    assert row_fields("i", np.ones(4), "p", {"price": "9,50"}, man)["c1_n"] == 9.5


def test_the_config_keeps_the_template_and_overrides_by_dotted_key(tmp_path):
    from fai_infer.harness.milvus_server import render_config

    template = ("common:\n  gracefulStopTimeout: 1800 # seconds\n  x: 1\nlog:\n"
                "  file:\n    rootPath: {{ system_log_path }} # logs\n"
                "proxy:\n  port: {{ proxy_port(int): 19530 }}\n  http:\n    enabled: true\n")
    text = render_config(template, tmp_path)
    assert "gracefulStopTimeout: 10\n" in text and "  x: 1\n" in text
    assert f"rootPath: {tmp_path / 'logs'} # logs" in text and "port: 19530" in text
    assert "    enabled: false\n" in text
