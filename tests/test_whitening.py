"""The catalogue's own whitening: the math (fai_infer/index/whitening.py) on synthetic data,
and a local catalogue that fits it, stores it with its generation and applies it to items and
queries alike."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fai_infer.index.whitening import MIN_ITEMS, Whitening, fit
from tests.helpers import OTHER_MODEL, current_gen


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def anisotropic(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return unit(rng.normal(size=(n, dim)) * np.geomspace(5.0, 0.2, dim) + 0.3)


def test_already_white_data_keeps_its_similarities():
    x = unit(np.random.default_rng(1).normal(size=(20_000, 16)))
    w = fit(x, (0, 16), shrinkage=0.25)
    before, after = x[:200] @ x[:200].T, (lambda y: y @ y.T)(w.apply(x[:200]))
    assert np.abs(before - after).max() < 0.05


def test_whitening_finds_designs_a_shared_nuisance_hides():
    """Two photos per design differ along strong directions every photo shares (light,
    pose): unwhitened, the nearest photo is mostly a stranger; whitened, its twin."""
    rng = np.random.default_rng(2)
    designs, dim = 400, 32
    design = rng.normal(size=(designs, dim)) * 0.3
    nuisance = np.zeros((2 * designs, dim))
    nuisance[:, :4] = rng.normal(size=(2 * designs, 4)) * 3.0
    x = unit(np.repeat(design, 2, axis=0) + nuisance + rng.normal(size=(2 * designs, dim)) * 0.05)
    twin = np.arange(2 * designs) ^ 1

    def hit1(v):
        sims = v @ v.T
        np.fill_diagonal(sims, -np.inf)
        return float((sims.argmax(axis=1) == twin).mean())

    plain, white = hit1(x), hit1(fit(x, (0, dim), shrinkage=0.25).apply(x))
    assert white > plain + 0.3, (plain, white)


def test_undo_inverts_apply_and_leaves_the_colour_part():
    x = anisotropic(500, 24)
    stored = np.concatenate([x[:, :16] / np.linalg.norm(x[:, :16], axis=1, keepdims=True)
                             * np.sqrt(0.9),
                             unit(x[:, 16:]) * np.sqrt(0.1)], axis=1).astype(np.float32)
    w = fit(stored, (0, 16))
    out = w.apply(stored)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(out[:, 16:], stored[:, 16:])
    assert np.allclose(w.undo(out), stored, atol=1e-4)


def test_truncated_fit_keeps_the_dimension_and_cannot_be_undone():
    x = anisotropic(400, 20)
    w = fit(x, (0, 20), shrinkage=0.0, dims=8)
    out = w.apply(x)
    assert out.shape == x.shape and np.all(out[:, 8:] == 0) and not w.invertible
    with pytest.raises(ValueError):
        w.undo(out)


def test_few_items_fit_nothing_and_rank_poor_fits_shrink_more():
    assert fit(anisotropic(MIN_ITEMS - 1, 8), (0, 8)) is None
    few, many = fit(anisotropic(100, 64), (0, 64), 0.25), fit(anisotropic(1000, 64), (0, 64), 0.25)
    assert few.shrinkage > many.shrinkage == 0.25


def test_round_trip_through_files(tmp_path):
    x = anisotropic(300, 12)
    w = fit(x, (0, 12))
    for name, array in w.arrays().items():
        np.save(tmp_path / name, array)
    back = Whitening.from_arrays({n: np.load(tmp_path / n) for n in w.arrays()},
                                 json.loads(json.dumps(w.describe())), 12)
    assert np.array_equal(back.apply(x), w.apply(x))
    with pytest.raises(ValueError, match="do not fit"):
        Whitening.from_arrays({n: np.load(tmp_path / n) for n in w.arrays()}, w.describe(), 8)


@pytest.mark.parametrize("forge", ["zero projection", "huge mean", "one dead axis"])
def test_a_forged_finite_whitening_is_refused(forge):
    """Found by an outside red team: with the checksums re-sealed, an all-zero projection or
    a mean of 1e300 was accepted and every photo query scored 0.045 ("no close match")."""
    w = fit(anisotropic(300, 12), (0, 12))
    arrays = {k: v.copy() for k, v in w.arrays().items()}
    mean_name, proj_name = list(arrays)
    if forge == "zero projection":
        arrays[proj_name][:] = 0
    elif forge == "huge mean":
        arrays[mean_name][:] = 1e300
    else:
        arrays[proj_name][:, 0] = 0
    with pytest.raises(ValueError, match="not what a fit on unit vectors makes"):
        Whitening.from_arrays(arrays, w.describe(), 12)


# -- a local catalogue -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def encoder():
    from fai_infer import Encoder

    return Encoder(OTHER_MODEL)


def catalogue(encoder, n: int, exact_below: int = 100, seed: int = 3):
    from fai_infer import Catalog

    vectors = anisotropic(n, encoder.dim, seed)
    cat = Catalog(encoder, exact_below=exact_below)
    cat.add_embeddings([f"i{k}" for k in range(n)], vectors,
                       metadata=[{"kind": "ab"[k % 2]} for k in range(n)])
    cat.rewhiten()
    return cat, vectors


def test_graph_search_over_whitened_vectors_finds_what_brute_force_finds(encoder):
    cat, vectors = catalogue(encoder, 2000)
    w = cat.state.whitening
    assert w is not None and cat.engine != "exact"
    stored = cat.embeddings
    queries = anisotropic(50, encoder.dim, seed=9)
    found = 0
    for q in queries:
        truth = set(np.argsort(-(stored @ w.apply(q[None])[0]))[:10])
        found += len(truth & {int(h.id[1:]) for h in cat.similar_to_vector(q, k=10)})
    assert found / (10 * len(queries)) >= 0.95


def test_saved_reopened_catalogue_gives_the_same_hits_and_live_adds_use_its_whitening(
        encoder, tmp_path):
    from fai_infer import Catalog

    cat, vectors = catalogue(encoder, 300)
    root = cat.save(tmp_path / "cat")
    manifest = json.loads((current_gen(root) / "manifest.json").read_text())
    assert {"whitening_mean.npy", "whitening_proj.npy"} <= set(manifest["files"])
    again = Catalog.open(root, encoder)
    assert again.info()["whitening"]["fitted_on"] == 300
    q = anisotropic(1, encoder.dim, seed=5)[0]
    assert [h.id for h in again.similar_to_vector(q)] == [h.id for h in cat.similar_to_vector(q)]
    assert [h.id for h in again.similar("i7", where={"kind": "b"})] == \
        [h.id for h in cat.similar("i7", where={"kind": "b"})]
    # vector() speaks the model's space: searching with it is searching by the id
    assert np.allclose(again.vector("i7"), vectors[7], atol=1e-4)
    assert [h.id for h in again.similar_to_vector(again.vector("i7"), exclude={"i7"})] == \
        [h.id for h in again.similar("i7")]
    # a live add is stored through the generation's whitening, not refitted
    again.add_embeddings(["new"], q[None])
    assert again.state.whitening is not None and again.info()["whitening"]["fitted_on"] == 300
    assert again.similar_to_vector(q, k=1)[0].id == "new"
    third = Catalog.open(root, encoder)
    assert third.similar_to_vector(q, k=1)[0].id == "new"
    assert np.allclose(third.vector("new"), q, atol=1e-4)


def test_a_tiny_catalogue_is_not_whitened_and_says_so(encoder, tmp_path):
    cat, vectors = catalogue(encoder, MIN_ITEMS - 1)
    info = cat.info()
    assert info["whitening"] is None and "fewer than" in info["whitening_note"]
    assert np.allclose(cat.embeddings, vectors, atol=1e-6)


def test_rewhiten_refits_on_the_items_there_are(encoder, tmp_path):
    from fai_infer import Catalog

    cat, _ = catalogue(encoder, 200)
    root = cat.save(tmp_path / "cat")
    more = anisotropic(100, encoder.dim, seed=11)
    cat.add_embeddings([f"m{k}" for k in range(100)], more)
    assert cat.info()["whitening"]["fitted_on"] == 200
    cat.rewhiten()
    assert Catalog.open(root, encoder).info()["whitening"]["fitted_on"] == 300
    assert np.allclose(cat.vector("m3"), more[3], atol=1e-4)


def test_a_compaction_refits_a_whitened_catalogue_once_it_grew(encoder, tmp_path):
    from fai_infer import Catalog

    cat, _ = catalogue(encoder, 200)
    root = cat.save(tmp_path / "cat")
    cat.add_embeddings([f"m{k}" for k in range(40)], anisotropic(40, encoder.dim, seed=12))
    cat.compact()  # 240 items: within REFIT_CHANGE of the fit, kept
    assert Catalog.open(root, encoder).info()["whitening"]["fitted_on"] == 200
    cat.add_embeddings([f"n{k}" for k in range(60)], anisotropic(60, encoder.dim, seed=13))
    cat.compact()
    assert Catalog.open(root, encoder).info()["whitening"]["fitted_on"] == 300
    plain = Catalog(encoder)  # never whitened: a compaction leaves it so
    plain.add_embeddings([f"p{k}" for k in range(100)], anisotropic(100, encoder.dim))
    plain.save(tmp_path / "plain")
    plain.compact()
    assert Catalog.open(tmp_path / "plain", encoder).info()["whitening"] is None


def test_parts_too_alike_to_whiten_get_no_whitening_rather_than_one_a_reader_refuses():
    """Near-copies (an untrained model, one photo many times) give eigenvalues near zero;
    flattening them would store scales past what Whitening.from_arrays accepts, and the
    catalogue would be written but never open again."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=32)
    vectors = unit(base + 1e-7 * rng.normal(size=(100, 32)))
    assert fit(vectors, (0, 32)) is None
    spread = unit(rng.normal(size=(100, 32)))
    w = fit(spread, (0, 32))
    assert w is not None
    Whitening.from_arrays(w.arrays(), w.describe(), 32)  # what is stored can be read back
