"""Caption readers for `laclip-lite rewrite --input`: the order of captions is the order of output lines.

* a text file: one caption per line (every line counts, so the output stays line-aligned with the file);
* the LaCLIP CSV: ``path,caption``, read by the same rule as training (`laclip_lite.data.laclip_csv`: quoted
  fields, CRLF, everything after the first comma is the caption, a header row skipped);
* JSON lines: ``{"caption": "..."}`` per line (`column` picks another key);
* a Hugging Face dataset saved with `save_to_disk` (a folder), `column` naming the caption column.
"""
from __future__ import annotations

from pathlib import Path

from laclip_lite.errors import DataError
from laclip_lite.utils import iter_jsonl


def read_captions(path: str | Path, column: str = "caption") -> list[str]:
    path = Path(path)
    if not path.exists():
        raise DataError(f"--input not found: {path}")
    if path.is_dir():
        return _read_hf(path, column)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_laclip_csv(path)
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path, column)
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _read_laclip_csv(path: Path) -> list[str]:
    from laclip_lite.data.laclip_csv import read_captions as read_csv_captions
    return read_csv_captions(path)


def _read_jsonl(path: Path, column: str) -> list[str]:
    out = []
    for lineno, row in iter_jsonl(path):
        if not isinstance(row, dict) or not isinstance(row.get(column), str):
            raise DataError(f"{path}:{lineno}: no string field {column!r} (choose the key with --column)")
        out.append(row[column])
    return out


def _read_hf(path: Path, column: str) -> list[str]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError as e:
        raise DataError(f"{path}: not a Hugging Face dataset saved with save_to_disk ({e})") from None
    if isinstance(ds, datasets.DatasetDict):
        if len(ds) != 1:
            raise DataError(f"{path} holds splits {list(ds)}: point --input at one split's folder")
        ds = next(iter(ds.values()))
    if column not in ds.column_names:
        raise DataError(f"{path}: no column {column!r} (columns: {', '.join(ds.column_names)}); use --column")
    return [str(c) for c in ds[column]]
