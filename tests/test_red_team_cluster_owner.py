"""Issue 33, point 8: a LocalCluster dies with its owner.

Before, SIGKILL of the process that started a ``LocalCluster`` left its 12 Ray processes, 8
loopback listeners and the private directory (with its token) behind. ``ray start``
daemonises (its servers are re-parented, so a parent-death signal on it would reach nothing);
the cluster therefore starts a watchdog in a session of its own that waits on the owner's pidfd
and, when the owner is gone, ends every process marked with the cluster's private directory
and removes the directory.

Stand-in, said plainly: starting Ray takes tens of seconds here, so the owner below starts the
cluster's real watchdog and then, instead of ``ray start``, a launcher that daemonises three
marked processes exactly as ``ray start`` does (new session, launcher exits, the daemons carry
``FAI_RAY_CLUSTER``). The owner is SIGKILLed; the test waits on pidfds (no sleeps)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs Linux pidfds")

OWNER = r"""
import os, subprocess, sys
from fai_infer.harness.local_cluster import MARK, LocalCluster
from fai_infer.scale.ray_private import make_private_dir
cluster = LocalCluster()
cluster.root = make_private_dir()
watchdog = cluster.watch()
launcher = ("import subprocess, sys\n"
            "procs = [subprocess.Popen(['sleep', '600'], start_new_session=True, stdin=-3, stdout=-3,"
            " stderr=-3)"
            " for _ in range(3)]\n"
            "print(' '.join(str(p.pid) for p in procs))\n")
env = dict(os.environ, **{MARK: str(cluster.root)})
daemons = subprocess.run([sys.executable, "-c", launcher], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
print(watchdog.pid, cluster.root, *daemons, flush=True)
sys.stdin.read()  # until killed
"""


def wait_gone(pid: int, timeout: float = 60) -> bool:
    """True once ``pid`` has ended (pidfd readable), False after ``timeout``."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def test_a_killed_owner_takes_its_cluster_and_directory_with_it():
    owner = subprocess.Popen([sys.executable, "-c", OWNER], cwd=ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
    line = owner.stdout.readline().split()
    assert len(line) == 5, line
    watchdog, root, daemons = int(line[0]), Path(line[1]), [int(p) for p in line[2:]]
    try:
        assert root.is_dir() and all(not wait_gone(p, 0) for p in daemons)
        owner.send_signal(signal.SIGKILL)
        owner.wait(30)
        assert all(wait_gone(p) for p in daemons), "the cluster outlived its owner"
        assert wait_gone(watchdog), "the watchdog did not finish"
        assert not root.exists(), "the private directory (and its token) was left behind"
    finally:
        for pid in daemons:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_normal_stop_ends_the_watchdog_too(tmp_path):
    from fai_infer.harness.local_cluster import LocalCluster
    from fai_infer.scale.ray_private import make_private_dir

    cluster = LocalCluster()
    cluster.root = make_private_dir()
    watchdog = cluster.watch()
    assert watchdog.pid in cluster.processes()
    assert cluster.stop(grace_s=5) == []
    assert watchdog.wait(30) is not None and not cluster.root.exists()
