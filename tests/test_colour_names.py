"""The learned colour part (train/colour_net.py): Lab conversion, what it learns on generated
garments, its export, the words the runtime reads from it, and the model metadata around it."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from fai_infer.model.colour_words import colour_words
from fai_infer.model.parts import EmbeddingParts
from tests.helpers import garment_colour_spec, product
from train.colour_net import ColourNames, srgb_to_lab
from train.colour_train import attention_loss, colour_names

NAMES = ["Blue", "Green", "Red"]
COLOURS = {"Red": (200, 30, 30), "Green": (30, 160, 40), "Blue": (30, 40, 200)}
BACKDROPS = [(255, 255, 255), (235, 225, 200), (90, 90, 90)]


def lab_of(rgb: tuple[int, int, int]) -> np.ndarray:
    x = torch.tensor(rgb, dtype=torch.float32).reshape(1, 3, 1, 1) / 255
    return srgb_to_lab(x).reshape(3).numpy() * 100


def test_lab_matches_the_cie_reference_values():
    np.testing.assert_allclose(lab_of((255, 255, 255)), [100, 0, 0], atol=0.05)
    np.testing.assert_allclose(lab_of((0, 0, 0)), [0, 0, 0], atol=0.05)
    np.testing.assert_allclose(lab_of((255, 0, 0)), [53.24, 80.09, 67.20], atol=0.05)
    np.testing.assert_allclose(lab_of((0, 0, 255)), [32.30, 79.19, -107.86], atol=0.05)


def garment_on(colour: str, backdrop: tuple[int, int, int], shape: str) -> np.ndarray:
    img = product(COLOURS[colour], shape=shape)
    img[(img == 255).all(axis=2)] = backdrop
    return img


def batch(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def trained_part() -> ColourNames:
    """A colour part trained on shirts over three backdrops, the backdrop chosen so that it is
    never the garment's colour's only company: the part must learn to look at the garment."""
    torch.manual_seed(0)
    net = ColourNames(NAMES)
    images, labels = [], []
    for name in NAMES:
        for backdrop in BACKDROPS:
            images.append(garment_on(name, backdrop, "shirt"))
            labels.append(NAMES.index(name))
    x, y = batch(images), torch.tensor(labels)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(40):
        loss = F.cross_entropy(net.parts(x)["logits"], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def test_the_part_names_the_garment_colour_on_unseen_shapes_and_is_a_unit_vector():
    net = trained_part()
    with torch.no_grad():
        tests = [garment_on(n, b, "trousers") for n in NAMES for b in BACKDROPS[:2]]
        out = net(batch(tests)).numpy()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    predicted = [NAMES[i] for i in out.argmax(axis=1)]
    assert predicted == [n for n in NAMES for _ in BACKDROPS[:2]]
    same = out[0] @ out[1]  # two blue trousers on two backdrops
    other = out[0] @ out[2]  # blue against green
    assert same > 0.9 and other < same - 0.3


def test_attention_loss_is_zero_only_where_attention_follows_the_mask():
    from train.colour_net import GRID
    mask = torch.zeros(1, GRID // 2, GRID // 2)
    mask[0, 4:12, 4:12] = 1
    follows = F.interpolate(mask[None], size=GRID).reshape(1, -1)
    follows = follows / follows.sum()
    uniform = torch.full((1, GRID * GRID), 1 / GRID ** 2)
    assert attention_loss(follows, mask) < 0.01 < attention_loss(uniform, mask)


def test_colour_names_keep_names_with_enough_photos_and_drop_blanks():
    values = ["Red", "Red", "Blue", "NA", "", "Blue", "Teal"]
    assert colour_names(values, np.arange(len(values)), 2) == ["Blue", "Red"]


def test_words_come_from_the_part_and_not_from_a_model_without_names():
    parts = EmbeddingParts((0, 4), (4, 7), 0.3)
    names = ("Navy Blue", "Black", "Red")
    p = np.array([0.7, 0.28, 0.02])
    vector = np.concatenate([np.ones(4) * np.sqrt(0.7 / 4), np.sqrt(p) * np.sqrt(0.3)])
    assert colour_words(vector, parts, names) == ["navy blue", "black"]
    assert colour_words(vector, parts, ()) == []
    assert colour_words(vector, EmbeddingParts.whole(7), names) == []
    assert colour_words(np.zeros(7), parts, names) == []


def named_colour_model(colour_weight: float = 0.3):
    from train.model import AutoEncoder, ModelConfig

    torch.manual_seed(0)
    model = AutoEncoder(ModelConfig(arch="efficientnet-lite0", image_size=64, pooling="gem",
                                    embed_dim=24, head="projection", grey=True, colour=True,
                                    colour_names=tuple(NAMES), colour_weight=colour_weight))
    return model.eval()


def test_export_carries_the_names_and_turns_catalogue_whitening_off(tmp_path):
    from export.onnx import export
    from fai_infer import Catalog, Encoder
    from train.checkpoint import save_atomic

    model = named_colour_model()
    spec = garment_colour_spec()
    ckpt = {"model": model.state_dict(), "model_config": model.cfg.to_dict(),
            "preprocess": spec.to_dict(), "train_config": {"arch": "efficientnet-lite0"},
            "epoch": 0}
    save_atomic(ckpt, tmp_path / "m.pt")
    report = export(tmp_path / "m.pt", tmp_path / "m.onnx", log=lambda *a: None)
    assert report["fp32"]["parity_max_abs_diff"][8] < 1e-4
    enc = Encoder(tmp_path / "m.onnx")
    assert enc.dim == 24 + len(NAMES)
    assert enc.info.colour_names == tuple(NAMES)
    assert enc.info.catalogue_whitening is False
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert json.loads(meta["fai.colour_names"]) == NAMES
    folder = tmp_path / "shop"
    (folder / "images").mkdir(parents=True)
    import cv2
    rng = np.random.default_rng(0)
    for i in range(70):  # past whitening's minimum: only the model's choice leaves it off
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.imwrite(str(folder / "images" / f"{i}.png"), product(colour)[:, :, ::-1])
    cat = Catalog.build(folder, encoder=enc)
    assert len(cat) == 70
    assert cat.whitening_info()["whitening"] is None


@pytest.mark.parametrize("key,value,match", [
    ("fai.colour_names", '["a", "b"]', "colour_names"),
    ("fai.colour_names", '["a", "b", "c\\u0000"]', "colour_names"),
    ("fai.colour_names", "[" * 4000, "colour_names"),
    ("fai.catalogue_whitening", "maybe", "catalogue_whitening")])
def test_bad_colour_metadata_is_one_clear_error(key, value, match):
    from fai_infer.model.info import ModelInfo

    spec = garment_colour_spec()
    meta = {"fai.embedding_dim": "27", "fai.preprocess": json.dumps(spec.to_dict()),
            "fai.weights_sha256": "x", "fai.input_size": "64",
            "fai.embedding_parts": json.dumps({"garment": [0, 24], "colour": [24, 27]}),
            "fai.colour_weight": "0.3", key: value}
    with pytest.raises(ValueError, match=match):
        ModelInfo.from_metadata(meta, "m.onnx")


def test_a_catalogue_refused_after_a_new_default_names_the_file_that_built_it(tmp_path):
    """A new default shipped under the old file's name: the refusal must not send the shop
    back to that name (it holds the new model now) but to the file with the recorded bytes."""
    import shutil

    import cv2

    from fai_infer import Catalog, CatalogError, Encoder
    from tests.helpers import export_garment_colour

    models = tmp_path / "models"
    old = export_garment_colour(tmp_path / "a", 0.3)
    new = export_garment_colour(tmp_path / "b", 0.2)
    models.mkdir()
    shutil.copy(old, models / "fai-default.onnx")
    folder = tmp_path / "shop" / "images"
    folder.mkdir(parents=True)
    for i, colour in enumerate([(200, 30, 30), (30, 30, 200), (30, 160, 40)]):
        cv2.imwrite(str(folder / f"{i}.png"), product(colour)[:, :, ::-1])
    cat = Catalog.build(folder.parent, encoder=Encoder(models / "fai-default.onnx"))
    cat.save(tmp_path / "cat")
    shutil.copy(old, models / "fai-lite0-v3.onnx")  # the old default kept under a new name
    shutil.copy(new, models / "fai-default.onnx")  # and the new default in its place
    with pytest.raises(CatalogError, match="fai-lite0-v3.onnx") as err:
        Catalog.open(tmp_path / "cat", Encoder(models / "fai-default.onnx"))
    assert "now holds another model" in str(err.value)


def test_info_and_rewhiten_say_the_model_asks_for_no_whitening(tmp_path, capsys):
    """fai info must not advise whitening a model that turned it off; fai rewhiten still
    fits one when asked, saying so."""
    import cv2

    from export.onnx import export
    from fai_infer import Catalog, Encoder
    from fai_infer.cli.main import main as fai
    from train.checkpoint import save_atomic

    model = named_colour_model()
    ckpt = {"model": model.state_dict(), "model_config": model.cfg.to_dict(),
            "preprocess": garment_colour_spec().to_dict(),
            "train_config": {"arch": "efficientnet-lite0"}, "epoch": 0}
    save_atomic(ckpt, tmp_path / "m.pt")
    export(tmp_path / "m.pt", tmp_path / "m.onnx", log=lambda *a: None)
    folder = tmp_path / "shop" / "images"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(70):
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.imwrite(str(folder / f"{i}.png"), product(colour)[:, :, ::-1])
    cat = Catalog.build(folder.parent, encoder=Encoder(tmp_path / "m.onnx"))
    assert "asks for none" in cat.whitening_info()["whitening_note"]
    cat.save(tmp_path / "cat")
    assert fai(["rewhiten", str(tmp_path / "cat"), "--model", str(tmp_path / "m.onnx")]) == 0
    assert "asks for no catalogue whitening" in capsys.readouterr().err
    # this untrained model's parts are near-copies: no whitening may be stored, and the
    # catalogue stays readable (a fit past what a reader accepts used to be written)
    assert len(Catalog.open(tmp_path / "cat", Encoder(tmp_path / "m.onnx"))) == 70
