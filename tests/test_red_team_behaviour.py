"""Issue 23, section 6: behaviour a code review and a new user found wrong."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import numpy as np
import pytest

from fai_infer import Catalog, Encoder
from fai_infer.cli.main import main as fai
from fai_infer.index.filters import number
from tests.helpers import ROOT, write_csv, write_products


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    base = tmp_path_factory.mktemp("behaviour")
    photos = write_products(base / "shop", 6, csv_name=None)
    rows = [{"article_id": p.stem, "price": price, "colour": "red"}
            for p, price in zip(photos, ["9,99", "59,00", "1.234,56", "49.90", "12", "x"])]
    write_csv(base / "shop.csv", rows)
    cat = Catalog.build(base / "shop" / "images", base / "shop.csv", "article_id",
                        encoder=Encoder())
    cat.save(base / "cat")
    return base


@pytest.mark.parametrize("flag,value", [("--threads", "-1"), ("--batch-size", "0"),
                                        ("--decode-threads", "-2")])
def test_negative_counts_are_refused(shop, flag, value, capsys):
    with pytest.raises(SystemExit) as ex:
        fai(["index", str(shop / "shop"), "--out", str(shop / "never"), flag, value])
    assert ex.value.code == 2 and value in capsys.readouterr().err
    assert not (shop / "never").exists()


def test_decimal_comma_prices_are_numbers(shop):
    assert [number(t) for t in ("9,99", "1.234,56", "1,234.50", "1,234", "49.90", "x")] == [
        9.99, 1234.56, 1234.5, 1234.0, 49.9, None]
    cat = Catalog.open(shop / "cat", Encoder())
    cheap = {cat.get(i).metadata["price"] for i in cat.matching(["price<50"])}
    assert cheap == {"9,99", "49.90", "12"}


def test_update_uses_the_catalogues_own_id_column(shop, tmp_path, capsys):
    prices = write_csv(tmp_path / "prices.csv", [{"article_id": "p001", "price": "7,50"}])
    assert fai(["update", str(shop / "cat"), "--metadata", str(prices)]) == 0
    assert Catalog.open(shop / "cat", Encoder()).get("p001").metadata["price"] == "7,50"
    assert "1 item(s) updated" in capsys.readouterr().out


def test_ray_build_remembers_id_normalise():
    pa = pytest.importorskip("pyarrow", reason="needs the scale extra")
    from fai_infer.scale.ray_index import build_catalog

    enc = Encoder()
    vec = enc.embed([np.zeros((20, 20, 3), np.uint8)])
    table = pa.table({"id": ["111565001"], "path": ["/x/0111565001.jpg"],
                      "metadata": ["{}"], "error": [""]})
    cat = build_catalog(table, vec, enc, "article_id", id_normalise=True)
    assert (cat.id_column, cat.id_normalise) == ("article_id", True)


@pytest.mark.service
def test_a_busy_port_names_the_options_that_fix_it(shop):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res = subprocess.run([sys.executable, "-m", "ui.app", "--index", str(shop / "cat"),
                              "--port", str(port)], cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
    err = res.stderr.strip().splitlines()
    assert res.returncode == 1 and err, res.stderr[-1500:]
    assert "--port" in err[-1] and "GRADIO_SERVER_PORT" not in res.stderr, err[-1]


def test_training_with_fewer_photos_than_a_batch_is_one_clear_error(tmp_path):
    """Before: no step ran and the untrained weights were saved as best.pt, silently."""
    pytest.importorskip("torch")
    write_products(tmp_path / "few", 12)
    res = subprocess.run([sys.executable, "-m", "train", "--data", str(tmp_path / "few"),
                          "--out", str(tmp_path / "run"), "--image-size", "32", "--width",
                          "0.125", "--epochs", "1", "--batch-size", "64", "--embed-dim", "32",
                          "--cache-dir", str(tmp_path / "cache")], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode != 0 and "fewer than --batch-size 64" in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "run" / "best.pt").exists()


def test_the_join_report_counts_and_quotes_only_indexed_photos(tmp_path):
    """Before: '1 of 5 photos have a metadata row (photo id 'a-broken' ...)', counting and
    quoting a file that was skipped as corrupt."""
    photos = write_products(tmp_path / "shop", 4, csv_name=None)
    (tmp_path / "shop" / "images" / "a-broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    write_csv(tmp_path / "m.csv", [{"id": photos[0].stem, "colour": "red"}])
    cat = Catalog.build(tmp_path / "shop" / "images", tmp_path / "m.csv", encoder=Encoder())
    assert [s.path.endswith("a-broken.jpg") for s in cat.skipped] == [True]
    report = " ".join(cat.warnings)
    assert "1 of 4 photos" in report and "a-broken" not in report, report


def test_a_filter_value_means_the_same_before_and_after_compaction(tmp_path):
    """Before: once the last purple item was removed, colour=Purple returned [] until a
    compaction and raised after it. Now it is 'no item has this value' both times."""
    photos = write_products(tmp_path / "shop", 6, csv_name=None)
    write_csv(tmp_path / "m.csv", [{"id": p.stem, "colour": "Purple" if i == 0 else "Red"}
                                   for i, p in enumerate(photos)])
    cat = Catalog.build(tmp_path / "shop" / "images", tmp_path / "m.csv", encoder=Encoder())
    cat.save(tmp_path / "cat")
    cat.remove([photos[0].stem])
    outcomes = []
    for _ in range(2):
        for where in ({"colour": "Purple"}, ["colour!=Purple"]):
            with pytest.raises(ValueError, match="no item has this value") as err:
                cat.similar(photos[1].stem, k=3, where=where)
            outcomes.append("Purple" not in str(err.value).split("values:")[1])
        assert len(cat.similar(photos[1].stem, k=3, where={"colour": "Red"})) == 3
        cat.compact()
    assert outcomes == [True] * 4  # the live values listed never include the removed one


def test_bench_markdown_keeps_the_hand_written_sections(tmp_path):
    """Before: --markdown rewrote docs/performance.md whole, deleting e.g. 'The catalogue
    store' and the shipped encoder's section, and printed a stale '64 px run' sentence.
    (Run as a command: nothing under tests/ imports bench.)"""
    new = ("# Performance\n\nMeasured today on this machine.\n\nPeak float32 matrix throughput: "
           "9 GFLOP/s.\n\n## Goals\n| goal |\n|---|\n| new row |\n\n## A new table\nx\n")
    (tmp_path / "new.md").write_text(new)
    script = ("import json, sys\n"
              "from bench.markdown_merge import merge, split_sections\n"
              "old = open(sys.argv[1]).read()\n"
              "merged = merge(old, open(sys.argv[2]).read())\n"
              "print(json.dumps({'old': split_sections(old), 'merged': split_sections(merged)}))\n")
    res = subprocess.run([sys.executable, "-c", script, str(ROOT / "docs" / "performance.md"),
                          str(tmp_path / "new.md")], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    old_sections, (head, merged) = out["old"][1], out["merged"]
    old_titles = [t for t, _ in old_sections]
    merged_sections = dict((t, b) for t, b in merged)
    assert [t for t, _ in merged] == old_titles + ["## A new table"]
    for title, body in old_sections:
        if title != "## Goals":
            assert merged_sections[title] == body, title  # hand-written and other tables kept
    assert "| new row |" in merged_sections["## Goals"]
    assert [line for line in head if line.startswith("Measured ")] == [
        "Measured today on this machine."]  # the generated paragraph, replaced not repeated
    assert "64 px run" not in (ROOT / "bench" / "__main__.py").read_text()


def test_max_minutes_counts_the_frozen_feature_pass(tmp_path):
    """Before: the clock started after the frozen ImageNet features were computed."""
    pytest.importorskip("torch")
    write_products(tmp_path / "shop", 16)
    res = subprocess.run([sys.executable, "-m", "train", "--data", str(tmp_path / "shop"),
                          "--out", str(tmp_path / "run"), "--image-size", "32", "--width",
                          "0.125", "--epochs", "1", "--batch-size", "4", "--embed-dim", "32",
                          "--cache-dir", str(tmp_path / "cache"), "--max-minutes", "0.0001",
                          "--arch", "efficientnet-lite0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode != 0, res.stdout[-1500:]
    # the budget counts the frozen pass, and what was done is kept for the next run
    assert "time budget ran out while computing the frozen" in res.stderr, res.stderr[-1500:]
    assert "kept in --cache-dir" in res.stderr
    assert "Traceback" not in res.stderr


def test_choose_leaves_sizes_out_by_a_cost_that_does_not_depend_on_load():
    """Before: sizes were dropped by milliseconds measured at run time (--max-ms 8 by
    default), so a busy minute changed the shipped choice. GFLOPs are the same every run."""
    pytest.importorskip("torch")
    import json as _json

    from train.choose import main as choose_main  # noqa: F401 - the module imports cleanly
    from train.cost import encoder_gflops
    from train.loop import TrainConfig
    from train.model import AutoEncoder, EmbeddingModel

    fields = TrainConfig.__dataclass_fields__
    recipe = _json.loads((ROOT / "configs" / "lite0-v2.json").read_text())
    cfg = TrainConfig(**{k: v for k, v in recipe.items() if k in fields})
    model = EmbeddingModel(AutoEncoder(cfg.model_config()))
    costs = [encoder_gflops(model, s) for s in (160, 224, 160)]
    assert costs[0] == costs[2] and 0.3 < costs[0] < costs[1] < 0.8  # 224 px fits the default
    source = (ROOT / "train" / "choose.py").read_text()
    assert '"--max-ms", type=float, default=0.0' in source and "--max-gflops" in source
