"""Issue 33, point 7: the Milvus server's data folder.

The server runs as root. Before, links planted in ``--data`` made it overwrite their targets
(``configs/milvus.yaml``, ``configs/glog.conf``, ``server.json``, the stdout log), and a second
server whose ``data/`` was a link to the first's started anyway (its lock file lay beside
``data/``, not in what the servers really share). The refusals are tested directly, without
starting Milvus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fai_infer.harness.milvus_server import ServerError, check_data, lock_data

PLANTED = ["configs/milvus.yaml", "configs/glog.conf", "server.json", "logs/milvus-stdout.log",
           "data", "configs", "logs", "data/etcd.data"]


def prepared(root: Path) -> Path:
    check_data(root)
    (root / "data" / "etcd.data").mkdir(exist_ok=True)
    return root


@pytest.mark.parametrize("planted", PLANTED)
def test_a_planted_link_anywhere_in_data_is_refused(tmp_path, planted):
    data = prepared(tmp_path / "d")
    victim = tmp_path / "victim"
    victim.mkdir() if planted in ("data", "configs", "logs", "data/etcd.data") else \
        victim.write_text("precious")
    target = data / planted
    if target.is_dir():
        os.rename(target, tmp_path / "moved")
    else:
        target.unlink(missing_ok=True)
    os.symlink(victim, target)
    with pytest.raises(ServerError, match="symbolic link") as err:
        check_data(data)
    assert planted.split("/")[-1] in str(err.value) and "\n" not in str(err.value)
    if victim.is_file():
        assert victim.read_text() == "precious"


def test_a_data_folder_that_is_a_link_is_refused(tmp_path):
    real = prepared(tmp_path / "real")
    os.symlink(real, tmp_path / "link")
    with pytest.raises(ServerError, match="symbolic link"):
        check_data(tmp_path / "link")


def test_the_lock_is_on_what_the_servers_really_write(tmp_path):
    """Two --data folders whose data/ is the same folder (a bind mount or a link that went
    unnoticed) still exclude each other: the lock lies inside data/."""
    first = prepared(tmp_path / "a")
    held = lock_data(first)
    try:
        with pytest.raises(ServerError, match="another milvus_server"):
            lock_data(first)
        assert (first / "data" / "server.lock").is_file()
    finally:
        held.close()
    lock_data(first).close()  # free again once the first closed it


def test_milvus_own_log_links_are_not_planted_links(tmp_path):
    """Milvus's glog keeps logs/milvus.INFO as a relative link to its newest log file: a
    restart on the same --data must not be refused for it (CI found the second server
    refused), while a link in logs/ to anything else still is."""
    data = prepared(tmp_path / "d")
    (data / "logs").mkdir(exist_ok=True)
    (data / "logs" / "milvus.host.root.log.INFO.20261207").write_text("log")
    os.symlink("milvus.host.root.log.INFO.20261207", data / "logs" / "milvus.INFO")
    check_data(data)
    (tmp_path / "victim").write_text("precious")
    os.symlink(tmp_path / "victim", data / "logs" / "milvus.WARNING")
    with pytest.raises(ServerError, match="milvus.WARNING is a symbolic link"):
        check_data(data)
