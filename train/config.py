"""Plain dataclasses turned into argparse options, so ``--help`` documents every setting."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def opt(default: Any, help: str) -> Any:
    """A dataclass field with its --help text."""
    return dataclasses.field(default=default, metadata={"help": help})


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        text = f.metadata.get("help", "")
        # a help text that says its own default ("default: the CSV in --data") keeps it alone
        shown = text if "default" in text.lower() else f"{text} (default: {f.default})"
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=f.default, help=shown)
            continue
        args = typing.get_args(kind)
        base = next((a for a in args if a is not type(None)), kind) if args else kind
        parser.add_argument(flag, dest=f.name, type=base, default=f.default, help=shown)


def from_args(cls: type[T], ns: argparse.Namespace) -> T:
    return cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)})


def load_recipe(path: str, cls: type, error) -> dict[str, Any]:
    """A named recipe file (JSON object of field -> value) as argparse defaults; an unknown
    key is an error that names it, so a typo never silently trains something else."""
    import json
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        error(f"--config {path}: no such recipe file (see configs/)")
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        error(f"--config {path}: not a JSON recipe ({exc})")
    if not isinstance(data, dict):
        error(f"--config {path}: a recipe is a JSON object of setting -> value")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in data if k not in fields and not k.startswith("_"))
    if unknown:
        error(f"--config {path}: unknown settings {', '.join(unknown)}")
    return {k: v for k, v in data.items() if k in fields}
