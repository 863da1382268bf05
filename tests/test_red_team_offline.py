"""Issue 23, section 3: no onnxruntime telemetry even when an app imports onnxruntime *before*
fai_infer. Measured: ``import onnxruntime`` alone, without ORT_DISABLE_TELEMETRY=1, writes a
device id and looks up mobile.events.data.microsoft.com every few seconds, and nothing
fai_infer can call afterwards stops it. The fix is the start-up hook that ``make install``
writes into site-packages (fai_infer/harness/telemetry_hook.py); this test installs it into a temporary
site directory, runs the app for 25 s in a loopback-only namespace under strace and counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fai_infer.harness import telemetry_hook
from tests.helpers import ROOT, namespace_problem, off_loopback_calls

pytestmark = [pytest.mark.slow, pytest.mark.netns, pytest.mark.soak]  # watches a kiosk for 25 s in a namespace

PROBLEM = namespace_problem()

SECONDS = 25


def test_make_install_writes_the_hook_and_the_hook_sets_the_switch(tmp_path):
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("$(STAMP): pyproject.toml", 1)[1].split("\n\n", 1)[0]
    assert "-m fai_infer.harness.telemetry_hook" in recipe
    site = tmp_path / "site"
    telemetry_hook.install(site)
    assert telemetry_hook.installed(site)
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    code = ("import site, os, sys; site.addsitedir(sys.argv[1]); "
            "print(os.environ.get('ORT_DISABLE_TELEMETRY'))")
    out = subprocess.run([sys.executable, "-c", code, str(site)],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "1", out.stderr


def test_importing_onnxruntime_first_without_the_hook_is_reported():
    """fai_infer cannot stop telemetry that is already running, but it must not stay silent."""
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env["PYTHONPATH"] = str(ROOT)
    env["ORT_DISABLE_TELEMETRY"] = "0"  # as without the hook (which never overrides a set value)
    out = subprocess.run([sys.executable, "-c", "import importlib; importlib.import_module("
                          "'onnxruntime'); import fai_infer"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "telemetry is on in this process" in out.stderr, out.stderr
    env["ORT_DISABLE_TELEMETRY"] = "1"
    out = subprocess.run([sys.executable, "-c", "import importlib; importlib.import_module("
                          "'onnxruntime'); import fai_infer"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert "telemetry" not in out.stderr


@pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or "")
def test_onnxruntime_imported_first_stays_offline_for_25_seconds(tmp_path):
    home, work, site = tmp_path / "home", tmp_path / "work", tmp_path / "site"
    home.mkdir()
    work.mkdir()
    telemetry_hook.install(site)  # what `make install` puts in site-packages
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    dns_log, trace = tmp_path / "dns.log", tmp_path / "strace.log"
    dns_log.touch()
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    # site.addsitedir is what site.py does for site-packages at start-up, before any app code.
    starter = (f"import site, runpy, sys; site.addsitedir({str(site)!r}); "
               f"sys.argv = ['probe', '--dns-log', {str(dns_log)!r}, '--work', {str(work)!r}, "
               f"'--seconds', '{SECONDS}']; runpy.run_module('tests.ort_first_probe', "
               f"run_name='__main__', alter_sys=True)")
    script = (f"ip link set lo up && mount --bind {resolv} /etc/resolv.conf && exec strace -f "
              f"-qq -e trace=connect,sendto,sendmsg,sendmmsg -o {trace} {sys.executable} -c "
              f"\"{starter}\"")
    res = subprocess.run(["unshare", "-n", "-m", "sh", "-c", script], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["seconds"] >= SECONDS and summary["embeds"] > 50, summary
    assert "telemetry is on" not in res.stderr
    queries = dns_log.read_text().split()
    assert queries == [], f"DNS queries from the namespace: {sorted(set(queries))}"
    off = off_loopback_calls(trace.read_text())
    assert off == [], f"{len(off)} socket calls off loopback, first: {off[:3]}"
    written = [str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()]
    assert not any("Microsoft" in w or "onnxruntime" in w for w in written), written
