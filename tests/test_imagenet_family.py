"""The ImageNet-initialised family: a faithful EfficientNet-Lite port, one preprocessing path,
named recipes, fine-tuning from a checkpoint, unseen kinds kept out of training."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from fai_infer.image.preprocess import PreprocessSpec, normalise, scale_pixels, to_tensor
from train.efficientnet_lite import INPUT_MEAN, INPUT_STD, EfficientNetLite, imagenet_backbone
from train.model import AutoEncoder, ModelConfig

pytestmark = pytest.mark.slow  # ImageNet weights and training runs

LITE_SPEC = PreprocessSpec(size=64, mean=INPUT_MEAN, std=INPUT_STD)


def tiny_lite_args(data, out, *extra: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--arch", "efficientnet-lite0",
            "--image-size", "64", "--epochs", "1", "--batch-size", "8", "--label-columns",
            "colour", "--embed-dim", "32", "--general-dim", "16", "--freeze-blocks", "5",
            "--bn-eval", "--backbone-lr-scale", "0.1", "--distill-weight", "1",
            "--instance-weight", "1", "--cache-dir", str(out / "cache"), "--holdout", "0.2",
            *extra]


@pytest.fixture(scope="module")
def lite_run(tmp_path_factory, products):
    from train.__main__ import main

    out = tmp_path_factory.mktemp("lite")
    main(tiny_lite_args(products, out))
    return out


def test_port_matches_the_reference_implementation_within_1e_4():
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch",
                                  reason="the dev extra's efficientnet-lite-pytorch is needed")
    from train.efficientnet_lite import imagenet_weights_path

    reference = ref_pkg.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=imagenet_weights_path("efficientnet-lite0")).eval()
    mine = imagenet_backbone("efficientnet-lite0")
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (2, 3, 224, 224))
                         .astype(np.float32))
    with torch.no_grad():
        expected, got = reference.extract_features(x), mine(x)
    assert got.shape == (2, 1280, 7, 7)
    assert float((expected - got).abs().max()) < 1e-4
    assert float(expected.abs().max()) > 1.0  # real ImageNet activations, not zeros


@pytest.mark.parametrize("variant,blocks", [("efficientnet-lite0", 16),
                                            ("efficientnet-lite1", 21),
                                            ("efficientnet-lite2", 21)])
def test_variants_match_their_weight_files(variant, blocks):
    from train.efficientnet_lite import load_imagenet

    model = EfficientNetLite(variant)
    assert len(model._blocks) == blocks
    try:
        load_imagenet(model)  # strict: every name and shape of the packaged file fits
    except ImportError as exc:
        pytest.skip(str(exc))


def test_lite_autoencoder_reconstructs_to_input_size_with_a_split_unit_embedding():
    cfg = ModelConfig(image_size=64, arch="efficientnet-lite0", pooling="avg", embed_dim=48,
                      general_dim=16, general_weight=0.25)
    model = AutoEncoder(cfg).eval()
    feats = torch.rand(40, 1280)
    model.head.set_general_basis(feats)
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        parts = model.parts(x)
    assert parts["recon"].shape == x.shape
    emb = parts["embedding"]
    assert emb.shape == (3, 48)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(emb[:, :16].norm(dim=1) ** 2, torch.full((3,), 0.25), atol=1e-5)
    pca = torch.nn.functional.normalize((parts["pooled"] - feats.mean(0))
                                        @ model.head.pca_basis.T, dim=1)
    assert torch.allclose(parts["general"], pca, atol=1e-5)


def test_one_normalisation_for_numpy_and_torch():
    squares = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    from_numpy = to_tensor(squares, LITE_SPEC)
    from_torch = normalise(scale_pixels(torch.from_numpy(squares), LITE_SPEC), LITE_SPEC)
    assert np.allclose(from_numpy, from_torch.numpy(), atol=1e-6)
    assert from_numpy.min() >= -1.0 and from_numpy.max() <= 1.0 and from_numpy.min() < -0.5


def test_bad_specs_are_refused():
    for bad in ({"std": [0.5, 0.0, 0.5]}, {"size": 0}, {"mean": [0.5, 0.5]}):
        with pytest.raises(ValueError, match="invalid preprocessing"):
            PreprocessSpec.from_dict({**PreprocessSpec().to_dict(), **bad})


def test_lite_run_keeps_imagenet_where_frozen_and_exports_its_spec(lite_run, tmp_path):
    from export.onnx import export
    from fai_infer import Encoder

    ckpt = torch.load(lite_run / "best.pt", map_location="cpu", weights_only=True)
    assert ckpt["preprocess"]["mean"] == list(INPUT_MEAN) or \
        tuple(ckpt["preprocess"]["mean"]) == INPUT_MEAN
    imagenet = imagenet_backbone("efficientnet-lite0").state_dict()
    # stem and the first four blocks are frozen, BatchNorm statistics stay ImageNet's
    assert torch.equal(ckpt["model"]["encoder._conv_stem.weight"], imagenet["_conv_stem.weight"])
    assert torch.equal(ckpt["model"]["encoder._blocks.3._project_conv.weight"],
                       imagenet["_blocks.3._project_conv.weight"])
    assert torch.equal(ckpt["model"]["encoder._blocks.10._bn1.running_var"],
                       imagenet["_blocks.10._bn1.running_var"])
    assert not torch.equal(ckpt["model"]["encoder._blocks.10._project_conv.weight"],
                           imagenet["_blocks.10._project_conv.weight"])
    out = tmp_path / "lite.onnx"
    report = export(lite_run / "best.pt", out, log=lambda *a: None)
    assert report["fp32"]["parity_max_abs_diff"][8] < 1e-4
    enc = Encoder(out)
    assert enc.spec.mean == INPUT_MEAN and enc.spec.std == INPUT_STD and enc.dim == 32
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["fai.train_config"])["distill_weight"] == 1


def test_a_catalogue_refuses_a_model_with_another_preprocessing(lite_run, products, tmp_path):
    from export.onnx import export
    from fai_infer import Catalog, CatalogError, Encoder

    model = tmp_path / "lite.onnx"
    export(lite_run / "best.pt", model, log=lambda *a: None)
    Catalog.build(products / "images", encoder=Encoder(model)).save(tmp_path / "cat")
    proto = onnx.load(str(model))
    for p in proto.metadata_props:
        if p.key == "fai.preprocess":
            p.value = json.dumps({**json.loads(p.value), "mean": [0.4, 0.4, 0.4]})
    other = tmp_path / "same-weights-other-spec.onnx"
    onnx.save(proto, str(other))
    # Refused either by the file's bytes (the catalogue remembers its model file's sha256) or
    # by the preprocessing: a catalogue never silently serves another spec.
    with pytest.raises(CatalogError, match="preprocessing|another model file"):
        Catalog.open(tmp_path / "cat", Encoder(other))
    assert len(Catalog.open(tmp_path / "cat", Encoder(model)).ids) == 48


def test_named_recipe_with_flag_overrides(tmp_path, products):
    from train.__main__ import parse_config

    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"arch": "efficientnet-lite0", "image_size": 96,
                                  "distill_weight": 2.0, "_about": "a comment"}))
    cfg = parse_config(["--config", str(recipe), "--data", str(products), "--image-size", "64"])
    assert cfg.arch == "efficientnet-lite0" and cfg.distill_weight == 2.0
    assert cfg.image_size == 64  # the flag wins over the recipe
    recipe.write_text(json.dumps({"distil_weight": 2.0}))
    with pytest.raises(SystemExit):
        parse_config(["--config", str(recipe), "--data", str(products)])


def test_shipped_recipes_parse():
    from pathlib import Path

    from train.__main__ import parse_config

    import json

    for recipe in sorted((Path(__file__).parent.parent / "configs").glob("*.json")):
        if json.loads(recipe.read_text()).get("_trainer", "train") != "train":
            continue  # another trainer's recipe (the garment parser's: tests/test_parser.py)
        cfg = parse_config(["--config", str(recipe), "--data", str(recipe.parent)])
        assert cfg.image_size % 32 == 0, recipe


def test_init_fine_tunes_with_other_label_columns(lite_run, products, tmp_path):
    from train.__main__ import main

    metrics = main(["--init", str(lite_run / "best.pt"), "--data", str(products), "--out",
                    str(tmp_path), "--epochs", "1", "--batch-size", "8", "--label-columns",
                    "gender", "--cache-dir", str(lite_run / "cache"), "--holdout", "0.2"])
    assert metrics["epochs_run"] == 1
    ckpt = torch.load(tmp_path / "best.pt", map_location="cpu", weights_only=True)
    assert ckpt["model_config"]["arch"] == "efficientnet-lite0"  # the shape came from --init
    assert set(ckpt["label_vocab"]) == {"gender"}
    # ... and so did the recipe: the protections against forgetting it was trained with
    tc, parent = ckpt["train_config"], torch.load(lite_run / "best.pt", weights_only=True)
    for key in ("freeze_blocks", "bn_eval", "backbone_lr_scale", "distill_weight",
                "instance_weight", "image_size"):
        assert tc[key] == parent["train_config"][key], key
    assert tc["freeze_blocks"] == 5 and tc["distill_weight"] == 1


def test_init_recipe_gives_way_to_flags_and_to_a_named_recipe(lite_run, products):
    from train.__main__ import parse_config

    base = ["--init", str(lite_run / "best.pt"), "--data", str(products)]
    assert parse_config(base).distill_weight == 1
    assert parse_config(base + ["--distill-weight", "3"]).distill_weight == 3
    assert parse_config(base + ["--config", "configs/lite0-v2.json"]).distill_weight == 2


def test_unseen_kinds_never_reach_training(tmp_path):
    from tests.helpers import write_products
    from train.data import load_catalogue, unseen_kinds
    from train.loop import TooFewPhotos, TrainConfig, Trainer

    write_products(tmp_path, 48)
    kinds = unseen_kinds(load_catalogue(tmp_path).column("gender"), 0.5)
    assert kinds == unseen_kinds(["Men", "Women", "Men"], 0.5)  # stable: a hash of the value
    cfg = TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), image_size=32,
                      width=0.125, label_columns="colour", unseen_column="gender",
                      unseen_fraction=0.5, cache_dir=str(tmp_path / "cache"), holdout=0.2,
                      batch_size=4)
    try:
        trainer = Trainer(cfg)
    except TooFewPhotos:  # every kind drew unseen: training refuses rather than learn nothing
        assert {"Men", "Women"} <= kinds
        return
    used = np.concatenate([trainer.train_idx, trainer.holdout_idx])
    genders = {trainer.catalogue.rows[i]["gender"] for i in used}
    assert kinds and not genders & kinds


def test_choose_picks_on_the_holdout_and_writes_an_exportable_checkpoint(lite_run, products,
                                                                        tmp_path):
    from export.onnx import export
    from fai_infer import Encoder
    from train.choose import main

    out = tmp_path / "chosen.pt"
    choice = main(["--checkpoint", str(lite_run / "best.pt"), "--out", str(out), "--data",
                   str(products), "--sizes", "64", "--weights", "0.5,1.0",
                   "--general-dims", "8,16", "--columns", "colour,gender",
                   "--cache-dir", str(lite_run / "cache")])
    assert len(choice["rows"]) == 4
    best = max(choice["rows"], key=lambda r: (r["worst margin"], r["mean"]))
    ckpt = torch.load(out, map_location="cpu", weights_only=True)
    assert ckpt["model_config"]["general_dim"] == best["general_dims"]
    assert ckpt["model_config"]["general_weight"] == best["general_weight"]
    assert ckpt["model_config"]["embed_dim"] == best["general_dims"] + 16
    report = export(out, tmp_path / "chosen.onnx", log=lambda *a: None)
    assert report["fp32"]["parity_max_abs_diff"][8] < 1e-4
    assert Encoder(tmp_path / "chosen.onnx").dim == best["general_dims"] + 16


def test_choose_defaults_to_the_checkpoints_own_data_and_label_columns(lite_run, tmp_path):
    from train.choose import main

    choice = main(["--checkpoint", str(lite_run / "best.pt"), "--out", str(tmp_path / "c.pt"),
                   "--sizes", "64", "--weights", "1.0", "--general-dims", "16",
                   "--max-ms", "0", "--cache-dir", str(lite_run / "cache")])
    assert [r["general_weight"] for r in choice["rows"]] == [1.0]
    assert "P@10 colour" in choice["rows"][0]  # the run's label column, not Myntra's


def test_init_from_a_projection_head_with_named_colours_keeps_both(lite_run, products,
                                                                   tmp_path):
    """v4's shape (train/design_head.py's projection, train/colour_net.py's named colours)
    survives fine-tuning: train.adapt's path starts from the shipped checkpoint."""
    from train.__main__ import main
    from train.compose import compose
    from train.colour_net import ColourNames

    parent = torch.load(lite_run / "best.pt", map_location="cpu", weights_only=True)
    features = 1280
    names = ["Black", "Red", "White"]
    _, ckpt = compose(parent, {"mean": torch.zeros(features), "weight": torch.randn(16, features),
                               "pooling": "gem"},
                      {"names": names, "state": ColourNames(names).state_dict()}, 0.3)
    torch.save(ckpt, tmp_path / "v4.pt")
    out = tmp_path / "run"
    metrics = main(["--init", str(tmp_path / "v4.pt"), "--data", str(products), "--out",
                    str(out), "--epochs", "1", "--batch-size", "8", "--label-columns", "colour",
                    "--cache-dir", str(lite_run / "cache"), "--holdout", "0.2"])
    assert metrics["epochs_run"] == 1
    got = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    assert got["model_config"]["head"] == "projection"
    assert list(got["model_config"]["colour_names"]) == names
    assert got["model"]["head.proj.weight"].shape == (16, features)
    torch.testing.assert_close(got["model"]["colour.classify.weight"],
                               ckpt["model"]["colour.classify.weight"])  # not trained here
