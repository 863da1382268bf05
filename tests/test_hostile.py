"""Every hostile input works or gets a clear error naming it, via the API, CLI and UI."""

import json
import subprocess
import sys

import pytest

from fai_infer import Catalog, Encoder, ImageError
from tests.helpers import ROOT, RSS_PROBE, write_products
from tests.hostile import make_bombs, make_hostile, png_raw


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    return folder, make_hostile(folder)


def test_at_least_twenty_kinds(hostile):
    _, expect = hostile
    assert len(expect) >= 20
    assert sum(e == "error" for e in expect.values()) >= 10


def test_api_each_input_works_or_names_itself(hostile):
    folder, expect = hostile
    enc = Encoder()
    for name, e in expect.items():
        if e == "ok":
            assert enc.embed([folder / name]).shape == (1, enc.dim), name
        else:
            with pytest.raises(ImageError) as err:
                enc.embed([folder / name])
            assert name.encode("utf-8", "backslashreplace").decode() in str(err.value)


def test_indexing_a_mixed_folder_keeps_every_good_photo(hostile, tmp_path):
    folder, expect = hostile
    write_products(folder / "good", 10)
    cat = Catalog.build(folder, encoder=Encoder())
    skipped = {s.path.rsplit("/", 1)[-1] for s in cat.skipped}
    bad = {n for n, e in expect.items() if e == "error"}
    assert skipped == bad
    assert len(cat) == 10 + sum(e == "ok" for e in expect.values())
    cat.save(tmp_path / "cat")
    again = Catalog.open(tmp_path / "cat")
    assert sorted(again.ids) == sorted(cat.ids)  # odd file names round-trip


def test_cli_reports_each_and_never_tracebacks(hostile, tmp_path):
    folder, expect = hostile
    cli = [sys.executable, "-m", "fai_infer"]
    res = subprocess.run(cli + ["index", str(folder), "--out", str(tmp_path / "c"), "--json"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    reported = {s["path"].rsplit("/", 1)[-1] for s in json.loads(res.stdout)["skipped"]}
    assert reported == {n for n, e in expect.items() if e == "error"}
    for name in [n for n, e in expect.items() if e == "error"][:6]:
        res = subprocess.run(cli + ["query", str(tmp_path / "c"), str(folder / name)],
                             capture_output=True, text=True, cwd=ROOT)
        assert res.returncode == 1 and name in res.stderr and "Traceback" not in res.stderr


def test_ui_handler_shows_a_clear_message_for_each(hostile):
    gr = pytest.importorskip("gradio")
    from ui.app import ShopDemo

    folder, expect = hostile
    write_products(folder / "good2", 10)
    demo = ShopDemo(Catalog.build(folder / "good2", encoder=Encoder()), "test", 5)
    for name, e in expect.items():
        if e == "ok":
            gallery, status = demo.search(str(folder / name), 5)
            assert len(gallery) == 5, name
        else:
            gallery, status = demo.search(str(folder / name), 5)  # no red Error badge
            assert gallery == [] and status.startswith("Cannot use this photo"), name
    # Uploads get a stricter decoded-size budget than catalogue files: 4000x3000 RGB (36 MB).
    big = folder / "big-upload.png"
    big.write_bytes(png_raw(4000, 3000, 8, 2, 3))
    assert demo.cat.encoder.embed([big]).shape[0] == 1
    gallery, status = demo.search(str(big), 5)
    assert gallery == [] and "byte limit" in status




def test_each_bomb_is_refused_from_its_header_under_300_mb(tmp_path):
    """Peak RSS of a fresh process that loads the encoder and embeds one hostile file (before
    issue 17: 2.1 GB for the 16-bit PNG, 5.0 GB for the WebP, 0.4-0.7 GB for the others)."""
    expect = make_bombs(tmp_path)
    peaks = {}
    for name in expect:
        res = subprocess.run([sys.executable, "-c", RSS_PROBE, str(tmp_path / name)],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        report = json.loads(res.stdout.strip().splitlines()[-1])
        peaks[name] = round(report["peak_mb"])
        assert "decodes to" in report["outcome"] and "byte limit" in report["outcome"], report
    print("peak RSS per hostile file (MB):", peaks)
    assert max(peaks.values()) < 300, peaks
