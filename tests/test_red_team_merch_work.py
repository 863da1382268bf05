"""Issue 33, point 3: the merchandiser's endpoints do bounded work per request.

Before: 20,000 repeated columns in one ``/api/tag`` body ran the vote 20,000 times (139 s, RSS
to 4 GB), any number of heavy requests ran at once, and ``/api/duplicates`` rebuilt its groups
on every request. Work is counted here by calls, never by seconds."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from fai_infer import Encoder  # noqa: E402
from fai_infer.merch import duplicates as dup_module  # noqa: E402
from fai_infer.merch import labels as labels_module  # noqa: E402
from fai_infer.merch import neighbours as nb_module  # noqa: E402
from tests.helpers import OTHER_MODEL, catalog_of  # noqa: E402


@pytest.fixture()
def served():
    from ui.http_api import HttpApi
    from ui.merchandising import MerchService
    from ui.service import ShopService

    enc = Encoder(OTHER_MODEL)
    rng = np.random.default_rng(1)
    n = 40
    vectors = rng.normal(size=(n, enc.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [{"type": "" if i % 7 == 0 else ["Shirt", "Shoe"][i % 2], "gender": "Men"}
            for i in range(n)]
    cat = catalog_of(enc, [f"i{i:03d}" for i in range(n)], [""] * n, rows, vectors)
    tools = MerchService(cat)
    return cat, tools, TestClient(HttpApi.for_service(ShopService(cat, "shop"), tools))


def counting(monkeypatch, module, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_repeated_columns_are_voted_once(served, monkeypatch):
    _, _, client = served
    votes = counting(monkeypatch, labels_module, "column_labels")
    body = {"columns": ["type"] * 20_000}  # 160 kB, like the red team's 280 kB body
    r = client.post("/api/tag", json=body)
    assert r.status_code == 200, r.text
    assert len(votes) == 1
    assert {s["column"] for s in r.json()["suggestions"]} == {"type"}


def test_too_many_distinct_columns_are_refused_in_one_line(served, monkeypatch):
    from ui.merchandising import MAX_COLUMNS

    _, _, client = served
    votes = counting(monkeypatch, labels_module, "column_labels")
    r = client.post("/api/tag", json={"columns": [f"c{i}" for i in range(MAX_COLUMNS + 1)]})
    assert r.status_code == 400 and "columns" in r.json()["error"]
    assert "\n" not in r.json()["error"] and votes == []


def test_a_second_heavy_request_is_told_busy(served, monkeypatch):
    cat, tools, client = served
    started, release = threading.Event(), threading.Event()
    real = nb_module.Neighbours.of_catalogue

    def held(*args, **kwargs):
        started.set()
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(nb_module.Neighbours, "of_catalogue", held)
    first: dict = {}
    worker = threading.Thread(target=lambda: first.update(
        r=client.post("/api/duplicates", json={})))
    worker.start()
    try:
        assert started.wait(30)
        r = client.post("/api/tag", json={"columns": ["type"]})
        assert r.status_code == 503 and "busy" in r.json()["error"], r.text
    finally:
        release.set()
        worker.join(60)
    assert first["r"].status_code == 200


def test_heavy_results_are_computed_once_per_generation(served, monkeypatch):
    cat, _, client = served
    tables = counting(monkeypatch, nb_module.Neighbours, "of_catalogue")
    grouped = counting(monkeypatch, dup_module, "groups")
    voted = counting(monkeypatch, labels_module, "column_labels")
    for _ in range(3):
        assert client.post("/api/duplicates", json={}).status_code == 200
        assert client.post("/api/tag", json={"columns": ["type"]}).status_code == 200
    assert (len(tables), len(grouped), len(voted)) == (1, 1, 1)
    cat.update_metadata(["i000"], [{"type": "Shirt"}])  # a new generation
    for _ in range(3):
        assert client.post("/api/duplicates", json={}).status_code == 200
        assert client.post("/api/tag", json={"columns": ["type"]}).status_code == 200
    assert (len(tables), len(grouped), len(voted)) == (2, 2, 2)


def test_a_table_past_its_deadline_is_one_busy_line(served):
    from ui.api_checks import Busy
    from ui.merchandising import MerchService

    cat, _, _ = served
    with pytest.raises(Busy, match="took longer than 0 s"):
        MerchService(cat, deadline_s=0).answer_duplicates(None, 5)
