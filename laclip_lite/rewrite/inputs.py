"""Caption readers for `laclip-lite rewrite --input`: the order of captions is the order of output lines.

The three training layouts are read by training's own readers (`laclip_lite.data.readers`), with training's
skip rules, so a rewrite folder lines up with the data the way `data.rewrites_dir` reads it (readers' rule):

* the LaCLIP CSV: one line per data row (`path,caption` by the one CSV rule; a header row skipped). A row training
  skips (no image path, e.g. a `.gif`; no caption) keeps its line, empty, and is counted, so line i stays row i;
* webdataset tar shards (a .tar, a folder of them, a glob or brace range): one line per sample training would read
  (image + `.txt`), in shard order; `keys` holds each line's sample key (written to `keys.txt`); a sample without
  image or caption is left out and counted; a key seen twice is an error;
* a Hugging Face dataset saved with `save_to_disk` (a folder): one line per row, `column` naming the caption column;

and two caption-only inputs: a text file (one caption per line, every line counts) and JSON lines
(``{"caption": "..."}`` per line, `column` picks another key).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from laclip_lite.data import readers
from laclip_lite.data.formats import ReadStats, detect
from laclip_lite.errors import DataError
from laclip_lite.utils import iter_jsonl


@dataclass
class Captions:
    texts: list[str]                                   # one caption per output line
    keys: list[str] | None = None                      # tar shards: the sample key of each line (keys.txt)
    skipped: dict[str, int] = field(default_factory=dict)   # samples / rows training skips, by reason
    layout: str = "text"                               # text | jsonl | laclip | wds | hf

    def note(self) -> str:
        """One line on what was read and what training will skip ("" when nothing is skipped)."""
        if not self.skipped:
            return ""
        kept = "kept as empty lines (line i = row i)" if self.layout == "laclip" else "left out"
        return (f"--input: {sum(self.skipped.values())} sample(s) training skips, {kept}: "
                + ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())))


def read_captions(path: str | Path, column: str = "caption") -> list[str]:
    return read_input(path, column).texts


def read_input(path: str | Path, column: str = "caption") -> Captions:
    """The captions of `--input`, its layout found by `formats.detect` (a .tar, a glob or a folder of shards; a
    folder saved with `save_to_disk`; a CSV file; JSON lines; any other file is text, one caption per line)."""
    layout = detect(path, ("wds", "hf", "captions_csv", "jsonl", "text"))
    if layout == "wds":
        return _read_shards(str(path))
    path = Path(path)
    if not path.exists():
        raise DataError(f"--input not found: {path}")
    if layout == "hf":                               # one line per row, as training's HF reader reads them
        source = readers.HFDiskSource(path, image_column=None, caption_column=column, rewrite_columns=[], split=None)
        return Captions(list(source.captions()), layout="hf")
    if layout is None:
        raise DataError(f"--input {path}: a folder with no .tar shards and no Hugging Face dataset saved with "
                        "save_to_disk")
    if layout == "captions_csv":
        source = readers.LaclipCsvSource(path)
        texts = list(source.captions())              # a bad row gives "" (training skips that row)
        list(source.rows())                          # counts the bad rows by training's rule
        return Captions(texts, skipped=dict(source.stats.skipped), layout="laclip")
    if layout == "jsonl":
        return Captions(_read_jsonl(path, column), layout="jsonl")
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return Captions([line.rstrip("\r") for line in lines])


def _read_shards(spec: str) -> Captions:
    source = readers.TarShardSource(spec, read_rewrites=False)
    texts, keys, where = [], [], {}
    stats = ReadStats("rewrite --input")
    for shard in source.shards:
        for rec in source.shard_records(shard, stats, decode=False):
            if rec.key in where:
                raise DataError(f"--input {spec}: sample key {rec.key!r} appears in {where[rec.key]} and {shard}; "
                                "tar shards find their rewrites by key, so keys must be unique")
            where[rec.key] = shard
            keys.append(rec.key)
            texts.append(rec.caption)
    if not texts:
        raise DataError(f"--input {spec}: no readable samples (image + .txt) in {len(source.shards)} shard(s)")
    return Captions(texts, keys, dict(stats.skipped), layout="wds")


def _read_jsonl(path: Path, column: str) -> list[str]:
    out = []
    for lineno, row in iter_jsonl(path):
        if not isinstance(row, dict) or not isinstance(row.get(column), str):
            raise DataError(f"{path}:{lineno}: no string field {column!r} (choose the key with --column)")
        out.append(row[column])
    return out
