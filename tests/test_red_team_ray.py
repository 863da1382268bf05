"""Issue 23, section 3: ``fai index --ray`` with a private local Ray reports nothing, probes no
cloud metadata service, leaves nothing under /tmp/ray or ~/.ray, and its token is private.
Before: 4 DNS look-ups of metadata.google.internal, connects to 169.254.169.254:80,
/tmp/ray/session_* left behind and a world-readable ~/.ray/auth_token. Issue 26: the same for
a two-node cluster started with ``ray start`` (``LocalCluster``, as tests/test_ray_cluster.py)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from fai_infer.scale.ray_private import make_private_dir, remove_private_dir
from tests.helpers import ROOT, namespace_problem, off_loopback_calls, write_products

pytestmark = [pytest.mark.netns, pytest.mark.service]  # Ray in a loopback-only namespace

PROBLEM = namespace_problem()


def test_the_private_ray_directory_is_private():
    root = make_private_dir()
    try:
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        token = root / "auth_token"
        assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(token.read_text()) == 64
        assert "type: local" in (root / "home" / "ray_bootstrap_config.yaml").read_text()
    finally:
        remove_private_dir(root)
    assert not root.exists()


Ran = tuple[subprocess.CompletedProcess, Path, Path]


def in_namespace(probe: str, tmp_path: Path, request, photos: int) -> Ran:
    """Run ``python -m PROBE DNS_LOG PHOTOS OUT`` in a loopback-only network namespace under
    strace (connect calls), with a fresh HOME and TMPDIR; (result, HOME, TMPDIR)."""
    home = tmp_path / "home"
    home.mkdir()
    tmp = Path(tempfile.mkdtemp(prefix="fr-", dir="/tmp"))  # short: Ray's socket paths
    request.addfinalizer(lambda: shutil.rmtree(tmp, ignore_errors=True))
    write_products(tmp_path / "shop", photos)
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    dns_log, trace = tmp_path / "dns.log", tmp_path / "strace.log"
    dns_log.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONPATH=str(ROOT))
    # --seccomp-bpf: plain ptrace on every syscall slowed Ray past its own start-up timeout.
    script = (f"ip link set lo up && mount --bind {resolv} /etc/resolv.conf && exec strace -f "
              f"--seccomp-bpf -qq -e trace=connect -o {trace} {sys.executable} -m "  # DNS: logger
              f"{probe} {dns_log} {tmp_path / 'shop' / 'images'} {tmp_path / 'out'}")
    res = subprocess.run(["unshare", "-n", "-m", "sh", "-c", script], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert (tmp_path / "out" / "CURRENT").is_file()
    queries = dns_log.read_text().split()
    assert queries == [], f"DNS queries: {sorted(set(queries))}"
    off = off_loopback_calls(trace.read_text())
    assert off == [], f"{len(off)} socket calls off loopback, first: {off[:3]}"
    assert not (home / ".ray").exists(), list((home / ".ray").rglob("*"))
    left = [str(p.relative_to(tmp)) for p in tmp.rglob("*")]
    assert not any("ray" in p for p in left), left
    return res, home, tmp


@pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or "")
def test_fai_index_ray_talks_to_nobody_and_leaves_nothing(tmp_path, request):
    pytest.importorskip("ray", reason="needs the scale extra (pip install -e '.[scale]')")
    in_namespace("tests.ray_probe", tmp_path, request, 12)


@pytest.mark.slow
@pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or "")
def test_a_two_node_cluster_talks_to_nobody_and_leaves_nothing(tmp_path, request):
    """Head and node started with ``ray start``, ``fai index --ray-address`` across both."""
    pytest.importorskip("ray", reason="needs the scale extra (pip install -e '.[scale]')")
    res, _, _ = in_namespace("tests.ray_cluster_probe", tmp_path, request, 24)
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(report["photos"]) == 2 and all(report["photos"]), report  # both nodes worked
    assert report["left"] == [], report
