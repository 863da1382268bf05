"""Arrays that grow geometrically, so appending one batch does not copy everything before it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

HEADROOM = 0.125  # spare rows a loaded array gets, as a share of its length


def load_with_headroom(path: Path, headroom: float = HEADROOM) -> np.ndarray:
    """A ``.npy`` file read straight into a buffer with spare rows after it; returns the filled
    view (its ``.base`` is the whole buffer, which ``Growable`` adopts without copying). At a
    million 256-d rows this saves copying a gigabyte on the first change after opening."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(fh)
        if fortran or dtype.hasobject or len(shape) < 1 or 0 in shape:
            return np.load(path, allow_pickle=False)
        spare = int(shape[0] * headroom) + 64
        buffer = np.empty((shape[0] + spare, *shape[1:]), dtype)
        view = buffer[:shape[0]]
        if fh.readinto(memoryview(view).cast("B")) != view.nbytes:
            raise ValueError(f"{path}: shorter than its header says")
        return view


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
        self.n = len(data)
        base = data.base
        if (isinstance(base, np.ndarray) and base.dtype == self.dtype and base.ndim == data.ndim
                and base.shape[1:] == data.shape[1:] and data.flags.c_contiguous
                and base.flags.c_contiguous and data.ctypes.data == base.ctypes.data):
            self._data = base  # spare rows already after the data (load_with_headroom)
        else:
            self._data = np.ascontiguousarray(data)

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
        capacity = max(needed, len(self._data) + len(self._data) // 2, 64)
        grown = np.empty((capacity, *self.row_shape), self.dtype)  # rows past n: never read
        grown[:self.n] = self._data[:self.n]
        self._data = grown

    def add_columns(self, count: int) -> None:
        """For a 2-D table of codes: append ``count`` columns filled with ``fill``."""
        extra = np.full((len(self._data), count), self.fill, self.dtype)
        self._data = np.ascontiguousarray(np.concatenate([self._data, extra], axis=1))
        self.row_shape = (self.row_shape[0] + count,)
