"""Reading and writing a catalogue's small files without trusting what is on disk.

A checksum proves a file's bytes, not that the path is a file: before issue 23 a ``CURRENT``
or delta that was a directory raised ``IsADirectoryError``, one symlinked to ``/dev/zero`` was
read forever, a FIFO blocked the reader for good, and a writer that found ``LOCK`` or
``CURRENT.tmp`` as a symlink truncated the link's target. Here every read opens without
following a final symlink and without blocking, checks that it got a regular file and reads at
most a bounded size; writers create their files the same way and refuse anything else.
``.npy`` headers are checked against the file's real size before an array is allocated.

The same rules hold for what a user names (photos, CSVs, models; issue 33): a device has
``st_size`` 0 and a FIFO blocks its reader, so those inputs are opened without blocking,
refused unless they are regular files (a symlink to one is fine there), and every read is
bounded by the bytes it actually got, never by ``st_size``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

SMALL_FILE_LIMIT = 64 * 1024 * 1024  # CURRENT, manifest.json: far below; deltas: header cap
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class NotARegularFile(OSError):
    """A catalogue path that is a directory, link, FIFO or device instead of a file."""

    def __str__(self) -> str:  # one line naming the file, without "[Errno N]"
        return str(self.strerror)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: Path, flags: int = _READ, mode: int = 0o644,
                 follow_symlinks: bool = False) -> int:
    """An fd for ``path`` that is a regular file (never a FIFO, device or folder, and never a
    symlink unless ``follow_symlinks``: a user's photo may be a link to a photo)."""
    if follow_symlinks:
        flags &= ~os.O_NOFOLLOW
    else:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: the last component is a symlink
            raise NotARegularFile(exc.errno, f"{Path(path).name} is a symbolic link") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotARegularFile(21, f"{Path(path).name} is {_kind(st.st_mode)}")
    return fd


def read_bounded(path: Path, limit: int = SMALL_FILE_LIMIT,
                 follow_symlinks: bool = False) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; OSError otherwise. The limit
    counts the bytes read (``st_size`` is 0 for /proc files and may change meanwhile)."""
    fd = open_regular(path, follow_symlinks=follow_symlinks)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise NotARegularFile(27, f"{Path(path).name} is {size:,} bytes, over the "
                                      f"{limit:,} byte limit")
        chunks, got = [], 0
        while True:
            chunk = os.read(fd, min(limit + 1 - got, 1 << 20))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            got += len(chunk)
            if got > limit:
                raise NotARegularFile(27, f"{Path(path).name} is over the {limit:,} byte "
                                          f"limit")
    finally:
        os.close(fd)


def read_text(path: Path, encoding: str = "utf-8", limit: int = SMALL_FILE_LIMIT) -> str:
    return read_bounded(path, limit).decode(encoding)


def check_npy(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from a ``.npy`` header, refused (ValueError) unless the data it declares
    is exactly what the file holds: a forged header cannot make numpy allocate terabytes."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(fh, max_header_size=10_000)
        if dtype.hasobject:
            raise ValueError(f"{Path(path).name}: object arrays are not catalogue data")
        if any(not isinstance(n, int) or n < 0 for n in shape):
            raise ValueError(f"{Path(path).name}: bad shape {shape!r} in its header")
        declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
        actual = os.fstat(fh.fileno()).st_size - fh.tell()
        if declared != actual:
            raise ValueError(f"{Path(path).name}: header declares {shape} {dtype} "
                             f"({declared:,} bytes) but the file holds {actual:,}")
    return shape, dtype


def load_npy(path: Path) -> np.ndarray:
    """``np.load`` after :func:`check_npy`."""
    check_npy(path)
    return np.load(path, allow_pickle=False)
