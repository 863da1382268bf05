"""python -m train.adapt: make a shop's catalogue its own, in one command and a time budget.

Fine-tunes the shipped model (or ``--init``) on a shop's own photos and CSV:

1. the shop's designs are split by ``--group-column`` (a stable hash of the group, so every
   colour of a design falls on one side): ``--holdout`` of them are kept apart, never trained
   on (nor decoded for training), and judge the result;
2. before any work, a handful of the shop's photos is timed through each kind of work, and
   one line says what this shop needs ("about X minutes for a useful run; give at least M");
   a budget that cannot train one epoch is refused there (train/budget.py);
3. *before*: the starting model and the frozen ImageNet features of grey photos are scored on
   a sample of the held-apart designs sized to the budget (gallery = the sample's photos);
4. fine-tuning with the starting model's own recipe (its protections against forgetting), the
   design's other colourways as positives (pairs in every batch), ``--label-columns`` as
   labels; the frozen features it distils toward are cached per photo file and per network
   as they are made; each epoch is judged on its OWN held-apart part of the training designs
   (same design Hit@10, whole designs), the start is the bar, and it stops when that figure
   stops rising or the budget's share for training is spent;
5. *after*: the fine-tuned model on the same sample;
6. it exports ``--out``/model.onnx (validated against torch, as ``export.onnx`` does) only if
   the result beats the starting model on the held-apart figures.

``--minutes`` covers everything (measuring, decoding, the frozen-feature pass, both
evaluations, export). Exit status: 0 a model was written; 3 the run finished and wrote no
model (one line says why); 2 a usage mistake or a budget too short for this shop; 1 any other
failure, the budget running out part-way included. Every outcome but 0 ends in a line that
says no model was written; none ends in a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from fai_infer.image.preprocess import ImageError, PreprocessSpec, load_square
from fai_infer.model.provenance import provenance
from train.budget import (Budget, BudgetTooShort, Costs, Plan, Shop, TimeBudgetSpent, estimate,
                          make_plan)
from train.data import decode_all, decode_cache_path, detect_id_column, load_catalogue, \
    stable_fraction
from train.metrics import l2_normalise, label_codes, paired_margin
from train.shop_eval import FIGURES, group_queries, held_apart_groups, shop_per_query

JUDGED = ("same design Hit@10", "P@10 type")  # what must improve for an export
STOP_HOLDOUT = 0.15  # share of the training designs kept for the run's own stopping figure
PROBE_PHOTOS = 16  # photos timed per kind of work before the plan
PROBE_LIMIT = 160  # catalogue rows the throwaway trainer that times a step loads
EXIT_NO_MODEL = 3
PROG = "python -m train.adapt"


class NoGroups(ValueError):
    """The group column gives no design two photos: nothing to learn or judge designs on."""


def held_apart_rows(cat, group_column: str | None, fraction: float) -> np.ndarray:
    """Rows kept apart: whole groups when there is a group column, else single photos (the
    same stable hash as the training loop's ``--holdout-groups``)."""
    groups = cat.column(group_column) if group_column else list(cat.ids)
    return np.flatnonzero(held_apart_groups(groups, fraction))


def sample_designs(groups: list[str], rows: np.ndarray, photos: int) -> np.ndarray:
    """Whole designs of ``rows`` in a stable order until ``photos`` photos are reached: a
    sample sized to the budget, the same one in every run of the same size."""
    by_group: dict[str, list[int]] = {}
    for r in rows:
        by_group.setdefault(groups[r], []).append(int(r))
    order = sorted(by_group, key=lambda g: stable_fraction(g, "adapt-sample"))
    chosen: list[int] = []
    for g in order:
        if len(chosen) >= photos:
            break
        chosen += by_group[g]
    return np.array(sorted(chosen), dtype=np.int64)


def group_candidates(cat, id_column: str, limit: int = 3) -> list[str]:
    """Columns that look like "one design in several colours": most rows share their value
    with a few others (not one, not hundreds), best first."""
    scored = []
    for column in cat.rows[0] if cat.rows else []:
        if column == id_column:
            continue
        _, counts = np.unique(cat.column(column), return_counts=True)
        share = counts[(counts >= 2) & (counts <= 12)].sum() / max(1, len(cat))
        if share >= 0.3:
            scored.append((share, column))
    return [c for _, c in sorted(scored, reverse=True)[:limit]]


class Judge:
    """Scores any embedder on a fixed sample of held-apart photos (decoded once per size),
    in chunks, each started only while the budget lasts."""

    def __init__(self, cat, rows: np.ndarray, groups: list[str], type_column: str,
                 cache_dir: str | None, budget: Budget, workers: int = 2):
        self.cat, self.rows, self.cache_dir, self.budget = cat, rows, cache_dir, budget
        self.groups = [groups[i] for i in rows]
        self.types = [cat.column(type_column)[i] for i in rows]
        self.workers = workers
        self.squares: dict[int, np.ndarray] = {}

    def squares_at(self, size: int) -> np.ndarray:
        if size not in self.squares:
            self.budget.check("decoding the held-apart sample")
            paths = [self.cat.paths[i] for i in self.rows]
            self.squares[size], _ = decode_all(paths, PreprocessSpec(size=size), self.workers,
                                               self.cache_dir, desc="decode held-apart")
        return self.squares[size]

    def __call__(self, embedder, name: str) -> dict[str, np.ndarray]:
        spec, embed = embedder
        squares = self.squares_at(spec.size)
        parts = []
        for s in range(0, len(squares), 256):
            self.budget.check(f"scoring {name} on the held-apart sample ({s} of "
                              f"{len(squares)} photos done)")
            parts.append(embed(squares[s : s + 256]))
        return shop_per_query(l2_normalise(np.concatenate(parts)), self.groups, self.types)


def checkpoint_at_test_size(path: str):
    """A checkpoint's embedder at its exported (test) size."""
    from train.evaluate import checkpoint_embedder

    return checkpoint_embedder(path)


def beats(after: dict[str, np.ndarray], before: dict[str, np.ndarray]) -> tuple[bool, str]:
    """Export only if no judged figure is worse and their mean is better; the reason in words."""
    diffs = {k: float(after[k].mean() - before[k].mean()) for k in JUDGED}
    worse = [f"{k} {before[k].mean():.3f} -> {after[k].mean():.3f}" for k, d in diffs.items()
             if d < 0]
    if worse:
        return False, "worse on " + ", ".join(worse)
    if sum(diffs.values()) <= 0:
        return False, "no better on " + ", ".join(JUDGED)
    return True, ", ".join(f"{k} {before[k].mean():.3f} -> {after[k].mean():.3f}"
                           for k in JUDGED)


def table(scores: dict[str, dict[str, np.ndarray]]) -> str:
    lines = ["| features | " + " | ".join(FIGURES) + " |", "|" + "---|" * (len(FIGURES) + 1)]
    for name, per in scores.items():
        lines.append(f"| {name} | " + " | ".join(f"{per[f].mean():.3f}" for f in FIGURES) + " |")
    return "\n".join(lines)


def minutes_value(text: str) -> float:
    """--minutes: a finite number above zero (nan, inf and negatives are refused in one line)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of minutes") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite number of minutes above 0")
    return value


def parse(argv: list[str] | None):
    from fai_infer.cli.util import OneLineParser

    p = OneLineParser(prog=PROG, description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="the shop's folder: photos (+ its CSV)")
    p.add_argument("--csv", default=None, help="its CSV (default: found in --data)")
    p.add_argument("--id-column", default=None,
                   help="the CSV column naming the photos (default: found from the files)")
    p.add_argument("--group-column", default=None,
                   help="one design in several colours (e.g. product_code): positives for "
                   "training, and what is held apart (required; without it the run names "
                   "the columns that look like one)")
    p.add_argument("--label-columns", default=None,
                   help="label columns to train on, e.g. product_type_name (default: the "
                   "--type-column)")
    p.add_argument("--type-column", default=None,
                   help="the kind of item, judged as P@10 type (default: the first label column)")
    p.add_argument("--init", default="models/fai-default.pt",
                   help="the checkpoint to start from (the shipped model's by default)")
    p.add_argument("--minutes", type=minutes_value, default=30.0,
                   help="the whole budget: measuring, decoding, the frozen-feature pass, "
                   "training, both evaluations and export (the run says what this shop needs "
                   "before it starts)")
    p.add_argument("--holdout", type=float, default=0.4,
                   help="share of the groups kept apart to judge on")
    p.add_argument("--out", default="runs/adapt", help="run folder (checkpoints, report, model)")
    p.add_argument("--cache-dir", default=".cache", help="decoded-photo and feature cache")
    p.add_argument("--workers", type=int, default=2, help="decode threads")
    a = p.parse_args(argv)
    if not Path(a.data).is_dir():
        p.error(f"--data {a.data}: no such folder")
    if not Path(a.init).is_file():
        p.error(f"--init {a.init}: no such checkpoint (the shipped one is models/fai-default.pt)")
    if not 0.05 <= a.holdout <= 0.9:
        p.error(f"--holdout {a.holdout}: keep between 0.05 and 0.9 of the groups apart")
    return p, a


def _check_columns(p, a, cat, id_column: str) -> tuple[list[str], str]:
    """(label columns, type column), or one line naming what is wrong with the columns."""
    columns = list(cat.rows[0]) if cat.rows else []
    labels = [c.strip() for c in (a.label_columns or a.type_column or "").split(",") if c.strip()]
    type_column = a.type_column or (labels[0] if labels else None)
    for name, col in (("--group-column", a.group_column), ("--type-column", type_column),
                      *(("--label-columns", c) for c in labels)):
        if col and col not in columns:
            p.error(f"{name} {col}: not a column of the CSV (its columns: {', '.join(columns)})")
    if not type_column:
        p.error("name the kind-of-item column with --type-column (or --label-columns)")
    if not a.group_column:
        found = group_candidates(cat, id_column)
        hint = (f"; in this CSV {', '.join(found)} look like one" if found
                else "; no column of this CSV looks like one")
        p.error("name the column that groups one design's photos (its colourways, its "
                f"views) with --group-column: adapt learns and judges on them{hint}")
    groups = cat.column(a.group_column)
    if len(group_queries(label_codes(groups))) == 0:
        raise NoGroups(f"--group-column {a.group_column}: no value is shared by two photos, so "
                       "there is no design to learn or find (is it the right column?)")
    return labels, type_column


def _train_args(a, id_column: str, labels: list[str], type_column: str, out: Path) -> list[str]:
    args = ["--init", a.init, "--data", a.data, "--id-column", id_column, "--out", str(out),
            "--unseen-fraction", "0", "--proxy-fraction", "0", "--patience", "3",
            "--label-columns", ",".join(labels) or type_column, "--eval-columns", type_column,
            "--cache-dir", a.cache_dir, "--holdout-groups", str(a.holdout),
            "--group-column", a.group_column, "--holdout", str(STOP_HOLDOUT),
            "--stop-on", "design", "--workers", str(a.workers)]
    return args + (["--csv", a.csv] if a.csv else [])


def measure(cat, apart: np.ndarray, train_args: list[str], embedder, budget: Budget
            ) -> tuple[Costs, int]:
    """(per-photo seconds of each kind of work, the torch thread count to use), timed on a
    handful of this shop's photos with the very code the run uses (a throwaway trainer on
    the first catalogue rows). One thread against one per core: on a machine others share,
    threads that wait for each other can cost several times what they save."""
    import os

    import torch

    from train.__main__ import parse_config
    from train.loop import Trainer

    clock = budget.clock
    spec, embed = embedder
    probe = [cat.paths[i] for i in apart[:PROBE_PHOTOS]]
    t0 = clock()
    squares = []
    for path in probe:
        try:
            squares.append(load_square(path, spec))
        except ImageError:
            continue
    decode = (clock() - t0) / max(1, len(probe))
    squares = np.stack(squares) if squares else np.full((1, spec.size, spec.size, 3), 255,
                                                        np.uint8)
    embed(squares[:2])  # the first run sets the session up
    t0 = clock()
    embed(squares)
    embed_s = (clock() - t0) / len(squares)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        cfg = parse_config(train_args + ["--out", tmp, "--limit", str(PROBE_LIMIT),
                                         "--batch-size", str(PROBE_PHOTOS), "--epochs", "1",
                                         "--stop-on", "loss"])
        trainer = Trainer(cfg, clock=clock)  # no deadline: the estimate needs its figures
        n = min(PROBE_PHOTOS, len(trainer.train_idx))
        timed = {}
        for threads in sorted({1, os.cpu_count() or 1}):
            torch.set_num_threads(threads)
            timed[threads] = trainer.time_frozen(n) / n
        threads = min(timed, key=timed.get)
        torch.set_num_threads(threads)
        frozen = timed[threads]
        step = trainer.time_step(n) / n
        t0 = clock()
        trainer.evaluate_holdout()
        check = (clock() - t0) / max(1, len(trainer.holdout_idx))
    return Costs(decode=decode, embed=embed_s, frozen=frozen, step=step, check=check,
                 spent=budget.elapsed()), threads


def shop_counts(cat, apart: np.ndarray, groups: list[str], train_args: list[str]) -> Shop:
    """The counts the plan scales with, caches looked up (a second run pays less)."""
    from train.__main__ import parse_config
    from train.loop import Trainer, frozen_store

    cfg = Trainer._shape_from_init(parse_config(train_args))
    side = np.setdiff1d(np.arange(len(cat)), apart)
    paths = [cat.paths[i] for i in side]
    stop = held_apart_groups([groups[i] for i in side], STOP_HOLDOUT, salt="train-holdout")
    cached = decode_cache_path(paths, cfg.preprocess_spec(), cfg.cache_dir)
    store = frozen_store(cfg)
    return Shop(photos=len(cat), apart=len(apart), train=int((~stop).sum()),
                holdout=int(stop.sum()),
                to_decode=0 if cached is not None and cached.is_file() else len(paths),
                to_feature=len(store.missing(paths)) if store is not None else len(paths))


def make_plan_for(costs: Costs, shop: Shop, budget: Budget) -> Plan:
    """The plan for what is left of the budget (its own function so a test can make the
    machine slow down after planning, as a shared machine does)."""
    return make_plan(costs, shop, budget.left() / 60 + costs.spent / 60)


def run(argv: list[str] | None = None, clock: Callable[[], float] = time.monotonic) -> dict:
    """The whole run; raises on failure (``main`` turns every failure into one line)."""
    p, a = parse(argv)
    budget = Budget(a.minutes, clock)
    id_column = a.id_column or detect_id_column(a.data, a.csv)
    cat = load_catalogue(a.data, a.csv, id_column)
    labels, type_column = _check_columns(p, a, cat, id_column)
    groups = cat.column(a.group_column)
    apart = held_apart_rows(cat, a.group_column, a.holdout)
    if len(apart) < 20 or len(cat) - len(apart) < 50:
        p.error(f"{a.data}: {len(cat)} photos leave {len(apart)} apart and "
                f"{len(cat) - len(apart)} to train on: too few")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"adapt: {len(cat):,} photos; {len(apart):,} of {len(set(groups[i] for i in apart)):,} "
          f"designs held apart (never trained on), {len(cat) - len(apart):,} to train on",
          flush=True)
    train_args = _train_args(a, id_column, labels, type_column, out)
    start_embedder = checkpoint_at_test_size(a.init)
    costs, threads = measure(cat, apart, train_args, start_embedder, budget)
    train_args += ["--threads", str(threads)]
    shop = shop_counts(cat, apart, groups, train_args)
    print(f"adapt: per photo, measured on {PROBE_PHOTOS} of them: decode "
          f"{costs.decode * 1e3:.0f} ms, evaluation {costs.embed * 1e3:.0f} ms, frozen pass "
          f"{costs.frozen * 1e3:.0f} ms, training step {costs.step * 1e3:.0f} ms "
          f"({threads} torch thread{'s' * (threads > 1)})"
          f"{'' if shop.to_feature else ' (frozen features cached)'}", flush=True)
    least, useful = estimate(costs, shop)
    print(f"this shop ({len(cat):,} photos) needs about {useful:g} minutes for a useful run; "
          f"give at least {least:g}", flush=True)
    try:
        plan = make_plan_for(costs, shop, budget)
    except BudgetTooShort as exc:
        raise BudgetTooShort(f"--minutes {a.minutes:g}: {exc}") from None
    sample = sample_designs(groups, apart, plan.sample)
    judge = Judge(cat, sample, groups, type_column, a.cache_dir, budget, a.workers)
    print(f"plan: judge on {len(sample):,} of the {len(apart):,} held-apart photos "
          f"({len(set(judge.groups)):,} designs), then train up to {plan.epochs} "
          f"{'epochs' if plan.epoch_photos >= shop.train else 'rounds'} of "
          f"{plan.epoch_photos:,} of the {shop.train:,} training photos in about "
          f"{plan.train_s / 60:.1f} of the {a.minutes:g} minutes", flush=True)

    from train.evaluate import imagenet_embedder

    start_name = f"start ({Path(a.init).name})"
    scores = {start_name: judge(start_embedder, start_name),
              "frozen ImageNet grey": judge(imagenet_embedder(grey=True), "frozen ImageNet grey")}
    print(f"before, on {len(sample)} held-apart photos of {len(set(judge.groups))} designs:\n"
          + table(scores), flush=True)

    from train.__main__ import parse_config
    from train.loop import Trainer

    budget.check("training")
    cfg = parse_config(train_args + ["--epochs", str(plan.epochs),
                                     "--epoch-photos", str(plan.epoch_photos)])
    trainer = Trainer(cfg, clock=clock, deadline=budget.deadline - plan.reserve_s)
    metrics = trainer.fit()
    report = {"data": a.data, "init": a.init, "held_apart_photos": int(len(apart)),
              "judged_photos": int(len(sample)), "designs": len(set(judge.groups)),
              "epochs": metrics["epochs_run"], "best_epoch": metrics["best_epoch"],
              "plan": {"sample": plan.sample, "epochs": plan.epochs,
                       "epoch_photos": plan.epoch_photos,
                       "train_minutes": round(plan.train_s / 60, 2),
                       "least_minutes": plan.least_min, "useful_minutes": plan.useful_min},
              "budget_minutes": a.minutes, "exported": False}
    best = out / "best.pt"
    if not metrics["best_epoch"] or not best.is_file():
        why = ("the budget was spent before a first epoch" if not metrics["epochs_run"] else
               f"no epoch beat the start on its own held-apart training designs (same design "
               f"Hit@10; {metrics['epochs_run']} epochs)")
        return _finish(report, scores, out, budget, f"no model written: {why}")
    _keep_test_size(best, a.init)
    scores["adapted"] = judge(checkpoint_at_test_size(str(best)), "the adapted model")
    ok, why = beats(scores["adapted"], scores[start_name])
    report["margins_over_start"] = {f: list(paired_margin(scores["adapted"][f],
                                                          scores[start_name][f]))
                                    for f in FIGURES}
    print("\nafter:\n" + table(scores))
    if not ok:
        return _finish(report, scores, out, budget,
                       f"no model written: the adapted model does not beat {Path(a.init).name} "
                       f"on the held-apart designs ({why})")
    budget.check("exporting the adapted model")
    model_path = out / "model.onnx"
    export_checkpoint(best, model_path, f"fai-{Path(a.data).name}-adapted")
    report["exported"] = str(model_path)
    return _finish(report, scores, out, budget,
                   f"exported {model_path}: beats the starting model on the held-apart "
                   f"designs ({why})")


def _finish(report: dict, scores: dict, out: Path, budget: Budget, outcome: str) -> dict:
    report["table"] = {n: {f: float(v[f].mean()) for f in FIGURES} for n, v in scores.items()}
    report["minutes"] = round(budget.elapsed() / 60, 2)
    report["outcome"] = outcome
    report["provenance"] = provenance([m for m in (report.get("init"), report.get("exported"))
                                       if isinstance(m, str) and Path(m).is_file()])
    (out / "adapt-report.json").write_text(json.dumps(report, indent=2))
    print(outcome)
    print(f"{report['minutes']:.1f} of {report['budget_minutes']:g} minutes; report "
          f"{out / 'adapt-report.json'}")
    return report


def main(argv: list[str] | None = None, clock: Callable[[], float] = time.monotonic) -> int:
    """Exit status 0 only when a model was written; every other outcome ends in one line on
    stderr that says no model was written and why (see the module docstring)."""
    try:
        report = run(argv, clock)
    except SystemExit as exc:  # argparse and the data loaders have said their one line
        if isinstance(exc.code, str):
            _say(exc.code)
            return 1
        return exc.code if isinstance(exc.code, int) else 1
    except BudgetTooShort as exc:
        _say(str(exc))
        return 2
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except (TimeBudgetSpent, NoGroups) as exc:
        _say(str(exc))
        return 1
    except Exception as exc:  # a failure anywhere else still ends in one line
        text = " ".join(str(exc).split()) or "no message"
        _say(f"{type(exc).__name__}: {text[:400]}")
        return 1
    return 0 if report["exported"] else EXIT_NO_MODEL


def _say(message: str) -> None:
    message = message.removeprefix(f"{PROG}: error: ").rstrip()
    if "no model written" not in message:
        message += "; no model written"
    print(f"{PROG}: error: {message}", file=sys.stderr)


def export_checkpoint(checkpoint: Path, model_path: Path, name: str) -> None:
    """``python -m export.onnx`` on the adapted checkpoint, as its own process: export sits
    above training (it loads checkpoints), so training never imports it, and the export's
    memory is not added to training's."""
    import subprocess

    res = subprocess.run([sys.executable, "-m", "export.onnx", "--checkpoint", str(checkpoint),
                          "--out", str(model_path), "--name", name, "--version", "1"],
                         capture_output=True, text=True)
    if res.returncode != 0:
        lines = (res.stderr or res.stdout).strip().splitlines() or ["no message"]
        raise RuntimeError(f"export of {checkpoint} failed: {lines[-1]}")


def _keep_test_size(checkpoint: Path, init: str) -> None:
    """Training writes its training size as the preprocessing size; the starting model's test
    size (what it was chosen and exported at) is what the adapted model is judged and
    exported at."""
    import torch

    from train.checkpoint import save_atomic

    start = torch.load(init, map_location="cpu", weights_only=True)
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    ckpt["preprocess"] = replace(PreprocessSpec.from_dict(ckpt["preprocess"]),
                                 size=PreprocessSpec.from_dict(start["preprocess"]).size
                                 ).to_dict()
    save_atomic(ckpt, checkpoint)


if __name__ == "__main__":
    sys.exit(main())
