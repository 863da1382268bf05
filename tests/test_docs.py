"""What the docs name exists: every source file, test (with its ``::test_name``), doc page and
``python -m`` module that README.md, docs/, models/README.md, bench/README.md and the Makefile
point a reader to. Figures drift less when the place that made them can still be found."""

from __future__ import annotations

import re

from tests.helpers import ROOT

DOCS = sorted([*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), ROOT / "models" / "README.md",
               ROOT / "bench" / "README.md", ROOT / "Makefile"])
# paths into the code, tests and docs (not example outputs such as models/mine.onnx, nor what
# a bench writes under the git-ignored bench/results/)
PATH = re.compile(r"(?<![\w./-])((?:fai_infer|train|export|ui|bench|tests|docs)/[\w./-]*\w)"
                  r"(?:::(\w+\*?))?")  # test_x_* names every test starting so
MODULE = re.compile(r"python -m ((?:fai_infer|train|export|ui|bench|tests)(?:\.\w+)*)")


def dangling(text: str) -> list[str]:
    out = []
    for m in PATH.finditer(text):
        rel, test = m.group(1), m.group(2)
        if rel.startswith("bench/results/"):
            continue
        path = ROOT / rel
        if not (path.exists() or path.with_suffix(".py").exists()):
            out.append(rel)
        elif test and path.is_file() and not re.search(
                rf"def {test[:-1]}\w*\(" if test.endswith("*") else rf"def {test}\(",
                path.read_text()):
            out.append(f"{rel}::{test}")
    for m in MODULE.finditer(text):
        base = ROOT / m.group(1).replace(".", "/")
        if not (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()):
            out.append(f"python -m {m.group(1)}")
    return out


def test_every_file_test_and_module_the_docs_name_exists():
    missing = {d.relative_to(ROOT).as_posix(): dangling(d.read_text(encoding="utf-8"))
               for d in DOCS}
    assert {d: m for d, m in missing.items() if m} == {}


def test_the_check_finds_what_is_gone():
    assert dangling("see `tests/test_gone.py` and tests/test_docs.py::test_nope and "
                    "tests/test_docs.py::test_zzz_* and `python -m fai_infer.nowhere`; "
                    "tests/test_docs.py::test_the_check_* is here") == [
        "tests/test_gone.py", "tests/test_docs.py::test_nope",
        "tests/test_docs.py::test_zzz_*", "python -m fai_infer.nowhere"]


def test_provenance_names_the_model_bytes_the_cpu_and_the_date(tmp_path):
    """The block every bench and evaluation JSON carries (fai_infer/model/provenance.py)."""
    import hashlib

    from fai_infer.model.provenance import provenance

    model = tmp_path / "m.onnx"
    model.write_bytes(b"not really a model, but bytes with a hash")
    made = provenance([model, tmp_path / "gone.onnx"])
    assert made["models"] == {str(model): hashlib.sha256(model.read_bytes()).hexdigest(),
                              str(tmp_path / "gone.onnx"): None}
    assert made["cpu_flags"] and made["int8_path"] and made["date"][:4].isdigit()
