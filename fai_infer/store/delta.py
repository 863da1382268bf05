"""One committed change to a catalogue (``Delta``) and how deltas are numbered on disk.

Apart from ``store`` (which writes and reads them) so that the structure checks in
``store_check`` and the in-memory state can name a delta without importing the file code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DELTA_PREFIX = "delta-"


@dataclass
class Delta:
    """One committed change. Applied in this order: removals, additions (an id already present
    is replaced; its metadata is kept when the new row is empty), metadata updates."""

    remove: list[str] = field(default_factory=list)
    add_ids: list[str] = field(default_factory=list)
    add_paths: list[str] = field(default_factory=list)
    add_rows: list[dict[str, str]] = field(default_factory=list)
    vectors: np.ndarray | None = None
    update_ids: list[str] = field(default_factory=list)
    update_rows: list[dict[str, str]] = field(default_factory=list)
    # The match scale of the catalogue once this delta is applied (sorted scores; empty: too
    # few items for one), fitted by the writer so readers never fit it; None: not recorded.
    scale: np.ndarray | None = None

    def size(self) -> int:
        return len(self.remove) + len(self.add_ids) + len(self.update_ids)

    def header(self) -> dict:
        return {"remove": self.remove,
                "add": {"ids": self.add_ids, "paths": self.add_paths, "rows": self.add_rows},
                "update": {"ids": self.update_ids, "rows": self.update_rows},
                **({} if self.scale is None else {"scale": [float(x) for x in self.scale]})}


def delta_name(number: int) -> str:
    return f"{DELTA_PREFIX}{number:06d}"


def is_delta_name(name: str) -> bool:
    tail = name[len(DELTA_PREFIX):]
    return name.startswith(DELTA_PREFIX) and len(tail) == 6 and tail.isdigit()


def delta_path(gen: Path, number: int) -> Path:
    return gen / delta_name(number)
