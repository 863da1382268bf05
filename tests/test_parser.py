"""The garment parser (issue 30, phase 1): label groups, the split, a training step, export
parity and reading the output. Synthetic photos and masks, a few seconds; the one test that
reads CCP skips when the data folder is absent."""

from __future__ import annotations

import collections
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fai_infer.image.preprocess import PreprocessSpec, square_resize
from train.parser_data import (GARMENT_GROUPS, GROUP_LABELS, GROUPS, LABEL_GROUP, augment,
                               label_lut, letterbox_mask, load_set, photos_in, read_labels,
                               split_of)
from train.parser_model import GarmentParser, ParserConfig
from train.parser_output import group_map, letterbox_geometry, probabilities_at_photo
from train.parser_train import confusion, iou_table, parser_loss

CCP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ccp"

# CCP's labels.csv, in id order (59 names; 0 = null = background).
CCP_LABELS = (
    "null accessories bag belt blazer blouse bodysuit boots bra bracelet cape cardigan clogs "
    "coat dress earrings flats glasses gloves hair hat heels hoodie intimate jacket jeans jumper "
    "leggings loafers necklace panties pants pumps purse ring romper sandals scarf shirt shoes "
    "shorts skin skirt sneakers socks stockings suit sunglasses sweater sweatshirt swimwear "
    "t-shirt tie tights top vest wallet watch wedges").split()


def test_every_ccp_label_is_in_exactly_one_group():
    assert len(CCP_LABELS) == 59
    counts = collections.Counter(n for names in GROUP_LABELS.values() for n in names)
    assert set(counts) == set(CCP_LABELS)
    assert all(c == 1 for c in counts.values()), [n for n, c in counts.items() if c > 1]
    assert tuple(GROUP_LABELS) == GROUPS and set(LABEL_GROUP.values()) == set(GROUPS)
    lut = label_lut(dict(enumerate(CCP_LABELS)))
    assert lut[0] == GROUPS.index("background") and lut[41] == GROUPS.index("skin")
    assert lut[CCP_LABELS.index("dress")] == GROUPS.index("whole")
    with pytest.raises(ValueError, match="without a parser group"):
        label_lut({0: "null", 1: "cravat"})


def test_split_is_deterministic_disjoint_and_about_a_fifth(tmp_path):
    ids = [f"{i:04d}" for i in range(1, 2001)]
    first = [split_of(p) for p in ids]
    assert first == [split_of(p) for p in reversed(ids)][::-1]  # order-free
    counts = collections.Counter(first)
    assert 0.17 < counts["test"] / len(ids) < 0.23
    assert 0.06 < counts["val"] / len(ids) < 0.10
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    for p in ids[:60]:
        (tmp_path / "images" / f"{p}.jpg").write_bytes(b"")
        (tmp_path / "masks" / f"{p}.png").write_bytes(b"")
    parts = {s: set(photos_in(tmp_path, s)) for s in ("train", "val", "test")}
    assert not (parts["train"] & parts["test"]) and not (parts["val"] & parts["test"])
    assert not (parts["train"] & parts["val"])
    assert set.union(*parts.values()) == set(ids[:60])
    assert parts["test"] == {p for p in ids[:60] if split_of(p) == "test"}


def synthetic_pairs(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Coloured blocks on grey, each block's colour tied to one group."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 255, (len(GROUPS), 3))
    images = np.full((n, size, size, 3), 128, np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        for _ in range(3):
            g = int(rng.integers(1, len(GROUPS)))
            y, x = rng.integers(0, size // 2, 2)
            h, w = rng.integers(size // 4, size // 2, 2)
            images[i, y : y + h, x : x + w] = palette[g]
            masks[i, y : y + h, x : x + w] = g
    return images, masks


def test_masks_are_letterboxed_like_the_runtime_letterboxes_photos():
    photo = np.zeros((90, 60, 3), np.uint8)  # portrait, black, pads to white
    spec = PreprocessSpec(size=64, pad_value=255)
    square = square_resize(photo, spec)
    mask = letterbox_mask(np.full((90, 60), 7, np.uint8), 64)
    assert ((square.max(axis=2) == 0) == (mask == 7)).all()
    top, left, h, w = letterbox_geometry(90, 60, 64)
    assert (mask[top : top + h, left : left + w] == 7).all() and mask.sum() == 7 * h * w


def test_augment_keeps_shapes_and_labels():
    images, masks = synthetic_pairs(4, 64)
    rng = np.random.default_rng(1)
    for img, msk in zip(images, masks):
        a, m = augment(img, msk, rng, 128)
        assert a.shape == img.shape and m.shape == msk.shape and a.dtype == np.uint8
        assert set(np.unique(m)) <= set(np.unique(msk)) | {0}


def test_one_training_step_lowers_the_loss():
    torch.manual_seed(0)
    cfg = ParserConfig(image_size=64, channels=16)
    model = GarmentParser(cfg).train()
    images, masks = synthetic_pairs(6, 64)
    spec = cfg.spec()
    from fai_infer.image.preprocess import to_tensor

    x = torch.from_numpy(to_tensor(images, spec))
    y = torch.from_numpy(masks.astype(np.int64))
    w = torch.ones(len(GROUPS))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    before = float(parser_loss(model(x), y, w, 0.5))
    for _ in range(3):
        loss = parser_loss(model(x), y, w, 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = float(parser_loss(model(x), y, w, 0.5))
    assert model(x).shape == (6, len(GROUPS), 16, 16)
    assert after < before


def test_iou_from_a_confusion_matrix():
    truth = np.array([[0, 0, 3, 3]], np.uint8)
    pred = np.array([[0, 3, 3, 3]], np.uint8)
    ious = iou_table(confusion(pred, truth))
    assert ious["background"] == pytest.approx(0.5) and ious["upper"] == pytest.approx(2 / 3)
    assert ious["bag"] is None
    from train.parser_eval import garment_vs_rest

    assert garment_vs_rest(confusion(pred, truth)) == pytest.approx(2 / 3)


def test_output_is_read_back_onto_the_photo():
    size, g = 64, len(GROUPS)
    logits = np.zeros((g, size // 4, size // 4), np.float32)
    logits[GROUPS.index("upper")] = 5.0
    probs = probabilities_at_photo(logits, 90, 60, size)
    assert probs.shape == (g, 90, 60) and np.allclose(probs.sum(0), 1, atol=1e-5)
    assert (group_map(logits, 90, 60, size) == GROUPS.index("upper")).all()
    assert set(GARMENT_GROUPS) == {"upper", "lower", "whole", "outer", "shoes", "bag",
                                   "accessory"}


def test_export_of_a_random_parser_validates_against_torch(tmp_path):
    from export.parser_onnx import export_parser
    from fai_infer.model.ort import ort
    from train.parser_output import parser_metadata

    torch.manual_seed(0)
    cfg = ParserConfig(image_size=64, channels=16)
    model = GarmentParser(cfg).eval()
    images, _ = synthetic_pairs(4, 80)
    files = []
    for i, img in enumerate(images):
        path = tmp_path / f"{i}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(img[:, 10:70], cv2.COLOR_RGB2BGR))  # portrait
        files.append(path)
    ckpt = {"epoch": 0, "val_garment_miou": 0.0, "command": "test",
            "train_config": {"held_apart": 0.2, "val_fraction": 0.1}}
    out = tmp_path / "parser.onnx"
    report = export_parser(model, ckpt, out, files)
    assert out.is_file() and report["max_abs_logit_diff"] < 1e-3
    assert report["argmax_agreement"] >= 0.999
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = parser_metadata(sess)
    assert meta.groups == GROUPS and meta.spec.size == 64 and meta.output_stride == 4
    assert meta.spec.mean == (0.5, 0.5, 0.5) and meta.spec.std == (0.5, 0.5, 0.5)
    assert sess.get_inputs()[0].name == "image"
    assert sess.get_outputs()[0].shape[1:] == [len(GROUPS), 16, 16]


@pytest.mark.skipif(not (CCP / "masks").is_dir(),
                    reason=f"CCP data not found at {CCP} (needs images/, masks/, labels.csv)")
def test_ccp_loads_and_its_held_apart_part_is_fixed(tmp_path):
    assert [read_labels(CCP)[i] for i in range(59)] == CCP_LABELS
    test = photos_in(CCP, "test")
    train = photos_in(CCP, "train")
    assert 150 < len(test) < 250 and not set(test) & set(train)
    assert test[:3] == [p for p in sorted(set(test))[:3]]
    spec = ParserConfig(image_size=64).spec()
    s = load_set(CCP, train[:3], spec, tmp_path)
    assert s.images.shape == (3, 64, 64, 3) and s.masks.shape == (3, 64, 64)
    assert s.masks.max() < len(GROUPS) and (s.masks > 0).mean() > 0.1
    again = load_set(CCP, train[:3], spec, tmp_path)  # from the npz cache
    assert (again.masks == s.masks).all()


def test_the_shipped_recipe_parses():
    from train.parser_train import ParserTrainConfig, main  # noqa: F401
    import argparse
    import json

    from train.config import add_dataclass_args, from_args, load_recipe

    recipe = Path(__file__).resolve().parents[1] / "configs" / "parser.json"
    assert json.loads(recipe.read_text())["_trainer"] == "train.parser_train"
    ap = argparse.ArgumentParser()
    add_dataclass_args(ap, ParserTrainConfig)
    ap.set_defaults(**load_recipe(str(recipe), ParserTrainConfig, ap.error))
    cfg = from_args(ParserTrainConfig, ap.parse_args([]))
    assert cfg.image_size % 32 == 0 and cfg.parser_config().spec().mean == (0.5, 0.5, 0.5)
