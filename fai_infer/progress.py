"""A dependency-free progress bar for the CLI (the runtime must not need tqdm)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, desc: str, stream=sys.stderr, every: float = 0.25):
        self.total, self.desc, self.stream, self.every = total, desc, stream, every
        self.done, self.start, self.last = 0, time.time(), 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.time()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            self.stream.write(f"\r{self.desc} [{'#' * filled}{'.' * (width - filled)}] "
                              f"{self.done}/{self.total} {rate:.0f} img/s")
            self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
