"""train.design_head's projection: trained on design positives, it finds other colourways of
designs it never saw, where the raw features find photos of the same colour; and train.compose
turns it into the model's head exactly."""

from __future__ import annotations

import numpy as np
import torch

from train.design_head import project, train_projection
from train.shop_eval import shop_per_query


def shop(rng, designs: int, colours: np.ndarray, dim: int):
    """Photos = design + a strong colour direction (one of a few shared colourways) + noise."""
    base = rng.normal(size=(designs, dim))
    rows, groups = [], []
    for d in range(designs):
        for c in rng.choice(len(colours), 3, replace=False):
            rows.append(base[d] + 2.5 * colours[c] + 0.3 * rng.normal(size=dim))
            groups.append(d)
    return np.array(rows, np.float32), np.array(groups)


def test_the_projection_learns_design_over_colour_on_held_apart_designs():
    rng = np.random.default_rng(0)
    dim = 48
    colours = rng.normal(size=(6, dim))
    train_f, train_g = shop(rng, 120, colours, dim)  # the second shop's training designs
    test_f, test_g = shop(rng, 60, colours, dim)  # other designs, same colourways
    first, _ = shop(rng, 100, colours, dim)  # the first shop: photos and their views only
    mine = {"clean": first, "aug0": first + 0.1 * rng.normal(size=first.shape)}
    mine = {k: v.astype(np.float32) for k, v in mine.items()}
    second = {"clean": train_f, "aug0": train_f}
    groups = [np.flatnonzero(train_g == d) for d in range(120)]
    kinds = np.zeros(len(first), np.int64)
    mean, W = train_projection(mine, np.arange(len(first)), kinds, second, groups, 16, 0.0,
                               epochs=200)
    assert W.shape == (dim, 16)
    labels = [str(g) for g in test_g]
    types = ["t"] * len(test_g)
    raw = shop_per_query(test_f / np.linalg.norm(test_f, axis=1, keepdims=True), labels, types)
    learned = shop_per_query(project(test_f, mean, W), labels, types)
    assert learned["same design P@1"].mean() > raw["same design P@1"].mean() + 0.3


def test_compose_puts_the_projection_in_the_head_exactly():
    from train.compose import compose
    from train.model import AutoEncoder, ModelConfig

    torch.manual_seed(0)
    backbone = AutoEncoder(ModelConfig(arch="efficientnet-lite0", image_size=64, pooling="avg",
                                       embed_dim=48, general_dim=32, grey=True))
    ckpt = {"model": backbone.state_dict(), "model_config": backbone.cfg.to_dict(),
            "preprocess": {}, "heads": {}}
    features = backbone.encoder.out_channels
    mean, weight = torch.randn(features), torch.randn(16, features)
    names = ["Black", "White"]
    from train.colour_net import ColourNames
    colour = {"names": names, "state": ColourNames(names).state_dict()}
    model, out = compose(ckpt, {"mean": mean, "weight": weight, "pooling": "gem"}, colour, 0.3)
    assert out["model_config"]["head"] == "projection"
    assert out["model_config"]["colour_names"] == names
    assert "heads" not in out
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        z = model.encoder(model.backbone_input(x))
        pooled = z.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3)
        want = torch.nn.functional.normalize((pooled - mean) @ weight.T, dim=1)
        got = model.parts(x)["embedding"]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_the_design_split_keeps_every_design_on_one_side_and_the_sides_apart():
    from train.shop_eval import design_split

    groups = [f"code{i // 3}" for i in range(3000)]  # three colourways per design
    apart, choose = design_split(groups, 0.4, 0.15)
    assert not (apart & choose).any()
    for side in (apart, choose, ~apart & ~choose):
        codes = {g for g, s in zip(groups, side) if s}
        assert all(side[i] for i, g in enumerate(groups) if g in codes)  # whole designs
    assert 0.35 < apart.mean() < 0.45 and 0.05 < choose.mean() < 0.13
