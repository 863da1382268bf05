"""The import graph stays straight: no cycle between modules or between packages, counting
imports inside functions too (a cycle hidden in a function is still a cycle), and the layers
import only downwards: fai_infer <- train <- export, ui <- bench; tests use any of them but
never bench nor another test module."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

PACKAGES = ("fai_infer", "train", "export", "ui", "bench", "tests")
# What each package may import (besides itself): the layering, in one table.
ALLOWED = {
    "fai_infer": set(),
    "train": {"fai_infer"},
    "export": {"fai_infer", "train"},
    "ui": {"fai_infer", "train"},  # train: only ui.showcase (the decoder's pictures for docs)
    "bench": {"fai_infer", "train", "export", "ui"},
    "tests": {"fai_infer", "train", "export", "ui"},
}


def module_names() -> dict[str, Path]:
    """Every project module by dotted name (a package by its own name)."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # "from pkg import mod" imports pkg.mod when that is a module, else a name of pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = module_names()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def package_of(module: str) -> str:
    return module.split(".")[0]


def test_no_import_cycle_between_modules():
    assert cycles(graph()) == []


def test_no_import_cycle_between_packages_and_layers_import_downwards():
    edges: dict[str, set[str]] = {p: set() for p in PACKAGES}
    wrong = []
    for module, targets in graph().items():
        for target in targets:
            a, b = package_of(module), package_of(target)
            if a != b:
                edges[a].add(b)
                if b not in ALLOWED[a]:
                    wrong.append(f"{module} -> {target}")
    assert wrong == []
    assert cycles(edges) == []


def test_tests_import_helpers_not_other_test_modules():
    wrong = [f"{m} -> {t}" for m, targets in graph().items() if m.startswith("tests.")
             for t in targets
             if t.rpartition(".")[2].startswith("test_") or t == "tests.conftest"]
    assert wrong == []


def test_the_walker_sees_imports_inside_functions():
    """The check itself: a cycle through a function-level import is found."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert "fai_infer.scale.milvus_catalog" in graph()["fai_infer.scale.cli"]  # in a function
