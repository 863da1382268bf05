"""Issue 26, item 5: ``fai index --ray`` on a real two-node Ray cluster.

A head (``ray start --head``) and a second node (``ray start --address``), each a raylet with
one CPU and a custom resource naming it, both bound to loopback with the private-Ray
guarantees (no usage stats, no dashboard, session files in a private temp dir). ``fai index
--ray --ray-address`` runs across both as a separate process; the actors must have run on both
nodes and the catalogue must equal the local indexer's. The cluster is always stopped, and
then nothing of it may be left running or listening. Skips when Ray is not installed."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fai_infer import Catalog, Encoder
from tests.helpers import ROOT, write_products
from tests.helpers import listeners
from tests.ray_checks import same_catalogue

pytestmark = [pytest.mark.slow, pytest.mark.service]  # a real two-node Ray cluster



def loopback(hex_address: str) -> bool:
    """A /proc/net address (little-endian hex words) on 127.0.0.0/8 or ::1."""
    raw = bytes.fromhex(hex_address)
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(raw)
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None
                              and ip.ipv4_mapped.is_loopback)


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """120 generated photos with a metadata CSV, and two files that are not photos."""
    folder = tmp_path_factory.mktemp("cluster-shop")
    write_products(folder, 120, seed=11)
    (folder / "images" / "broken.jpg").write_bytes(b"not really a jpeg")
    (folder / "images" / "empty.png").write_bytes(b"")
    return folder


@pytest.mark.slow
def test_fai_index_runs_on_both_nodes_of_a_cluster_and_equals_the_local_indexer(shop,
                                                                                 tmp_path):
    pytest.importorskip("ray", reason="needs the scale extra (pip install -e '.[scale]')")
    from fai_infer.harness.local_cluster import LocalCluster

    encoder = Encoder()
    local = Catalog.build(shop, shop / "metadata.csv", encoder=encoder)
    had = {p: p.exists() for p in (Path.home() / ".ray", Path("/tmp/ray"))}
    cluster = LocalCluster(nodes=2, cpus=1)
    cluster.start()
    try:
        pids = {p: _started(p) for p in cluster.processes()}
        servers = listeners(set(pids))
        assert any(b"ray.util.client.server" in _cmdline(p) for p in pids), \
            "the head's Ray Client proxy (re-parented, directory not on its command line) " \
            "is not counted as the cluster's"
        assert servers, "the cluster listens nowhere? (the loopback check would prove nothing)"
        assert all(loopback(a) for a, _ in servers), sorted(servers)
        out = tmp_path / "cat"
        res = subprocess.run(
            [sys.executable, "-m", "fai_infer", "index", str(shop), "--metadata",
             str(shop / "metadata.csv"), "--out", str(out), "--ray", "--ray-address",
             cluster.address, "--json"],
            cwd=ROOT, env=cluster.env(), capture_output=True, text=True, timeout=400)
        assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
        report = json.loads(res.stdout)
        ray_run = report["ray"]
        assert ray_run["workers"] == 2  # the default: one actor per CPU of the cluster
        by_node = {tuple(sorted(n["resources"])): n for n in ray_run["nodes"]}
        assert set(by_node) == {("fai_node_0",), ("fai_node_1",)}, ray_run["nodes"]
        assert len({n["node_id"] for n in ray_run["nodes"]}) == 2  # two raylets
        assert {n["address"] for n in ray_run["nodes"]} == {"127.0.0.1"}  # both on loopback
        assert all(n["photos"] > 0 and n["busy_s"] > 0 for n in ray_run["nodes"])
        assert sum(n["photos"] for n in ray_run["nodes"]) == 122  # every photo, bad ones too
        assert report["indexed"] == 120
        assert report["skipped"] == [s.to_dict() for s in local.skipped]
        cat = Catalog.open(out, encoder)
        cat.skipped = list(local.skipped)  # not stored: compared through the report above
        same_catalogue(cat, local)
        now = cluster.processes()
        servers |= listeners(set(now))
        pids.update({p: _started(p) for p in now})
    finally:
        left = cluster.stop()
    assert left == [], f"cluster processes left after stop: {left}"
    alive = [p for p, t in pids.items() if t is not None and _started(p) == t]
    assert not alive, f"cluster processes (raylet, GCS, workers...) survived the stop: {alive}"
    gcs = f"127.0.0.1:{cluster.port}".encode()
    talking = [p for p in os.listdir("/proc") if p.isdigit() and gcs in _cmdline(int(p))]
    assert not talking, f"processes still naming the cluster's address: {talking}"
    still = listeners() & servers
    assert not still, f"still listening after stop: {sorted(still)}"
    assert not cluster.root.exists(), "the cluster's private directory was left behind"
    for path, existed in had.items():
        assert path.exists() == existed, f"{path} appeared: Ray wrote outside its temp dir"


def test_an_address_where_no_cluster_listens_is_one_line(shop, tmp_path, capsys):
    """Ray itself would retry for a minute, printing a warning every few seconds."""
    pytest.importorskip("ray", reason="needs the scale extra (pip install -e '.[scale]')")
    from fai_infer.cli.main import main
    from fai_infer.harness.local_cluster import free_port

    out = tmp_path / "cat"
    for address in (f"127.0.0.1:{free_port()}", "127.0.0.1:port"):
        assert main(["index", str(shop), "--out", str(out), "--ray", "--ray-address",
                     address]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"--ray-address {address}: " in err[0], err
        assert not out.exists()


def test_fai_index_prints_the_photos_each_node_embedded():
    """Without --json, one line per node after the summary (fai_infer.cli.main prints them)."""
    from fai_infer.scale.cli import ray_lines

    report = {"workers": 2, "embed_seconds": 21.7, "nodes": [
        {"node_id": "3961a6e02ba8" + "0" * 44, "address": "127.0.0.1",
         "resources": {"fai_node_1": 1.0}, "photos": 752, "busy_s": 13.8,
         "photos_per_busy_s": 54.4},
        {"node_id": "0fade74a3e99" + "0" * 44, "address": "", "resources": {}, "photos": 0,
         "busy_s": 0.0, "photos_per_busy_s": None}]}
    assert ray_lines(report) == [
        "ray: 2 workers on 2 node(s), embedded in 21.7s",
        "  node 3961a6e02ba8 127.0.0.1 (fai_node_1): 752 photos, 54.4 photos/s busy",
        "  node 0fade74a3e99 ? (-): 0 photos, - photos/s busy"]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _started(pid: int) -> str | None:
    """The process's start time (clock ticks), None when it is gone or a zombie: with the pid,
    a process's identity (a pid reused later has another start time)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else fields[19]
