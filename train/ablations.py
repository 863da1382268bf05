"""python -m train.ablations: one table, one budget, one term changed at a time.

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


def train_recipe(name: str, base: TrainConfig, root: Path) -> dict:
    """Train one recipe unless its checkpoint is already there; return its training record."""
    what, overrides = RECIPES[name]
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


def run_recipe(name: str, base: TrainConfig, root: Path, evaluate_val: bool) -> dict:
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
                              holdout_fraction=cfg["holdout"])
    for split, result in results.items():
        row[split] = result["table"]["model"]
        row[f"{split}_shopper"] = result["shopper"]["model"]
        row[f"{split}_pixels"] = result["table"]["raw pixels 32x32"]
        row[f"{split}_pixels_shopper"] = result["shopper"]["raw pixels 32x32"]
    summary.write_text(json.dumps(row, indent=2))
    return row


def markdown(rows: list[dict]) -> str:
    head = ("| recipe | holdout P@10 type | holdout P@10 type+colour | holdout shopper item@10 | "
            "holdout shopper P@10 type | val P@1 type | val P@10 type | val P@10 type+colour | "
            "val shopper item@10 | val shopper P@10 type | recon MSE | minutes |")
    lines = [head, "|" + "---|" * 12]
    nan = float("nan")
    for r in rows:
        first, second = r.get("columns", ["articleType", "baseColour"])
        pair = f"{first}+{second}"
        h, hs = r["holdout"], r["holdout_shopper"]
        v, vs = r.get("val", {}), r.get("val_shopper", {})
        cells = [h.get(f"P@10 {first}", nan), h.get(f"P@10 {pair}", nan), hs.get("item@10", nan),
                 hs.get(f"P@10 {first}", nan), v.get(f"P@1 {first}", nan),
                 v.get(f"P@10 {first}", nan), v.get(f"P@10 {pair}", nan),
                 vs.get("item@10", nan), vs.get(f"P@10 {first}", nan)]
        lines.append(f"| {r['recipe']} | " + " | ".join(f"{c:.3f}" for c in cells)
                     + f" | {r['holdout_recon']:.4f} | {r['train_seconds'] / 60:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m train.ablations", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/myntra", help="labelled catalogue folder")
    p.add_argument("--out", default="runs/ablations", help="one sub-folder per recipe")
    p.add_argument("--recipes", default=",".join(RECIPES),
                   help="comma-separated subset of: " + ", ".join(RECIPES))
    p.add_argument("--label-columns", default="articleType,baseColour",
                   help="label columns of the recipes that use labels")
    p.add_argument("--eval-columns", default="articleType,baseColour",
                   help="two columns the figures count matches on: type, and type+second")
    p.add_argument("--epochs", type=int, default=4, help="the same budget for every recipe")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit", type=int, default=0, help="first N photos only (smoke tests)")
    p.add_argument("--cache-dir", default=".cache")
    p.add_argument("--no-val", action="store_true", help="skip the val evaluation")
    a = p.parse_args(argv)
    names = [n.strip() for n in a.recipes.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        p.error(f"unknown recipe(s) {unknown}; known: {list(RECIPES)}")
    base = TrainConfig(data=a.data, epochs=a.epochs, patience=a.epochs, image_size=a.image_size,
                       width=a.width, batch_size=a.batch_size, limit=a.limit, cache_dir=a.cache_dir,
                       label_columns=a.label_columns, eval_columns=a.eval_columns)
    root = Path(a.out)
    rows = []
    for name in names:
        rows.append(run_recipe(name, base, root, not a.no_val))
        (root / "ablations.md").write_text(markdown(rows) + "\n")
        print(markdown(rows), flush=True)
    return rows


if __name__ == "__main__":
    main()
