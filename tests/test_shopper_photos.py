"""Synthetic shopper photos: seeded, really distorted, and scored against the clean catalogue."""

import numpy as np
import pytest

from train.metrics import l2_normalise, own_item_rank, shopper_table
from train.shopper_photos import _backdrop_mask, seed_for, shopper_photo, shopper_photos


def _garment(size: int = 96) -> np.ndarray:
    """White studio backdrop, a dark ring (the garment) around a white patch (its print)."""
    sq = np.full((size, size, 3), 255, np.uint8)
    sq[20:76, 20:76] = (30, 60, 150)
    sq[36:60, 36:60] = 255
    return sq


def test_same_id_gives_the_same_photo_and_other_ids_differ():
    sq = _garment()
    a, b = shopper_photo(sq, seed_for("42")), shopper_photo(sq, seed_for("42"))
    c = shopper_photo(sq, seed_for("43"))
    assert a.dtype == np.uint8 and a.shape == sq.shape
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 5


def test_the_photo_is_really_re_shot():
    sq = _garment()
    shot = shopper_photo(sq, seed_for("7"))
    backdrop = shot[:12, :12].reshape(-1, 3)  # a corner was pure white
    assert np.abs(shot.astype(int) - sq.astype(int)).mean() > 20
    assert backdrop.std(axis=0).max() > 1 or backdrop.mean() < 235  # clutter, not white


def test_backdrop_is_the_white_that_touches_the_edge_not_a_white_print():
    mask = _backdrop_mask(_garment(), threshold=246)[..., 0]
    assert mask[2, 2] > 0.99 and mask[48, 48] < 0.01 and mask[28, 28] < 0.01


def test_batch_matches_single_and_checks_its_input():
    squares = np.stack([_garment(), _garment()[::-1].copy()])
    batch = shopper_photos(squares, ["a", "b"])
    assert np.array_equal(batch[1], shopper_photo(squares[1], seed_for("b")))
    with pytest.raises(ValueError, match="ids"):
        shopper_photos(squares, ["a"])
    with pytest.raises(ValueError, match="square"):
        shopper_photo(np.zeros((10, 12, 3), np.uint8), 0)


def test_own_item_rank_counts_the_items_searched_past():
    gallery = np.eye(4, dtype=np.float32)
    queries = np.array([0, 1])
    exact = own_item_rank(gallery, queries, gallery[queries])
    assert exact.tolist() == [0, 0]
    # each shot looks more like the other item than like its own: one item searched past
    shots = l2_normalise(gallery[[1, 0]] + 0.5 * gallery[[0, 1]])
    assert own_item_rank(gallery, queries, shots).tolist() == [1, 1]
    # a shot that matches nothing ties with every item: ties count against it
    assert own_item_rank(gallery, np.array([0]), gallery[[0]] * 0).tolist() == [3]


def test_shopper_table_reports_item_and_label_precision():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 8)).astype(np.float32)
    labels = {"type": np.arange(40) % 4}
    queries = np.arange(0, 40, 5)
    same = shopper_table(emb, queries, emb[queries], labels)
    assert same["item@1"] == 1.0 and same["item@10"] == 1.0
    noisy = shopper_table(emb, queries, rng.normal(size=(8, 8)).astype(np.float32), labels)
    assert noisy["item@10"] < 1.0 and 0 <= noisy["P@10 type"] <= 1
