"""The architecture holds: the layer, independence, forbidden-import and no-cycle contracts
declared in pyproject.toml ([tool.importlinter]) pass, and the checker really fails a tree that
breaks them (a contract nobody saw fail is no check)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers import ROOT

LINT = Path(sys.executable).with_name("lint-imports")


def lint(cwd: Path, config: Path | None = None) -> subprocess.CompletedProcess:
    args = [str(LINT), "--no-cache"] + (["--config", str(config)] if config else [])
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd)}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def test_the_project_keeps_every_declared_contract():
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " 0 broken" in out.stdout


def test_the_checker_fails_a_layer_broken_upwards_and_a_cycle(tmp_path):
    pkg = tmp_path / "shop"
    for sub in ("low", "high"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "a.py").write_text("import shop.high.b\nimport shop.low.c\n")  # upwards
    (pkg / "low" / "c.py").write_text("import shop.low.a\n")  # a <-> c: a cycle
    (pkg / "high" / "b.py").write_text("")
    config = tmp_path / "contracts.toml"
    config.write_text(textwrap.dedent("""
        [tool.importlinter]
        root_packages = ["shop"]
        [[tool.importlinter.contracts]]
        name = "layers"
        type = "layers"
        containers = ["shop"]
        layers = ["high", "low"]
        [[tool.importlinter.contracts]]
        name = "cycles"
        type = "acyclic_siblings"
        ancestors = ["shop.low"]
    """))
    out = lint(tmp_path, config)
    assert out.returncode != 0
    assert "2 broken" in out.stdout, out.stdout[-3000:]


def test_tests_import_helpers_not_other_test_modules():
    """Shared test code lives in helper modules; a test module importing another runs its
    tests twice and hides where a fixture comes from."""
    wrong = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            wrong += [f"{path.name} -> {n}" for n in names
                      if n.rpartition(".")[2].startswith("test_") or n == "tests.conftest"]
    assert wrong == []

