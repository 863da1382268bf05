"""Garment apart from colour: a colour-blind garment part, a fixed colour part, the query-time
colour weight's algebra, WiSE-FT, the second shop's figures and train.adapt's pieces."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from fai_infer.model.parts import ColourWeightError, EmbeddingParts
from fai_infer.image.preprocess import to_tensor
from tests.helpers import (equal_luma, garment_colour_model,
                           garment_colour_spec, product)
from train.colour import COLOUR_DIM, ColourHistogram
from train.model import EmbeddingModel, luma

SPEC = garment_colour_spec()


def embed(model: AutoEncoder, squares: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return EmbeddingModel(model)(torch.from_numpy(to_tensor(squares, SPEC))).numpy()


def test_the_garment_part_is_blind_to_colour_and_the_colour_part_sees_it():
    model = garment_colour_model()
    # Two colours of equal luma (BT.601): a grey backbone cannot tell them apart.
    red = (200, 40, 40)
    teal = equal_luma(red)
    a, b = embed(model, np.stack([product(red), product(teal)]))
    parts = EmbeddingModel(model).parts()
    g0, g1 = parts["garment"]
    c0, c1 = parts["colour"]
    garment_cos = a[g0:g1] @ b[g0:g1] / (np.linalg.norm(a[g0:g1]) * np.linalg.norm(b[g0:g1]))
    colour_cos = a[c0:c1] @ b[c0:c1] / (np.linalg.norm(a[c0:c1]) * np.linalg.norm(b[c0:c1]))
    assert garment_cos > 0.999  # luma differs by rounding only
    assert colour_cos < 0.6
    np.testing.assert_allclose(np.linalg.norm(a[g0:g1]) ** 2, 0.75, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(a[c0:c1]) ** 2, 0.25, atol=1e-5)


def test_luma_is_idempotent_so_grey_photos_give_the_same_garment_part():
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(luma(luma(x)), luma(x))


def test_the_colour_histogram_is_a_unit_descriptor_that_ignores_the_backdrop():
    hist = ColourHistogram()
    red_on_white = torch.from_numpy(product((200, 30, 30))).permute(2, 0, 1)[None] / 255.0
    red_on_grey = red_on_white.clone()
    red_on_grey[red_on_grey.min(dim=1, keepdim=True).values.expand_as(red_on_grey) > 0.99] = 0.8
    blue = torch.from_numpy(product((30, 30, 200))).permute(2, 0, 1)[None] / 255.0
    out = hist(torch.cat([red_on_white, red_on_grey, blue]))
    assert out.shape == (3, COLOUR_DIM)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    assert float(out[0] @ out[1]) > 0.85  # another backdrop: still a red garment
    assert float(out[0] @ out[2]) < float(out[0] @ out[1]) - 0.3


def test_reweighing_a_query_gives_the_weighted_sum_of_part_similarities():
    rng = np.random.default_rng(0)
    c0 = 0.25
    parts = EmbeddingParts(garment=(0, 6), colour=(6, 10), default_colour=c0)
    g = rng.normal(size=(5, 6))
    h = rng.normal(size=(5, 4))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    h /= np.linalg.norm(h, axis=1, keepdims=True)
    stored = np.concatenate([np.sqrt(1 - c0) * g, np.sqrt(c0) * h], axis=1).astype(np.float32)
    for w in (0.0, 0.1, 0.25, 0.6, 1.0):
        scores = parts.reweigh(stored[:1], w) @ stored.T
        expected = (1 - w) * g[:1] @ g.T + w * h[:1] @ h.T
        np.testing.assert_allclose(scores, expected, atol=1e-5)
        both = parts.stored_as(stored, w)
        np.testing.assert_allclose(both[:1] @ both.T, expected, atol=1e-5)
    assert parts.reweigh(stored, None) is stored


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.5", True])
def test_a_bad_colour_weight_is_one_clear_error(bad):
    parts = EmbeddingParts(garment=(0, 6), colour=(6, 10), default_colour=0.25)
    with pytest.raises(ColourWeightError, match="colour weight"):
        parts.reweigh(np.zeros((1, 10), np.float32), bad)


def test_a_model_without_colour_refuses_a_colour_weight_by_name():
    with pytest.raises(ColourWeightError, match="no colour part"):
        EmbeddingParts.whole(8).reweigh(np.zeros((1, 8), np.float32), 0.3)


@pytest.mark.parametrize("meta,dim", [('{"garment": [0, 5], "colour": [6, 10]}', 10),
                                      ('{"garment": [0, 6], "colour": [6, 9]}', 10),
                                      ('{"garment": "x"}', 10), ("[" * 5000, 10)])
def test_parts_metadata_that_does_not_tile_the_output_is_refused(meta, dim):
    with pytest.raises(ValueError, match="bad model metadata"):
        EmbeddingParts.from_metadata(meta, "0.25", dim, "m.onnx")


def test_export_records_the_parts_and_the_runtime_reads_them(tmp_path):
    from export.onnx import export
    from fai_infer import Encoder
    from train.checkpoint import save_atomic

    model = garment_colour_model(0.3)
    ckpt = {"model": model.state_dict(), "model_config": model.cfg.to_dict(),
            "preprocess": SPEC.to_dict(), "train_config": {"arch": "efficientnet-lite0"},
            "epoch": 0}
    save_atomic(ckpt, tmp_path / "m.pt")
    report = export(tmp_path / "m.pt", tmp_path / "m.onnx", log=lambda *a: None)
    assert report["fp32"]["parity_max_abs_diff"][8] < 1e-4
    enc = Encoder(tmp_path / "m.onnx")
    assert enc.dim == 48 + COLOUR_DIM
    assert enc.info.parts == EmbeddingParts((0, 48), (48, 48 + COLOUR_DIM), 0.3)
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert json.loads(meta["fai.embedding_parts"])["colour"] == [48, 48 + COLOUR_DIM]
    squares = np.stack([product((200, 30, 30)), product((30, 30, 200), shape="trousers")])
    np.testing.assert_allclose(enc.embed_squares(squares), embed(model, squares), atol=1e-4)


def test_wise_ft_interpolates_the_backbone_only():
    from train.choose import interpolated
    from train.efficientnet_lite import load_imagenet, EfficientNetLite

    model = garment_colour_model()
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)
    frozen = load_imagenet(EfficientNetLite("efficientnet-lite0")).state_dict()
    half = interpolated(model, 0.5)
    name = "_blocks.10._project_conv.weight"
    torch.testing.assert_close(half.encoder.state_dict()[name],
                               0.5 * frozen[name] + 0.5 * model.encoder.state_dict()[name])
    torch.testing.assert_close(half.head.proj.weight, model.head.proj.weight)
    torch.testing.assert_close(interpolated(model, 0.0).encoder.state_dict()[name], frozen[name])


def test_chosen_colour_weight_is_what_was_scored():
    from train.choose import combine, embedding_parts, with_choice

    model = garment_colour_model()
    squares = np.stack([product((200, 30, 30)), product((30, 200, 30), shape="trousers"),
                        product((90, 90, 90))])
    scored = combine(embedding_parts(model, squares, SPEC), 0.75, 16, 0.2)
    chosen = with_choice(model, 16, 0.75, 0.2)
    np.testing.assert_allclose(embed(chosen, squares), scored, atol=1e-4)


def test_shop_figures_find_a_design_in_another_colour():
    from train.shop_eval import group_queries, held_apart_groups, shop_per_query

    groups = ["a", "a", "b", "b", "c"]
    types = ["top", "top", "top", "top", "shoe"]
    emb = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.1, 0.9, 0], [0, 0, 1]], np.float32)
    per = shop_per_query(emb, groups, types)
    assert list(group_queries(np.array([0, 0, 1, 1, 2]))) == [0, 1, 2, 3]  # "c" has one photo
    assert per["same design P@1"].tolist() == [1, 1, 1, 1]
    assert per["P@1 type"].tolist() == [1, 1, 1, 1]
    shuffled = shop_per_query(emb[[0, 2, 1, 3, 4]], groups, types)
    assert shuffled["same design P@1"].tolist() == [0, 0, 0, 0]
    apart = held_apart_groups([str(i // 3) for i in range(300)], 0.4)
    assert all(apart[i] == apart[i - i % 3] for i in range(300))  # whole designs move
    assert 0.25 < apart.mean() < 0.55


def test_paired_batches_put_a_designs_photos_side_by_side():
    from train.loop import paired_order

    groups = np.array([0, 1, 2, 0, 1, 2, 3])
    order = paired_order(np.arange(7), groups, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(7))
    pairs = [tuple(order[i : i + 2]) for i in range(0, 6, 2)]
    assert all(groups[a] == groups[b] for a, b in pairs)


def test_adapt_exports_only_when_no_judged_figure_is_worse():
    from train.adapt import beats

    before = {"same design Hit@10": np.array([0.5, 0.5]), "P@10 type": np.array([0.6, 0.6])}
    better = {"same design Hit@10": np.array([1.0, 0.5]), "P@10 type": np.array([0.6, 0.6])}
    mixed = {"same design Hit@10": np.array([1.0, 1.0]), "P@10 type": np.array([0.5, 0.6])}
    assert beats(better, before)[0]
    ok, why = beats(mixed, before)
    assert not ok and "P@10 type" in why
    assert not beats(before, before)[0]


def test_confidence_is_the_share_of_nearest_neighbour_scores_a_hit_reaches():
    from fai_infer.catalog.confidence import NO_MATCH, fit_scale, label, sample_rows

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def nearest_other(q, rows):
        sims = q @ vectors.T
        sims[np.arange(len(rows)), rows] = -np.inf
        return sims.max(axis=1)

    rows = sample_rows(50)
    scale = fit_scale(vectors[rows], rows, nearest_other)
    nn = np.sort(nearest_other(vectors, np.arange(50)))
    conf = scale.confidence([nn[0] - 0.1, nn[24], nn[-1] + 0.1])
    assert conf[0] == 0.0 and conf[2] == 1.0 and abs(conf[1] - 0.5) < 0.03
    assert label(0.9) == "very close" and label(0.01) == NO_MATCH and label(None) is None
    assert fit_scale(vectors[:3], np.arange(3), nearest_other) is None  # too few to say
    assert len(sample_rows(10**6)) == 400 and list(sample_rows(3)) == [0, 1, 2]
