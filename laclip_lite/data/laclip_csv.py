"""The one rule for reading the LaCLIP release's CSV (`relative/path.jpg,caption`), for training and rewriting.

* Rows are split by Python's `csv` module (as the release's `data.py` does): quoted fields, doubled quotes
  (`""`), CRLF or LF line ends. A quote only opens a quoted field at the start of a field (`5" screen` is text).
* **Everything after the first comma is the caption**: the fields after the first are joined back with `,`, so
  an unquoted comma in a caption (`a.jpg,red, blue car`) keeps its caption whole (`red, blue car`).
* A quoted caption may hold a newline: the row spans several lines, the newline becomes a space (captions are one
  line, like the line-aligned rewrite files). A quoted field still open after `MAX_ROW_LINES` lines (a stray
  quote) is rejected naming the line it starts on.
* A header row is tolerated: when the first row's first field is not an image path (`filepath,title`), it is
  not a sample. Rewrite files are line-aligned with the data rows (the header excluded), as in the release.
* Any other row without an image path or caption is a bad row: training replaces it (and counts it); `rewrite
  --input` keeps its line empty (so line i stays row i) and counts it.

Nothing is loaded into memory: `row_index(path)` builds byte spans of the rows once (numpy over the newlines;
the `csv` module only looks at lines holding a quote), then each row is one seek + read.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from laclip_lite.data.formats import IMAGE_EXTS
from laclip_lite.errors import DataError

MAX_ROW_LINES = 16          # a quoted caption spanning more lines than this is a stray quote, not a caption


class BadRow(ValueError):
    """A CSV row that is not `image_path,caption`."""


def is_image_path(field: str) -> bool:
    return field.strip().lower().endswith(IMAGE_EXTS)


def parse_row(text: str) -> list[str]:
    """The fields of one CSV row (its text may span lines inside quotes); BadRow when csv cannot split it (a field
    over csv's 128 KiB limit, a NUL byte)."""
    try:
        return next(csv.reader(text.splitlines(keepends=True)), [])
    except csv.Error as e:
        raise BadRow(f"unreadable CSV row ({e}; {len(text):,} characters)") from None


def resolve_under(root: Path, rel: str) -> Path:
    """An image path of a row, under the dataset root; BadRow when it is absolute or climbs out of the root
    (`../x.png`, `/abs/x.png`): a CSV never names a file outside its root. The check is on the path as written,
    so a root whose folders are symlinks to another disk still works."""
    parts = Path(os.path.normpath(rel)).parts
    if os.path.isabs(rel) or not parts or parts[0] == "..":
        raise BadRow(f"image path {rel!r} is outside the dataset root {root}")
    return root / os.path.normpath(rel)


def split_row(fields: list[str]) -> tuple[str, str]:
    """[path, caption...] -> (path, caption): everything after the first comma is the caption, on one line."""
    if len(fields) < 2 or not fields[0].strip():
        raise BadRow(f"expected 'image_path,caption', got {fields!r}")
    if not is_image_path(fields[0]):
        raise BadRow(f"first field {fields[0]!r} is not an image path ({', '.join(IMAGE_EXTS)})")
    caption = ",".join(fields[1:])
    return fields[0].strip(), " ".join(caption.splitlines())


@dataclass
class RowIndex:
    spans: np.ndarray           # [rows, 2] int64 byte (start, end) of every data row (header and blank rows excluded)
    lines: np.ndarray           # [rows] 1-based line number each row starts on (for messages)
    header: bool                # the file's first row was a header and is not in `spans`


def _line_starts(path: Path, chunk: int = 1 << 24) -> tuple[np.ndarray, np.ndarray, int]:
    """Start offsets of every line (+ the file size as a last entry) and the offsets of every `"`."""
    ends, quotes, pos = [], [], 0
    with open(path, "rb") as f:
        while True:
            buf = f.read(chunk)
            if not buf:
                break
            arr = np.frombuffer(buf, dtype=np.uint8)
            ends.append(np.flatnonzero(arr == 10).astype(np.int64) + pos + 1)
            quotes.append(np.flatnonzero(arr == 34).astype(np.int64) + pos)
            pos += len(buf)
    starts = np.concatenate([np.zeros(1, np.int64)] + ends)
    if starts[-1] != pos:               # last line without a trailing newline
        starts = np.append(starts, pos)
    return starts, np.concatenate(quotes) if quotes else np.zeros(0, np.int64), pos


def line_spans(path: Path) -> np.ndarray:
    """[lines, 2] byte spans of every line of a text file (a rewrite file: one caption per line)."""
    starts, _, _ = _line_starts(path)
    return np.stack([starts[:-1], starts[1:]], axis=1)


def _unterminated(lines: list[str]) -> bool:
    """Whether these lines end inside a quoted field (the csv module reached the end of data in quotes)."""
    try:
        next(csv.reader(lines, strict=True), None)
    except csv.Error as e:
        return "unexpected end of data" in str(e)
    return False


def row_index(path: str | Path) -> RowIndex:
    path = Path(path)
    starts, quotes, size = _line_starts(path)
    n_lines = len(starts) - 1
    keep = np.ones(n_lines, dtype=bool)                 # lines that start a row
    quoted_lines = np.unique(np.searchsorted(starts, quotes, side="right") - 1)
    with open(path, "rb") as f:
        for k in quoted_lines:
            if not keep[k]:
                continue                                # already inside an earlier multi-line row
            end = int(starts[min(k + MAX_ROW_LINES, n_lines)])
            f.seek(int(starts[k]))
            text = f.read(end - int(starts[k])).decode("utf-8", "replace").splitlines(keepends=True)
            reader = csv.reader(text)
            try:
                next(reader)
            except (StopIteration, csv.Error):
                continue
            span = reader.line_num
            if span > 1 and _unterminated(text[:span]):
                raise DataError(f"{path}:{k + 1}: a quoted field opened on this line is not closed within "
                                f"{span} line(s) (a stray quote?); close the quote or remove it")
            keep[k + 1:k + span] = False
    row_starts = np.flatnonzero(keep)
    if not len(row_starts):             # an empty file
        return RowIndex(np.zeros((0, 2), np.int64), np.zeros(0, np.int64), False)
    spans = np.stack([starts[row_starts], np.append(starts[row_starts[1:]], size)], axis=1)
    lines = row_starts + 1
    blank = []                          # a blank line ("\n" or "\r\n") is not a sample
    with open(path, "rb") as f:
        for i in np.flatnonzero(spans[:, 1] - spans[:, 0] <= 2):
            f.seek(int(spans[i, 0]))
            if not f.read(int(spans[i, 1] - spans[i, 0])).strip():
                blank.append(i)
    spans, lines = np.delete(spans, blank, axis=0), np.delete(lines, blank)
    header = False
    if len(spans):
        with open(path, "rb") as f:
            f.seek(int(spans[0, 0]))
            first = parse_row(f.read(int(spans[0, 1] - spans[0, 0])).decode("utf-8", "replace"))
        header = not (first and is_image_path(first[0]))
        if header:
            spans, lines = spans[1:], lines[1:]
    return RowIndex(spans, lines, header)
