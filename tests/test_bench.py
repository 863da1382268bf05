"""The benchmark runs end to end in --quick mode, so it never rots."""

import json


def test_bench_quick_runs_and_reports_every_section(tmp_path):
    from bench.__main__ import main

    report = main(["--quick", "--out", str(tmp_path), "--photos", str(tmp_path / "none")])
    assert {"encoder", "search", "query", "indexing", "footprint"} <= set(report)
    engines = {r["engine"] for r in report["encoder"]}
    assert {"onnxruntime fp32", "onnxruntime int8", "torch eager NCHW"} <= engines
    hnsw = [r for r in report["search"] if r["engine"].startswith("hnswlib")]
    assert all(r["recall@10"] >= 0.9 for r in hnsw)
    assert report["indexing"]["photos"] == 100
    assert json.loads((tmp_path / "bench.json").read_text())["quick"] is True
    assert (tmp_path / "search_latency.png").stat().st_size > 1000
