"""A built wheel works outside the checkout: it carries the default model, the garment parser
and the telemetry hook, embeds a photo, answers a query and a look from a fresh virtual
environment in another folder, and `pip uninstall` leaves nothing of it behind.

The fresh venv sees this environment's third-party packages (numpy, onnxruntime, OpenCV,
hnswlib) through a path file, so the test needs no download; FAI itself comes only from the
wheel (``--no-deps``), and the checkout is never on its path."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.helpers import ROOT, write_products

pytestmark = pytest.mark.slow

PROBE = r"""
import os, sys, json
import fai_infer
from fai_infer import Catalog, Encoder
assert os.environ.get("ORT_DISABLE_TELEMETRY") == "1", "the .pth hook did not run"
enc = Encoder()
vec = enc.embed([sys.argv[1] + "/images/p000.jpg"])
cat = Catalog.build(sys.argv[1], encoder=enc)
hits = cat.similar(sys.argv[1] + "/images/p001.jpg", k=3)
look = cat.look(sys.argv[1] + "/images/p002.jpg", k=2)
print(json.dumps({"module": fai_infer.__file__, "model": str(enc.path), "dim": int(vec.shape[1]),
                  "top": hits[0].id, "parser": str(cat.garment_parser().path),
                  "look": look.to_dict()["message"] or len(look.rows)}))
"""


def run(args: list, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def tracked_copy(dest: Path) -> Path:
    """The checkout's tracked files only: what a user's clone holds, nothing built."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def test_wheel_installs_embeds_queries_and_uninstalls_cleanly(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is needed to copy the checkout's tracked files")
    src = tracked_copy(tmp_path / "src")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", tmp_path / "dist", "."], cwd=src,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PIP_NO_CACHE_DIR": "1"})
    wheel = next((tmp_path / "dist").glob("fai-*.whl"))

    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    fresh_site = Path(run([py, "-c", "import sysconfig;print(sysconfig.get_paths()['purelib'])"],
                          cwd=tmp_path).stdout.strip())
    # third-party packages from this environment, through links to each of them: never the
    # checkout, its editable finder or its fai dist-info (pip would take the wheel's fai as
    # already installed and skip it)
    deps = tmp_path / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("fai", "__editable__", "_fai")):
            (deps / entry.name).symlink_to(entry)
    (fresh_site / "deps.pth").write_text(f"{deps}\n")
    env = {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    # pip too runs with nothing of this session's environment (PYTHONPATH, PIP_*, a venv):
    # in a full run something there made it take the wheel's fai as installed already
    pip_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PIP_NO_CACHE_DIR": "1"}
    before = {p.relative_to(env_dir) for p in env_dir.rglob("*")}
    pip = run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", wheel],
              cwd=tmp_path, env=pip_env)
    assert (fresh_site / "fai-ort-telemetry-off.pth").is_file(), pip.stdout[-2000:]

    photos = tmp_path / "photos"
    write_products(photos, 6)
    away = tmp_path / "elsewhere"
    away.mkdir()
    import json
    got = json.loads(run([py, "-c", PROBE, photos], cwd=away, env=env).stdout.strip())
    assert got["module"].startswith(str(fresh_site)), got  # the wheel's copy, not the checkout
    assert got["model"].startswith(str(fresh_site)) and got["dim"] > 0
    assert got["parser"].startswith(str(fresh_site)) and got["look"]  # the garment parser too
    assert got["top"] == "p001"
    fai = run([env_dir / "bin" / "fai", "--version"], cwd=away, env=env)
    assert fai.stdout.strip()

    run([sys.executable, "-m", "pip", "--python", py, "uninstall", "-y", "-q", "fai"],
        cwd=tmp_path, env=pip_env)
    left = {p.relative_to(env_dir) for p in env_dir.rglob("*")} - before
    left = {p for p in left if "__pycache__" not in p.parts and p.name != "deps.pth"}
    assert sorted(map(str, left)) == []
