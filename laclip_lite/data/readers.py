"""Readers for real image-text data: the LaCLIP release CSV (+ rewrite files), webdataset tar shards, and
Hugging Face datasets. Every reader yields the same thing:

    Record(key, image: PIL.Image (RGB), caption: str, rewrites: {variant: text})

and keeps `stats` (records read, records skipped by reason). A corrupt or missing image is skipped, counted
and reported in one warning at the end of a pass - never fatal: web-scale data always has some.

* `LaclipCsvSource`  - CSV rows `image_path,caption` read by the one CSV rule (`laclip_csv`: quotes, CRLF,
  everything after the first comma is the caption, a header row skipped) plus line-aligned `<variant>.txt`
  files. Nothing is loaded into memory: a byte-offset index of rows/lines is built once, then each record is a
  seek + read. A rewrite file whose line count differs from the CSV fails at open time.
* `TarShardSource`   - streams tar shards; shards are split across ranks AND DataLoader workers, so each
  sample is read exactly once per pass. Members are grouped by key (`{key}.png|jpg|jpeg|webp`, `{key}.txt`,
  `{key}.json` with `{"rewrites": {...}}`).
* `HFDiskSource`     - `datasets.load_from_disk` (a folder) or `datasets.load_dataset(name)` (needs network).

**How a sample finds its rewrites (one rule, every layout).** With `data.rewrites_dir` set (the folder
`laclip-lite rewrite --input SOURCE --out DIR` writes), rewrites come from there and nowhere else: line i of
`DIR/<variant>.txt` belongs to CSV data row i (header excluded, bad rows included), to HF row i, or to the tar
sample whose key is line i of `DIR/keys.txt` (written by `rewrite --input` for shards). Without it, a sample's
rewrites are the data's own: line-aligned `<variant>.txt` / `<prefix>_<variant>.txt` files beside the CSV, the
`{"rewrites": {...}}` of a tar sample's JSON, or HF columns named like variants (`chatgpt`, `eda1`, `rewrite2`...).

`open_source(cfg.data)` picks one from `data.source` / `data.format`. For training, `RecordDataset` (map-style,
CSV/HF: an unreadable sample is replaced by a readable one drawn from (seed, index)) and `IterableRecordDataset`
(shards: skipped) turn records into `(augmented uint8 image, [caption, *rewrites], skip reasons)`.
"""
from __future__ import annotations

import glob as globlib
import json
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from laclip_lite.constants import SOURCE_ALIASES, SOURCES
from laclip_lite.data import laclip_csv
from laclip_lite.data.formats import ReadStats, decode_image, detect, image_ext, oversized
from laclip_lite.data.tar_shards import MAX_MEMBER_BYTES, tar_samples
from laclip_lite.errors import DataError
from laclip_lite.utils import stable_hash

# Names a rewrite variant may have: the LLM meta-pair sources, EDA / back-translation variants, "rewriteN".
_VARIANT = re.compile(rf"^({'|'.join((*SOURCES, *SOURCE_ALIASES))}|eda\d+|bt\d+|rewrite\d*)$")


def is_variant_name(name: str) -> bool:
    return bool(_VARIANT.match(name))


@dataclass
class Record:
    key: str
    image: object                                 # PIL.Image.Image, mode RGB
    caption: str
    rewrites: dict[str, str] = field(default_factory=dict)


# -- LaCLIP CSV + rewrite files -------------------------------------------------------------------------------
def _count_check(csv_path: Path, n_rows: int, variant: str, path: Path, n_lines: int) -> None:
    if n_lines != n_rows:
        raise DataError(f"rewrite file {path} ({variant}) has {n_lines} lines but the CSV {csv_path} has "
                        f"{n_rows} rows; rewrite files must be line-aligned with the CSV")


def discover_rewrite_files(csv_path: str | Path, folder: str | Path | None = None) -> dict[str, Path]:
    """`<variant>.txt` (ours) or `<prefix>_<variant>.txt` (the release: cc3m_original.csv + cc3m_chatgpt.txt)."""
    csv_path = Path(csv_path)
    folder = Path(folder) if folder else csv_path.parent
    prefix = csv_path.stem.removesuffix("_original")
    found = {}
    for p in sorted(folder.glob("*.txt")):
        name = p.stem.removeprefix(prefix + "_") if p.stem.startswith(prefix + "_") else p.stem
        if is_variant_name(name):
            found[name] = p
    order = {name: i for i, name in enumerate(SOURCES)}      # the paper's order first, then by name
    return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def rewrites_dir_files(folder: str | Path) -> dict[str, Path]:
    """`<variant>.txt` files of a rewrite folder (`data.rewrites_dir`), the paper's order first; a DataError when the
    folder is missing or holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data.rewrites_dir not found: {folder}")
    files = discover_rewrite_files(folder / "_.csv", folder)
    if not files:
        raise DataError(f"data.rewrites_dir {folder} holds no rewrite files (<variant>.txt, e.g. chatgpt.txt)")
    return files


def _lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def rewrites_dir_captions(folder: str | Path) -> list[str] | None:
    """The captions a rewrite folder's job rewrote (line-aligned with its files), or None when it does not say
    (rewrite files written by hand): `report.json`'s fingerprint -> `cache/<fingerprint>/captions.json`."""
    folder = Path(folder)
    try:
        fp = json.loads((folder / "report.json").read_text()).get("fingerprint")
        return json.loads((folder / "cache" / str(fp) / "captions.json").read_text())
    except (OSError, ValueError, AttributeError):
        return None


class _MapSource:
    """Map-style sources (len + [i] -> Record | None): iterating yields the readable records, then warns
    with the skip counts."""

    def __iter__(self) -> Iterator[Record]:
        for i in range(len(self)):
            rec = self[i]
            if rec is not None:
                yield rec
        self.stats.warn()


class LaclipCsvSource(_MapSource):
    """Rows `relative/image.jpg,caption` (the one CSV rule: `laclip_csv`) + line-aligned rewrite files; map-style."""

    def __init__(self, csv_path: str | Path, image_root: str | Path | None = None,
                 rewrite_files: dict[str, str | Path] | None = None, sources: list[str] | None = None):
        self.csv_path = Path(csv_path)
        if not self.csv_path.is_file():
            raise DataError(f"LaCLIP CSV not found: {self.csv_path}")
        self.image_root = Path(image_root) if image_root else self.csv_path.parent
        files = {v: Path(p) for v, p in (rewrite_files or {}).items()}
        if sources is not None:
            missing = [s for s in sources if s not in files]
            if missing:
                raise DataError(f"{self.csv_path}: no rewrite file for source(s) {missing} (have {sorted(files)})")
            files = {s: files[s] for s in sources}
        self.rewrite_files = files
        self.stats = ReadStats(str(self.csv_path))
        self._handles: dict[str, object] = {}
        self._pid = None
        index = laclip_csv.row_index(self.csv_path)
        self._rows, self._row_lines = index.spans, index.lines
        if not len(self._rows):
            raise DataError(f"{self.csv_path}: no data rows (an empty LaCLIP CSV; rows are image_path,caption)")
        self._lines = {}
        for variant, path in files.items():
            if not path.is_file():
                raise DataError(f"rewrite file for {variant!r} not found: {path}")
            self._lines[variant] = laclip_csv.line_spans(path)
            _count_check(self.csv_path, len(self), variant, path, len(self._lines[variant]))

    @property
    def variants(self) -> list[str]:
        return list(self.rewrite_files)

    def __len__(self) -> int:
        return len(self._rows)

    def __getstate__(self):             # DataLoader workers reopen their own file handles
        state = dict(self.__dict__)
        state["_handles"], state["_pid"] = {}, None
        return state

    def _read(self, name: str, path: Path, spans: np.ndarray, i: int) -> str:
        """Row / line i of a file: one seek + read through a handle kept open per process."""
        if self._pid != os.getpid():
            self._handles, self._pid = {}, os.getpid()
        if name not in self._handles:
            self._handles[name] = open(path, "rb")
        f = self._handles[name]
        f.seek(int(spans[i, 0]))
        return f.read(int(spans[i, 1] - spans[i, 0])).decode("utf-8", "replace")

    def _row(self, i: int) -> tuple[str, str]:
        """(image path, caption) of data row i, by the one CSV rule (`laclip_csv`); BadRow when it is not one."""
        return laclip_csv.split_row(laclip_csv.parse_row(self._read("__csv__", self.csv_path, self._rows, i)))

    def captions(self) -> Iterator[str]:
        """Every caption in row order (streamed; e.g. to train a tokenizer); a bad row gives ""."""
        for i in range(len(self)):
            try:
                yield self._row(i)[1]
            except laclip_csv.BadRow:
                yield ""

    def text_records(self) -> Iterator[tuple[int, Record]]:
        """(row index, Record without image) of every well-formed row: caption and rewrites, no image decoded."""
        for i in range(len(self)):
            try:
                rel, caption = self._row(i)
            except laclip_csv.BadRow:
                continue
            rewrites = {v: self._read(v, p, self._lines[v], i).rstrip("\r\n") for v, p in self.rewrite_files.items()}
            yield i, Record(rel, None, caption, rewrites)

    def rows(self) -> Iterator[tuple[str, str]]:
        """(image path as written, caption) of every well-formed row in order, by the same CSV rule, no image
        decoded (e.g. to group an evaluation CSV's captions by image); a bad row is counted and left out."""
        for i in range(len(self)):
            try:
                yield self._row(i)
            except laclip_csv.BadRow as e:
                self.stats.skip("bad_row", f"line {self._row_lines[i]}: {e}")

    def __getitem__(self, i: int) -> Record | None:
        if not 0 <= i < len(self):
            raise IndexError(f"{self.csv_path}: row {i} out of range (0..{len(self) - 1})")
        try:
            rel, caption = self._row(i)
            path = laclip_csv.resolve_under(self.image_root, rel)
        except laclip_csv.BadRow as e:
            self.stats.skip("bad_row", f"line {self._row_lines[i]}: {e}")
            return None
        image = decode_image(path, self.stats, rel, str(path))
        if image is None:
            return None
        rewrites = {v: self._read(v, p, self._lines[v], i).rstrip("\r\n") for v, p in self.rewrite_files.items()}
        self.stats.read += 1
        return Record(rel, image, caption, rewrites)


# -- webdataset tar shards ------------------------------------------------------------------------------------
def _braces(pattern: str) -> list[str]:
    """webdataset brace ranges: "shard-{000000..000003}.tar" -> four names (zero padding kept)."""
    m = re.search(r"\{(\d+)\.\.(\d+)\}", pattern)
    if not m:
        return [pattern]
    lo, hi, width = int(m.group(1)), int(m.group(2)), len(m.group(1))
    return [n for k in range(lo, hi + 1) for n in _braces(pattern[:m.start()] + f"{k:0{width}d}" + pattern[m.end():])]


def expand_shards(paths_or_glob) -> list[str]:
    """A list of paths, a .tar path, a folder of .tar files, a glob, or a brace range -> sorted shard paths."""
    items = [paths_or_glob] if isinstance(paths_or_glob, (str, Path)) else list(paths_or_glob)
    shards: list[str] = []
    for item in map(str, items):
        if os.path.isdir(item):
            found = sorted(globlib.glob(os.path.join(item, "*.tar")))
            if not found:
                raise DataError(f"no .tar shards in folder {item}")
            shards += found
        elif any(c in item for c in "*?[{"):
            found = sorted(p for pat in _braces(item) for p in globlib.glob(pat))
            if not found:
                raise DataError(f"no shards match {item}")
            shards += found
        elif os.path.isfile(item):
            shards.append(item)
        else:
            raise DataError(f"tar shard not found: {item}")
    return shards


class TarShardSource:
    """Streams samples from tar shards. This process reads shards i with i % (world_size * workers) ==
    rank * workers + worker_id, so 2 ranks x 2 DataLoader workers read every sample exactly once between them."""

    def __init__(self, paths_or_glob, rank: int = 0, world_size: int = 1, read_rewrites: bool = True,
                 max_member: int = MAX_MEMBER_BYTES):
        self.max_member = max_member           # bytes: a larger member is bad data (data.max_member_bytes)
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is not in 0..{world_size - 1}")
        self.read_rewrites = read_rewrites     # False: samples' JSON is not parsed (the original caption only)
        self.shards = expand_shards(paths_or_glob)
        self.rank, self.world_size = rank, world_size
        self.stats = ReadStats(f"{len(self.shards)} tar shard(s) from {self.shards[0]}")
        self._variants: list[str] | None = None
        self.rewrite_table: dict | None = None   # attach_rewrites_dir: {"dir", "keys": {key: line}, "texts": {v: [..]}}

    def my_shards(self) -> list[str]:
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return self.shards[self.rank * workers + worker::self.world_size * workers]

    @property
    def variants(self) -> list[str]:
        """Rewrite variants of the first sample that has any (in its JSON order); [] when there are none."""
        if self._variants is None:
            self._variants = []
            if not self.read_rewrites:
                return self._variants
            if self.rewrite_table is not None:
                self._variants = list(self.rewrite_table["texts"])
                return self._variants
            for rec in self.shard_records(self.shards[0], ReadStats("peek"), decode=False):
                if rec.rewrites:
                    self._variants = list(rec.rewrites)
                    break
        return self._variants

    def __iter__(self) -> Iterator[Record]:
        for shard in self.my_shards():
            yield from self.shard_records(shard, self.stats)
        self.stats.warn()

    def captions(self) -> Iterator[str]:
        """The original caption of every sample in every shard (whatever this rank reads), no image decoded."""
        for shard in self.shards:
            for rec in self.shard_records(shard, ReadStats("captions"), decode=False):
                yield rec.caption

    def text_records(self) -> Iterator[tuple[str, Record]]:
        """(sample key, Record without image) of every sample in every shard that training would read."""
        for shard in self.shards:
            for rec in self.shard_records(shard, ReadStats("texts"), decode=False):
                yield rec.key, rec

    def shard_records(self, shard: str, stats: ReadStats, decode: bool = True) -> Iterator[Record]:
        """The records of one shard that training reads, in order (decode=False: texts only, no image decoded); a
        sample training skips is counted in `stats` by reason (training and `rewrite --input` share the rule)."""
        table = self.rewrite_table if self.read_rewrites else None
        try:
            for key, group in tar_samples(shard, self.max_member):
                rec = self._record(shard, key, group, stats, decode, self.read_rewrites and table is None,
                                   self.max_member)
                if rec is not None:
                    if table is not None and key in table["keys"]:
                        line = table["keys"][key]
                        rec.rewrites = {v: texts[line] for v, texts in table["texts"].items()}
                    yield rec
        except DataError as e:
            stats.skip("corrupt_shard", str(e))

    @staticmethod
    def _record(shard: str, key: str, group: dict[str, bytes], stats: ReadStats, decode: bool,
                read_rewrites: bool = True, max_member: int = MAX_MEMBER_BYTES) -> Record | None:
        where = f"{shard}:{key}"
        big = oversized(group)
        if big:
            stats.skip("oversized_member", f"{where} ({', '.join(big)} over {max_member:,} bytes: "
                                           "data.max_member_bytes)")
            return None
        ext = image_ext(group)
        if ext is None:
            stats.skip("missing_image", f"{where} (members: {sorted(group)})")
            return None
        if "txt" not in group:
            stats.skip("missing_caption", f"{where} (members: {sorted(group)})")
            return None
        rewrites = {}
        if "json" in group and read_rewrites:
            try:
                rewrites = {str(v): str(t) for v, t in (json.loads(group["json"]).get("rewrites") or {}).items()}
            except (ValueError, AttributeError) as e:
                stats.skip("bad_json", f"{where}.json ({e})")
                return None
        image = None
        if decode:                                   # decode=False: a quick peek at captions / rewrites only
            image = decode_image(group[ext], stats, key, f"{where}.{ext}")
            if image is None:
                return None
            stats.read += 1
        return Record(key, image, group["txt"].decode("utf-8").strip(), rewrites)


# -- Hugging Face datasets ------------------------------------------------------------------------------------
class HFDiskSource(_MapSource):
    """A `save_to_disk` folder, or a hub dataset name (`load_dataset`, needs network). Map-style.

    image_column=None reads the captions only (`rewrite --input`: a captions-only dataset is fine there);
    split=None takes the one split a DatasetDict holds (several: a DataError naming them)."""

    def __init__(self, path_or_name: str | Path, image_column: str | None = "image", caption_column: str = "caption",
                 rewrite_columns: list[str] | None = None, split: str | None = "train"):
        import datasets

        name = str(path_or_name).removeprefix("hf:")
        if Path(name).is_dir():
            try:
                ds = datasets.load_from_disk(name)
            except (FileNotFoundError, ValueError) as e:
                raise DataError(f"{name} is not a Hugging Face save_to_disk folder: {e}") from e
        else:
            try:
                ds = datasets.load_dataset(name, split=split)
            except Exception as e:  # offline / unknown name / no such split: all end here
                raise DataError(f"could not load Hugging Face dataset {name!r} (split {split!r}): "
                                f"{type(e).__name__}: {str(e)[:300]}. Offline? Download it once and pass the "
                                "folder written by save_to_disk instead") from e
        if isinstance(ds, datasets.DatasetDict):
            if split is None and len(ds) != 1:
                raise DataError(f"{name} holds splits {list(ds)}: point at one split's folder")
            if split is not None and split not in ds:
                raise DataError(f"{name}: no split {split!r} (splits: {', '.join(ds)})")
            ds = ds[split] if split is not None else next(iter(ds.values()))
        cols = ds.column_names
        for what, col, key in (("images", image_column, "data.image_column"),
                               ("captions", caption_column, "data.caption_column, or --column for rewrite --input")):
            if col is not None and col not in cols:
                raise DataError(f"{name}: no column {col!r} for the {what} (columns: {', '.join(cols)}); choose it "
                                f"with {key}")
        if rewrite_columns is None:
            rewrite_columns = [c for c in cols if is_variant_name(c) and c != caption_column]
        missing = [c for c in rewrite_columns if c not in cols]
        if missing:
            raise DataError(f"{name}: no rewrite column(s) {missing} (columns: {', '.join(cols)})")
        if image_column is not None and isinstance(ds.features[image_column], datasets.Image):
            ds = ds.cast_column(image_column, datasets.Image(decode=False))   # we decode: a bad image is skipped
        self.name, self.root = name, Path(name) if Path(name).is_dir() else None
        self.ds, self.image_column, self.caption_column = ds, image_column, caption_column
        self.rewrite_columns = list(rewrite_columns)
        self.rewrite_texts: dict[str, list[str]] = {}   # attach_rewrites_dir: variant -> one line per row
        self.rewrites_dir = ""
        self.stats = ReadStats(f"HF dataset {name}")

    @property
    def variants(self) -> list[str]:
        return list(self.rewrite_texts or self.rewrite_columns)

    def text_records(self) -> Iterator[tuple[int, Record]]:
        """(row index, Record without image) of every row: caption and rewrites, no image decoded."""
        cols = [self.caption_column] + ([] if self.rewrite_texts else self.rewrite_columns)
        i = 0
        for batch in self.ds.select_columns(cols).iter(batch_size=1024):
            for j, caption in enumerate(batch[self.caption_column]):
                if self.rewrite_texts:
                    rw = {v: t[i] for v, t in self.rewrite_texts.items()}
                else:
                    rw = {c: batch[c][j] for c in self.rewrite_columns if batch[c][j] is not None}
                yield i, Record(str(i), None, caption if caption is not None else "", rw)
                i += 1

    def __len__(self) -> int:
        return len(self.ds)

    def captions(self) -> Iterator[str]:
        """Every row's caption in row order, no image decoded (a missing caption gives "": one line per row)."""
        for batch in self.ds.select_columns([self.caption_column]).iter(batch_size=1024):
            yield from ("" if c is None else str(c) for c in batch[self.caption_column])

    def __getitem__(self, i: int) -> Record | None:
        if self.image_column is None:
            raise DataError(f"HF dataset {self.name} was opened for its captions only (no image column)")
        row = self.ds[i]
        key = str(row.get("key", i))
        value = row[self.image_column]
        if isinstance(value, dict):       # Image(decode=False): {"bytes": ..., "path": ...}
            data = value.get("bytes") or value.get("path")
        else:                             # a path column, or an already-decoded image
            data = value
        if data is None:
            self.stats.skip("missing_image", f"{key}: row {i} has no image")
            return None
        if isinstance(data, str) and self.root is not None and not os.path.isabs(data):
            data = self.root / data
        if hasattr(data, "convert"):
            image = data.convert("RGB")
        else:
            image = decode_image(data, self.stats, key, f"{self.name}[{i}].{self.image_column}")
        if image is None:
            return None
        self.stats.read += 1
        if self.rewrite_texts:
            rewrites = {v: t[i] for v, t in self.rewrite_texts.items()}
        else:
            rewrites = {c: row[c] for c in self.rewrite_columns if row[c] is not None}
        return Record(key, image, row[self.caption_column], rewrites)



# -- choosing a reader ----------------------------------------------------------------------------------------
def detect_format(source: str, split: str = "train") -> str:
    """laclip (a .csv or a folder with one), wds (.tar files / a folder of them / a glob), hf (a folder with
    dataset_info.json / state.json / dataset_dict.json, or "hf:name"): `formats.detect`. A missing path or one in
    none of them is a DataError."""
    fmt = detect(source, ("hf", "wds", "laclip"), split)
    if fmt:
        return fmt
    p = Path(source)
    if not p.exists():
        raise DataError(f"data.source not found: {source}")
    if p.is_file():
        raise DataError(f"data.source {source}: cannot tell the format of a {p.suffix or 'extension-less'} file "
                        "(set data.format to laclip, wds or hf)")
    raise DataError(f"data.source {source}: a folder with no .csv, .tar shards or Hugging Face dataset files")


def _csv_in(source: str, split: str) -> Path:
    p = Path(source)
    if p.is_file():
        return p
    if (p / f"{split}.csv").exists():
        return p / f"{split}.csv"
    found = sorted(p.glob("*.csv"))
    if len(found) != 1:
        raise DataError(f"{source}: expected {split}.csv or exactly one .csv file, found {[f.name for f in found]}")
    return found[0]


def open_source(data_cfg, split: str = "train", rank: int = 0, world_size: int = 1, rewrites: bool = True,
                rewrite_files: dict[str, Path] | None = None):
    """The reader for `data_cfg.source` (format from `data_cfg.format`, or guessed when "auto").

    rewrites=False: read the original captions only (no rewrite file opened, no rewrite column or JSON read).
    rewrite_files: the CSV's rewrite files when they come from elsewhere (a rewrite cache) instead of the files
    beside the CSV / in `data.rewrites_dir`.
    """
    source, fmt = str(data_cfg.source), data_cfg.format
    if data_cfg.is_shapeworld:
        raise DataError("data.source=shapeworld is rendered in memory (laclip_lite.data.shapeworld), not read "
                        "from files; open_source is for CSV / tar shards / HF datasets")
    if fmt == "auto":
        fmt = detect_format(source, split)
    if fmt == "laclip":
        csv_path = _csv_in(source, split)
        if rewrite_files is None:
            rewrite_files = discover_rewrite_files(csv_path, data_cfg.rewrites_dir or None) if rewrites else {}
        return LaclipCsvSource(csv_path, image_root=data_cfg.image_root or None, rewrite_files=rewrite_files)
    if fmt == "wds":
        src = TarShardSource(source, rank=rank, world_size=world_size, read_rewrites=rewrites,
                             max_member=data_cfg.max_member_bytes)
    elif fmt == "hf":
        src = HFDiskSource(source, data_cfg.image_column, data_cfg.caption_column, split=split,
                           rewrite_columns=None if rewrites and not data_cfg.rewrites_dir else [])
    else:
        raise DataError(f"data.format={fmt!r} is not one of auto, laclip, wds, hf")
    if rewrites and data_cfg.rewrites_dir:
        attach_rewrites_dir(src, data_cfg.rewrites_dir)
    return src


def attach_rewrites_dir(source, folder: str | Path) -> None:
    """Rewrites from a rewrite folder onto tar shards (by sample key, `keys.txt`) or an HF dataset (by row), in
    place of the data's own (the module docstring's rule). Line counts are checked now."""
    folder = Path(folder)
    files = rewrites_dir_files(folder)
    texts = {v: _lines(p) for v, p in files.items()}
    counts = {v: len(t) for v, t in texts.items()}
    if len(set(counts.values())) > 1:
        raise DataError(f"data.rewrites_dir {folder}: rewrite files have different line counts: {counts}")
    n = next(iter(counts.values()))
    if isinstance(source, TarShardSource):
        keys_path = folder / "keys.txt"
        if not keys_path.is_file():
            raise DataError(f"data.rewrites_dir {folder} has no keys.txt: tar shards find their rewrites by sample "
                            f"key; make the folder with laclip-lite rewrite --input {source.shards[0]} --out {folder}")
        keys = _lines(keys_path)
        if len(keys) != n:
            raise DataError(f"data.rewrites_dir {folder}: keys.txt has {len(keys)} lines but the rewrite files "
                            f"have {n}")
        source.rewrite_table = {"dir": str(folder), "keys": {k: i for i, k in enumerate(keys)}, "texts": texts}
        source._variants = None
    elif isinstance(source, HFDiskSource):
        if n != len(source):
            raise DataError(f"data.rewrites_dir {folder}: rewrite files have {n} lines but the dataset "
                            f"{source.name} has {len(source)} rows; they must be line-aligned with the rows")
        source.rewrite_texts, source.rewrites_dir = texts, str(folder)
    else:
        raise DataError(f"data.rewrites_dir: cannot attach rewrites to {type(source).__name__}")


# -- torch datasets -------------------------------------------------------------------------------------------
# Why a sample was not used as read. Counted per sample read (a bad image is hit again every epoch), summed over
# DataLoader workers and ranks by the trainer, written to data_info.json / final_metrics.json.
SKIP_REASONS = ("missing_image", "corrupt_image", "empty_file", "bad_row", "missing_caption", "bad_json",
                "corrupt_shard", "short_rewrite", "oversized_member")
MAX_REPLACEMENTS = 32       # replacement draws for one unreadable sample before the source is declared broken


def texts_of(record: Record, variants: list[str]) -> list[str]:
    """[caption, rewrite of each variant in order]; a record without that variant repeats its caption."""
    return [record.caption] + [record.rewrites.get(v) or record.caption for v in variants]


def replacement_index(seed: int, index: int, attempt: int, n: int) -> int:
    """The sample read instead of unreadable sample `index` (attempt 0, 1, ...): a function of (seed, index,
    attempt) only, so every rank, worker and resumed run substitutes the same sample and batches stay full."""
    return random.Random(seed * 1_000_003 + index * 7_919 + attempt * 104_729 + 1).randrange(n)


class RecordDataset(torch.utils.data.Dataset):
    """Map-style (CSV / HF): item (step, i) -> (augmented uint8 image, texts, skip reasons).

    An unreadable sample i is replaced by `replacement_index(seed, i, ...)` (counted under its reason), so a
    batch is always full: ranks stay equal and the run stays reproducible. The image's augmentation is drawn
    from (seed, step, i) (`transform(image, step, i)`), wherever and in whichever worker it runs.
    """

    def __init__(self, source, transform: Callable, variants: list[str] | None = None, seed: int = 0):
        if not hasattr(source, "__len__"):
            raise DataError("RecordDataset needs a map-style source (CSV or HF); use IterableRecordDataset for shards")
        self.source, self.transform, self.seed = source, transform, seed
        self.variants = list(source.variants if variants is None else variants)

    def __len__(self) -> int:
        return len(self.source)

    def read(self, i: int) -> tuple[Record, list[str]]:
        """The record of sample i (or of its deterministic replacement) and the reasons of the reads replaced."""
        skips, j = [], i
        for attempt in range(MAX_REPLACEMENTS + 1):
            rec = self.source[j]
            if rec is not None:
                return rec, skips
            skips.append(self.source.stats.last_reason)
            j = replacement_index(self.seed, i, attempt, len(self.source))
        raise DataError(f"sample {i} and {MAX_REPLACEMENTS} replacement draws were all unreadable "
                        f"({', '.join(sorted(set(skips)))}); is the data source mostly broken? "
                        + self.source.stats.summary())

    def __getitem__(self, item):
        step, i = item if isinstance(item, tuple) else (0, item)
        rec, skips = self.read(i)
        return self.transform(rec.image, step, i), texts_of(rec, self.variants), skips


class IterableRecordDataset(torch.utils.data.IterableDataset):
    """Streaming (tar shards): yields (augmented uint8 image, texts, skip reasons since the previous sample).

    Unreadable samples are skipped (their reasons ride on the next sample). The augmentation is drawn from
    (seed, pass over the shards, sample key): workers and ranks differ, and a replayed stream (resume) repeats it.
    """

    def __init__(self, source, transform: Callable, variants: list[str] | None = None, seed: int = 0):
        self.source, self.transform, self.seed = source, transform, seed
        self.variants = list(source.variants if variants is None else variants)
        self._pass = 0

    def __iter__(self):
        stats, seen = self.source.stats, Counter(self.source.stats.skipped)
        for rec in self.source:
            skips = list((stats.skipped - seen).elements())
            seen = Counter(stats.skipped)
            index = int(stable_hash(rec.key, length=12), 16)
            yield self.transform(rec.image, self._pass, index), texts_of(rec, self.variants), skips
        self._pass += 1
