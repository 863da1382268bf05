"""python -m train.ablations: one table, one budget, one term changed at a time.

Two sweeps. Without ``--config`` the seed family's (64 px, from scratch). With ``--config
configs/lite0.json`` the ImageNet family's: each row takes one protection against forgetting out
of (or adds one to) that recipe, and is also scored on the unseen kinds, beside the frozen
ImageNet reference measured once in the same sweep.

Every recipe below trains for the same number of epochs at the same size and seed, then is
scored by ``train.evaluate`` (gallery = the whole catalogue) on the holdout carved out of
*train* (what recipe choices are made on) and on the val split (what ``docs/quality.md``
reports, never used to choose), each with clean queries and with synthetic shopper photos of
them. Finished runs are skipped, so an interrupted sweep picks up where it stopped.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

from train.loop import TrainConfig, Trainer

ALL_LABELS = "<all label columns>"  # stands for the sweep's --label-columns

# The first shipped model's augmentation (fai-small-64 v1); "full-*" rows change one thing on it.
V1_AUG = {"clutter_prob": 0.3, "colour_cast": 0.0, "blur_prob": 0.0}

# name -> (what it shows, TrainConfig overrides on top of the sweep's base config = the defaults)
RECIPES: dict[str, tuple[str, dict]] = {
    "recon": ("seed objective: reconstruction only, clean input",
              {"augment": False, "label_columns": "", "contrastive_weight": 0.0}),
    "recon+aug": ("reconstruct the clean photo from an augmented view",
                  V1_AUG | {"label_columns": "", "contrastive_weight": 0.0}),
    "recon+aug+simclr": ("+ SimCLR-style contrastive on two views, no labels",
                         V1_AUG | {"label_columns": "", "views": 2}),
    "recon+labels": ("+ cosine classifier on articleType, baseColour; clean input",
                     {"augment": False, "contrastive_weight": 0.0}),
    "full": ("aug + labels + SupCon on articleType (fai-small-64 v1)", V1_AUG),
    "full-no-aug": ("full, but clean input (labels + SupCon)", {"augment": False}),
    "full-no-supcon": ("full without SupCon (aug + labels)",
                       V1_AUG | {"contrastive_weight": 0.0}),
    "full-camera-aug": ("full with camera-like views: clutter on 60%, colour cast, blur "
                        "(the train defaults, shipped as v2)", {}),
    "full-supcon-type+colour": ("SupCon positives share articleType and baseColour",
                                V1_AUG | {"contrastive_columns": ALL_LABELS}),
    "full-avg": ("average pooling instead of GeM", V1_AUG | {"pooling": "avg"}),
    "full-flatten": ("flatten + linear projection instead of GeM",
                     V1_AUG | {"pooling": "flatten"}),
    "full-dim128": ("embedding size 128 instead of 256", V1_AUG | {"embed_dim": 128}),
    "full-96px": ("full at 96 px instead of 64 (2.25x the compute)",
                  V1_AUG | {"image_size": 96}),
}


# The ImageNet family: name -> (what it shows, overrides on top of --config, e.g. lite0.json).
LITE_RECIPES: dict[str, tuple[str, dict]] = {
    "lite0": ("the shipped recipe: every protection below on", {}),
    "lite0+ema": ("+ weight averaging (EMA, decay 0.998)", {"ema_decay": 0.998}),
    "lite0-distill": ("without the distillation toward the frozen features",
                      {"distill_weight": 0.0}),
    "lite0-freeze": ("without partial freezing: every block trains, BatchNorm statistics too",
                     {"freeze_blocks": 0, "bn_eval": False}),
    "lite0-lr1x": ("backbone at the head's learning rate (x1, with weight decay) instead of x0.1",
                   {"backbone_lr_scale": 1.0}),
    "lite0-instance": ("without the label-free instance term (camera view -> its clean photo)",
                       {"instance_weight": 0.0}),
    "lite0-general": ("without the fixed general part: the whole embedding is learned",
                      {"general_dim": 0}),
    "lite0-naive": ("plain fine-tuning: none of the protections (no freezing, BatchNorm "
                    "trained, lr x1, no distillation, no instance term, no general part)",
                    {"freeze_blocks": 0, "bn_eval": False, "backbone_lr_scale": 1.0,
                     "distill_weight": 0.0, "instance_weight": 0.0, "general_dim": 0}),
}
REFERENCE_ROW = "frozen ImageNet"


def recipes_for(base: TrainConfig) -> dict[str, tuple[str, dict]]:
    return RECIPES if base.arch == "seed" else LITE_RECIPES


def train_recipe(name: str, base: TrainConfig, root: Path) -> dict:
    """Train one recipe unless its checkpoint is already there; return its training record."""
    what, overrides = recipes_for(base)[name]
    out = root / name
    record = out / "trained.json"
    if record.is_file():
        return json.loads(record.read_text())
    if overrides.get("contrastive_columns") == ALL_LABELS:
        overrides = overrides | {"contrastive_columns": base.label_columns}
    cfg = replace(base, out=str(out), **overrides)
    metrics = Trainer(cfg).fit()
    row = {"recipe": name, "what": what, "overrides": overrides, "config": asdict(cfg),
           "train_seconds": metrics["train_seconds"], "best_epoch": metrics["best_epoch"],
           "holdout_recon": metrics["best"].get("holdout_recon")}
    record.write_text(json.dumps(row, indent=2))
    return row


def run_recipe(name: str, base: TrainConfig, root: Path, evaluate_val: bool,
               test_size: int | None = None) -> dict:
    """Train (unless done) and score one recipe: holdout and val, clean and shopper photos."""
    from train.evaluate import evaluate_splits

    summary = root / name / "summary.json"
    if summary.is_file():
        return json.loads(summary.read_text())
    row = train_recipe(name, base, root)
    cfg = row["config"]
    first, second = cfg["eval_columns"].split(",")[:2]
    row["columns"] = [first, second]
    checkpoint = str(root / name / "best.pt")
    results = evaluate_splits(checkpoint, cfg["data"], cfg["csv"],
                              ["holdout", "val"] if evaluate_val else ["holdout"],
                              columns=(first, second), cache_dir=cfg["cache_dir"], shopper=True,
                              holdout_fraction=cfg["holdout"],
                              unseen=cfg["arch"] != "seed" and cfg["unseen_fraction"] > 0,
                              unseen_fraction=cfg.get("unseen_fraction", 0),
                              image_size=test_size)
    row["test_size"] = test_size or cfg["image_size"]
    _keep(row, results)
    summary.write_text(json.dumps(row, indent=2))
    return row


def _keep(row: dict, results: dict) -> None:
    """The model's (or the reference's) figures of each split into one ablation row."""
    if "unseen" in results:
        row["unseen"] = results.pop("unseen")["table"]["model"]
    for split, result in results.items():
        row[split] = result["table"]["model"]
        row[f"{split}_shopper"] = result["shopper"]["model"]
        row[f"{split}_pixels"] = result["table"]["raw pixels 32x32"]
        row[f"{split}_pixels_shopper"] = result["shopper"]["raw pixels 32x32"]


def reference_row(base: TrainConfig, root: Path, evaluate_val: bool) -> dict:
    """The frozen ImageNet features of the sweep's backbone at 224 px, scored once on the same
    splits: the line every row of the ImageNet sweep is read against."""
    from train.evaluate import REFERENCE_SIZE, evaluate_splits

    summary = root / "reference" / "summary.json"
    if summary.is_file():
        return json.loads(summary.read_text())
    first, second = base.eval_columns.split(",")[:2]
    results = evaluate_splits(f"imagenet:{base.arch}", base.data, base.csv,
                              ["holdout", "val"] if evaluate_val else ["holdout"],
                              columns=(first, second), cache_dir=base.cache_dir, shopper=True,
                              holdout_fraction=base.holdout, unseen=base.unseen_fraction > 0,
                              unseen_fraction=base.unseen_fraction)
    row = {"recipe": REFERENCE_ROW, "what": f"{base.arch} features, frozen, {REFERENCE_SIZE} px",
           "columns": [first, second], "train_seconds": 0.0, "holdout_recon": float("nan")}
    _keep(row, results)
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps(row, indent=2))
    return row


# (row key, figure, header): the columns of the table; unseen ones appear when measured.
COLUMNS = (("holdout", "P@1 {t}", "holdout P@1 type"), ("holdout", "P@10 {t}", "holdout P@10 type"),
           ("holdout", "P@10 {p}", "holdout P@10 type+colour"),
           ("holdout_shopper", "item@10", "holdout shopper item@10"),
           ("holdout_shopper", "P@10 {t}", "holdout shopper P@10 type"),
           ("val", "P@1 {t}", "val P@1 type"), ("val", "P@10 {t}", "val P@10 type"),
           ("val", "P@10 {p}", "val P@10 type+colour"),
           ("val_shopper", "item@10", "val shopper item@10"),
           ("val_shopper", "P@10 {t}", "val shopper P@10 type"),
           ("unseen", "P@1 {t}", "unseen P@1 type"), ("unseen", "P@10 {t}", "unseen P@10 type"),
           ("unseen", "P@10 {p}", "unseen P@10 type+colour"))


def markdown(rows: list[dict]) -> str:
    columns = [c for c in COLUMNS if c[0] != "unseen" or any("unseen" in r for r in rows)]
    head = ("| recipe | " + " | ".join(c[2] for c in columns) + " | recon MSE | minutes |")
    lines = [head, "|" + "---|" * (len(columns) + 3)]
    nan = float("nan")
    for r in rows:
        first, second = r.get("columns", ["articleType", "baseColour"])
        cells = [r.get(key, {}).get(fig.format(t=first, p=f"{first}+{second}"), nan)
                 for key, fig, _ in columns]
        lines.append(f"| {r['recipe']} | " + " | ".join(f"{c:.3f}" for c in cells)
                     + f" | {r['holdout_recon']:.4f} | {r['train_seconds'] / 60:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m train.ablations", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/myntra", help="labelled catalogue folder")
    p.add_argument("--out", default="runs/ablations", help="one sub-folder per recipe")
    p.add_argument("--config", default=None,
                   help="base recipe of the ImageNet sweep, e.g. configs/lite0.json (default: "
                   "the seed sweep)")
    p.add_argument("--recipes", default=None,
                   help="comma-separated subset (default: all) of the seed sweep's: "
                   + ", ".join(RECIPES) + "; or the ImageNet sweep's: " + ", ".join(LITE_RECIPES))
    p.add_argument("--label-columns", default="articleType,baseColour",
                   help="label columns of the recipes that use labels")
    p.add_argument("--eval-columns", default="articleType,baseColour",
                   help="two columns the figures count matches on: type, and type+second")
    p.add_argument("--epochs", type=int, default=4, help="the same budget for every recipe")
    p.add_argument("--image-size", type=int, default=None,
                   help="default: 64 for the seed sweep, the --config's size otherwise")
    p.add_argument("--width", type=float, default=0.5, help="seed sweep only")
    p.add_argument("--batch-size", type=int, default=None,
                   help="default: 64 for the seed sweep, the --config's otherwise")
    p.add_argument("--test-size", type=int, default=None,
                   help="score every recipe at this input size (default: its training size); "
                   "the ImageNet family pools globally, so e.g. train 128, test 224 as shipped")
    p.add_argument("--limit", type=int, default=0, help="first N photos only (smoke tests)")
    p.add_argument("--cache-dir", default=".cache")
    p.add_argument("--no-val", action="store_true", help="skip the val evaluation")
    a = p.parse_args(argv)
    common = dict(data=a.data, epochs=a.epochs, patience=a.epochs, limit=a.limit,
                  cache_dir=a.cache_dir, label_columns=a.label_columns,
                  eval_columns=a.eval_columns)
    if a.config:
        from train.config import load_recipe

        base = replace(TrainConfig(**load_recipe(a.config, TrainConfig, p.error)), **common)
    else:
        base = TrainConfig(image_size=64, width=a.width, batch_size=64, **common)
    if a.image_size:
        base = replace(base, image_size=a.image_size)
    if a.batch_size:
        base = replace(base, batch_size=a.batch_size)
    known = recipes_for(base)
    names = [n.strip() for n in (a.recipes or ",".join(known)).split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        p.error(f"unknown recipe(s) {unknown} for this sweep; known: {list(known)}")
    root = Path(a.out)
    rows = [] if base.arch == "seed" else [reference_row(base, root, not a.no_val)]
    for name in names:
        rows.append(run_recipe(name, base, root, not a.no_val, a.test_size))
        (root / "ablations.md").write_text(markdown(rows) + "\n")
        print(markdown(rows), flush=True)
    return rows


if __name__ == "__main__":
    main()
