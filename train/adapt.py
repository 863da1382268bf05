"""python -m train.adapt: make a shop's catalogue its own, in one command and a time budget.

Fine-tunes the shipped model (or ``--init``) on a shop's own photos and CSV:

1. the shop's designs are split by ``--group-column`` (a stable hash of the group, so every
   colour of a design falls on one side): ``--holdout`` of them are kept apart, never trained
   on, and judge the result; without a group column, photos are split by id;
2. *before*: the starting model and the frozen ImageNet features (of the photos and of their
   grey versions) are scored on the held-apart designs, gallery = those designs;
3. fine-tuning with the starting model's own recipe (its protections against forgetting), the
   group's other photos as positives (pairs in every batch), ``--label-columns`` as labels,
   until the budget's share for training is spent;
4. *after*: the fine-tuned model on the same held-apart designs;
5. it exports ``--out``/model.onnx (validated against torch, as ``export.onnx`` does) only if the
   result beats the starting model on the held-apart figures; otherwise one line says why.

``--minutes`` covers everything (decoding, the frozen-feature pass, both evaluations, export):
the training share is what is left after the measured cost of an evaluation is set aside.
Decoded photos and frozen features are cached in ``--cache-dir``, so a second run does not pay
for them again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from fai_infer.image.preprocess import PreprocessSpec
from train.data import decode_all, detect_id_column, load_catalogue
from train.metrics import l2_normalise, paired_margin
from train.shop_eval import FIGURES, held_apart_groups, shop_per_query

JUDGED = ("same design Hit@10", "P@10 type")  # what must improve for an export
EXPORT_RESERVE_S = 90.0  # the ONNX export and its parity check, measured ~30-60 s here


def held_apart_rows(cat, group_column: str | None, fraction: float) -> np.ndarray:
    """Rows kept apart: whole groups when there is a group column, else single photos (the
    same stable hash as the training loop's ``--holdout-groups``)."""
    groups = cat.column(group_column) if group_column else list(cat.ids)
    return np.flatnonzero(held_apart_groups(groups, fraction))


class Judge:
    """Scores any embedder on the held-apart photos (decoded once per size)."""

    def __init__(self, cat, rows: np.ndarray, group_column: str | None, type_column: str,
                 cache_dir: str | None):
        self.cat, self.rows, self.cache_dir = cat, rows, cache_dir
        self.groups = cat.column(group_column) if group_column else list(cat.ids)
        self.groups = [self.groups[i] for i in rows]
        self.types = [cat.column(type_column)[i] for i in rows]
        self.squares: dict[int, np.ndarray] = {}

    def squares_at(self, size: int) -> np.ndarray:
        if size not in self.squares:
            paths = [self.cat.paths[i] for i in self.rows]
            self.squares[size], _ = decode_all(paths, PreprocessSpec(size=size), 2,
                                               self.cache_dir, desc="decode held-apart")
        return self.squares[size]

    def __call__(self, embedder) -> dict[str, np.ndarray]:
        spec, embed = embedder
        return shop_per_query(l2_normalise(embed(self.squares_at(spec.size))), self.groups,
                              self.types)


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


def parse(argv: list[str] | None):
    from fai_infer.cli.util import OneLineParser

    p = OneLineParser(prog="python -m train.adapt", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="the shop's folder: photos (+ its CSV)")
    p.add_argument("--csv", default=None, help="its CSV (default: found in --data)")
    p.add_argument("--id-column", default=None,
                   help="the CSV column naming the photos (default: found from the files)")
    p.add_argument("--group-column", default=None,
                   help="one design in several colours (e.g. product_code): positives for "
                   "training, and what is held apart")
    p.add_argument("--label-columns", default=None,
                   help="label columns to train on, e.g. product_type_name (default: the "
                   "--type-column)")
    p.add_argument("--type-column", default=None,
                   help="the kind of item, judged as P@10 type (default: the first label column)")
    p.add_argument("--init", default="models/fai-default.pt",
                   help="the checkpoint to start from (the shipped model's by default)")
    p.add_argument("--minutes", type=float, default=30.0,
                   help="the whole budget: decoding, teacher pass, training, both evaluations "
                   "and export")
    p.add_argument("--holdout", type=float, default=0.4,
                   help="share of the groups kept apart to judge on")
    p.add_argument("--out", default="runs/adapt", help="run folder (checkpoints, report, model)")
    p.add_argument("--cache-dir", default=".cache", help="decoded-photo and feature cache")
    a = p.parse_args(argv)
    if not Path(a.data).is_dir():
        p.error(f"--data {a.data}: no such folder")
    if not Path(a.init).is_file():
        p.error(f"--init {a.init}: no such checkpoint (the shipped one is models/fai-default.pt)")
    if not 0.05 <= a.holdout <= 0.9:
        p.error(f"--holdout {a.holdout}: keep between 0.05 and 0.9 of the groups apart")
    if a.minutes < 3:
        p.error(f"--minutes {a.minutes}: too short to evaluate twice and train (3 at least)")
    return p, a


def main(argv: list[str] | None = None) -> dict:
    p, a = parse(argv)
    started = time.time()
    deadline = started + a.minutes * 60
    id_column = a.id_column or detect_id_column(a.data, a.csv)
    cat = load_catalogue(a.data, a.csv, id_column)
    columns = list(cat.rows[0]) if cat.rows else []
    labels = [c.strip() for c in (a.label_columns or a.type_column or "").split(",") if c.strip()]
    type_column = a.type_column or (labels[0] if labels else None)
    for name, col in (("--group-column", a.group_column), ("--type-column", type_column),
                      *(("--label-columns", c) for c in labels)):
        if col and col not in columns:
            p.error(f"{name} {col}: not a column of the CSV (its columns: {', '.join(columns)})")
    if not type_column:
        p.error("name the kind-of-item column with --type-column (or --label-columns)")
    rows = held_apart_rows(cat, a.group_column, a.holdout)
    if len(rows) < 20 or len(cat) - len(rows) < 50:
        p.error(f"{a.data}: {len(cat)} photos leave {len(rows)} apart and "
                f"{len(cat) - len(rows)} to train on: too few")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    judge = Judge(cat, rows, a.group_column, type_column, a.cache_dir)

    from train.evaluate import imagenet_embedder

    t0 = time.time()
    start_embedder = checkpoint_at_test_size(a.init)
    scores = {f"start ({Path(a.init).name})": judge(start_embedder)}
    eval_seconds = time.time() - t0
    for grey in (False, True):
        scores[f"frozen ImageNet{' grey' if grey else ''}"] = judge(imagenet_embedder(grey=grey))
    print(f"before, on {len(rows)} held-apart photos of {len(set(judge.groups))} designs:\n"
          + table(scores), flush=True)

    reserve = 1.5 * eval_seconds + EXPORT_RESERVE_S
    train_minutes = (deadline - time.time() - reserve) / 60
    if train_minutes < 1:
        print(f"adapt: the {a.minutes:g}-minute budget leaves {train_minutes:.1f} minutes to "
              f"train after evaluating; give more --minutes", file=sys.stderr)
        return {"scores": {}, "exported": False}
    from train.__main__ import parse_config
    from train.loop import Trainer

    args = ["--init", a.init, "--data", a.data, "--id-column", id_column, "--out", str(out),
            "--unseen-fraction", "0", "--proxy-fraction", "0", "--epochs", "100",
            "--patience", "3", "--max-minutes", f"{train_minutes:.2f}",
            "--label-columns", ",".join(labels) or type_column,
            "--eval-columns", type_column, "--cache-dir", a.cache_dir]
    if a.csv:
        args += ["--csv", a.csv]
    args += ["--holdout-groups", str(a.holdout)]
    if a.group_column:
        args += ["--group-column", a.group_column]
    cfg = parse_config(args)
    print(f"training for up to {train_minutes:.1f} of the {a.minutes:g} minutes", flush=True)
    metrics = Trainer(cfg).fit()
    best = out / "best.pt"
    _keep_test_size(best, a.init)
    scores["adapted"] = judge(checkpoint_at_test_size(str(best)))
    ok, why = beats(scores["adapted"], scores[next(iter(scores))])
    report = {"data": a.data, "held_apart_photos": int(len(rows)),
              "designs": len(set(judge.groups)), "epochs": metrics["epochs_run"],
              "table": {n: {f: float(v[f].mean()) for f in FIGURES} for n, v in scores.items()},
              "margins_over_start": {f: list(paired_margin(scores["adapted"][f],
                                                           scores[next(iter(scores))][f]))
                                     for f in FIGURES}}
    print("\nafter:\n" + table(scores))
    if ok:
        model_path = out / "model.onnx"
        export_checkpoint(best, model_path, f"fai-{Path(a.data).name}-adapted")
        print(f"exported {model_path}: beats the starting model on the held-apart designs "
              f"({why})")
        report["exported"] = str(model_path)
    else:
        print(f"not exported: the adapted model does not beat {Path(a.init).name} on the "
              f"held-apart designs ({why})")
        report["exported"] = False
    report["minutes"] = round((time.time() - started) / 60, 2)
    report["budget_minutes"] = a.minutes
    (out / "adapt-report.json").write_text(json.dumps(report, indent=2))
    print(f"{report['minutes']:.1f} of {a.minutes:g} minutes; report {out / 'adapt-report.json'}")
    return report


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
    main()
