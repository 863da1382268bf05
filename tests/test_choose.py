"""train.choose: proxy kinds kept out of training, and a choice of general dims/weight that the
exported head reproduces exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fai_infer.image.preprocess import PreprocessSpec
from train.efficientnet_lite import INPUT_MEAN, INPUT_STD
from train.model import AutoEncoder, EmbeddingModel, ModelConfig

pytestmark = pytest.mark.slow  # real training runs


def test_proxy_kinds_are_stable_apart_from_unseen_and_never_trained(tmp_path):
    from tests.helpers import write_products
    from train.data import load_catalogue, proxy_mask, unseen_mask
    from train.loop import TrainConfig, Trainer

    kinds = [f"kind{i}" for i in range(40)]
    is_unseen, unseen = unseen_mask(kinds, 0.2)
    is_proxy, proxy = proxy_mask(kinds, 0.3, 0.2)
    assert unseen and proxy and not unseen & proxy
    assert not (is_unseen & is_proxy).any()
    assert proxy == proxy_mask(list(reversed(kinds)), 0.3, 0.2)[1]  # a hash of the value
    assert proxy_mask(kinds, 0.0, 0.2)[1] == set()

    write_products(tmp_path, 48)
    colours = load_catalogue(tmp_path).column("colour")
    _, proxy = proxy_mask(colours, 0.5, 0.0)
    if not proxy or proxy == set(colours):
        pytest.skip("the generated colours give no proper proxy subset at this fraction")
    cfg = TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), image_size=32,
                      width=0.125, label_columns="gender", unseen_column="colour",
                      unseen_fraction=0.0, proxy_fraction=0.5,
                      cache_dir=str(tmp_path / "cache"), holdout=0.2, batch_size=4)
    trainer = Trainer(cfg)
    used = np.concatenate([trainer.train_idx, trainer.holdout_idx])
    assert not {trainer.catalogue.rows[i]["colour"] for i in used} & proxy


def tiny_split_model(general: int = 32, shop: int = 16) -> AutoEncoder:
    torch.manual_seed(0)
    model = AutoEncoder(ModelConfig(arch="efficientnet-lite0", image_size=64, pooling="avg",
                                    embed_dim=general + shop, general_dim=general,
                                    general_weight=0.5))
    model.head.set_general_basis(torch.randn(200, model.encoder.out_channels))
    return model.eval()


@pytest.mark.parametrize("dims,weight", [(16, 0.25), (32, 0.6), (8, 1.0)])
def test_chosen_head_computes_what_the_choice_was_scored_on(dims, weight):
    from train.choose import combine, embedding_parts, with_choice

    model = tiny_split_model()
    spec = PreprocessSpec(size=64, mean=INPUT_MEAN, std=INPUT_STD)
    squares = np.random.default_rng(0).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    scored = combine(embedding_parts(model, squares, spec), weight, dims)
    chosen = with_choice(model, dims, weight)
    assert chosen.cfg.general_dim == dims and chosen.cfg.embed_dim == dims + 16
    from fai_infer.image.preprocess import to_tensor

    with torch.no_grad():
        made = EmbeddingModel(chosen)(torch.from_numpy(to_tensor(squares, spec))).numpy()
    assert made.shape == (6, dims + 16)
    np.testing.assert_allclose(np.linalg.norm(made, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(made, scored, atol=1e-4)
    # the kept components are the leading ones: the choice's first dims are the model's
    with torch.no_grad():
        full = model.head.pca_basis[:dims]
    assert torch.equal(chosen.head.pca_basis, full)
