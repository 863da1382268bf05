"""Check an hnswlib index file before hnswlib reads it.

hnswlib's ``loadIndex`` trusts the file: an entry point or a neighbour id past the last node
makes the first query read outside its arrays (a SIGSEGV on a kiosk, issue 23), and header
fields size its allocations. A checksum-valid store can still carry such a file, so every field
and every link is checked here first, with numpy over the whole level-0 block: ids below the
node count, list sizes within maxM0/maxM, each node's levels within the top level, the entry
point on the top level, and every level-L link naming a node that has level L (hnswlib follows
it into that node's level-L list; issue 33). ``tests/test_red_team_hnsw_fuzz.py`` loads
hundreds of mutated graphs that pass here in a child process and asserts none kills it. The layout is
hnswlib 0.8's ``saveIndex``: a 96-byte header, ``count`` fixed-size level-0 records (link
count, links, vector, label), then per node a 4-byte size and its upper-level link lists.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from fai_infer.safe_files import read_bounded

HEADER = struct.Struct("<QQQQQQiIQQQdQ")  # offsetLevel0 .. ef_construction
MAX_LEVEL = 64
MAX_M = 4096
MAX_EF_CONSTRUCTION = 1 << 16


class BadGraph(ValueError):
    """An index.hnsw that hnswlib must not be given."""


def check_hnsw_file(path: Path, dim: int, live: int, deleted: int, labels: np.ndarray,
                    limit: int = 1 << 40) -> None:
    """Raise BadGraph unless ``path`` is a well-formed hnswlib graph over ``dim``-d float32
    vectors with ``live`` nodes labelled with ``labels`` and ``deleted`` tombstones."""
    count = live + deleted
    data = read_bounded(path, limit)
    if len(data) < HEADER.size:
        raise BadGraph("shorter than its header")
    (off0, capacity, n, per_node, label_off, data_off, max_level, entry, max_m, max_m0, m,
     mult, efc) = HEADER.unpack_from(data)
    links0 = max_m0 * 4 + 4
    if off0 != 0 or data_off != links0 or label_off != links0 + 4 * dim \
            or per_node != label_off + 8:
        raise BadGraph("its record layout does not match a graph of "
                       f"{dim}-d vectors")
    if not (0 < m <= MAX_M and max_m == m and max_m0 == 2 * m):
        raise BadGraph(f"bad degree parameters (M {m}, maxM {max_m}, maxM0 {max_m0})")
    # An insert draws a new node's level as -ln(u) * mult: a forged mult sizes its allocation.
    if m < 2 or not math.isclose(mult, 1 / math.log(m), rel_tol=1e-6) \
            or not 0 < efc <= MAX_EF_CONSTRUCTION:
        raise BadGraph(f"bad level multiplier {mult!r} or ef_construction {efc} for M {m}")
    if n != count or n > capacity:
        raise BadGraph(f"holds {n} nodes (capacity {capacity}), the catalogue {count}")
    if n and not (0 <= max_level < MAX_LEVEL and entry < n):
        raise BadGraph(f"entry point {entry} or top level {max_level} is out of range")
    end0 = HEADER.size + n * per_node
    if len(data) < end0:
        raise BadGraph("truncated in its level-0 records")
    records = np.frombuffer(data, np.uint8, n * per_node, HEADER.size).reshape(n, per_node)
    _check_links(records[:, :links0], max_m0, n, "level 0")
    tombstone = (records[:, 2] & 1).astype(bool)  # hnswlib's DELETE_MARK
    node_labels = records[:, label_off:label_off + 8].copy().view("<u8").ravel()
    if int(tombstone.sum()) != deleted or not np.array_equal(
            np.sort(node_labels[~tombstone]), np.sort(np.asarray(labels, np.uint64))):
        raise BadGraph("its live nodes are not the catalogue's items")
    _check_upper_levels(data, end0, n, max_m, max_level, entry)


def _check_links(block: np.ndarray, max_links: int, n: int, where: str) -> None:
    """Each row: uint16 link count (+ flag bytes), then ``max_links`` uint32 neighbour ids."""
    as_u32 = block.copy().view("<u4")
    counts = as_u32[:, 0] & 0xFFFF
    if (counts > max_links).any():
        raise BadGraph(f"a node lists more than {max_links} links at {where}")
    used = np.arange(max_links)[None, :] < counts[:, None]
    if (as_u32[:, 1:][used] >= n).any():
        raise BadGraph(f"a link at {where} points past the last node")


def _check_upper_levels(data: bytes, pos: int, n: int, max_m: int, max_level: int,
                        entry: int) -> None:
    """Per node: a 4-byte size, then one link list per level above 0. hnswlib's searches and
    inserts follow a level-L link straight into the named node's level-L list, so a link to
    a node with fewer levels reads memory that is not there (issue 33): every level is
    checked against the levels of the nodes it names."""
    per_level = max_m * 4 + 4
    levels = np.zeros(n, np.int64)
    blocks: list[tuple[int, int, int]] = []  # (node, offset, levels)
    for node in range(n):
        if pos + 4 > len(data):
            raise BadGraph("truncated in its upper levels")
        (size,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if size % per_level or size // per_level > max_level:
            raise BadGraph(f"node {node} has a bad upper-level size {size}")
        if size:
            if pos + size > len(data):
                raise BadGraph("truncated in its upper levels")
            levels[node] = size // per_level
            blocks.append((node, pos, size // per_level))
            pos += size
    if pos != len(data):
        raise BadGraph(f"{len(data) - pos} bytes follow the graph")
    if n and levels[entry] != max_level:
        raise BadGraph("the entry point is not on the top level")
    if not blocks:
        return
    rows = np.concatenate([np.frombuffer(data, np.uint8, lv * per_level, at)
                           .reshape(lv, per_level) for _, at, lv in blocks])
    _check_links(rows, max_m, n, "an upper level")
    row_level = np.concatenate([np.arange(1, lv + 1) for _, _, lv in blocks])
    as_u32 = rows.copy().view("<u4")
    used = np.arange(max_m)[None, :] < (as_u32[:, 0] & 0xFFFF)[:, None]
    named_levels = levels[as_u32[:, 1:].astype(np.int64) * used]  # unused slots name node 0
    short = used & (named_levels < row_level[:, None])
    if short.any():
        row = int(np.argmax(short.any(axis=1)))
        raise BadGraph(f"a link at level {int(row_level[row])} names a node without that "
                       "level")
