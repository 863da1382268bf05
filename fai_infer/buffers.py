"""Arrays that grow by doubling, so appending one batch does not copy everything before it."""

from __future__ import annotations

import numpy as np


class Growable:
    """A numpy array of rows (``shape[1:]`` fixed) with spare capacity at the end.

    ``view()`` is the filled part, without a copy; it stays valid until the next ``extend``.
    """

    def __init__(self, row_shape: tuple[int, ...], dtype, data: np.ndarray | None = None,
                 fill=0):
        self.row_shape, self.dtype, self.fill = tuple(row_shape), np.dtype(dtype), fill
        if data is None:
            data = np.zeros((0, *self.row_shape), self.dtype)
        data = np.asarray(data, dtype=self.dtype)
        data = data.reshape(data.shape[0] if data.ndim else 1, *self.row_shape)
        self._data = np.ascontiguousarray(data)
        self.n = len(data)

    def __len__(self) -> int:
        return self.n

    def view(self) -> np.ndarray:
        return self._data[:self.n]

    def extend(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=self.dtype)
        rows = rows.reshape(rows.shape[0] if rows.ndim else 1, *self.row_shape)
        self.reserve(self.n + len(rows))
        self._data[self.n:self.n + len(rows)] = rows
        self.n += len(rows)

    def reserve(self, needed: int) -> None:
        if needed <= len(self._data):
            return
        capacity = max(needed, 2 * len(self._data), 64)
        grown = np.full((capacity, *self.row_shape), self.fill, self.dtype)
        grown[:self.n] = self._data[:self.n]
        self._data = grown

    def add_columns(self, count: int) -> None:
        """For a 2-D table of codes: append ``count`` columns filled with ``fill``."""
        extra = np.full((len(self._data), count), self.fill, self.dtype)
        self._data = np.ascontiguousarray(np.concatenate([self._data, extra], axis=1))
        self.row_shape = (self.row_shape[0] + count,)
