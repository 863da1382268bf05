"""python -m train.evaluate: retrieval quality on a labelled catalogue, beside raw pixels.

Queries are the val photos, the gallery is the whole catalogue, the query itself left out.
P@1 and P@10 count neighbours of the same articleType, and of the same articleType+baseColour.
Works on a training checkpoint (torch) or on an exported ONNX file (the runtime path), so the
int8 export's loss can be measured on exactly the same table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fai_infer.preprocess import PreprocessSpec
from train.data import decode_all, load_catalogue
from train.metrics import label_codes, pixel_baseline, retrieval_table


def embed_with_checkpoint(path: str, squares: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    import torch

    from train.checkpoint import load_checkpoint
    from train.data import to_float

    model, _, _ = load_checkpoint(path)
    out = []
    with torch.no_grad():
        for i in range(0, len(squares), 256):
            out.append(model.embed(to_float(torch.from_numpy(squares[i : i + 256]))).numpy())
    return np.concatenate(out)


def checkpoint_spec(path: str) -> PreprocessSpec:
    import torch

    return PreprocessSpec.from_dict(torch.load(path, weights_only=True)["preprocess"])


def evaluate(model: str, data: str, csv: str | None = None, split: str = "val",
             columns: tuple[str, str] = ("articleType", "baseColour"), workers: int = 2,
             cache_dir: str | None = ".cache") -> dict:
    cat = load_catalogue(data, csv)
    onnx = model.endswith(".onnx")
    if onnx:
        from fai_infer.encoder import Encoder

        encoder = Encoder(model)
        spec = encoder.spec
    else:
        spec = checkpoint_spec(model)
    squares, errors = decode_all(cat.paths, spec, workers, cache_dir, desc="decode catalogue")
    good = [i for i, e in enumerate(errors) if not e]
    cat, squares = cat.subset(good), squares[good]
    queries = np.array([i for i, s in enumerate(cat.splits) if s == split])
    if len(queries) == 0:
        raise SystemExit(f"no '{split}' photos in {data}")
    first, second = columns
    labels = {first: label_codes(cat.column(first)),
              f"{first}+{second}": label_codes(cat.column(first), cat.column(second))}
    emb = (np.concatenate([encoder.embed_squares(squares[i : i + 256])
                           for i in range(0, len(squares), 256)])
           if onnx else embed_with_checkpoint(model, squares, spec))
    pix_spec = PreprocessSpec(size=max(32, spec.size))
    pix_squares = squares if pix_spec.size == spec.size else decode_all(
        cat.paths, pix_spec, workers, cache_dir)[0]
    rows = {"model": retrieval_table(emb, queries, labels),
            "raw pixels 32x32": retrieval_table(pixel_baseline(pix_squares), queries, labels)}
    return {"model_file": model, "data": data, "split": split, "queries": int(len(queries)),
            "gallery": int(len(cat)), "table": rows}


def format_table(result: dict) -> str:
    rows = result["table"]
    cols = list(next(iter(rows.values())))
    head = "| features | " + " | ".join(cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for name, vals in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{vals[c]:.3f}" for c in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--checkpoint", help="RUN/best.pt from python -m train")
    g.add_argument("--model", help="an exported .onnx file (fp32 or int8)")
    p.add_argument("--data", default="../shared/data/myntra", help="labelled catalogue folder")
    p.add_argument("--csv", default=None, help="metadata CSV (default: found in --data)")
    p.add_argument("--split", default="val", help="which split's photos are the queries")
    p.add_argument("--columns", default="articleType,baseColour",
                   help="two label columns: the type, and the second for type+second")
    p.add_argument("--cache-dir", default=".cache", help="decoded-photo cache")
    p.add_argument("--json", default=None, help="write the result here (default: beside the "
                   "checkpoint as evaluate.json)")
    a = p.parse_args(argv)
    if not Path(a.data).is_dir():
        raise SystemExit(f"--data {a.data}: no such catalogue folder")
    model = a.checkpoint or a.model
    first, second = [c.strip() for c in a.columns.split(",")][:2]
    result = evaluate(model, a.data, a.csv, a.split, (first, second), cache_dir=a.cache_dir)
    print(f"{result['queries']} {a.split} queries against {result['gallery']} photos "
          f"(query left out)\n" + format_table(result))
    out = Path(a.json) if a.json else Path(model).with_name(Path(model).stem + ".evaluate.json")
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out}")
    return result


if __name__ == "__main__":
    main()
