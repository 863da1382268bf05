"""Issue 33, point 1: a checksum-valid index.hnsw must never crash the process that loads it.

An upper-level link naming a node that exists only at level 0 passed the checker, and hnswlib
then followed that node's missing link list (SIGSEGV in ``fai query``, and in a live server on
the first search after such a generation was swapped in). Here a small valid graph is mutated a
few hundred times (seeded): every mutation must be refused by ``check_hnsw_file`` in one line,
or load, search and take new items in a child process without dying by a signal. The child loads
the accepted files one after another so a crash is seen as its exit signal, never as a dead
pytest, and is restarted after the file that killed it.
"""

from __future__ import annotations

import random
import struct
import subprocess
import sys
from pathlib import Path

import hnswlib
import numpy as np
import pytest

from fai_infer.store.hnsw_check import HEADER, BadGraph, check_hnsw_file
from tests.helpers import ROOT

DIM, NODES, M, DELETED = 8, 300, 4, 5

CHILD = r"""
import sys
import numpy as np
from fai_infer.index.search import HnswSearch
dim, capacity, deleted = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
for path in sys.stdin:
    path = path.strip()
    try:
        hnsw = HnswSearch.load(path, dim, capacity, deleted)
        for _ in range(3):
            hnsw.query(rng.standard_normal(dim).astype(np.float32), 5)
        hnsw.add(np.arange(10_000, 10_004), rng.standard_normal((4, dim)).astype(np.float32))
        hnsw.query(rng.standard_normal(dim).astype(np.float32), 5)
    except RuntimeError:
        pass  # hnswlib's own refusal: the store turns it into one line
    print("done", path, flush=True)
"""


def valid_graph(path: Path) -> np.ndarray:
    """A small graph with several levels and some tombstones; returns its live labels."""
    rng = np.random.default_rng(7)
    index = hnswlib.Index(space="ip", dim=DIM)
    index.init_index(max_elements=NODES, M=M, ef_construction=50, random_seed=3)
    vectors = rng.standard_normal((NODES, DIM)).astype(np.float32)
    index.add_items(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), np.arange(NODES))
    for label in range(DELETED):
        index.mark_deleted(label)
    index.save_index(str(path))
    return np.arange(DELETED, NODES)


def layout(data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """(per-node level-0 record size, [(offset, levels)] of each node's upper-level block)."""
    fields = HEADER.unpack_from(data)
    n, per_node, max_m = fields[2], fields[3], fields[8]
    pos, blocks = HEADER.size + n * per_node, []
    for _ in range(n):
        (size,) = struct.unpack_from("<I", data, pos)
        blocks.append((pos + 4, size // (max_m * 4 + 4)))
        pos += 4 + size
    return per_node, blocks


def mutations(data: bytes, seed: int = 33, count: int = 320):
    """Seeded mutations: random bytes anywhere, random link ids, the reported forgery (an
    upper-level link to a node with fewer levels), link counts and header fields."""
    rng = random.Random(seed)
    per_node, blocks = layout(data)
    upper = [(pos, levels) for pos, levels in blocks if levels]
    low = [node for node, (_, levels) in enumerate(blocks) if levels == 0]
    by_level = {node: levels for node, (_, levels) in enumerate(blocks)}
    per_level = M * 4 + 4
    for i in range(count):
        out = bytearray(data)
        kind = i % 6
        if kind == 0:  # a random byte anywhere
            out[rng.randrange(len(out))] ^= rng.randrange(1, 256)
        elif kind == 1:  # a level-0 link set to any node, or just past the last one
            node = rng.randrange(NODES)
            slot = HEADER.size + node * per_node + 4 + 4 * rng.randrange(2 * M)
            struct.pack_into("<I", out, slot, rng.choice([rng.randrange(NODES), NODES,
                                                          NODES + 1, 2 ** 32 - 1]))
        elif kind in (2, 3):  # the red team's forgery: a level-L link to a lower node
            pos, levels = rng.choice(upper)
            level = rng.randrange(levels)
            row = pos + level * per_level
            struct.pack_into("<H", out, row, max(1, struct.unpack_from("<H", out, row)[0]))
            lower = [node for node in low] if level == 0 else \
                [node for node, lv in by_level.items() if lv <= level]
            struct.pack_into("<I", out, row + 4, rng.choice(lower))
        elif kind == 4:  # an upper-level link count
            pos, levels = rng.choice(upper)
            struct.pack_into("<H", out, pos + rng.randrange(levels) * per_level,
                             rng.choice([0, M, M + 1, 0xFFFF]))
        else:  # a header field
            field = rng.randrange(13)
            offset = struct.calcsize("<" + HEADER.format[1:1 + field])
            fmt = "<" + HEADER.format[1 + field]
            value = rng.choice([0, 1, 2, 3, NODES - 1, NODES, 2 ** 31 - 1])
            struct.pack_into(fmt, out, offset, float(value) if fmt == "<d" else value)
        if bytes(out) != data:
            yield i, bytes(out)


def test_no_mutation_of_a_valid_graph_crashes_the_loader(tmp_path):
    good = tmp_path / "good.hnsw"
    labels = valid_graph(good)
    data = good.read_bytes()
    check_hnsw_file(good, DIM, NODES - DELETED, DELETED, labels)  # the original passes
    accepted: list[Path] = []
    refused = 0
    for i, mutant in mutations(data):
        path = tmp_path / f"m{i:04d}.hnsw"
        path.write_bytes(mutant)
        try:
            check_hnsw_file(path, DIM, NODES - DELETED, DELETED, labels)
        except BadGraph as exc:
            assert "\n" not in str(exc) and str(exc), (i, str(exc))
            refused += 1
            continue
        accepted.append(path)
    crashed = []
    todo = [str(good)] + [str(p) for p in accepted]
    while todo:
        child = subprocess.run([sys.executable, "-c", CHILD, str(DIM), str(NODES), str(DELETED)],
                               input="\n".join(todo) + "\n", cwd=ROOT, capture_output=True,
                               text=True, timeout=120)
        done = {line.split(" ", 1)[1] for line in child.stdout.splitlines()
                if line.startswith("done ")}
        left = [p for p in todo if p not in done]
        if child.returncode == 0:
            assert not left, left
            break
        assert left, (child.returncode, child.stderr[-2000:])
        crashed.append((Path(left[0]).name, child.returncode))
        todo = left[1:]
    assert not crashed, f"{len(crashed)} accepted graphs crashed hnswlib: {crashed[:10]}"
    assert refused >= 100 and accepted, (refused, len(accepted))


@pytest.mark.parametrize("levels_of_target", [0, 1])
def test_an_upper_link_to_a_node_without_that_level_is_refused(tmp_path, levels_of_target):
    """The reported forgery, deterministic: a link at level L naming a node with fewer levels."""
    good = tmp_path / "good.hnsw"
    labels = valid_graph(good)
    data = bytearray(good.read_bytes())
    _, blocks = layout(bytes(data))
    source = next(pos for pos, levels in blocks if levels >= levels_of_target + 1)
    target = next(node for node, (_, levels) in enumerate(blocks) if levels == levels_of_target)
    row = source + levels_of_target * (M * 4 + 4)
    struct.pack_into("<HHI", data, row, 1, 0, target)
    good.write_bytes(bytes(data))
    with pytest.raises(BadGraph, match=f"level {levels_of_target + 1}"):
        check_hnsw_file(good, DIM, NODES - DELETED, DELETED, labels)
