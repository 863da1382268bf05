"""Every entry point fails with one clear line for an ordinary mistake, never a traceback.

Each case runs the command's own ``main`` in this process (one real subprocess per entry point
proves the process path too; a subprocess per case added seconds of start-up and nothing else)
and checks its exit status, that stderr (file descriptor 2, so C-level and logging output
count) is one line saying what is wrong (plus, for per-input reports, one line per failed
input), and that good inputs given beside bad ones still produce their output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fai_infer import Catalog, Encoder
from tests.helpers import SHIPPED, ROOT, OTHER_MODEL, write_csv, write_products

FAI = [sys.executable, "-m", "fai_infer"]
UI = [sys.executable, "-m", "ui.app", "--port", "1"]  # never reached: each case fails first
TRAIN = [sys.executable, "-m", "train"]
EVALUATE = [sys.executable, "-m", "train.evaluate"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """12 photos, the catalogue of them, one of another model, and CSVs a shop might have."""
    root = tmp_path_factory.mktemp("errors")
    write_products(root / "shop", 12)
    photos = root / "shop" / "images"
    Catalog.build(root / "shop", root / "shop" / "metadata.csv").save(root / "cat")
    Catalog.build(root / "shop", encoder=Encoder(OTHER_MODEL)).save(root / "int8.cat")
    # H&M style: ids in article_id, and a CSV whose ids are not the photos' names.
    write_csv(root / "articles.csv", [{"article_id": p.stem, "prod_name": f"Top {p.stem}",
                                       "product_type_no": "253"} for p in photos.iterdir()])
    write_csv(root / "unmatched.csv", [{"id": f"0{100 + i}", "name": "x"} for i in range(12)])
    (root / "notes.jpg").write_text("<html>not a photo</html>")
    (root / "empty").mkdir()
    (root / "junk").mkdir()
    (root / "junk" / "a.jpg").write_text("<html>not a photo</html>")
    return root


def cases(r: Path) -> dict[str, tuple[list[str], int, str]]:
    """name -> (command, exit status, what the one line must say)."""
    p1, p2 = str(r / "shop/images/p001.jpg"), str(r / "shop/images/p002.jpg")
    shop, cat = str(r / "shop"), str(r / "cat")
    return {
        # fai
        "fai index of a missing folder": (FAI + ["index", str(r / "nope"), "--out",
                                                 str(r / "o1")], 1, "not a directory"),
        "fai index, CSV without the id column": (
            FAI + ["index", shop, "--metadata", str(r / "articles.csv"), "--out",
                   str(r / "o2")], 1, "no 'id' column (columns: article_id, prod_name"),
        "fai index, CSV ids match no photo": (
            FAI + ["index", shop, "--metadata", str(r / "unmatched.csv"), "--out",
                   str(r / "o3")], 1, "0 of 12 photos have a metadata row"),
        # before: both printed "indexed 0 photos", exited 0 and saved an empty catalogue
        "fai index of a folder without photos": (
            FAI + ["index", str(r / "empty"), "--out", str(r / "o5")], 1, "no photos found"),
        "fai index of a folder whose photos are all unusable": (
            FAI + ["index", str(r / "junk"), "--out", str(r / "o6")], 1,
            "none of the 1 image files under"),
        "fai index, missing CSV": (FAI + ["index", shop, "--metadata", str(r / "no.csv"),
                                          "--out", str(r / "o4")], 1, "cannot read"),
        "fai query -k 0": (FAI + ["query", cat, p1, "-k", "0"], 2, "0 is outside 1..1000"),
        "fai query -k -1": (FAI + ["query", cat, p1, "-k", "-1"], 2, "outside 1..1000"),
        "fai query -k 1001": (FAI + ["query", cat, p1, "-k", "1001"], 2, "outside 1..1000"),
        "fai query -k ten": (FAI + ["query", cat, p1, "-k", "ten"], 2, "not a whole number"),
        "fai basket -k 0": (FAI + ["basket", cat, "p001", "-k", "0"], 2, "outside 1..1000"),
        "fai query --id unknown": (FAI + ["query", cat, "--id", "p999"], 1,
                                   "not in the catalogue: p999"),
        "fai query with nothing": (FAI + ["query", cat], 1, "nothing to search with"),
        "fai query of a missing catalogue": (FAI + ["query", str(r / "nocat"), p1], 1,
                                             "nocat"),
        # (without --model the catalogue's own model is loaded, so name the other one)
        "fai query of another model's catalogue": (FAI + ["query", str(r / "int8.cat"), p1,
                                                          "--model", str(SHIPPED)],
                                                   1, "indexed with model"),
        "fai query a bad where": (FAI + ["query", cat, p1, "--where", "gender"], 1,
                                  "expected column=value"),
        "fai basket of an unknown id": (FAI + ["basket", cat, "p001", "p999"], 1,
                                        "not in the catalogue: p999"),
        "fai info of a missing catalogue": (FAI + ["info", str(r / "nocat")], 1, "nocat"),
        "fai with a bad model": (FAI + ["info", cat, "--model", str(r / "notes.jpg")], 1,
                                 "not an ONNX model"),
        "fai unknown command": (FAI + ["serch", cat], 2, "invalid choice"),
        # the demo
        "ui.app --metadata without the id column": (
            UI + ["--catalog", shop, "--metadata", str(r / "articles.csv"), "--cache-dir",
                  str(r / "uicache")], 1, "use --id-column"),
        "ui.app --metadata ids match no photo": (
            UI + ["--catalog", shop, "--metadata", str(r / "unmatched.csv"), "--cache-dir",
                  str(r / "uicache")], 1, "0 of 12 photos have a metadata row"),
        # before: both served an empty shop page with no word of why
        "ui.app --catalog given a built catalogue": (
            UI + ["--catalog", cat, "--cache-dir", str(r / "c3")], 1, "serve it with --index"),
        "ui.app --catalog of a folder without photos": (
            UI + ["--catalog", str(r / "empty"), "--cache-dir", str(r / "c4")], 1,
            "no usable photos"),
        "ui.app --catalog missing folder": (UI + ["--catalog", str(r / "nope")], 1,
                                            "not a folder of photos"),
        "ui.app --metadata missing file": (UI + ["--catalog", shop, "--metadata",
                                                 str(r / "no.csv")], 1, "no such CSV file"),
        "ui.app --index missing catalogue": (UI + ["--index", str(r / "nocat")], 1,
                                             "no such catalogue"),
        "ui.app --index another model's": (UI + ["--index", str(r / "int8.cat"), "--model",
                                                 str(SHIPPED)], 1, "indexed with model"),
        "ui.app -k 0": (UI + ["-k", "0"], 2, "outside 1..50"),
        "ui.app unknown option": (UI + ["--catalogue", shop], 2, "unrecognized arguments"),
        # training and evaluation (their own usage lines end with the error)
        "train on a missing folder": (TRAIN + ["--data", str(r / "nope")], 2,
                                      "no such catalogue folder"),
        "train --image-size 48": (TRAIN + ["--data", shop, "--image-size", "48"], 2,
                                  "multiple of 32"),
        "train, CSV ids match no photo": (
            TRAIN + ["--data", shop, "--csv", str(r / "unmatched.csv"), "--out",
                     str(r / "run"), "--image-size", "32"], 1, "none of its 12 'id' values"),
        "train, CSV without the id column": (
            TRAIN + ["--data", shop, "--csv", str(r / "articles.csv"), "--out", str(r / "run"),
                     "--image-size", "32"], 1, "--id-column"),
        # evaluate finds an id column that names the photos (article_id); none does here
        "evaluate, CSV whose ids name no photo": (
            EVALUATE + ["--model", str(ROOT / "models/fai-default.onnx"), "--data", shop,
                        "--csv", str(r / "unmatched.csv"), "--reference", "none"], 1,
            "--id-column"),
        "evaluate a missing model": (EVALUATE + ["--model", str(r / "no.onnx"), "--data", shop],
                                     2, "no such model"),
    }


CASE_NAMES = list(cases(Path("/x")))
# one case per entry point also runs as a real process: the module's __main__ path and exit
SUBPROCESS_CASES = {"fai unknown command", "ui.app unknown option", "train on a missing folder",
                    "evaluate a missing model"}


def entry_point(cmd: list[str]):
    """The ``main`` a command line runs, imported here (so tests run it in-process)."""
    module = cmd[2]
    if module == "fai_infer":
        from fai_infer.cli.main import main
    elif module == "ui.app":
        from ui.app import main
    elif module == "train":
        from train.__main__ import main
    else:
        from train.evaluate import main
    return main


GLOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ")


def run_in_process(cmd: list[str], capfd, monkeypatch) -> subprocess.CompletedProcess:
    """``cmd`` through its entry point's main, with what a subprocess would see: the exit
    status (a returned int or SystemExit) and everything written to fds 1 and 2."""
    monkeypatch.setenv("FAI_CACHE", "/nonexistent-fai-cache")
    main = entry_point(cmd)
    capfd.readouterr()
    said = ""
    try:
        result = main(cmd[3:])
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:  # what the interpreter does with it at exit
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        said = "" if exc.code is None or isinstance(exc.code, int) else f"{exc.code}\n"
    out, err = capfd.readouterr()
    # fd 2 is the whole process's: drop what other threads log there in glog's format (a
    # Milvus client an earlier test left open logs gRPC keepalive lines), never our lines
    err = "".join(line for line in err.splitlines(keepends=True) if not GLOG_LINE.match(line))
    return subprocess.CompletedProcess(cmd, code, out, err + said)


def run(cmd: list[str], shell_pipe: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), FAI_CACHE="/nonexistent-fai-cache")
    if shell_pipe:
        line = " ".join(f"'{c}'" for c in cmd) + f" | {shell_pipe}; exit ${{PIPESTATUS[0]}}"
        return subprocess.run(["bash", "-c", line], capture_output=True, text=True, cwd=ROOT,
                              env=env, timeout=120)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_each_mistake_is_one_clear_line(shop, name, capfd, monkeypatch):
    cmd, status, says = cases(shop)[name]
    res = run(cmd) if name in SUBPROCESS_CASES else run_in_process(cmd, capfd, monkeypatch)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == status, (res.returncode, res.stderr)
    assert lines and says in lines[-1], res.stderr
    if cmd[:3] in (FAI, UI[:3]):  # our own entry points: exactly one line
        assert len(lines) == 1, res.stderr


def test_add_reports_each_failed_input_and_keeps_the_good_ones(shop, tmp_path):
    import shutil

    cat = tmp_path / "cat"
    shutil.copytree(shop / "cat", cat)
    new = tmp_path / "new_item.jpg"
    shutil.copy(shop / "shop/images/p004.jpg", new)
    res = run(FAI + ["add", str(cat), str(tmp_path / "missing.jpg"), str(shop / "notes.jpg"),
                     str(new)])
    lines = res.stderr.splitlines()
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert len(lines) == 2 and "missing.jpg: file not found" in lines[0]
    assert "notes.jpg: not an image" in lines[1]
    assert "13 items (1 added or updated, 2 failed)" in res.stdout
    assert "new_item" in Catalog.open(cat)
    res = run(FAI + ["add", str(cat), str(tmp_path / "missing.jpg"), "--json"])
    assert res.returncode == 1 and json.loads(res.stdout)["added_or_updated"] == 0


def test_query_keeps_the_good_outputs_beside_a_bad_one(shop):
    good1, good2 = str(shop / "shop/images/p001.jpg"), str(shop / "shop/images/p002.jpg")
    res = run(FAI + ["query", str(shop / "cat"), good1, str(shop / "notes.jpg"), good2,
                     "-k", "3", "--json"])
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert len(res.stderr.splitlines()) == 1 and "notes.jpg" in res.stderr
    out = json.loads(res.stdout)
    assert [o["query"] for o in out] == [good1, str(shop / "notes.jpg"), good2]
    assert len(out[0]["hits"]) == 3 and len(out[2]["hits"]) == 3 and "error" in out[1]
    res = run(FAI + ["query", str(shop / "cat"), "--id", "p001", "-k", "2", "--json"])
    assert res.returncode == 0 and json.loads(res.stdout)[0]["hits"][0]["id"] != "p001"


def test_broken_pipe_is_quiet_and_version_and_json_are_everywhere(shop):
    res = run(FAI + ["info", str(shop / "cat")], shell_pipe="true")
    assert res.stderr == "", res.stderr
    res = run(FAI + ["query", str(shop / "cat"), "--id", "p001", "-k", "12"],
              shell_pipe="head -n 1")
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr
    res = run(FAI + ["--version"])
    assert res.returncode == 0 and res.stdout.startswith("fai ")
    human = run(FAI + ["info", str(shop / "cat")])
    assert human.returncode == 0 and "12 items" in human.stdout
    for cmd in (["info", str(shop / "cat")], ["basket", str(shop / "cat"), "p001"],
                ["query", str(shop / "cat"), "--id", "p001"]):
        res = run(FAI + cmd + ["--json"])
        assert res.returncode == 0, res.stderr
        json.loads(res.stdout)


def test_training_on_a_csv_without_the_label_columns_warns_and_lists_them(shop, capsys):
    from train.loop import TrainConfig, Trainer

    cfg = TrainConfig(data=str(shop / "shop"), csv=str(shop / "articles.csv"),
                      id_column="article_id", image_size=32, out=str(shop / "run-labels"),
                      batch_size=4,  # 12 photos: a whole batch, so no TooFewPhotos
                      cache_dir=str(shop / "cache"))
    trainer = Trainer.__new__(Trainer)  # data loading only: nothing is trained
    trainer.cfg, trainer.spec = cfg, cfg.preprocess_spec()
    trainer._load_data()
    err = capsys.readouterr().err
    assert "label column(s) articleType, baseColour not in the metadata" in err
    assert "article_id, prod_name, product_type_no" in err and "without labels" in err


def test_info_still_describes_a_catalogue_the_loaded_model_cannot_search(shop):
    """After a model upgrade a shop's first question is what the old catalogue was built
    with: `fai info` says it (stdout) before the one-line refusal (stderr), and both models
    are told apart by name, version, quantisation and id."""
    r = subprocess.run(FAI + ["info", str(shop / "int8.cat"), "--model", str(SHIPPED)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    enc, other = Encoder(SHIPPED), Encoder(OTHER_MODEL)
    assert f"id {other.model_sha256[:12]}" in r.stdout and "12 items" in r.stdout
    line = r.stderr.strip()
    assert "\n" not in line and f"id {enc.model_sha256[:12]}" in line
    assert f"v{other.info.version}" in line and other.info.quantization in line
