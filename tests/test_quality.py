"""The shipped model must find what shoppers call similar better than raw pixels do."""

import numpy as np

from fai_infer import Encoder
from tests.conftest import MYNTRA, needs_myntra


@needs_myntra
def test_shipped_model_beats_raw_pixels_on_held_out_photos():
    from train.data import load_catalogue
    from train.metrics import label_codes, pixel_baseline, retrieval_table

    cat = load_catalogue(MYNTRA)
    cat = cat.subset(list(range(0, len(cat), 3)))  # every third photo: ~3,500, both splits
    enc = Encoder()
    squares = np.stack([enc.prepare(p) for p in cat.paths])
    queries = np.array([i for i, s in enumerate(cat.splits) if s == "val"])
    labels = {"type": label_codes(cat.column("articleType")),
              "type+colour": label_codes(cat.column("articleType"), cat.column("baseColour"))}
    model = retrieval_table(enc.embed_squares(squares), queries, labels)
    pixels = retrieval_table(pixel_baseline(squares), queries, labels)
    assert model["P@10 type"] > pixels["P@10 type"] + 0.03, (model, pixels)
    assert model["P@10 type+colour"] > pixels["P@10 type+colour"] + 0.05, (model, pixels)
