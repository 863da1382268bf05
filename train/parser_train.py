"""Train the garment parser on CCP's masks within a wall-clock budget.

``python -m train.parser_train --config configs/parser.json --data ../shared/data/ccp
--minutes 40 --out runs/parser``

Why a wall-clock budget: training shares a 2-core CPU, so "how many epochs" is the wrong knob;
the learning rate follows a cosine over the budget's *time* (not a step count that would have to
be guessed), and the run stops mid-epoch when the budget is spent (after validating and saving),
so the schedule always reaches its floor. ``--init`` continues from a checkpoint. Every epoch writes
``last.pt`` atomically, and ``best.pt`` when the validation mIoU over the garment groups
improves, so a stopped run still leaves a model. Validation photos are a hash-chosen part of the
training photos; the held-apart photos are never loaded here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fai_infer.image.preprocess import to_tensor
from train.config import add_dataclass_args, from_args, load_recipe, opt
from train.parser_data import (DEFAULT_DATA, GARMENT_GROUPS, GROUPS, ParserSet, augment,
                               load_set, photos_in)
from train.parser_model import GarmentParser, ParserConfig, build_parser


@dataclass
class ParserTrainConfig:
    image_size: int = opt(192, "square input side (letterboxed), a multiple of 32")
    pad_value: int = opt(128, "letterbox padding grey level (0 after normalising)")
    channels: int = opt(64, "decoder width")
    batch_size: int = opt(16, "photos per step")
    lr: float = opt(2e-3, "peak AdamW learning rate of the decoder")
    backbone_lr_scale: float = opt(0.3, "backbone learning rate = lr x this")
    weight_decay: float = opt(1e-2, "AdamW weight decay (decoder only)")
    freeze_blocks: int = opt(4, "stem + this many - 1 first blocks stay at ImageNet values "
                                "(saves their backward pass, the costliest on a CPU)")
    warmup_steps: int = opt(30, "linear warm-up steps")
    class_weight_power: float = opt(0.5, "cross-entropy weight per group = (1/frequency)^this, "
                                         "normalised; 0 = unweighted")
    dice_weight: float = opt(0.5, "weight of the soft Dice term (helps small groups)")
    minutes: float = opt(40.0, "wall-clock budget for the whole run")
    max_epochs: int = opt(200, "upper bound on epochs")
    held_apart: float = opt(0.2, "fraction of photos held apart (never trained on)")
    val_fraction: float = opt(0.1, "fraction of the remaining photos used for validation")
    threads: int = opt(2, "torch CPU threads")
    seed: int = opt(0, "random seed")
    limit: int = opt(0, "use only this many training photos (0 = all; a smoke test)")
    init: str = opt("", "start from this parser checkpoint's weights (a continuation)")

    def parser_config(self) -> ParserConfig:
        return ParserConfig(image_size=self.image_size, pad_value=self.pad_value,
                            channels=self.channels)


def group_weights(masks: np.ndarray, power: float) -> torch.Tensor:
    """(1/frequency)^power per group, mean 1 over groups present: rare groups count more."""
    counts = np.bincount(masks.reshape(-1), minlength=len(GROUPS)).astype(np.float64)
    freq = counts / counts.sum()
    w = np.where(freq > 0, np.power(np.maximum(freq, 1e-12), -power), 0.0)
    w = w / w[w > 0].mean()
    return torch.tensor(w, dtype=torch.float32)


def parser_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                dice_weight: float) -> torch.Tensor:
    """Weighted cross-entropy at input resolution (+ soft Dice over the groups present)."""
    up = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    loss = F.cross_entropy(up, target, weight=weights)
    if dice_weight > 0:
        prob = up.softmax(1)
        onehot = F.one_hot(target, prob.shape[1]).permute(0, 3, 1, 2).float()
        inter = (prob * onehot).sum((0, 2, 3))
        total = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
        present = onehot.sum((0, 2, 3)) > 0
        dice = 1 - (2 * inter + 1) / (total + 1)
        loss = loss + dice_weight * dice[present].mean()
    return loss


def confusion(pred: np.ndarray, target: np.ndarray, n: int = len(GROUPS)) -> np.ndarray:
    """(n, n) pixel counts, rows = truth, columns = prediction."""
    return np.bincount(target.reshape(-1).astype(np.int64) * n + pred.reshape(-1),
                       minlength=n * n).reshape(n, n)


def iou_table(conf: np.ndarray) -> dict[str, float | None]:
    """IoU per group from a confusion matrix (None where a group is in neither)."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    return {g: (float(tp[i] / union[i]) if union[i] > 0 else None) for i, g in enumerate(GROUPS)}


def mean_garment_iou(ious: dict[str, float | None]) -> float:
    vals = [ious[g] for g in GARMENT_GROUPS if ious[g] is not None]
    return float(np.mean(vals)) if vals else 0.0


def predict_batches(model: GarmentParser, images: np.ndarray, spec, batch: int = 32
                    ) -> np.ndarray:
    """Letterboxed uint8 squares -> group index per pixel at the square's size."""
    out = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(to_tensor(images[i : i + batch], spec)).contiguous(
                memory_format=torch.channels_last)
            logits = model(x)
            up = F.interpolate(logits, size=images.shape[1:3], mode="bilinear",
                               align_corners=False)
            out.append(up.argmax(1).numpy().astype(np.uint8))
    return np.concatenate(out)


def validate(model: GarmentParser, val: ParserSet, spec) -> dict[str, float | None]:
    pred = predict_batches(model, val.images, spec)
    return iou_table(confusion(pred, val.masks))


def save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def lr_factor(step: int, elapsed: float, budget: float, warmup: int) -> float:
    """Linear warm-up, then a cosine over the fraction of the time budget spent."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / budget)))


def train(cfg: ParserTrainConfig, data: str, out: Path, command: str) -> dict:
    start = time.monotonic()
    budget = cfg.minutes * 60
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    pcfg = cfg.parser_config()
    spec = pcfg.spec()
    train_ids = photos_in(data, "train", cfg.held_apart, cfg.val_fraction)
    val_ids = photos_in(data, "val", cfg.held_apart, cfg.val_fraction)
    if cfg.limit:
        train_ids, val_ids = train_ids[: cfg.limit], val_ids[: max(2, cfg.limit // 4)]
    if not train_ids or not val_ids:
        raise SystemExit(f"no masked CCP photos found in {data} (images/ and masks/ needed)")
    cache = out.parent / "cache"
    tr = load_set(data, train_ids, spec, cache)
    va = load_set(data, val_ids, spec, cache)
    print(f"{len(tr.photos)} training photos, {len(va.photos)} validation photos, "
          f"input {cfg.image_size}x{cfg.image_size}; loaded in {time.monotonic() - start:.0f}s",
          flush=True)
    weights = group_weights(tr.masks, cfg.class_weight_power)
    print("group weights:", {g: round(float(w), 2) for g, w in zip(GROUPS, weights)}, flush=True)

    # channels-last: measured about 2x faster for the depthwise convolutions on this CPU
    model = build_parser(pcfg, pretrained=not cfg.init)
    if cfg.init:
        state = torch.load(cfg.init, map_location="cpu", weights_only=True)
        if state["parser_config"] != pcfg.to_dict():
            raise SystemExit(f"--init {cfg.init}: another network ({state['parser_config']})")
        model.load_state_dict(state["model"])
        print(f"weights from {cfg.init} (epoch {state.get('epoch')})", flush=True)
    model = model.to(memory_format=torch.channels_last)
    frozen = model.backbone.frozen_prefix(cfg.freeze_blocks)
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    backbone_params = [p for p in model.backbone.parameters() if p.requires_grad]
    head_params = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    opt_ = torch.optim.AdamW([
        {"params": backbone_params, "lr": cfg.lr * cfg.backbone_lr_scale, "weight_decay": 0.0,
         "base": cfg.lr * cfg.backbone_lr_scale},
        {"params": head_params, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "base": cfg.lr},
    ])
    history: list[dict] = []
    best = -1.0
    step = 0
    val_seconds = 60.0  # a guess until the first validation is timed
    for epoch in range(1, cfg.max_epochs + 1):
        elapsed = time.monotonic() - start
        if epoch > 1 and elapsed + val_seconds + 30 > budget:
            print(f"stopping before epoch {epoch}: {elapsed / 60:.1f} of {cfg.minutes} minutes "
                  f"spent", flush=True)
            break
        t0 = time.monotonic()
        model.train()
        for m in frozen:
            m.eval()  # frozen layers keep their ImageNet BatchNorm statistics
        order = rng.permutation(len(tr.photos))
        steps = len(order) // cfg.batch_size
        losses = []
        bar = tqdm(range(steps), desc=f"epoch {epoch}", leave=False, mininterval=5,
                   file=sys.stderr)
        for b in bar:
            # the budget ends mid-epoch if need be (the cosine has reached its floor by then),
            # leaving time to validate and save
            if step > 0 and time.monotonic() - start + val_seconds > budget:
                print(f"budget reached after {b} of {steps} steps of epoch {epoch}", flush=True)
                break
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            pairs = [augment(tr.images[i], tr.masks[i], rng, cfg.pad_value) for i in idx]
            x = torch.from_numpy(to_tensor(np.stack([p[0] for p in pairs]), spec)).contiguous(
                memory_format=torch.channels_last)
            y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
            f = lr_factor(step, time.monotonic() - start, budget, cfg.warmup_steps)
            for g in opt_.param_groups:
                g["lr"] = g["base"] * f
            loss = parser_loss(model(x), y, weights, cfg.dice_weight)
            opt_.zero_grad(set_to_none=True)
            loss.backward()
            opt_.step()
            step += 1
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", lr=f"{f * cfg.lr:.1e}")
        bar.close()
        t_val = time.monotonic()
        ious = validate(model, va, spec)
        miou = mean_garment_iou(ious)
        val_seconds = time.monotonic() - t_val
        epoch_seconds = time.monotonic() - t0
        record = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else None,
                  "val_garment_miou": miou,
                  "val_iou": ious, "seconds": round(epoch_seconds, 1),
                  "elapsed_min": round((time.monotonic() - start) / 60, 2)}
        history.append(record)
        ckpt = {"model": model.state_dict(), "parser_config": pcfg.to_dict(),
                "preprocess": spec.to_dict(), "train_config": asdict(cfg), "epoch": epoch,
                "val_garment_miou": miou, "command": command}
        save_atomic(ckpt, out / "last.pt")
        if miou > best:
            best = miou
            save_atomic(ckpt, out / "best.pt")
        shown = " ".join(f"{g}={v:.2f}" for g, v in ious.items() if v is not None)
        print(f"epoch {epoch}: loss {record['loss'] or 0:.3f}  val garment mIoU {miou:.3f} "
              f"(best {best:.3f})  [{shown}]  {epoch_seconds:.0f}s, "
              f"{record['elapsed_min']:.1f} min", flush=True)
        (out / "history.json").write_text(json.dumps(history, indent=1))
    summary = {"epochs": len(history), "minutes": round((time.monotonic() - start) / 60, 2),
               "best_val_garment_miou": best, "train_photos": len(tr.photos),
               "val_photos": len(va.photos), "command": command}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary), flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="a JSON recipe (configs/parser.json) as defaults")
    ap.add_argument("--data", default=DEFAULT_DATA, help="the CCP folder (default: %(default)s)")
    ap.add_argument("--out", default="runs/parser", help="run folder (default: %(default)s)")
    add_dataclass_args(ap, ParserTrainConfig)
    pre, _ = ap.parse_known_args(argv)
    if pre.config:
        ap.set_defaults(**load_recipe(pre.config, ParserTrainConfig, ap.error))
    ns = ap.parse_args(argv)
    cfg = from_args(ParserTrainConfig, ns)
    command = "python -m train.parser_train " + " ".join(sys.argv[1:] if argv is None else argv)
    train(cfg, ns.data, Path(ns.out), command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
