"""A catalogue's own whitening of the garment part: fit, apply, undo, serialise (numpy only).

Why: a model's garment part spends most of its variance on a few directions every photo of a
shop shares (studio light, the packshot's pose, the shop's typical garments), so cosine
similarity is dominated by them and a design's other colourway ranks below look-alikes. A
PCA-whitening fitted on the catalogue's OWN vectors (no labels, at index time) flattens those
directions: centred, rotated onto the principal axes, each axis scaled by
``(lambda + s * mean(lambda)) ** -0.5`` and re-L2-normalised. The shrinkage ``s`` keeps the
weakest axes (mostly noise) from being blown up, and keeps the map invertible, which is how a
compaction refits it from the stored vectors alone.

The garment part keeps its place and its norm in the stored vector, so the colour part and
the per-query colour weight (``fai_infer/model/parts.py``) are untouched. The defaults were
chosen by ``python -m train.whitening_eval`` (see :data:`DEFAULT_SHRINKAGE`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_SHRINKAGE = 4.0
"""Shrinkage ``s`` of the runtime's whitening, chosen by ``python -m train.whitening_eval`` on
hm-dev's held-apart product codes (same design Hit@10 at colour 0, type P@10) together with
Myntra val (P@1, P@10, type+colour P@10), never on one split alone: the largest worst-shop mean
gain among invertible maps (every dimension kept, so a compaction can undo and refit it).
Smaller ``s`` finds more of a design's colourways on hm-dev but costs Myntra's type+colour
at the default colour weight (docs/whitening-eval.json holds the whole sweep)."""

MIN_ITEMS = 64
"""Fewer items than this: no whitening (a covariance of a handful of photos is noise)."""

SHRINK_BELOW = 2.0
"""With fewer than SHRINK_BELOW x dims items the covariance is rank-poor: the shrinkage grows
in proportion (``s * SHRINK_BELOW * dims / n``), pulling the map towards plain centring."""

ARRAYS = ("whitening_mean.npy", "whitening_proj.npy")


def effective_shrinkage(n: int, dims: int, shrinkage: float) -> float:
    """The shrinkage a fit on ``n`` items of ``dims`` dimensions uses (see SHRINK_BELOW)."""
    return shrinkage * max(1.0, SHRINK_BELOW * dims / max(n, 1))


MAX_CONDITION = 1e6
"""Largest ratio of a stored projection's strongest to weakest scale (a fit's is far below)."""
MAX_SCALE = 1e4
"""Largest scale a stored projection may apply (eigenvalues of unit vectors' parts, shrunk)."""

@dataclass(frozen=True)
class Whitening:
    """``g -> normalise((g - mean) @ proj)`` on the garment span ``[start, stop)`` of stored
    vectors (the part's norm kept); ``proj`` is (dims, dims) or, truncated, (dims, d)."""

    start: int
    stop: int
    mean: np.ndarray
    proj: np.ndarray
    shrinkage: float
    fitted_on: int

    @property
    def dims(self) -> int:
        return self.stop - self.start

    @property
    def kept(self) -> int:
        return int(self.proj.shape[1])

    @property
    def invertible(self) -> bool:
        return self.kept == self.dims

    def describe(self) -> dict:
        """What ``fai info`` and a manifest say about it."""
        return {"span": [self.start, self.stop], "kept": self.kept,
                "shrinkage": round(self.shrinkage, 6), "fitted_on": self.fitted_on}

    # -- the map ---------------------------------------------------------------------------
    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """(n, D) stored-form vectors -> the same with the garment span whitened (norm kept;
        a truncated map pads the span with zeros so the dimension never changes)."""
        v = np.array(vectors, dtype=np.float32, copy=True, ndmin=2)
        part = v[:, self.start:self.stop].astype(np.float64)
        norm = np.linalg.norm(part, axis=1, keepdims=True)
        unit = part / np.maximum(norm, 1e-12)
        w = (unit - self.mean) @ self.proj
        w /= np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
        out = np.zeros_like(part)
        out[:, :self.kept] = w * norm
        v[:, self.start:self.stop] = out
        return v

    def undo(self, vectors: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`apply` (full-width maps only): ``g = mean + t * a`` with
        ``a = w @ proj^-1`` and ``t > 0`` the root that makes ``g`` unit length again."""
        if not self.invertible:
            raise ValueError("a truncated whitening cannot be undone")
        v = np.array(vectors, dtype=np.float32, copy=True, ndmin=2)
        part = v[:, self.start:self.stop].astype(np.float64)
        norm = np.linalg.norm(part, axis=1, keepdims=True)
        a = np.linalg.solve(self.proj.T, (part / np.maximum(norm, 1e-12)).T).T
        aa = (a * a).sum(axis=1)
        ma = a @ self.mean
        mm = float(self.mean @ self.mean)
        t = (-ma + np.sqrt(np.maximum(ma * ma - aa * (mm - 1.0), 0.0))) / np.maximum(aa, 1e-30)
        g = self.mean + t[:, None] * a
        g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        v[:, self.start:self.stop] = g * norm
        return v

    # -- serialising -----------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """File name -> array: what a generation stores (beside :meth:`describe`)."""
        return dict(zip(ARRAYS, (self.mean.astype(np.float64), self.proj.astype(np.float64))))

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict, dim: int) -> "Whitening":
        """Back from :meth:`arrays` and :meth:`describe`, checked against the model's ``dim``;
        one ValueError naming what is wrong."""
        try:
            start, stop = (int(x) for x in meta["span"])
            shrinkage, fitted_on = float(meta["shrinkage"]), int(meta["fitted_on"])
        except (KeyError, TypeError, ValueError):
            raise ValueError("whitening description is unusable") from None
        mean = np.asarray(arrays[ARRAYS[0]], dtype=np.float64)
        proj = np.asarray(arrays[ARRAYS[1]], dtype=np.float64)
        dims = stop - start
        if not (0 <= start < stop <= dim) or mean.shape != (dims,) or proj.ndim != 2 \
                or proj.shape[0] != dims or not 0 < proj.shape[1] <= dims:
            raise ValueError(f"whitening arrays {mean.shape} / {proj.shape} do not fit the "
                             f"span {start}..{stop} of a {dim}-d model")
        if not (np.isfinite(mean).all() and np.isfinite(proj).all()
                and math.isfinite(shrinkage)):
            raise ValueError("whitening arrays are not finite")
        # What a fit on unit vectors can make (a forged file with sealed checksums must not
        # collapse every score): a mean inside the unit ball and a projection of full rank
        # whose scales stay within what any shrinkage gives.
        singular = np.linalg.svd(proj, compute_uv=False)
        if float(np.linalg.norm(mean)) > 1.0 + 1e-3 or shrinkage < 0 or not (
                singular.min() > singular.max() * MAX_CONDITION ** -1
                and singular.max() < MAX_SCALE):
            raise ValueError("whitening arrays are not what a fit on unit vectors makes "
                             "(mean outside the unit ball, or a singular or extreme projection)")
        return cls(start, stop, mean, proj, shrinkage, fitted_on)


@dataclass(frozen=True)
class Spectrum:
    """The principal axes of a catalogue's garment parts: what every (d, s) fit shares."""

    start: int
    stop: int
    n: int
    mean: np.ndarray
    lam: np.ndarray  # eigenvalues, strongest first
    vec: np.ndarray  # their axes as columns


def spectrum(vectors: np.ndarray, span: tuple[int, int]) -> Spectrum:
    """Centred covariance of the unit garment parts of (n, D) stored vectors, diagonalised."""
    start, stop = span
    part = np.asarray(vectors, dtype=np.float64)[:, start:stop]
    unit = part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)
    mean = unit.mean(axis=0) if len(unit) else np.zeros(stop - start)
    centred = unit - mean
    lam, vec = np.linalg.eigh(centred.T @ centred / max(len(unit), 1))
    order = np.argsort(lam)[::-1]
    return Spectrum(start, stop, len(unit), mean, np.clip(lam[order], 0.0, None), vec[:, order])


def from_spectrum(sp: Spectrum, shrinkage: float = DEFAULT_SHRINKAGE,
                  dims: int | None = None) -> Whitening | None:
    """The whitening with shrinkage ``s`` (grown for few items, see SHRINK_BELOW) keeping
    ``dims`` axes (None: all, invertible); None when there are fewer than MIN_ITEMS."""
    if sp.n < MIN_ITEMS:
        return None
    if not shrinkage > 0 and dims is None:
        raise ValueError("a whitening without shrinkage may not be invertible; give s > 0")
    width = sp.stop - sp.start
    s = effective_shrinkage(sp.n, width, shrinkage)
    weights = (sp.lam + max(s * float(sp.lam.mean()), 1e-12)) ** -0.5
    kept = width if dims is None else max(1, min(int(dims), width))
    used = weights[:kept]
    if not (used.max() < MAX_SCALE and used.min() > used.max() / MAX_CONDITION):
        # Parts so alike (a few near-copies, an untrained model) that flattening them would
        # blow noise up past what a stored whitening may hold: a reader would refuse it.
        return None
    return Whitening(sp.start, sp.stop, sp.mean, sp.vec[:, :kept] * weights[:kept], s, sp.n)


def fit(vectors: np.ndarray, span: tuple[int, int], shrinkage: float = DEFAULT_SHRINKAGE,
        dims: int | None = None) -> Whitening | None:
    """Fit on (n, D) stored vectors' garment span; None when there are fewer than MIN_ITEMS.
    ``dims``: keep the strongest axes only (evaluation; not invertible)."""
    if len(vectors) < MIN_ITEMS:
        return None
    return from_spectrum(spectrum(vectors, span), shrinkage, dims)
