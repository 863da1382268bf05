"""JSON from untrusted places (a request body, a catalogue file) with its nesting bounded.

``json.loads`` recurses once per level: a document nested a few thousand deep raises
``RecursionError`` (not ``ValueError``), which callers expecting "bad JSON" turn into a 500 or a
traceback. :func:`loads` measures the depth first, without recursion, and refuses deep
documents with a ``ValueError`` like any other malformed input.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64  # no request or catalogue file of this project nests deeper than a handful
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


class TooDeep(ValueError):
    """A JSON document nested deeper than allowed."""


def nesting_depth(data: bytes) -> int:
    """The deepest bracket nesting in ``data``, ignoring brackets inside strings."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub(b'""', data)):
        if match.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def loads(data: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that raises ValueError (:class:`TooDeep` or JSONDecodeError) for every
    bad input, deep nesting included, never RecursionError."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if nesting_depth(raw) > max_depth:
        raise TooDeep(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(raw)
    except RecursionError:  # belt and braces: the scan above should make this unreachable
        raise TooDeep(f"JSON nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"JSON is not valid UTF-8: {exc.reason}") from None
