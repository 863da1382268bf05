"""Nothing leaves the machine: the encoder and the shop demo, run for more than 15 s in a network
namespace that has only loopback, send no DNS query, connect nowhere else and write no telemetry.

onnxruntime's telemetry starts about ten seconds into an embedding loop (issue 17), so shorter
runs prove nothing. Needs root, ``unshare``, ``ip`` and ``strace`` (the CI image has them)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, namespace_problem, off_loopback_calls

PROBLEM = namespace_problem()


def test_off_loopback_pattern_catches_real_addresses():
    log = ('12 connect(5, {sa_family=AF_INET, sin_port=htons(443), '
           'sin_addr=inet_addr("13.69.109.130")}, 16) = -1 ENETUNREACH\n'
           '13 connect(6, {sa_family=AF_INET, sin_port=htons(53), '
           'sin_addr=inet_addr("127.0.0.1")}, 16) = 0\n'
           '14 connect(7, {sa_family=AF_INET6, sin6_port=htons(443), '
           'sin6_addr=inet_pton(AF_INET6, "2603:1020::1"), sin6_scope_id=0}, 28) = -1\n'
           '15 connect(8, {sa_family=AF_INET6, sin6_port=htons(80), '
           'sin6_addr=inet_pton(AF_INET6, "::1"), sin6_scope_id=0}, 28) = 0\n')
    assert [line.split()[0] for line in off_loopback_calls(log)] == ["12", "14"]


def test_no_module_imports_onnxruntime_around_the_telemetry_switch():
    """Every importer goes through fai_infer.model.ort, which turns telemetry off first."""
    offenders = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        if ".venv" in path.parts or path == ROOT / "fai_infer" / "model" / "ort.py":
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        first_ort = re.search(r"^\s*(?:import onnxruntime|from onnxruntime)", text, re.M)
        via_fai = text.find("from fai_infer.model.ort import")
        if first_ort and (via_fai < 0 or via_fai > first_ort.start()):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


@pytest.mark.netns
@pytest.mark.service
@pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or "")
@pytest.mark.slow
def test_encoder_and_ui_stay_offline_for_16_seconds(tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    dns_log, trace = tmp_path / "dns.log", tmp_path / "strace.log"
    dns_log.touch()
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(home), GRADIO_TEMP_DIR=str(work / "gradio"), PYTHONPATH=str(ROOT))
    script = (f"ip link set lo up && mount --bind {resolv} /etc/resolv.conf && exec strace -f "
              f"-qq -e trace=connect,sendto,sendmsg,sendmmsg -o {trace} {sys.executable} -m "
              f"tests.offline_probe --dns-log {dns_log} --work {work} --seconds 16")
    res = subprocess.run(["unshare", "-n", "-m", "sh", "-c", script], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["ui_start_error"] is None, summary
    assert summary["kiosk_seconds"] >= 16 and summary["ui_seconds"] >= 16, summary
    assert summary["embeds"] > 50 and summary["ui_searches"] > 5, summary
    assert summary["ui_errors"] == [], summary
    queries = dns_log.read_text().split()
    assert queries == [], f"DNS queries from the namespace: {sorted(set(queries))}"
    off = off_loopback_calls(trace.read_text())
    assert off == [], f"{len(off)} socket calls off loopback, first: {off[:3]}"
    written = [str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()]
    assert not any("Microsoft" in w or "onnxruntime" in w for w in written), written
