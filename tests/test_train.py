"""The training command really trains: loss falls, checkpoints reload and resume."""

import json

import numpy as np
import pytest
import torch

from train.checkpoint import load_checkpoint
from tests.helpers import write_csv
from train.data import load_catalogue

pytestmark = pytest.mark.slow  # real training runs


def test_two_epochs_lower_the_loss_and_write_the_run_folder(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    history = metrics["history"]
    assert len(history) == 2
    assert history[1]["train_total"] < history[0]["train_total"]
    assert history[1]["train_recon"] < history[0]["train_recon"]
    for name in ("best.pt", "last.pt", "config.json", "loss.png", "reconstructions.png"):
        assert (tiny_run / name).is_file(), name
    assert json.loads((tiny_run / "config.json").read_text())["image_size"] == 32


def test_checkpoint_reloads_to_identical_outputs(tiny_run):
    model_a, spec, ckpt = load_checkpoint(tiny_run / "best.pt")
    model_b, _, _ = load_checkpoint(tiny_run / "best.pt")
    x = torch.rand(4, 3, spec.size, spec.size)
    with torch.no_grad():
        ra, ea = model_a(x)
        rb, eb = model_b(x)
    assert torch.equal(ra, rb) and torch.equal(ea, eb)
    assert ckpt["preprocess"]["size"] == 32 and ckpt["label_vocab"]["colour"]


def test_resume_continues_from_last_epoch(tiny_run, products, tmp_path):
    from train.__main__ import main

    metrics = main(["--data", str(products), "--out", str(tmp_path), "--image-size", "32",
                    "--width", "0.125", "--epochs", "3", "--batch-size", "8",
                    "--label-columns", "colour", "--embed-dim", "32", "--cache-dir",
                    str(tiny_run / "cache"), "--holdout", "0.2", "--lr", "3e-3",
                    "--resume", str(tiny_run / "last.pt")])
    assert [r["epoch"] for r in metrics["history"]] == [1, 2, 3]


def test_folder_without_csv_gets_a_deterministic_split(tmp_path):
    from tests.helpers import write_products

    write_products(tmp_path, 30, csv_name=None)
    a = load_catalogue(tmp_path)
    b = load_catalogue(tmp_path)
    assert len(a) == 30 and a.splits == b.splits
    assert set(a.splits) <= {"train", "val"}


def test_joint_label_groups_pair_rows_only_when_every_column_matches():
    from train.objectives import joint_label_groups

    targets = {"type": torch.tensor([0, 0, 1, 1, 0, -1]),
               "colour": torch.tensor([2, 2, 2, 0, 1, -1])}
    sizes = {"type": 2, "colour": 3}
    g = joint_label_groups(targets, ["type", "colour"], sizes).tolist()
    assert g[0] == g[1] and len({g[0], g[2], g[3], g[4], g[5]}) == 5
    only_type = joint_label_groups(targets, ["type"], sizes).tolist()
    assert only_type[0] == only_type[1] == only_type[4] and only_type[2] == only_type[3]
    assert joint_label_groups(targets, ["absent"], sizes).tolist() == only_type


def test_ablation_sweep_trains_each_recipe_and_tabulates_it(products, tmp_path):
    from train.ablations import main

    rows = main(["--data", str(products), "--out", str(tmp_path), "--epochs", "1",
                 "--image-size", "32", "--width", "0.125", "--batch-size", "8",
                 "--label-columns", "colour", "--eval-columns", "colour,gender",
                 "--recipes", "recon,full-supcon-type+colour", "--cache-dir",
                 str(tmp_path / "cache")])
    assert [r["recipe"] for r in rows] == ["recon", "full-supcon-type+colour"]
    assert rows[0]["config"]["label_columns"] == "" and not rows[0]["config"]["augment"]
    assert rows[1]["config"]["contrastive_columns"] == "colour"
    for r in rows:
        assert 0 <= r["val"]["P@10 colour"] <= 1 and "P@10 colour+gender" in r["holdout"]
        assert 0 <= r["holdout_shopper"]["item@10"] <= 1 and "P@1 colour" in r["val_shopper"]
    table = (tmp_path / "ablations.md").read_text()
    assert table.count("\n| ") == 2 and "nan" not in table  # two recipe rows
    again = main(["--data", str(products), "--out", str(tmp_path), "--recipes", "recon",
                  "--epochs", "1"])  # finished runs are read back, not retrained
    assert again[0]["train_seconds"] == rows[0]["train_seconds"]


def test_weight_average_warms_up_then_lags_and_swaps_back():
    import torch

    from train.ema import WeightAverage

    net = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    avg = WeightAverage(net, 0.9)
    with torch.no_grad():
        net.weight.fill_(1.0)
    avg.update(net)  # warm-up: decay min(0.9, 2/11)
    expected = 1 - 2 / 11
    assert torch.allclose(avg.shadow["weight"], torch.full((1, 2), expected))
    for _ in range(200):
        avg.update(net)
    assert 0.99 < float(avg.shadow["weight"][0, 0]) < 1.0  # follows, never overshoots
    with torch.no_grad():
        net.weight.fill_(5.0)
    with avg.swapped_in(net):
        assert float(net.weight[0, 0]) < 1.0  # the average is in the model ...
    assert float(net.weight[0, 0]) == 5.0  # ... and the live weights are back after


def test_imagenet_ablation_sweep_scores_the_frozen_reference_and_each_protection(products,
                                                                                tmp_path):
    import json

    from train.ablations import main

    recipe = tmp_path / "tiny-lite.json"
    recipe.write_text(json.dumps({
        "arch": "efficientnet-lite0", "image_size": 64, "pooling": "avg", "embed_dim": 32,
        "general_dim": 16, "freeze_blocks": 5, "bn_eval": True, "backbone_lr_scale": 0.1,
        "distill_weight": 1.0, "instance_weight": 1.0, "batch_size": 8, "holdout": 0.2,
        "unseen_column": "gender", "unseen_fraction": 0.0}))
    rows = main(["--data", str(products), "--out", str(tmp_path / "sweep"), "--config",
                 str(recipe), "--epochs", "1", "--label-columns", "colour", "--eval-columns",
                 "colour,gender", "--recipes", "lite0+ema,lite0-general", "--test-size", "96",
                 "--cache-dir", str(tmp_path / "cache")])
    assert [r["recipe"] for r in rows] == ["frozen ImageNet", "lite0+ema", "lite0-general"]
    assert rows[1]["config"]["ema_decay"] == 0.998 and rows[2]["config"]["general_dim"] == 0
    assert rows[1]["test_size"] == 96 and rows[1]["config"]["image_size"] == 64
    for r in rows:
        assert 0 <= r["holdout"]["P@10 colour"] <= 1 and 0 <= r["val_shopper"]["item@10"] <= 1
    table = (tmp_path / "sweep" / "ablations.md").read_text()
    assert table.count("\n| ") == 3 and "frozen ImageNet" in table


def test_paired_margin_tells_a_difference_from_the_luck_of_the_queries():
    from train.metrics import paired_margin

    rng = np.random.default_rng(0)
    a = (rng.random(1000) < 0.8).astype(float)
    assert paired_margin(a, a) == (0.0, 0.0, 0.0)
    better = np.maximum(a, (rng.random(1000) < 0.3))  # wins on ~6% of the queries, never loses
    m, lo, hi = paired_margin(better, a)
    assert 0 < lo <= m <= hi and m == pytest.approx(better.mean() - a.mean())
    coin = (rng.random(1000) < 0.8).astype(float)  # another model, as good on average
    m, lo, hi = paired_margin(coin, a)
    assert lo < 0 < hi


def test_evaluate_reports_margins_over_the_frozen_reference_on_the_same_queries(
        tiny_run, products, tmp_path):
    from train.evaluate import main

    result = main(["--checkpoint", str(tiny_run / "best.pt"), "--data", str(products),
                   "--confusions", "3",
                   "--columns", "colour,gender", "--unseen", "--unseen-fraction", "0.5",
                   "--shopper",
                   "--json", str(tmp_path / "e.json")])
    ref = next(n for n in result["table"] if n.startswith("frozen ImageNet"))
    misses = round((1 - result["table"]["model"]["P@1 colour"]) * result["queries"])
    assert sum(c for _, _, c in result["confusions"]) <= misses
    assert all(a < b for a, b, _ in result["confusions"])  # each pair once, sorted
    assert ref not in result["margins"] and "model" in result["margins"]
    for part, margins in (("table", result["margins"]), ("unseen", result["unseen_margins"])):
        m, lo, hi = margins["model"]["P@10 colour"]
        assert m == pytest.approx(result[part]["model"]["P@10 colour"]
                                  - result[part][ref]["P@10 colour"])
        assert lo <= m <= hi


def test_evaluate_scores_a_second_shop_colour_rows_and_a_centre_crop(tiny_run, products,
                                                                    tmp_path):
    from train.evaluate import main

    result = main(["--checkpoint", str(tiny_run / "best.pt"), "--data", str(products),
                   "--columns", "colour,gender", "--shopper", "--centre-crop", "0.7",
                   "--shop", str(products), "--group-column", "colour", "--type-column",
                   "gender", "--json", str(tmp_path / "e.json")])
    assert "shopper P@10 type" in result["shop"]["model"]
    ref = next(n for n in result["table"] if n.startswith("frozen ImageNet"))
    assert f"{ref} grey" in result["table"] and f"{ref} grey" in result["shop"]
    assert set(result["shop"]["model"]) == {"same design Hit@10", "same design P@1",
                                            "P@10 type", "P@1 type", "shopper item@10",
                                            "shopper P@10 type"}
    m, lo, hi = result["shop_margins"]["model"]["same design Hit@10"]
    assert m == pytest.approx(result["shop"]["model"]["same design Hit@10"]
                              - result["shop"][ref]["same design Hit@10"]) and lo <= m <= hi
    assert result["shop_info"]["queries"] == 48  # every colour has several photos
    assert any(k.startswith("model + centre crop 0.7") for k in result["shopper"])


def test_evaluate_finds_the_id_column_that_names_the_photos(products, tmp_path):
    from train.data import detect_id_column

    rows = [{"sku": "x", "article": p.stem} for p in sorted((products / "images").iterdir())]
    write_csv(tmp_path / "a.csv", rows)
    assert detect_id_column(products, tmp_path / "a.csv") == "article"
    assert detect_id_column(products) == "id"


def test_training_reads_a_european_shop_csv(tmp_path):
    """Semicolons and Windows-1252, as Excel exports them in Western Europe: the training
    catalogue reads what the runtime's index reads (one CSV reader)."""
    import cv2

    (tmp_path / "images").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "images" / f"SKU-{i}.jpg"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "shop.csv").write_bytes(
        "sku;kind;price\nSKU-0;Shirts;1,5\nSKU-1;Tröja;2\nSKU-2;Hats\n".encode("cp1252"))
    cat = load_catalogue(tmp_path, tmp_path / "shop.csv", "sku")
    assert cat.ids == ["SKU-0", "SKU-1", "SKU-2"]
    assert cat.column("kind") == ["Shirts", "Tröja", "Hats"] and cat.column("price")[2] == ""
