"""The seed network's shape and size, and the CPU-sized members of its family."""

import pytest
import torch

from train.model import AutoEncoder, EmbeddingModel, ModelConfig


def test_seed_network_has_exactly_the_reference_parameter_count():
    model = AutoEncoder(ModelConfig(image_size=224, width=1.0, norm=False))
    assert model.autoencoder_parameters() == 10_180_867


def test_seed_network_shapes_at_224():
    model = AutoEncoder(ModelConfig()).eval()
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        assert model.encoder(x).shape == (1, 512, 7, 7)
        recon, emb = model(x)
    assert recon.shape == x.shape
    assert 0.0 <= float(recon.min()) and float(recon.max()) <= 1.0  # sigmoid output
    assert emb.shape == (1, 256)
    assert torch.allclose(emb.norm(dim=1), torch.ones(1), atol=1e-5)


@pytest.mark.parametrize("size,width,pooling", [(32, 0.25, "avg"), (64, 0.5, "gem"),
                                                (96, 0.5, "flatten")])
def test_small_family_members(size, width, pooling):
    cfg = ModelConfig(image_size=size, width=width, norm=True, pooling=pooling, embed_dim=64)
    model = AutoEncoder(cfg).eval()
    x = torch.rand(3, 3, size, size)
    with torch.no_grad():
        recon, emb = model(x)
        assert model.encoder(x).shape == (3, cfg.channels()[-1], size // 32, size // 32)
        assert torch.allclose(EmbeddingModel(model)(x), emb)
    assert recon.shape == x.shape and emb.shape == (3, 64)


def test_image_size_must_be_a_multiple_of_32():
    with pytest.raises(ValueError, match="multiple of 32"):
        AutoEncoder(ModelConfig(image_size=100))
