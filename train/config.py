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
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=f.default, help=f"{text} (default: {f.default})")
            continue
        args = typing.get_args(kind)
        base = next((a for a in args if a is not type(None)), kind) if args else kind
        parser.add_argument(flag, dest=f.name, type=base, default=f.default,
                            help=f"{text} (default: {f.default})")


def from_args(cls: type[T], ns: argparse.Namespace) -> T:
    return cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)})
