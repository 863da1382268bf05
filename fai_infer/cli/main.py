"""``fai`` / ``python -m fai_infer``: index a catalogue, query it, recommend for a basket.

Errors (bad images, missing catalogues, wrong model) print one clear line and exit non-zero;
there is never a traceback for a user mistake.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from fai_infer import __version__
from fai_infer.catalog.contract import BaseCatalog, Hit, NotInCatalogue, Skipped, caption_text, model_label
from fai_infer.catalog.local import Catalog, remembered_model
from fai_infer.cli.util import (EXIT_ERROR, EXIT_USAGE, MAX_K, OneLineParser,  # noqa: F401
                                count_value, k_value, visible)
from fai_infer.catalog.display import is_code_column
from fai_infer.catalog.garments import region_name
from fai_infer.model.encoder import Encoder
from fai_infer.model.parser import GarmentParser
from fai_infer.index.filters import Clause, parse_where
from fai_infer.image.preprocess import ImageError
from fai_infer.catalog.sources import IMAGE_SUFFIXES
from fai_infer.scale import cli as scale_cli  # imports no Ray/Milvus until asked
from fai_infer.store.generations import CURRENT, CatalogError, check_writable, peek_manifest


def _parse_where(pairs: list[str] | None) -> list[Clause]:
    """--where column=value / column!=value / price<50 (repeatable; checked before any work)."""
    return parse_where(pairs or [])


def _print_hits(title: str, hits: list[Hit], cat: BaseCatalog) -> None:
    """Rank, score, id and the catalogue's caption columns (e.g. the product name)."""
    print(visible(title))
    caption = cat.display()["caption"]
    for rank, h in enumerate(hits, 1):
        if caption:
            text = caption_text(h.metadata, caption)
        else:  # no name-like column: the row, less its id and code columns
            text = ", ".join(f"{c}={v}" for c, v in h.metadata.items()
                             if v and c != cat.id_column and not is_code_column(c, []))
        via = f"  (for {visible(h.source)})" if h.source else ""
        words = f"  [{h.match}]" if h.match else ""
        print(f"  {rank:>2}. {h.score:.3f}  {visible(h.id)}  {visible(text[:120])}{via}{words}")


def _columns(text: str | None) -> list[str] | None:
    return None if text is None else [c.strip() for c in text.split(",") if c.strip()]


def _print_skipped(skipped: list[Skipped]) -> None:
    if skipped:
        print(f"skipped {len(skipped)} file(s):", file=sys.stderr)
        for s in skipped:
            print(f"  {visible(s.reason)}", file=sys.stderr)


def _encoder(args: argparse.Namespace) -> Encoder:
    """--model, else (for a command on a stored catalogue) the model file that built it, else
    $FAI_MODEL or the shipped model."""
    model = args.model
    if model is None and getattr(args, "catalog", None):
        model = remembered_model(args.catalog)
    return Encoder(model, threads=args.threads)


def cmd_index(a: argparse.Namespace) -> int:
    out = Path(a.out)
    existed = out.exists()
    if a.name is not None and not 1 <= len(" ".join(a.name.split())) <= 80:
        raise ValueError("--name: a shop name is 1 to 80 characters")  # before encoding
    if not a.force:
        _refuse_overwrite(a)  # before minutes of encoding, not after
    check_writable(out)
    try:
        return _index(a)
    except BaseException:
        if not existed and out.is_dir() and not (out / "CURRENT").exists():
            shutil.rmtree(out, ignore_errors=True)  # no empty husk that later "is not a catalogue"
        raise


def _existing(out: Path) -> tuple[int | None, list[str]]:
    """(items, metadata columns) of the catalogue at ``out``, as well as can be told: opened
    fully when it can be (deltas included), else from its manifest (a catalogue of another
    model cannot be opened with this one, but is still worth not wiping by accident)."""
    try:
        cat = Catalog.open(out)
        return len(cat), list(cat.info()["columns"])
    except Exception:  # noqa: BLE001 - only a description for the refusal; never fatal
        count = peek_manifest(out).get("count")
        return (count if isinstance(count, int) else None), []


def _refuse_overwrite(a: argparse.Namespace) -> None:
    """An existing catalogue at --out is replaced only with --force, saying what goes: a
    re-index without --metadata would otherwise silently wipe the metadata a shop relies on."""
    out = Path(a.out)
    if not (out.is_dir() and (out / CURRENT).exists()):
        return
    count, columns = _existing(out)
    lost = f"its {count} items" if count is not None else "its items"
    if columns and not a.metadata:
        lost += (f" and its metadata columns ({', '.join(columns)}), since this run has no "
                 f"--metadata")
    raise ValueError(f"{out}: a catalogue is already there; add --force to replace it "
                     f"(losing {lost})")


def _index(a: argparse.Namespace) -> int:
    t0 = time.time()
    cat = scale_cli.build_with_ray(a, _encoder(a)) if a.ray or a.ray_address else Catalog.build(
        a.folder, a.metadata, a.id_column, _encoder(a),
                        batch_size=a.batch_size, decode_threads=a.decode_threads,
                        progress=not a.json and sys.stderr.isatty(),
                        filters=_columns(a.filters), caption=_columns(a.caption),
                        id_normalise=a.id_normalise)
    if not len(cat):  # a catalogue of nothing is a mistake to say, not a success to save
        found = (f"none of the {len(cat.skipped)} image files under {visible(a.folder)} could "
                 f"be used (first: {visible(cat.skipped[0].reason)})" if cat.skipped else
                 f"{visible(a.folder)}: no photos found (looked for "
                 f"{', '.join(sorted(IMAGE_SUFFIXES))} files, in subfolders too)")
        raise ValueError(f"{found}; no catalogue was written")
    if a.name is not None:
        cat.set_shop_name(a.name)
    seconds = time.time() - t0
    cat.save(a.out)
    report = {"catalog": str(a.out), "indexed": len(cat), "seconds": round(seconds, 2),
              "images_per_second": round((len(cat) + len(cat.skipped)) / max(seconds, 1e-9), 1),
              "skipped": [s.to_dict() for s in cat.skipped], "engine": cat.engine,
              "warnings": cat.warnings}
    if getattr(a, "ray_report", None):
        report["ray"] = a.ray_report  # --ray: workers and photos per node
    if a.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(f"indexed {len(cat)} photos into {visible(a.out)} in {seconds:.1f}s "
              f"({report['images_per_second']} img/s, {cat.engine} search)")
        for line in scale_cli.ray_lines(report["ray"]) if "ray" in report else []:
            print(line)
        _print_skipped(cat.skipped)
    for w in cat.warnings:
        print(f"fai index: warning: {visible(w)}", file=sys.stderr)
    return 0


def cmd_query(a: argparse.Namespace) -> int:
    """Each query is answered on its own: a bad photo is reported (stderr, and an "error"
    entry in --json) and the others still print; exit 1 if any query failed."""
    if a.milvus and a.catalog:  # no catalogue folder with --milvus: the first photo
        a.images, a.catalog = [a.catalog] + a.images, None
    queries = [("id", i) for i in a.ids or []] + [("photo", p) for p in a.images]
    if not queries:
        raise ValueError("nothing to search with: give photo paths or --id ITEM_ID")
    if not a.milvus and not a.catalog:
        raise ValueError("give a catalogue (or --milvus URI)")
    where = _parse_where(a.where)
    cat = scale_cli.open_milvus(a, _encoder(a)) if a.milvus else Catalog.open(a.catalog,
                                                                              _encoder(a))
    if where:
        cat.matching(where, limit=0)  # an unknown column or value: one line, before any query
    cat.parts().check_weight(a.colour)  # a model without colour: one line, before any query
    _use_parser(cat, a)
    results, failed = [], 0
    for kind, query in queries:
        t0 = time.perf_counter()
        try:
            if kind == "id" and query not in cat:
                raise NotInCatalogue(query)
            hits = cat.similar(query, k=a.k, where=where, colour=a.colour, region=a.region)
        except (ImageError, NotInCatalogue) as exc:
            failed += 1
            results.append({"query": query, "error": str(exc)})
            print(f"fai query: error: {visible(exc)}", file=sys.stderr)
            continue
        results.append({"query": query, "ms": round(1000 * (time.perf_counter() - t0), 2),
                        "hits": [h.to_dict() for h in hits]})
        if not a.json:
            region = f", {hits[0].region}" if hits and hits[0].region else ""
            _print_hits(f"{query} ({results[-1]['ms']} ms{region}):", hits, cat)
    if a.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    return EXIT_ERROR if failed else 0


def _use_parser(cat: BaseCatalog, a: argparse.Namespace) -> None:
    """--parser FILE for photo queries (default: models/fai-parser.onnx where installed)."""
    if getattr(a, "parser", None):
        cat.parser = GarmentParser(a.parser, threads=a.threads)


def cmd_look(a: argparse.Namespace) -> int:
    """One row of matches per garment the parser finds in the photo; no garment is words on
    stdout (exit 0), a bad photo one line on stderr (exit 1)."""
    cat = Catalog.open(a.catalog, _encoder(a))
    where = _parse_where(a.where)
    if where:
        cat.matching(where, limit=0)
    _use_parser(cat, a)
    look = cat.look(a.photo, k=a.k, where=where, colour=a.colour)
    if a.json:
        print(json.dumps({"photo": a.photo, **look.to_dict()}, indent=2, ensure_ascii=False))
        return 0
    if not look.rows:
        print(f"{visible(a.photo)}: {look.message}")
        return 0
    for row in look.rows:
        r = row.region
        colour = f"{', '.join(row.colour)} " if row.colour else ""
        _print_hits(f"{colour}{r.kind} ({region_name(r.group)}, box "
                    f"{','.join(map(str, r.box))}, "
                    f"confidence {r.confidence:.2f}):", row.hits, cat)
    return 0


def cmd_basket(a: argparse.Namespace) -> int:
    cat = Catalog.open(a.catalog, _encoder(a))
    hits = cat.similar_to_basket(a.items, k=a.k, where=_parse_where(a.where), mode=a.mode,
                                 diversity=a.diversity, colour=a.colour,
                                 design_column=a.design_column, kind_column=a.kind_column,
                                 same_design=a.same_design)
    if a.json:
        print(json.dumps([h.to_dict() for h in hits], indent=2, ensure_ascii=False))
    else:
        _print_hits(f"goes with the basket {', '.join(a.items)}:", hits, cat)
    return 0


def cmd_add(a: argparse.Namespace) -> int:
    """Good photos are added even when others fail; each failure is reported by name and the
    exit status is 1 if any input could not be added."""
    cat = Catalog.open(a.catalog, _encoder(a))
    before = len(cat)
    skipped = cat.add(a.images, a.metadata, a.id_column,
                      progress=not a.json and sys.stderr.isatty())
    done = len(a.images) - len(skipped)
    report = {"catalog": a.catalog, "count": len(cat), "added": len(cat) - before,
              "added_or_updated": done, "skipped": [s.to_dict() for s in skipped]}
    if a.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(f"{visible(a.catalog)}: {len(cat)} items ({done} added or updated"
              f"{f', {len(skipped)} failed' if skipped else ''})")
    for s_ in skipped:
        print(f"fai add: error: {visible(s_.reason)}", file=sys.stderr)
    return EXIT_ERROR if skipped else 0


def cmd_remove(a: argparse.Namespace) -> int:
    cat = Catalog.open(a.catalog, _encoder(a))
    missing = cat.remove(a.ids)
    if a.json:
        print(json.dumps({"catalog": a.catalog, "count": len(cat), "missing": missing}))
    else:
        print(f"{visible(a.catalog)}: {len(cat)} items left")
    for m in missing:
        print(f"fai remove: error: not in the catalogue: {visible(m)}", file=sys.stderr)
    return EXIT_ERROR if missing else 0  # a job must notice ids that matched nothing


def cmd_compact(a: argparse.Namespace) -> int:
    cat = Catalog.open(a.catalog, _encoder(a))
    deltas, t0 = cat.info()["deltas"], time.time()
    cat.compact()
    seconds = time.time() - t0
    if a.json:
        print(json.dumps({"catalog": a.catalog, "count": len(cat), "deltas_folded": deltas,
                          "seconds": round(seconds, 2)}))
    else:
        print(f"{visible(a.catalog)}: {len(cat)} items, {deltas} delta(s) folded into a new "
              f"base in {seconds:.1f}s")
    return 0


def cmd_update(a: argparse.Namespace) -> int:
    """Change metadata from a CSV without re-encoding; rows for unknown ids are reported."""
    from fai_infer.catalog.sources import read_metadata

    cat = Catalog.open(a.catalog, _encoder(a))
    id_column = a.id_column or cat.id_column  # the column the catalogue was indexed with
    meta = read_metadata(a.metadata, id_column)
    ids = list(meta)
    rows = [{c: v for c, v in meta[i].items() if c != id_column} for i in ids]  # not the key
    missing = cat.update_metadata(ids, rows)
    if a.json:
        print(json.dumps({"catalog": a.catalog, "updated": len(ids) - len(missing),
                          "missing": missing}))
    else:
        print(f"{visible(a.catalog)}: metadata of {len(ids) - len(missing)} item(s) updated")
    for m in missing[:20]:
        print(f"fai update: error: not in the catalogue: {visible(m)}", file=sys.stderr)
    if len(missing) > 20:
        print(f"fai update: error: ... and {len(missing) - 20} more ids not in the catalogue",
              file=sys.stderr)
    return EXIT_ERROR if missing else 0  # a nightly job must notice rows that matched nothing


def runtime_line(rt: dict) -> str:
    """'cpu: avx512_vnni int8 kernels; int8 self-check passed (...)' for `fai info`."""
    check = rt["int8_check"]
    line = f"cpu: {rt['cpu_int8_path']} int8 kernels"
    if check:
        line += (f"; int8 self-check {'passed' if check['passed'] else 'FAILED'} here (mean "
                 f"cosine {check['mean_cosine']:.4f} on {check['inputs']} golden inputs)")
    if rt["fallback"]:
        line += f"; running {visible(rt['file'])} instead of {visible(rt['requested'])}"
    return line


def cmd_rewhiten(a: argparse.Namespace) -> int:
    cat = Catalog.open(a.catalog, _encoder(a))
    if not cat.encoder.info.catalogue_whitening:
        print(f"note: {model_label(cat.encoder)} asks for no catalogue whitening (it lowered "
              f"its figures); fitting one because you asked", file=sys.stderr)
    cat.rewhiten()
    info = cat.whitening_info()
    if a.json:
        print(json.dumps({"catalog": a.catalog, "count": len(cat), **info}))
    else:
        print(f"{visible(a.catalog)}: {len(cat)} items, {whitening_line(info)}")
    return 0


def whitening_line(info: dict) -> str:
    """One line on a catalogue's whitening, from ``whitening_info``."""
    w = info["whitening"]
    if w is None:
        return f"whitening: {info['whitening_note']}"
    return (f"whitening: garment part {w['span'][0]}..{w['span'][1]}, fitted on "
            f"{w['fitted_on']} items, shrinkage {w['shrinkage']:g}")


def cmd_info(a: argparse.Namespace) -> int:
    try:
        cat = Catalog.open(a.catalog, _encoder(a))
    except CatalogError:
        # Still say what the catalogue is (e.g. after a model upgrade), then the one-line error.
        manifest = peek_manifest(Path(a.catalog)) if Path(a.catalog).is_dir() else {}
        if manifest.get("model_sha256"):
            print(f"{visible(a.catalog)}: {manifest.get('count')} items, {manifest.get('dim')}-d, "
                  f"indexed with model {visible(model_label(manifest))} from "
                  f"{visible(str(manifest.get('model_path', '?')))}")
        raise
    info = {**cat.info(), "runtime": cat.encoder.runtime()}
    scale = cat.match_scale()
    if scale is None and cat.wait_for_scales():  # a catalogue written before scales were
        scale = cat.match_scale()                # stored: its first fit, waited for here
    info["match_scale"] = scale.to_dict() if scale is not None else None
    if a.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    m = info["model"]
    print(f"{visible(a.catalog)}: {info['count']} items, {info['dim']}-d, "
          f"{info['engine']} search")
    print(f"  model: {visible(m['name'])} v{visible(m['version'])} ({m['quantization']}, "
          f"{m['input_size']}px), id {cat.encoder.model_sha256[:12]} (weights + "
          f"quantisation; what catalogues remember), weights sha256 {m['weights_sha256']}")
    print(f"  model file: {visible(cat.encoder.path)}; {info['deltas']} change(s) since the "
          f"last compaction")
    print(f"  {runtime_line(info['runtime'])}")
    print(f"  columns: {visible(', '.join(info['columns'])) or '(no metadata)'}")
    print(f"  filters: {visible(', '.join(info['filters'])) or '(none)'}; caption: "
          f"{visible(', '.join(info['caption'])) or '(the id)'}")
    if info.get("name"):
        print(f"  shop name: {visible(info['name'])}")
    parts = cat.parts()
    print(f"  colour weight: default {parts.default_colour:g} (query --colour 0..1)"
          if parts.has_colour else "  colour weight: none (this model has no colour part)")
    print(f"  {whitening_line(info)}")
    if scale is None:
        print("  match scale: none (too few items to say how close a hit is)")
    else:
        q = scale.to_dict()["nearest_neighbour_score_quantiles"]
        print(f"  match scale: nearest-neighbour scores of {len(scale.neighbour_scores)} "
              f"sampled items: " + ", ".join(f"{p} {v:.3f}" for p, v in q.items()))
    return 0


def _progress(a: argparse.Namespace) -> bool:
    return not a.json and sys.stderr.isatty()


def cmd_tag(a: argparse.Namespace) -> int:
    """Missing labels from the photos' labelled neighbours; --apply writes the confident ones."""
    from fai_infer.merch.labels import apply_tags, tag

    cat = Catalog.open(a.catalog, _encoder(a))
    columns = _columns(a.columns) or cat.display()["filters"]
    if not columns:
        raise ValueError("name the label columns with --columns (this catalogue has no filter "
                         "columns to default to)")
    where = _parse_where(a.where)
    found = tag(cat, columns, where, progress=_progress(a))
    written = apply_tags(cat, found, a.min_confidence) if a.apply else []
    if a.json:
        print(json.dumps({"suggestions": [s.to_dict() for s in found[:a.limit]],
                          "count": len(found), "applied": len(written)},
                         indent=2, ensure_ascii=False))
        return 0
    print(f"{len(found)} missing label(s) in {visible(', '.join(columns))} can be suggested"
          + (f"; {len(written)} at confidence >= {a.min_confidence:g} written" if a.apply
             else f"; --apply writes those at confidence >= {a.min_confidence:g}"))
    for s_ in found[:a.limit]:
        print(f"  {s_.confidence:.2f}  {visible(s_.id)}  {visible(s_.column)} = "
              f"{visible(s_.value)}")
    return 0


def cmd_audit(a: argparse.Namespace) -> int:
    """Items whose label is far from what their photo's neighbours say, farthest first."""
    from fai_infer.merch.labels import audit

    cat = Catalog.open(a.catalog, _encoder(a))
    found = audit(cat, a.column, _parse_where(a.where), progress=_progress(a))
    if a.json:
        print(json.dumps({"findings": [f.to_dict() for f in found[:a.limit]],
                          "count": len(found)}, indent=2, ensure_ascii=False))
        return 0
    print(f"{len(found)} item(s) whose {visible(a.column)} is far from what their neighbours "
          f"say (farthest first; 1 = as far apart as two labels usually are):")
    for f in found[:a.limit]:
        print(f"  {f.distance:.2f}  {visible(f.id)}  says {visible(f.label)!r}, looks like "
              f"{visible(f.suggested)!r}")
    return 0


def cmd_duplicates(a: argparse.Namespace) -> int:
    """Groups of near-identical photos."""
    from fai_infer.merch.duplicates import duplicates

    cat = Catalog.open(a.catalog, _encoder(a))
    found = duplicates(cat, a.threshold, progress=_progress(a))
    if a.json:
        print(json.dumps({"groups": [g.to_dict() for g in found[:a.limit]],
                          "count": len(found), "threshold": a.threshold},
                         indent=2, ensure_ascii=False))
        return 0
    print(f"{len(found)} group(s) of near-identical photos at score >= {a.threshold:g}:")
    for g in found[:a.limit]:
        best = g.pairs[0][2]
        print(f"  {len(g.ids)} items (best {best:.3f}): {visible(', '.join(g.ids[:12]))}"
              + (" ..." if len(g.ids) > 12 else ""))
    return 0


def _fraction(text: str) -> float:
    """A number from 0 to 1 on the command line, else one usage line."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="fai", description="FAI: find similar fashion items.")
    p.add_argument("--version", action="version", version=f"fai {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default=None,
                        help="ONNX model file (default: the model that built the catalogue, else "
                             "$FAI_MODEL or the shipped model)")
    common.add_argument("--threads", type=count_value, default=0,
                        help="encoder threads (0 = all)")
    common.add_argument("--json", action="store_true", help="print JSON (every command)")
    sub = p.add_subparsers(dest="command", required=True)
    colour_arg = dict(type=float, default=None, metavar="W",
                      help="colour weight 0..1 (models with a colour part): 0 = this design in any "
                           "colour, 1 = colour only; default: the model's own")

    s = sub.add_parser("index", parents=[common], help="index a folder of photos")
    s.add_argument("folder", help="folder of product photos (searched recursively)")
    s.add_argument("--metadata", default=None, help="CSV with one row per photo")
    s.add_argument("--id-column", default="id", help="CSV column matching the file stem")
    s.add_argument("--out", required=True, help="catalogue directory to write")
    s.add_argument("--filters", metavar="COL1,COL2", default=None,
                   help="metadata columns a page offers as filters (at most 6; default: text "
                        "columns with few values, never ids or codes)")
    s.add_argument("--caption", metavar="NAME_COL,COL2", default=None,
                   help="metadata columns shown with each result (default: a name-like "
                        "column such as name, prod_name, productDisplayName or title)")
    s.add_argument("--id-normalise", action="store_true",
                   help="match CSV ids to photo names ignoring case, spaces and leading zeros "
                        "('0111565001.jpg' meets id 111565001)")
    s.add_argument("--force", action="store_true",
                   help="replace a catalogue already at --out (its items and metadata are lost)")
    s.add_argument("--name", default=None,
                   help="the shop's name: the title a page shows (default: the folder's name)")
    s.add_argument("--batch-size", type=lambda t: count_value(t, 1), default=32)
    s.add_argument("--decode-threads", type=lambda t: count_value(t, 1), default=2)
    scale_cli.add_index_arguments(s)
    s.set_defaults(func=cmd_index)

    s = sub.add_parser("query", parents=[common], help="items similar to photos or ids")
    s.add_argument("catalog", nargs="?", help="catalogue folder (not with --milvus)")
    scale_cli.add_milvus_arguments(s)
    s.add_argument("images", nargs="*", help="photo paths (a bare catalogue id also works; "
                                             "--id says so explicitly)")
    s.add_argument("--id", dest="ids", action="append", metavar="ITEM_ID",
                   help="search with a catalogue item, by id, never read as a file (repeatable)")
    s.add_argument("-k", type=k_value, default=10, help=f"results per query, 1..{MAX_K}")
    s.add_argument("--where", action="append", metavar="COL=VAL",
                   help="filter on metadata, repeatable: gender=Women (one column given twice: "
                        "either value), colour!=Black, price<50, price>=10")
    s.add_argument("--colour", **colour_arg)
    s.add_argument("--region", default="auto",
                   help="what a photo query embeds: auto (for a photo of a person, its largest "
                        "garment or the whole photo, whichever matches better; else the whole "
                        "photo), whole (the photo), or a garment: upper, lower, whole-body "
                        "(dresses, jumpsuits), outer, shoes, bag, accessory")
    s.add_argument("--parser", default=None, help="garment parser ONNX file (default: "
                                                  "models/fai-parser.onnx, or $FAI_PARSER)")
    s.set_defaults(func=cmd_query)

    s = sub.add_parser("look", parents=[common],
                       help="shop the look: matches for every garment in an outfit photo")
    s.add_argument("catalog")
    s.add_argument("photo", help="a photo of an outfit (a person wearing it)")
    s.add_argument("-k", type=k_value, default=6, help=f"results per garment, 1..{MAX_K}")
    s.add_argument("--where", action="append", metavar="COL=VAL",
                   help="filter on metadata, as for query")
    s.add_argument("--colour", **colour_arg)
    s.add_argument("--parser", default=None, help="garment parser ONNX file (default: "
                                                  "models/fai-parser.onnx, or $FAI_PARSER)")
    s.set_defaults(func=cmd_look)

    s = sub.add_parser("basket", parents=[common], help="items that go with a whole basket")
    s.add_argument("catalog")
    s.add_argument("items", nargs="+", help="catalogue ids or photo paths in the basket")
    s.add_argument("-k", type=k_value, default=10, help=f"results, 1..{MAX_K}")
    s.add_argument("--where", action="append", metavar="COL=VAL",
                   help="filter on metadata, as for query")
    s.add_argument("--mode", choices=["cover", "centroid"], default="cover",
                   help="cover: neighbours of every basket item, merged in turn (default); "
                        "centroid: nearest the basket's mean embedding")
    s.add_argument("--diversity", type=_fraction, default=0.3,
                   help="0..1: how strongly near-duplicates of one another (and, with "
                        "--kind-column, more of a kind already there) are pushed down")
    s.add_argument("--design-column", metavar="COL", default=None,
                   help="the column naming an item's design (e.g. product_code): another "
                        "colourway of a basket item's design is never suggested (without it: "
                        "items nearly identical to a basket item)")
    s.add_argument("--kind-column", metavar="COL", default=None,
                   help="the column naming an item's kind (e.g. product_type_name): "
                        "suggestions spread over kinds, the basket's own counting as taken")
    s.add_argument("--same-design", action="store_true",
                   help="allow other colourways of the basket's designs")
    s.add_argument("--colour", **colour_arg)
    s.set_defaults(func=cmd_basket)

    s = sub.add_parser("add", parents=[common], help="add or update photos (id = file stem)")
    s.add_argument("catalog")
    s.add_argument("images", nargs="+")
    s.add_argument("--metadata", default=None, help="CSV with one row per photo")
    s.add_argument("--id-column", default="id", help="CSV column matching the file stem")
    s.set_defaults(func=cmd_add)

    s = sub.add_parser("remove", parents=[common], help="remove items by id")
    s.add_argument("catalog")
    s.add_argument("ids", nargs="+")
    s.set_defaults(func=cmd_remove)

    scale_cli.add_push_parser(sub, common, lambda a: scale_cli.cmd_push(a, _encoder(a)))

    s = sub.add_parser("compact", parents=[common],
                       help="fold committed changes into a new base (also automatic)")
    s.add_argument("catalog")
    s.set_defaults(func=cmd_compact)

    s = sub.add_parser("rewhiten", parents=[common],
                       help="refit the catalogue's whitening on its items now")
    s.add_argument("catalog")
    s.set_defaults(func=cmd_rewhiten)

    s = sub.add_parser("update", parents=[common],
                       help="change items' metadata from a CSV, without re-encoding")
    s.add_argument("catalog")
    s.add_argument("--metadata", required=True, help="CSV: an id column and the columns to set")
    s.add_argument("--id-column", default=None,
                   help="CSV column holding the item ids (default: the catalogue's own)")
    s.set_defaults(func=cmd_update)

    s = sub.add_parser("info", parents=[common], help="describe a catalogue and its model")
    s.add_argument("catalog")
    s.set_defaults(func=cmd_info)

    from fai_infer.merch.duplicates import THRESHOLD
    from fai_infer.merch.labels import TAG_CONFIDENCE

    s = sub.add_parser("tag", parents=[common],
                       help="suggest missing labels from the photos' labelled neighbours")
    s.add_argument("catalog")
    s.add_argument("--columns", metavar="COL1,COL2", default=None,
                   help="label columns to fill (default: the catalogue's filter columns)")
    s.add_argument("--where", action="append", metavar="COL=VAL",
                   help="only items passing this filter (as for query)")
    s.add_argument("--apply", action="store_true",
                   help="write the suggestions at --min-confidence or above into the catalogue")
    s.add_argument("--min-confidence", type=_fraction, default=TAG_CONFIDENCE,
                   help=f"0..1 (default {TAG_CONFIDENCE}: 90%% right on Myntra val)")
    s.add_argument("--limit", type=int, default=50, help="lines printed (default 50)")
    s.set_defaults(func=cmd_tag)

    s = sub.add_parser("audit", parents=[common],
                       help="items whose label their photo's neighbours dispute")
    s.add_argument("catalog")
    s.add_argument("--column", required=True, help="the label column to check")
    s.add_argument("--where", action="append", metavar="COL=VAL",
                   help="only items passing this filter (as for query)")
    s.add_argument("--limit", type=int, default=50, help="lines printed (default 50)")
    s.set_defaults(func=cmd_audit)

    s = sub.add_parser("duplicates", parents=[common], help="groups of near-identical photos")
    s.add_argument("catalog")
    s.add_argument("--threshold", type=_fraction, default=THRESHOLD,
                   help=f"score from which two photos count as one (default {THRESHOLD})")
    s.add_argument("--limit", type=int, default=50, help="groups printed (default 50)")
    s.set_defaults(func=cmd_duplicates)
    return p


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # odd file names must never crash the output
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        return code
    except BrokenPipeError:
        # `fai info cat | head`: the reader left; say nothing and stop writing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except (ImageError, CatalogError, FileNotFoundError, ValueError) as exc:
        print(f"fai {args.command}: error: {visible(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # python -m fai_infer.cli.main works like python -m fai_infer
    sys.exit(main())
