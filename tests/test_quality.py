"""The shipped model must find what shoppers call similar better than raw pixels do."""

import numpy as np
import pytest

from fai_infer import Encoder
from tests.helpers import MYNTRA, needs_myntra

pytestmark = [pytest.mark.slow, pytest.mark.data, pytest.mark.soak, needs_myntra]  # embeds thousands of Myntra photos


@pytest.fixture(scope="module")
def gallery(myntra_gallery):
    return myntra_gallery


def test_shipped_model_beats_raw_pixels_on_held_out_photos(gallery):
    from train.metrics import label_codes, pixel_baseline, retrieval_table

    cat, enc, squares, queries, embedded = gallery
    labels = {"type": label_codes(cat.column("articleType")),
              "type+colour": label_codes(cat.column("articleType"), cat.column("baseColour"))}
    model = retrieval_table(embedded, queries, labels)
    look = retrieval_table(this_look(enc, embedded), queries, labels)
    pixels = retrieval_table(pixel_baseline(squares), queries, labels)
    # docs/quality.md (fai-lite0 v3), full val split: +0.166 P@10 type over raw pixels at the
    # default colour weight, +0.089 type+colour at "this look" (colour 0.3); about 0.03 is left
    # for the every-third-photo subset.
    assert model["P@10 type"] > pixels["P@10 type"] + 0.13, (model, pixels)
    assert look["P@10 type+colour"] > pixels["P@10 type+colour"] + 0.06, (look, pixels)


LOOK = 0.3  # the colour weight of "this look" in docs/quality.md


def this_look(enc, embedded: np.ndarray) -> np.ndarray:
    """The stored vectors as a query and gallery at colour weight LOOK (both sides)."""
    assert enc.info.parts is not None and enc.info.parts.has_colour
    return enc.info.parts.stored_as(embedded, LOOK)


def test_shipped_model_keeps_its_margin_over_the_frozen_imagenet_reference(gallery):
    """docs/quality.md (fai-lite0 v3): +0.021 P@10 type over the frozen ImageNet
    EfficientNet-Lite0 features on the same queries at the default colour weight, and +0.073
    type+colour at "this look"; the shipped model must not fall below the reference on type
    (0.02 of slack for the subset) and must keep most of its colour lead when asked for it."""
    pytest.importorskip("torch", reason="the frozen reference needs the train extra")
    from train.evaluate import REFERENCE_SIZE, imagenet_embedder
    from train.metrics import label_codes, retrieval_table

    cat, enc, squares, queries, embedded = gallery
    assert enc.spec.size == REFERENCE_SIZE  # one set of squares serves both
    labels = {"type": label_codes(cat.column("articleType")),
              "type+colour": label_codes(cat.column("articleType"), cat.column("baseColour"))}
    model = retrieval_table(embedded, queries, labels)
    look = retrieval_table(this_look(enc, embedded), queries, labels)
    _, frozen_embed = imagenet_embedder()
    frozen = retrieval_table(frozen_embed(squares), queries, labels)
    assert model["P@10 type"] > frozen["P@10 type"] - 0.02, (model, frozen)
    assert look["P@10 type+colour"] > frozen["P@10 type+colour"] + 0.04, (look, frozen)


def test_shipped_model_finds_items_from_synthetic_shopper_photos(gallery):
    """Cluttered, tilted, badly lit re-shots of val photos must still find their item, where
    raw pixels are lost (measured on the full val split: item@10 0.386 against 0.004)."""
    from train.evaluate import shopper_squares
    from train.metrics import (l2_normalise, label_codes, pixel_baseline, pixel_features,
                               shopper_table)

    cat, enc, squares, queries, embedded = gallery
    shots = shopper_squares(cat, queries, enc.spec.size, workers=2, cache_dir=None)
    labels = {"type": label_codes(cat.column("articleType"))}
    model = shopper_table(embedded, queries, enc.embed_squares(shots), labels)
    gallery_pixels = pixel_features(squares)
    centre = gallery_pixels.mean(axis=0)
    pixels = shopper_table(l2_normalise(gallery_pixels - centre), queries,
                           pixel_baseline(shots, centre=centre), labels)
    assert model["item@10"] > pixels["item@10"] + 0.15, (model, pixels)
    assert model["P@10 type"] > pixels["P@10 type"] + 0.2, (model, pixels)
