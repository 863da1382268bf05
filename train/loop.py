"""The training loop: reconstruction of augmented views + label-aware + contrastive terms.

``python -m train --help`` lists every setting; ``--config configs/NAME.json`` loads a named
recipe. A run folder gets ``best.pt`` (lowest holdout loss), ``last.pt`` (for ``--resume``),
``config.json``, ``metrics.json``, ``loss.png`` and ``reconstructions.png``. The val split is
never looked at here: early stopping and every recipe choice use a holdout carved out of train,
and the unseen kinds (about 20% of articleTypes, a stable hash) are left out altogether.

For the ImageNet family, what keeps ImageNet's knowledge: a frozen prefix (``--freeze-blocks``),
BatchNorm kept at ImageNet statistics (``--bn-eval``), a lower backbone learning rate without
weight decay, distillation of the pooled features toward the frozen network's features of the
clean photo (``--distill-weight``), an instance term that makes a camera-like view find its own
clean photo (``--instance-weight``), and the general half of the embedding (a fixed PCA).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fai_infer.image.preprocess import PreprocessSpec, normalise, scale_pixels
from train.budget import TimeBudgetSpent
from train.checkpoint import save_atomic
from train.config import opt
from train.data import (AugmentConfig, augment, decode_all, holdout_mask, load_catalogue,
                        proxy_mask, unseen_mask)
from train.efficientnet_lite import INPUT_MEAN, INPUT_STD, imagenet_backbone, load_imagenet
from train.ema import WeightAverage
from train.metrics import label_codes, retrieval_table
from train.shop_eval import group_queries, held_apart_groups, shop_per_query
from train.model import AutoEncoder, ModelConfig, backbone_input, luma
from train.objectives import (LabelHeads, instance_contrastive, joint_label_groups,
                              supervised_contrastive)


@dataclass
class TrainConfig:
    data: str = opt("../shared/data/myntra", "catalogue folder: images/<id>.jpg (+ a CSV)")
    csv: str | None = opt(None, "metadata CSV (default: styles.csv/metadata.csv in --data)")
    id_column: str = opt("id", "CSV column holding the image id (file stem)")
    out: str = opt("runs/fai", "run folder for checkpoints, metrics and plots")
    arch: str = opt("seed", "encoder family: seed, efficientnet-lite0, -lite1 or -lite2 "
                    "(ImageNet-initialised from the registry packages)")
    init: str | None = opt(None, "start from this checkpoint's weights (e.g. "
                           "models/fai-default.pt); label heads are made anew for --data")
    image_size: int = opt(64, "input size (multiple of 32); the seed network uses 224")
    width: float = opt(0.5, "channel multiplier of the seed network (1.0 = 64..512)")
    norm: bool = opt(True, "BatchNorm after each conv (the seed has none)")
    pooling: str = opt("gem", "embedding pooling: avg, gem or flatten (seed only)")
    embed_dim: int = opt(256, "embedding dimension")
    general_dim: int = opt(0, "ImageNet family: embedding dims that are a fixed PCA of the "
                           "frozen ImageNet features (the rest is the learned shop part)")
    general_weight: float = opt(0.5, "share of the embedding's squared norm for the general part")
    grey: bool = opt(False, "ImageNet family: the backbone sees the photo's luma only, so the "
                     "garment part of the embedding is blind to colour")
    colour: bool = opt(False, "ImageNet family: append the fixed colour histogram part "
                       "(train/colour.py) that queries weigh against the garment part")
    colour_weight: float = opt(0.25, "default share of the embedding's squared norm for the "
                               "colour part (train.choose picks it; queries may change it)")
    head: str = opt("split", "ImageNet family: split ([fixed PCA | shop part]) or projection "
                    "(one learned map; train.design_head makes the shipped one)")
    colour_names: str = opt("", "ImageNet family, --colour: the learned colour part's names, "
                            "'|'-separated (train.colour_train); empty: the fixed histogram")
    freeze_blocks: int = opt(0, "ImageNet family: keep the stem and the first N-1 blocks at "
                             "their ImageNet values")
    bn_eval: bool = opt(False, "ImageNet family: keep the backbone's BatchNorm statistics and "
                        "affine at their ImageNet values")
    backbone_lr_scale: float = opt(1.0, "backbone learning rate = lr x this (no weight decay "
                                   "on the backbone when < 1)")
    distill_weight: float = opt(0.0, "weight of the cosine distillation of the pooled features "
                                "toward the frozen ImageNet features of the clean photo")
    instance_weight: float = opt(0.0, "weight of the instance term: a camera-like view must "
                                 "find its own clean photo among the batch's (NT-Xent)")
    ema_decay: float = opt(0.0, "keep an exponential moving average of the weights with this "
                           "decay (e.g. 0.998) and score/save it instead of the live weights "
                           "(0 = off)")
    unseen_fraction: float = opt(0.2, "share of --unseen-column values never trained on "
                                 "(stable hash; train.evaluate --unseen measures them)")
    unseen_column: str = opt("articleType", "the column whose values are held out as unseen")
    proxy_fraction: float = opt(0.0, "share of the other --unseen-column values also kept out "
                                "of training: their train photos stand in for unseen kinds in "
                                "train.choose (0 = off)")
    epochs: int = opt(30, "maximum epochs (30 at 64 px: ~36 min on 2 CPU cores)")
    patience: int = opt(6, "early stopping: epochs without holdout improvement")
    batch_size: int = opt(64, "batch size")
    lr: float = opt(2e-3, "AdamW peak learning rate (cosine decay after warm-up)")
    weight_decay: float = opt(0.05, "AdamW weight decay")
    recon_weight: float = opt(1.0, "weight of the reconstruction (MSE) term")
    augment: bool = opt(True, "reconstruct the clean photo from an augmented view")
    clutter_prob: float = opt(0.6, "augmentation: share of views put on a cluttered background")
    colour_cast: float = opt(0.1, "augmentation: max warm/cold white-balance cast (0.1 = 10%%)")
    blur_prob: float = opt(0.5, "augmentation: share of views softened (focus, motion)")
    label_columns: str = opt("articleType,baseColour", "CSV columns for the label term ('' = off)")
    label_weight: float = opt(1.0, "weight of the label (cosine classifier) term")
    contrastive_weight: float = opt(0.5, "weight of the supervised contrastive term")
    contrastive_columns: str = opt("", "label columns whose joint value makes SupCon positives "
                                   "('' = the first label column)")
    eval_columns: str = opt("articleType,baseColour", "CSV columns the holdout retrieval "
                            "figures count matches on (reported, not trained on)")
    group_column: str = opt("", "CSV column naming one design in several colours (e.g. "
                            "product_code): its photos are each other's positives in the "
                            "contrastive term and batches pair them up")
    holdout_groups: float = opt(0.0, "the share of groups (--group-column; else of photos), "
                                "by stable hash, kept apart as val and never trained on "
                                "(train.adapt judges there)")
    epoch_photos: int = opt(0, "training photos per epoch, a fresh shuffled draw each time, so a "
                            "short budget still gets several checks (0 = all)")
    views: int = opt(1, "augmented views per photo (2 = SimCLR-style pairs, no labels needed)")
    holdout: float = opt(0.1, "fraction of train held out for early stopping (whole groups "
                         "when --group-column names them, so a design's colourways never "
                         "straddle it)")
    stop_on: str = opt("loss", "early stopping and best.pt on: loss (the holdout's total "
                       "loss) or design (same design Hit@10 among the holdout's photos; needs "
                       "--group-column; the start is the bar to beat)")
    workers: int = opt(2, "decode threads")
    threads: int = opt(0, "torch threads (0 = one per core; on a machine others share, one "
                       "thread can be several times faster: train.adapt measures both)")
    cache_dir: str = opt(".cache", "where decoded squares are cached between runs")
    seed: int = opt(0, "random seed")
    device: str = opt("cpu", "cpu or cuda")
    resume: str | None = opt(None, "continue from RUN/last.pt")
    max_minutes: float = opt(0.0, "stop after this many minutes (0 = no limit)")
    limit: int = opt(0, "use only the first N photos (quick experiments; 0 = all)")

    def model_config(self) -> ModelConfig:
        pooling = self.pooling if self.arch == "seed" or self.pooling != "flatten" else "avg"
        return ModelConfig(image_size=self.image_size, width=self.width, norm=self.norm,
                           pooling=pooling, embed_dim=self.embed_dim, arch=self.arch,
                           general_dim=self.general_dim if self.arch != "seed" else 0,
                           general_weight=self.general_weight, grey=self.grey,
                           colour=self.colour, colour_weight=self.colour_weight,
                           head=self.head, colour_names=tuple(
                               n for n in self.colour_names.split("|") if n))

    def preprocess_spec(self) -> PreprocessSpec:
        if self.arch == "seed":
            return PreprocessSpec(size=self.image_size)
        return PreprocessSpec(size=self.image_size, mean=INPUT_MEAN, std=INPUT_STD)

    def label_list(self) -> list[str]:
        return [c.strip() for c in self.label_columns.split(",") if c.strip()]

    def contrastive_list(self) -> list[str]:
        chosen = [c.strip() for c in self.contrastive_columns.split(",") if c.strip()]
        return chosen or self.label_list()[:1]


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def encode_labels(rows: list[dict[str, str]], columns: list[str]
                  ) -> tuple[dict[str, list[str]], dict[str, np.ndarray]]:
    """Label columns -> vocabularies and int targets (-1 where a row has no value)."""
    vocab, targets = {}, {}
    for col in columns:
        values = [r.get(col, "") or "" for r in rows]
        vocab[col] = sorted({v for v in values if v})
        index = {v: i for i, v in enumerate(vocab[col])}
        targets[col] = np.array([index.get(v, -1) for v in values], dtype=np.int64)
    return vocab, targets


def paired_order(order: np.ndarray, groups: np.ndarray, gen: torch.Generator) -> np.ndarray:
    """A shuffled order in which each photo is followed by another of its group when one is
    left, so every batch holds positive pairs for the contrastive term (random batches of a
    shop with two or three colours per design would hold almost none). Each photo once."""
    members: dict[int, list[int]] = {}
    for i in order:
        members.setdefault(int(groups[i]), []).append(int(i))
    used: set[int] = set()
    out: list[int] = []
    for i in order:
        i = int(i)
        if i in used:
            continue
        used.add(i)
        out.append(i)
        partners = [j for j in members[int(groups[i])] if j not in used]
        if partners:
            j = partners[int(torch.randint(len(partners), (1,), generator=gen))]
            used.add(j)
            out.append(j)
    return np.array(out, dtype=np.int64)


def lr_lambda(total_steps: int, warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


class TooFewPhotos(ValueError):
    """Fewer training photos than one batch (the message says what to change)."""


def frozen_store(cfg: TrainConfig):
    """The on-disk store of the frozen ImageNet features this recipe's teacher uses (None
    without --cache-dir): keyed by the weights file's sha and the pixels fed to it."""
    from train.efficientnet_lite import imagenet_weights_path
    from train.feature_store import FeatureStore, file_sha

    if not cfg.cache_dir or cfg.arch == "seed":
        return None
    key = FeatureStore.key_for(file_sha(imagenet_weights_path(cfg.arch)), arch=cfg.arch,
                               spec=cfg.preprocess_spec().to_dict(), grey=cfg.grey)
    return FeatureStore(cfg.cache_dir, key)


STOP_FIGURE = "holdout_same design Hit@10"  # what --stop-on design watches


class Trainer:
    def __init__(self, cfg: TrainConfig, clock: Callable[[], float] = time.time,
                 deadline: float | None = None):
        """``clock`` and ``deadline`` (on that clock) let a caller with a budget of its own
        (train.adapt) hand its deadline down; otherwise --max-minutes counts from here."""
        self.clock = clock
        self.started = clock()  # --max-minutes counts from here: loading and the frozen
        if cfg.init:             # features pass are part of the run (issue 23)
            cfg = self._shape_from_init(cfg)
        self.cfg = cfg
        if cfg.stop_on not in ("loss", "design"):
            raise SystemExit(f"--stop-on {cfg.stop_on}: choose loss or design")
        self.deadline = (self.started + cfg.max_minutes * 60 if cfg.max_minutes > 0
                         else float("inf"))
        if deadline is not None:
            self.deadline = min(self.deadline, deadline)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.gen = seed_everything(cfg.seed)
        torch.set_num_threads(cfg.threads or max(1, os.cpu_count() or 1))
        self.device = torch.device(cfg.device)
        self.spec = cfg.preprocess_spec()
        self._load_data()
        self.model = AutoEncoder(cfg.model_config())
        if cfg.init:
            self._load_init()
        self.teacher: torch.Tensor | None = None
        if cfg.arch != "seed":
            self._prepare_imagenet()
        self.model = self.model.to(self.device).to(memory_format=torch.channels_last)
        self.augment_cfg = AugmentConfig(clutter_prob=cfg.clutter_prob,
                                         colour_cast=cfg.colour_cast, blur_prob=cfg.blur_prob)
        self.label_sizes = {k: len(v) for k, v in self.vocab.items()}
        self.contrastive_columns = cfg.contrastive_list()
        head = self.model.head
        self.labelled_dim = getattr(head, "shop_dim", cfg.embed_dim)
        self.heads = LabelHeads(self.labelled_dim, self.label_sizes) if self.labelled_dim else \
            LabelHeads(cfg.embed_dim, {})
        self.heads.to(self.device)
        self.ema = WeightAverage(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.opt = torch.optim.AdamW(self._param_groups(), lr=cfg.lr,
                                     weight_decay=cfg.weight_decay)
        per_epoch = min(len(self.train_idx), cfg.epoch_photos or len(self.train_idx))
        steps_per_epoch = max(1, per_epoch // cfg.batch_size)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lr_lambda(cfg.epochs * steps_per_epoch, max(1, steps_per_epoch // 2)))
        self.epoch = 0
        self.best = float("inf")
        self.bad_epochs = 0
        self.history: list[dict] = []
        if cfg.resume:
            self._resume(cfg.resume)

    def _prepare_imagenet(self) -> None:
        """ImageNet weights in (or --init's), the frozen teacher's features of every clean
        photo computed once, the general part's PCA fitted on them, frozen parts marked."""
        cfg = self.cfg
        if not cfg.init:
            load_imagenet(self.model.encoder)
        feats = self._frozen_features()
        self.teacher = F.normalize(feats, dim=1)
        if getattr(self.model.head, "general_dim", 0) and not cfg.init:
            self.model.head.set_general_basis(feats[torch.from_numpy(self.train_idx)])
        frozen = self.model.encoder.frozen_prefix(cfg.freeze_blocks)
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)
        if cfg.bn_eval:
            for m in self.model.encoder.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    for p in m.parameters():
                        p.requires_grad_(False)

    def _frozen_features(self) -> torch.Tensor:
        """Pooled features of the frozen ImageNet network for the photos training uses (train
        and holdout; other rows stay zero, never read), kept per photo file in --cache-dir
        (train/feature_store.py) and saved chunk by chunk: a sweep of recipes pays for them
        once, and a pass the deadline cuts short is resumed, not redone."""
        cfg = self.cfg
        used = np.union1d(self.train_idx, self.holdout_idx)
        teacher = imagenet_backbone(cfg.arch)

        def compute(part: np.ndarray) -> np.ndarray:
            return self._teacher_features(teacher, used[part])

        def before_chunk(done: int, total: int) -> None:
            if self.clock() > self.deadline:
                raise TimeBudgetSpent(
                    f"the time budget ran out while computing the frozen ImageNet features "
                    f"({done} of {total} photos; the ones done are kept in --cache-dir "
                    f"{cfg.cache_dir} for the next run)")

        paths = [self.catalogue.paths[i] for i in used]
        store = frozen_store(cfg)
        if store is not None:
            feats = store.features(paths, compute, before_chunk)
        else:
            parts = []
            for s in range(0, len(used), 128):
                before_chunk(s, len(used))
                parts.append(compute(np.arange(s, min(s + 128, len(used)))))
            feats = np.concatenate(parts)
        out = torch.zeros(len(self.images), feats.shape[1])
        out[torch.from_numpy(used)] = torch.from_numpy(feats)
        return out

    def _param_groups(self) -> list[dict]:
        """The backbone learns slower, and without weight decay pulling it away from ImageNet."""
        cfg = self.cfg
        backbone = {id(p) for p in self.model.encoder.parameters()}
        slow = cfg.arch != "seed" and cfg.backbone_lr_scale != 1.0
        groups = [{"params": [p for p in self.model.parameters() if id(p) not in backbone]
                   + list(self.heads.parameters())},
                  {"params": [p for p in self.model.encoder.parameters() if p.requires_grad],
                   "lr": cfg.lr * (cfg.backbone_lr_scale if slow else 1.0),
                   "weight_decay": 0.0 if slow else cfg.weight_decay}]
        return [g for g in groups if g["params"]]

    def _model_input(self, x: torch.Tensor) -> torch.Tensor:
        return normalise(x, self.spec).contiguous(memory_format=torch.channels_last)

    def _set_train_mode(self) -> None:
        self.model.train()
        self.heads.train()
        if self.cfg.arch != "seed" and self.cfg.bn_eval:
            for m in self.model.encoder.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()

    @staticmethod
    def _shape_from_init(cfg: TrainConfig) -> TrainConfig:
        """--init: the network's shape (family, size, dims) is the checkpoint's."""
        path = Path(cfg.init)
        if not path.is_file():
            raise SystemExit(f"--init {cfg.init}: no such checkpoint file")
        try:
            mc = torch.load(path, map_location="cpu", weights_only=True)["model_config"]
        except Exception as exc:  # torch raises many types for a file that is not a checkpoint
            raise SystemExit(f"--init {cfg.init}: not a training checkpoint ({exc})") from None
        shape = {k: mc[k] for k in ("arch", "image_size", "width", "norm", "pooling",
                                    "embed_dim", "general_dim", "general_weight", "grey",
                                    "colour", "colour_weight", "head") if k in mc}
        shape["colour_names"] = "|".join(mc.get("colour_names") or ())
        shape.setdefault("arch", "seed")
        return dataclasses.replace(cfg, **shape)

    def _load_init(self) -> None:
        """--init: every weight whose name and shape match; label heads stay new."""
        ckpt = torch.load(self.cfg.init, map_location="cpu", weights_only=True)
        mine = self.model.state_dict()
        theirs = {k: v for k, v in ckpt["model"].items()
                  if k in mine and mine[k].shape == v.shape}
        if not theirs:
            raise SystemExit(f"--init {self.cfg.init}: no weights fit --arch {self.cfg.arch}; "
                             f"it was trained with {ckpt.get('model_config', {})}")
        self.model.load_state_dict(theirs, strict=False)
        print(f"--init {self.cfg.init}: {len(theirs)}/{len(mine)} tensors loaded")

    def _load_data(self) -> None:
        cfg = self.cfg
        cat = load_catalogue(cfg.data, cfg.csv, cfg.id_column)
        if cfg.limit:
            cat = cat.subset(list(range(min(cfg.limit, len(cat)))))
        if cfg.group_column and (not cat.rows or cfg.group_column not in cat.rows[0]):
            have = ", ".join(cat.rows[0]) if cat.rows else "none"
            raise SystemExit(f"--group-column {cfg.group_column}: not a column of the "
                             f"metadata (its columns: {have})")
        apart_count = 0
        if cfg.holdout_groups > 0:  # never trained on: not even decoded here
            groups = cat.column(cfg.group_column) if cfg.group_column else list(cat.ids)
            apart = held_apart_groups(groups, cfg.holdout_groups)
            apart_count = int(apart.sum())
            cat = cat.subset(list(np.flatnonzero(~apart)))
        images, errors = decode_all(cat.paths, self.spec, cfg.workers, cfg.cache_dir)
        bad = [e for e in errors if e]
        if bad:
            print(f"skipping {len(bad)} unreadable photos, e.g. {bad[0]}")
        good = [i for i, e in enumerate(errors) if not e]
        cat, images = cat.subset(good), images[good]
        self.catalogue = cat
        self.images = torch.from_numpy(images)
        columns = [c for c in self.cfg.label_list() if cat.rows and c in cat.rows[0]]
        absent = [c for c in self.cfg.label_list() if c not in columns]
        if absent:
            have = ", ".join(cat.rows[0]) if cat.rows else "none"
            using = "without labels" if not columns else "with " + ", ".join(columns)
            print(f"warning: label column(s) {', '.join(absent)} not in the metadata (its "
                  f"columns: {have}); training {using}; name label columns with "
                  f"--label-columns", file=sys.stderr)
        self.vocab, targets = encode_labels(cat.rows, columns)
        self.targets = {k: torch.from_numpy(v) for k, v in targets.items()}
        is_unseen, unseen = unseen_mask(cat.column(cfg.unseen_column), cfg.unseen_fraction)
        is_proxy, proxy = proxy_mask(cat.column(cfg.unseen_column), cfg.proxy_fraction,
                                     cfg.unseen_fraction)
        self.group_ids: torch.Tensor | None = None
        splits = cat.splits
        self.groups = list(cat.ids)  # without a group column, every photo is its own group
        if cfg.group_column:
            self.groups = cat.column(cfg.group_column)
            self.group_ids = torch.from_numpy(label_codes(self.groups))
        if cfg.holdout_groups > 0:  # what is left is all train; the apart part is val
            splits = ["train"] * len(cat)
        is_train = np.array([s == "train" for s in splits], dtype=bool) & ~is_unseen & ~is_proxy
        if cfg.group_column:  # whole designs: a colourway in training would give it away
            held = held_apart_groups(self.groups, cfg.holdout, salt="train-holdout") & is_train
        else:
            held = holdout_mask(cat.ids, cfg.holdout) & is_train
        self.train_idx = np.flatnonzero(is_train & ~held)
        self.holdout_idx = np.flatnonzero(held)
        if len(self.holdout_idx) == 0:  # tiny catalogues: hold out one batch at least
            self.holdout_idx = self.train_idx[-max(1, len(self.train_idx) // 10):]
            self.train_idx = self.train_idx[: len(self.train_idx) - len(self.holdout_idx)]
        val_count = int(((np.array(splits) != 'train') & ~is_unseen).sum()) + apart_count
        print(f"{len(cat) + apart_count} photos: {len(self.train_idx)} train, {len(self.holdout_idx)} holdout, "
              f"{val_count} val and {int(is_unseen.sum())} of "
              f"{len(unseen)} unseen kinds (untouched); labels: {columns or 'none'}"
              + (f"; {int(is_proxy.sum())} photos of {len(proxy)} proxy kinds kept out for "
                 "train.choose" if proxy else ""))
        if len(self.train_idx) < cfg.batch_size:  # no whole batch: no step would ever run
            raise TooFewPhotos(f"{len(self.train_idx)} training photos (of {len(cat)}) is fewer "
                               f"than --batch-size {cfg.batch_size}, so no step would run and "
                               f"best.pt would be the untrained weights; lower --batch-size "
                               f"or add photos")

    # -- one step -------------------------------------------------------------------------------
    def _losses(self, idx: np.ndarray, train: bool) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        clean = scale_pixels(self.images[idx], self.spec)
        views = max(1, cfg.views) if train else 1
        if train and cfg.augment:
            x = torch.cat([augment(clean, self.augment_cfg, self.gen) for _ in range(views)])
        else:
            x = clean.repeat(views, 1, 1, 1)
        # The instance term pairs each augmented view with its own clean photo.
        paired = cfg.instance_weight > 0 and train and cfg.augment
        if paired:
            x = torch.cat([x, clean])
        copies = views + int(paired)
        target = clean.repeat(copies, 1, 1, 1).to(self.device)
        if cfg.grey:  # a colour-blind backbone can only be asked to rebuild the luma
            target = luma(target)
        out_ = self.model.parts(self._model_input(x.to(self.device)))
        emb, shop = out_["embedding"], out_.get("shop")
        zero = emb.new_zeros(())
        out = {"recon": F.mse_loss(out_["recon"], target)}
        t = {k: v[idx].repeat(copies).to(self.device) for k, v in self.targets.items()}
        out["label"] = self.heads.loss(shop, t) if t and shop is not None else zero
        if train and cfg.contrastive_weight > 0 and shop is not None:
            if self.group_ids is not None:  # the same design, any colour
                group = self.group_ids[idx].repeat(copies).to(self.device)
            elif t:
                group = joint_label_groups(t, self.contrastive_columns, self.label_sizes)
            else:
                group = torch.arange(len(idx), device=self.device).repeat(copies)
            out["contrastive"] = supervised_contrastive(shop, group)
        else:
            out["contrastive"] = zero
        out["instance"] = instance_contrastive(emb[: len(idx) * views], emb[-len(idx):]) \
            if paired else zero
        if self.teacher is not None and cfg.distill_weight > 0:
            goal = self.teacher[idx].repeat(copies, 1).to(self.device)
            out["distill"] = (1 - F.cosine_similarity(out_["pooled"], goal, dim=1)).mean()
        else:
            out["distill"] = zero
        out["total"] = (cfg.recon_weight * out["recon"] + cfg.label_weight * out["label"]
                        + cfg.contrastive_weight * out["contrastive"]
                        + cfg.instance_weight * out["instance"]
                        + cfg.distill_weight * out["distill"])
        return out

    def train_epoch(self, deadline: float) -> dict[str, float]:
        cfg = self.cfg
        self._set_train_mode()
        order = self.train_idx[torch.randperm(len(self.train_idx), generator=self.gen).numpy()]
        if self.group_ids is not None:
            order = paired_order(order, self.group_ids.numpy(), self.gen)
        if cfg.epoch_photos:
            order = order[: max(cfg.epoch_photos, cfg.batch_size)]
        batches = [order[i : i + cfg.batch_size]
                   for i in range(0, len(order) - cfg.batch_size + 1, cfg.batch_size)]
        sums: dict[str, float] = {}
        bar = tqdm(batches, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", leave=False)
        for n, idx in enumerate(bar, 1):
            losses = self._losses(idx, train=True)
            self.opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            self.opt.step()
            self.sched.step()
            if self.ema is not None:
                self.ema.update(self.model)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            bar.set_postfix(loss=f"{sums['total'] / n:.4f}", mse=f"{sums['recon'] / n:.4f}")
            if self.clock() > deadline:
                break
        return {f"train_{k}": v / max(1, n) for k, v in sums.items()}

    def evaluate_holdout(self) -> dict[str, float]:
        """Holdout losses and retrieval figures, of the averaged weights when --ema-decay."""
        if self.ema is None:
            return self._evaluate_holdout()
        with self.ema.swapped_in(self.model):
            return self._evaluate_holdout()

    @torch.no_grad()
    def _evaluate_holdout(self) -> dict[str, float]:
        self.model.eval()
        self.heads.eval()
        sums: dict[str, float] = {}
        embs = []
        chunks = np.array_split(self.holdout_idx, max(1, len(self.holdout_idx) // 128))
        for idx in chunks:
            losses = self._losses(idx, train=False)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(idx)
            x = scale_pixels(self.images[idx], self.spec).to(self.device)
            embs.append(self.model.embed(self._model_input(x)).cpu())
        n = len(self.holdout_idx)
        res = {f"holdout_{k}": v / n for k, v in sums.items()}
        rows = [self.catalogue.rows[i] for i in self.holdout_idx]
        columns = [c.strip() for c in self.cfg.eval_columns.split(",")
                   if c.strip() and rows and c.strip() in rows[0]] or list(self.vocab)
        labels = {c: label_codes([r.get(c, "") for r in rows]) for c in columns}
        if len(columns) > 1:
            labels["+".join(columns)] = label_codes(*[[r.get(c, "") for r in rows]
                                                      for c in columns])
        if labels and n >= 2:  # neighbours need at least two holdout photos
            table = retrieval_table(torch.cat(embs).numpy(), np.arange(n), labels)
            res.update({f"holdout_{k}": v for k, v in table.items()})
        if self.group_ids is not None:
            groups = [self.groups[i] for i in self.holdout_idx]
            if len(group_queries(label_codes(groups))):
                per = shop_per_query(torch.cat(embs).numpy(), groups, [""] * n)
                res[STOP_FIGURE] = float(per["same design Hit@10"].mean())
        return res

    @torch.no_grad()
    def _teacher_features(self, teacher: torch.nn.Module, rows: np.ndarray) -> np.ndarray:
        x = self._model_input(scale_pixels(self.images[torch.from_numpy(rows)], self.spec))
        return teacher(backbone_input(x, self.model.cfg)).mean(dim=(2, 3)).numpy()

    def time_frozen(self, photos: int) -> float:
        """Seconds of the frozen ImageNet pass on ``photos`` training photos (after a
        warm-up), the per-photo cost of the teacher's features."""
        teacher = imagenet_backbone(self.cfg.arch)
        rows = self.train_idx[:photos]
        self._teacher_features(teacher, rows[:2])
        t0 = self.clock()
        self._teacher_features(teacher, rows)
        return self.clock() - t0

    def time_step(self, photos: int) -> float:
        """Seconds of one training step on ``photos`` training photos (after a warm-up
        step), for a caller that must say beforehand what a budget buys. The weights move:
        call it on a throwaway trainer."""
        self._set_train_mode()
        idx = self.train_idx[:photos]
        for _ in range(2):
            t0 = self.clock()
            losses = self._losses(idx, train=True)
            self.opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            self.opt.step()
        return self.clock() - t0

    # -- checkpoints ------------------------------------------------------------------------------
    def _state(self, averaged: bool = True) -> dict:
        """What a checkpoint holds; ``model`` is the weight average when there is one."""
        weights = self.model.state_dict()
        if averaged and self.ema is not None:
            weights = weights | self.ema.shadow
        return {
            "model": {k: v.detach().clone() for k, v in weights.items()},
            "model_config": self.cfg.model_config().to_dict(),
            "preprocess": self.spec.to_dict(),
            "train_config": asdict(self.cfg),
            "label_vocab": self.vocab,
            "heads": self.heads.state_dict(),
            "epoch": self.epoch,
            "history": self.history,
        }

    def _resume(self, path: str) -> None:
        ckpt = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(ckpt["model"])
        self.heads.load_state_dict(ckpt["heads"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        self.gen.set_state(ckpt["generator"])
        self.epoch, self.best, self.bad_epochs = ckpt["epoch"], ckpt["best"], ckpt["bad_epochs"]
        self.history = ckpt["history"]
        if self.ema is not None and "ema" in ckpt:
            self.ema.load_state_dict(ckpt["ema"])
        print(f"resumed from {path} at epoch {self.epoch}")

    def _criterion(self, row: dict) -> float:
        """Lower is better: the holdout loss, or minus the same-design figure with ties (a
        small holdout saturates it) broken by the holdout loss, weighted below one query's
        step of the figure."""
        if self.cfg.stop_on == "design":
            return -row[STOP_FIGURE] + 1e-5 * min(row["holdout_total"], 10.0)
        return row["holdout_total"]

    def _start_bar(self) -> None:
        """--stop-on design: the starting weights' figure is the bar an epoch must clear,
        so best.pt exists only if training found a design better than it started."""
        if self.cfg.stop_on != "design" or self.history or self.cfg.resume:
            return
        row = self.evaluate_holdout()
        if STOP_FIGURE not in row:
            print("warning: --stop-on design: no design has two photos in the holdout; "
                  "stopping on the holdout loss", file=sys.stderr)
            self.cfg = dataclasses.replace(self.cfg, stop_on="loss")
            return
        self.best = self._criterion(row)
        print(f"epoch 0 (the start): {STOP_FIGURE[8:]} {row[STOP_FIGURE]:.4f} on "
              f"{len(self.holdout_idx)} holdout photos", flush=True)

    def fit(self) -> dict:
        cfg = self.cfg
        (self.out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
        start, deadline = self.started, self.deadline  # set up time counts too
        self._start_bar()
        cfg = self.cfg
        while self.epoch < cfg.epochs and self.bad_epochs < cfg.patience:
            if self.clock() > deadline:
                print("stopping: the time budget is spent")
                break
            t0 = self.clock()
            row = self.train_epoch(deadline)
            row.update(self.evaluate_holdout())
            self.epoch += 1
            row.update(epoch=self.epoch, seconds=self.clock() - t0, lr=self.sched.get_last_lr()[0])
            self.history.append(row)
            improved = self._criterion(row) < self.best
            if improved:
                self.best, self.bad_epochs = self._criterion(row), 0
                save_atomic(self._state(), self.out / "best.pt")
            else:
                self.bad_epochs += 1
            state = self._state(averaged=False) | {"optimizer": self.opt.state_dict(),
                                     "scheduler": self.sched.state_dict(),
                                     "generator": self.gen.get_state(), "best": self.best,
                                     "bad_epochs": self.bad_epochs}
            if self.ema is not None:
                state["ema"] = self.ema.state_dict()
            save_atomic(state, self.out / "last.pt")
            shown = {k: round(v, 4) for k, v in row.items() if k.startswith(("holdout_P@10",
                     "holdout_recon", "holdout_total", "train_total", STOP_FIGURE))}
            print(f"epoch {self.epoch}: {row['seconds']:.0f}s {shown}{' *' if improved else ''}",
                  flush=True)
            self._write_reports(self.clock() - start)
            if self.clock() > deadline:
                print("stopping: the time budget is spent")
                break
        return self._write_reports(self.clock() - start)

    def _write_reports(self, elapsed: float) -> dict:
        from train.plots import plot_history, plot_reconstructions

        best = min(self.history, key=self._criterion) if self.history else {}
        if self.cfg.stop_on == "design" and best and self._criterion(best) > self.best:
            best = {}  # no epoch beat the start
        metrics = {"best_epoch": best.get("epoch"), "best": best, "epochs_run": self.epoch,
                   "train_seconds": elapsed, "history": self.history,
                   "photos": {"train": len(self.train_idx), "holdout": len(self.holdout_idx)}}
        (self.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        plot_history(self.history, self.out / "loss.png")
        sample = scale_pixels(self.images[self.holdout_idx[:8]], self.spec)
        self.model.eval()
        with torch.no_grad():
            recon, _ = self.model(self._model_input(sample.to(self.device)))
        plot_reconstructions(sample.numpy(), recon.cpu().numpy(), self.out / "reconstructions.png")
        return metrics
