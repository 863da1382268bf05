"""Where a catalogue's items come from: a folder of photos, and a shop's metadata CSV.

Ids are file stems; a CSV row belongs to the photo whose id equals its id column. Shops'
exports rarely agree with their photo names ("0111565001.jpg" against "111565001"), so the
join is reported, never silent, and ``normalise_id`` offers the usual fix.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from fai_infer.errors import CatalogError
from fai_infer.safe_files import read_bounded
from fai_infer.text import normalise_id, shorten  # noqa: F401 (re-exported)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
CSV_LIMIT = 1 << 30  # a metadata CSV; far above any shop's
JOIN_WARN_BELOW = 0.9  # report a join that matches fewer photos than this


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Every file under ``folder`` with an image suffix (a directory named x.jpg included, so
    that it is reported rather than silently ignored), as absolute paths."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CatalogError(f"{folder}: not a directory of photos")
    return sorted(p for p in folder.absolute().rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def ids_for(paths: list[Path], root: Path) -> list[str]:
    """File stems as ids; where two files share a stem, their relative paths instead (with the
    suffix where even those collide: photo.jpg and photo.png in one folder)."""
    root = Path(root).absolute()

    def clashing(names: list[str]) -> set[str]:
        return {n for n in names if names.count(n) > 1} if len(set(names)) < len(names) else set()

    ids = [p.stem for p in paths]
    dup = clashing(ids)
    ids = [str(p.relative_to(root).with_suffix("")) if i in dup else i
           for p, i in zip(paths, ids)]
    dup = clashing(ids)
    return [str(p.relative_to(root)) if i in dup else i for p, i in zip(paths, ids)]


def looks_like_path(text: str) -> bool:
    """Whether a string that is not a catalogue id should be read as a photo file."""
    return Path(text).suffix.lower() in IMAGE_SUFFIXES or os.path.lexists(text)


def stored_path(path: str | os.PathLike) -> str:
    """Local paths are stored absolute, so a catalogue works from any directory; URIs
    (``s3://...``) and empty paths are kept as given."""
    text = os.fspath(path)
    return text if not text or "://" in text else os.path.abspath(text)


def _csv_text(path: Path) -> str:
    """The file as text: UTF-8 (with or without BOM), else Windows-1252, what Excel exports in
    Western Europe (every byte decodes, so a wrong guess shows as odd letters, never a loss)."""
    data = read_bounded(path, CSV_LIMIT, follow_symlinks=True)  # never a FIFO or device
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _delimiter(header: str) -> str:
    """',' unless the header line is clearly split by ';', a tab or '|' (European exports)."""
    counts = {d: header.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] > counts[","] else ","


def csv_dict_reader(path: str | os.PathLike) -> csv.DictReader:
    """A DictReader over a shop's CSV whatever its dialect: UTF-8 or Windows-1252, separated
    by ',', ';', tabs or '|'. The one CSV reader of the project (the runtime's joins and the
    training catalogue both use it)."""
    text = _csv_text(Path(path))
    return csv.DictReader(io.StringIO(text, newline=""),
                          delimiter=_delimiter(text.split("\n", 1)[0]))


def read_metadata(source: Any, id_column: str) -> dict[str, dict[str, str]]:
    """A CSV path or a mapping id -> row -> {id: row} with string values. The CSV may be
    UTF-8 or Windows-1252 and separated by ',', ';', tabs or '|'."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return {str(k): {str(c): str(v) for c, v in row.items()} for k, row in source.items()}
    path = Path(source)
    reader = None
    try:
        reader = csv_dict_reader(path)
        if not reader.fieldnames:
            raise CatalogError(f"{path}: the CSV is empty (no header, no rows)")
        if id_column not in reader.fieldnames:
            raise CatalogError(f"{path}: no {id_column!r} column (columns: "
                               f"{', '.join(shorten(c) for c in reader.fieldnames or [])}); "
                               f"use --id-column")
        rows = {row[id_column]: {k: (v or "") for k, v in row.items() if k is not None}
                for row in reader}
        if not rows:  # indexing on would save a catalogue with no metadata, without a word
            raise CatalogError(f"{path}: the CSV has a header but no rows")
        return rows
    except (OSError, csv.Error) as exc:
        where = f" line {reader.line_num}" if reader is not None and reader.line_num else ""
        raise CatalogError(f"{path}: cannot read metadata CSV{where} ({exc})") from None


@dataclass
class Join:
    """Which photos found their metadata row, and a line for the shop when too few did."""

    rows: dict[str, dict[str, str]]  # photo id -> its row
    matched: int
    warning: str | None


def join_metadata(ids: list[str], meta: dict[str, dict[str, str]], source: str,
                  id_column: str, normalise: bool = False) -> Join:
    """Match CSV rows to photo ids (exactly, or through ``normalise_id``). No match at all is an
    error (the wrong column, almost surely); a partial one is a warning with an example of each
    side, offering ``--id-normalise`` when it would help."""
    if not meta or not ids:
        return Join({}, 0, None)
    key = normalise_id if normalise else str
    by_key = {key(k): row for k, row in meta.items()}
    rows = {i: by_key[key(i)] for i in ids if key(i) in by_key}
    if len(rows) >= JOIN_WARN_BELOW * len(ids):
        return Join(rows, len(rows), None)
    unmatched_photo = next(i for i in ids if i not in rows)
    used = {key(i) for i in rows}
    unmatched_row = next((k for k in meta if key(k) not in used), next(iter(meta)))
    offer = ""
    if not normalise:
        better = sum(normalise_id(i) in {normalise_id(k) for k in meta} for i in ids)
        if better > len(rows):
            offer = f"; --id-normalise (ignore case and leading zeros) would match {better}"
    text = (f"{source}: {len(rows)} of {len(ids)} photos have a metadata row (photo id "
            f"{unmatched_photo!r} vs CSV {id_column} {unmatched_row!r}){offer}")
    if not rows:
        raise CatalogError(text + "; pick the column that holds the file names with "
                                  "--id-column")
    return Join(rows, len(rows), text)


def join_report(indexed: list[str], meta: dict[str, dict[str, str]], source: str,
                id_column: str, normalise: bool = False) -> str | None:
    """The join warning over the photos actually indexed: a file that could not be decoded
    is reported as skipped, not counted here nor quoted as the example of a missing row."""
    try:
        return join_metadata(indexed, meta, source, id_column, normalise).warning
    except CatalogError as exc:  # every matched photo was skipped: still only a warning now
        return str(exc)


def photos_by_stem(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Photos to add by file stem (the id); two files with one stem are refused by name."""
    paths = [Path(p) for p in paths]
    by_stem: dict[str, list[str]] = {}
    for p in paths:
        by_stem.setdefault(p.stem, []).append(str(p))
    clashes = [names for names in by_stem.values() if len(names) > 1]
    if clashes:
        raise ValueError("two files would get the same id: " + "; ".join(
            " and ".join(names) for names in clashes) + " (rename one)")
    return paths
