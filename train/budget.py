"""What a time budget buys a shop's fine-tune, said before any work (issue 34).

``train.adapt --minutes 12`` used to find out by running: it evaluated every held-apart photo
first and then had minus three minutes left to train. Here a handful of the shop's photos is
timed through each kind of work (decoding, an evaluation pass, the frozen-feature pass, a
training step, the early-stopping check), and :func:`make_plan` turns those per-photo costs
and the shop's counts into a plan: how many held-apart photos to evaluate, how many epochs,
what to hold back for the final evaluation and the export. Pure arithmetic, so the planning is
tested without a stopwatch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

EXPORT_S = 90.0  # the ONNX export in its own process and its parity check
SAFETY = 1.15  # a shared machine runs slower than the moment it was timed
EVAL_PASSES = 3  # the start, the frozen grey reference and the adapted model
LEAST_SAMPLE = 300  # fewer held-apart photos than this judge too noisily to export on
USEFUL_SAMPLE = 1500
USEFUL_EPOCHS = 3
MAX_EPOCHS = 30
MIN_ROUNDS = 3  # a budget short of three epochs trains three shorter rounds: three checks
LEAST_PHOTOS = 500  # the fewest training photos a round may hold and still be worth a check
EVAL_SHARE = 0.2  # at most this share of the time to spend goes to judging


class TimeBudgetSpent(RuntimeError):
    """The budget ran out part-way (the message says during what)."""


class BudgetTooShort(ValueError):
    """A budget that cannot evaluate and train even one epoch (the message says how much)."""


class Budget:
    """A deadline on an injectable clock, so a test can make time pass without sleeping."""

    def __init__(self, minutes: float, clock: Callable[[], float]):
        self.minutes, self.clock = minutes, clock
        self.start = clock()
        self.deadline = self.start + minutes * 60

    def left(self) -> float:
        return self.deadline - self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def check(self, doing: str) -> None:
        """Raise :class:`TimeBudgetSpent` naming what was about to start when none is left."""
        if self.left() <= 0:
            raise TimeBudgetSpent(f"the {self.minutes:g}-minute budget ran out before {doing}")


@dataclass(frozen=True)
class Costs:
    """Seconds measured on a handful of this shop's photos, on this machine, now."""

    decode: float  # one photo decoded to a square
    embed: float  # one photo through a model at its test size (one evaluation)
    frozen: float  # one photo through the frozen backbone at the training size
    step: float  # one training photo's share of an optimiser step
    check: float  # one holdout photo in the early-stopping check
    spent: float  # seconds already gone (loading, measuring)


@dataclass(frozen=True)
class Shop:
    """The counts a plan scales with."""

    photos: int
    apart: int  # held-apart photos (the final judgement draws its sample from them)
    train: int  # photos a gradient sees each epoch
    holdout: int  # training-side photos the early-stopping check embeds
    to_decode: int  # training-side photos not yet in the decoded-square cache
    to_feature: int  # training-side photos with no cached frozen features


@dataclass(frozen=True)
class Plan:
    sample: int  # held-apart photos judged (whole designs)
    epochs: int  # rounds, at most; the deadline and early stopping may end it sooner
    epoch_photos: int  # training photos per round (all of them: a true epoch)
    train_s: float  # seconds for training, early-stopping checks included
    reserve_s: float  # held back from training for the final judgement and the export
    least_min: float  # the shortest budget that trains at all
    useful_min: float  # a budget for a run worth having


def fixed_s(c: Costs, s: Shop) -> float:
    """What every run pays whatever its size: preparation of the training side and export."""
    return c.spent + (c.decode * s.to_decode + c.frozen * s.to_feature + EXPORT_S)


def judge_s(c: Costs, photos: int) -> float:
    """Decoding a sample of held-apart photos and the three evaluations on it."""
    return photos * (c.decode + EVAL_PASSES * c.embed)


def epoch_s(c: Costs, s: Shop, photos: int | None = None) -> float:
    """One round of ``photos`` training photos (default all: an epoch) and its check."""
    return c.step * (s.train if photos is None else photos) + c.check * s.holdout


def needed_minutes(c: Costs, s: Shop, sample: int, epochs: int,
                   photos: int | None = None) -> float:
    """Minutes for a run judging ``sample`` photos after ``epochs`` rounds of ``photos``
    (the start's own early-stopping figure included), with a shared machine's margin."""
    seconds = (fixed_s(c, s) + judge_s(c, sample) + c.check * s.holdout
               + epochs * epoch_s(c, s, photos))
    return SAFETY * seconds / 60


def estimate(c: Costs, s: Shop) -> tuple[float, float]:
    """(the least minutes that train one epoch, the minutes of a useful run), rounded up."""
    least = math.ceil(needed_minutes(c, s, min(s.apart, LEAST_SAMPLE), 1,
                                     min(s.train, LEAST_PHOTOS)) * 10) / 10
    useful = math.ceil(needed_minutes(c, s, min(s.apart, USEFUL_SAMPLE), USEFUL_EPOCHS))
    return least, max(useful, least)


def make_plan(c: Costs, s: Shop, minutes: float) -> Plan:
    """Split ``minutes`` between judging and training; raise :class:`BudgetTooShort` when it
    cannot train one epoch and judge the least sample."""
    least_sample = min(s.apart, LEAST_SAMPLE)
    least, useful = estimate(c, s)
    if minutes < least:
        raise BudgetTooShort(f"too short to judge and train at all on this shop "
                             f"({s.photos:,} photos): give at least {least:g} "
                             f"(about {useful:g} for a useful run)")
    usable = minutes * 60 / SAFETY - fixed_s(c, s) - c.check * s.holdout
    per_photo = c.decode + EVAL_PASSES * c.embed
    least_round = epoch_s(c, s, min(s.train, LEAST_PHOTOS))
    sample = s.apart
    if per_photo > 0:  # a share of the time, never so much that a least round won't fit
        sample = min(int(EVAL_SHARE * usable / per_photo),
                     int((usable - least_round) / per_photo))
    sample = max(least_sample, min(s.apart, sample))
    train_s = usable - judge_s(c, sample)
    epochs, photos = rounds(c, s, train_s)
    reserve_s = SAFETY * (sample * c.embed + EXPORT_S)
    return Plan(sample, epochs, photos, train_s, reserve_s, least, useful)


def rounds(c: Costs, s: Shop, train_s: float) -> tuple[int, int]:
    """(rounds, photos per round) for ``train_s`` seconds: whole epochs when three fit,
    else three shorter rounds (each a fresh draw of the training photos), else one."""
    check = c.check * s.holdout
    full = epoch_s(c, s)
    if full <= 0 or train_s >= MIN_ROUNDS * full:
        return max(1, min(MAX_EPOCHS, int(train_s // full) if full > 0 else MAX_EPOCHS)), s.train
    for n in (MIN_ROUNDS, 2, 1):
        photos = int((train_s / n - check) / c.step) if c.step > 0 else s.train
        if photos >= min(s.train, LEAST_PHOTOS):
            return n, min(s.train, photos)
    return 1, min(s.train, LEAST_PHOTOS)
