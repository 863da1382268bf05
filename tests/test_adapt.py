"""train.adapt within a budget (issues 31 and 34): the estimate before any work and the refusal
of a budget that cannot train, nan/inf/negative minutes, the documented call without a group
column, a run that writes no model saying so with its own exit status, a budget that runs out
part-way (an injected clock, no sleeps) ending in one line, and the planning arithmetic."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from train import adapt
from train.budget import (EXPORT_S, LEAST_PHOTOS, SAFETY, Budget, BudgetTooShort, Costs, Shop,
                          TimeBudgetSpent, estimate, make_plan)


def one_line(text: str) -> str:
    """The one line a stream says, progress bars (redrawn with carriage returns) aside."""
    lines = [ln.rsplit("\r", 1)[-1] for ln in text.split("\n")]
    lines = [ln for ln in lines if ln.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def write_shop(root: Path, n: int = 120) -> Path:
    """n generated product photos, three per design, a kind per design, a column of unique
    values (what a wrong --group-column looks like)."""
    from tests.helpers import write_products

    shop = root / "shop"
    write_products(shop, n, size=64, csv_name=None)
    with open(shop / "articles.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["article_id", "design", "kind", "barcode"])
        for i, p in enumerate(sorted((shop / "images").iterdir())):
            w.writerow([p.stem, f"d{i // 3}", ["top", "dress", "shoe"][i // 3 % 3], f"b{i}"])
    return shop


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    return write_shop(tmp_path_factory.mktemp("adapt"))


@pytest.fixture(scope="module")
def start(shop, tmp_path_factory) -> Path:
    """A small model with the shipped model's make-up (grey garment part, colour part,
    frozen prefix), trained one epoch on the shop: what adapt starts from."""
    from train.__main__ import main as train_main

    root = tmp_path_factory.mktemp("start")
    train_main(["--data", str(shop), "--id-column", "article_id", "--out", str(root),
                "--arch", "efficientnet-lite0", "--image-size", "64", "--epochs", "1",
                "--batch-size", "16", "--label-columns", "kind", "--embed-dim", "32",
                "--general-dim", "16", "--grey", "--colour", "--freeze-blocks", "5",
                "--bn-eval", "--cache-dir", str(root / "cache"), "--unseen-fraction", "0"])
    return root / "best.pt"


def base_args(shop: Path, init: Path, tmp_path: Path) -> list[str]:
    return ["--data", str(shop), "--type-column", "kind", "--init", str(init),
            "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]


@pytest.mark.parametrize("minutes", ["nan", "inf", "-5", "0", "soon"])
def test_a_budget_that_is_not_a_finite_positive_number_is_refused_in_one_line(
        shop, tmp_path, capsys, minutes):
    init = tmp_path / "start.pt"
    init.write_bytes(b"never read: the budget is refused first")
    rc = adapt.main(base_args(shop, init, tmp_path) + ["--group-column", "design",
                                                      "--minutes", minutes])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    line = one_line(err)
    assert "--minutes" in line and minutes in line
    assert not (tmp_path / "out").exists()


def test_the_documented_call_without_a_group_column_names_the_column_to_give(
        shop, tmp_path, capsys):
    init = tmp_path / "start.pt"
    init.write_bytes(b"never read: the columns are checked first")
    rc = adapt.main(base_args(shop, init, tmp_path) + ["--minutes", "30"])
    out, err = capsys.readouterr()
    line = one_line(err)
    assert rc == 2 and out == ""
    assert "--group-column" in line and "design" in line  # the column that looks like one
    assert "barcode" not in line and "no group has two photos" not in line


def test_a_group_column_that_groups_nothing_is_one_line_not_a_value_error(
        shop, tmp_path, capsys):
    init = tmp_path / "start.pt"
    init.write_bytes(b"never read")
    rc = adapt.main(base_args(shop, init, tmp_path) + ["--group-column", "barcode"])
    out, err = capsys.readouterr()
    line = one_line(err)
    assert rc == 1 and "--group-column barcode" in line and "no model written" in line


@pytest.mark.slow
def test_the_estimate_comes_first_and_a_budget_too_short_is_refused(shop, start, tmp_path,
                                                                     capsys):
    rc = adapt.main(base_args(shop, start, tmp_path) + ["--group-column", "design",
                                                        "--minutes", "0.5"])
    out, err = capsys.readouterr()
    assert rc == 2
    estimate_line = next(ln for ln in out.splitlines() if ln.startswith("this shop"))
    assert "(120 photos) needs about" in estimate_line and "give at least" in estimate_line
    least = float(estimate_line.rsplit("give at least", 1)[1])
    assert least > 0.5  # the export alone is more than half a minute
    line = one_line(err)
    assert "--minutes 0.5" in line and f"give at least {least:g}" in line
    assert "no model written" in line
    assert "before, on" not in out  # nothing was evaluated or trained
    assert not list((tmp_path / "out").glob("*.pt"))


@pytest.mark.slow
def test_a_budget_that_runs_out_part_way_ends_in_one_line(shop, start, tmp_path, capsys,
                                                           monkeypatch):
    """The machine slows a thousandfold after the plan (a shared machine, simulated with an
    injected clock): the run stops at the next check with one line, no traceback."""

    class Clock:
        def __init__(self):
            import time

            self.real, self.rate = time.monotonic, 1.0
            self.base = self.real()

        def __call__(self) -> float:
            return self.base + (self.real() - self.base) * self.rate

    clock = Clock()
    planned = adapt.make_plan_for

    def plan_then_slow_down(*args):
        plan = planned(*args)
        clock.rate = 1e4
        return plan

    monkeypatch.setattr(adapt, "make_plan_for", plan_then_slow_down)
    rc = adapt.main(base_args(shop, start, tmp_path) + ["--group-column", "design",
                                                        "--minutes", "30"], clock=clock)
    out, err = capsys.readouterr()
    assert rc == 1
    line = one_line(err)
    assert "30-minute budget ran out" in line and "no model written" in line
    assert "give at least" in out  # the estimate was said before
    assert not (tmp_path / "out" / "model.onnx").exists()


@pytest.mark.slow
def test_a_finished_run_exits_zero_only_with_a_model(shop, start, tmp_path, capsys):
    rc = adapt.main(base_args(shop, start, tmp_path) + ["--group-column", "design",
                                                        "--minutes", "6"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    import json

    written = json.loads((tmp_path / "out" / "adapt-report.json").read_text())
    assert written["minutes"] <= 6.0
    assert set(written["table"]) >= {"start (best.pt)", "frozen ImageNet grey"}
    apart = written["held_apart_photos"]
    assert 0 < apart < 120 and apart % 3 == 0  # whole designs (3 photos each) kept apart
    assert written["judged_photos"] == apart  # a small shop is judged on all of them
    assert "epoch 0 (the start): same design Hit@10" in out  # it stops on its own figure
    if rc == 0:
        assert (tmp_path / "out" / "model.onnx").is_file() and written["exported"]
        assert "exported" in out
    else:
        assert rc == adapt.EXIT_NO_MODEL
        assert not (tmp_path / "out" / "model.onnx").exists() and not written["exported"]
        assert "no model written: " in out and written["outcome"].startswith("no model")


def costs(scale: float = 1.0) -> Costs:
    return Costs(decode=0.005 * scale, embed=0.02 * scale, frozen=0.01 * scale,
                 step=0.05 * scale, check=0.02 * scale, spent=30.0)


SHOP = Shop(photos=7000, apart=2800, train=3570, holdout=630, to_decode=4200, to_feature=4200)


def test_the_plan_scales_with_the_budget_and_refuses_what_cannot_train():
    least, useful = estimate(costs(), SHOP)
    assert 0 < least < useful
    with pytest.raises(BudgetTooShort, match=f"give at least {least:g}"):
        make_plan(costs(), SHOP, least - 0.1)
    small, mid, large = (make_plan(costs(), SHOP, m) for m in (least, 10, 90))
    assert small.sample >= 300 and small.epoch_photos >= LEAST_PHOTOS
    assert small.epoch_photos < SHOP.train  # short of an epoch: shorter rounds
    assert mid.epochs == 3 and small.epoch_photos < mid.epoch_photos < SHOP.train
    assert large.epoch_photos == SHOP.train and large.epochs > 3  # whole epochs
    assert small.sample <= mid.sample <= large.sample <= SHOP.apart
    # what is planned fits the budget, the shared machine's margin included
    for minutes, plan in ((least, small), (10, mid), (90, large)):
        spent = (30 + 0.005 * 4200 + 0.01 * 4200 + EXPORT_S + plan.sample * (0.005 + 3 * 0.02)
                 + 0.02 * 630 + plan.epochs * (0.05 * plan.epoch_photos + 0.02 * 630))
        assert SAFETY * spent <= minutes * 60 + 1e-6
    # a warm cache (decoded squares, frozen features) asks for less
    warm = Shop(**{**SHOP.__dict__, "to_decode": 0, "to_feature": 0})
    assert estimate(costs(), warm)[0] < least
    # a slower machine asks for more
    assert estimate(costs(3.0), SHOP)[0] > least


def test_a_budget_on_an_injected_clock_says_what_it_ran_out_before():
    now = [100.0]
    budget = Budget(2, lambda: now[0])
    budget.check("training")
    now[0] += 119
    assert math.isclose(budget.left(), 1.0)
    now[0] += 2
    with pytest.raises(TimeBudgetSpent, match="2-minute budget ran out before training"):
        budget.check("training")


def test_a_sample_of_held_apart_designs_takes_whole_designs_and_is_stable():
    groups = [f"d{i // 3}" for i in range(300)]
    rows = np.arange(0, 300)
    a = adapt.sample_designs(groups, rows, 50)
    assert 50 <= len(a) < 53 and len(a) % 3 == 0
    assert all(sum(groups[r] == groups[i] for r in a) == 3 for i in a)
    assert a.tolist() == adapt.sample_designs(groups, rows, 50).tolist()
    assert len(adapt.sample_designs(groups, rows, 10**6)) == 300


def test_frozen_features_are_kept_per_photo_file_and_survive_an_interrupted_pass(tmp_path):
    from train.feature_store import CHUNK, FeatureStore

    paths = []
    for i in range(CHUNK + 5):
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(bytes([i % 256]) * 10)
        paths.append(p)
    calls = []

    def compute(part):
        calls.append(len(part))
        return np.stack([np.full(4, float(i)) for i in part])

    def stop_second_chunk(done, total):
        if done > 0:
            raise TimeBudgetSpent("out of time")

    store = FeatureStore(tmp_path / "cache", "k" * 16)
    with pytest.raises(TimeBudgetSpent):
        store.features(paths, compute, stop_second_chunk)
    again = FeatureStore(tmp_path / "cache", "k" * 16)  # a new run
    assert len(again.missing(paths)) == 5  # the first chunk was saved as it came
    feats = again.features(paths, compute)
    assert calls == [CHUNK, 5] and feats[:, 0].tolist() == list(range(CHUNK + 5))
    paths[3].write_bytes(b"a changed photo")  # another size: recomputed alone
    assert FeatureStore(tmp_path / "cache", "k" * 16).missing(paths) == [3]
    assert len(FeatureStore(tmp_path / "cache", "other-network").missing(paths)) == CHUNK + 5
