"""The one format layer: which layout a path is in, decoding an image, a tar sample's parts, skip counts.

Training (`data.readers`), evaluation (`data.eval_layouts`) and `laclip-lite rewrite --input` (`rewrite.inputs`)
all use it, so a layout is recognised, an image decoded and a bad sample counted the same way everywhere.

* `detect(source, among)` - the first layout of `among` whose rule matches what is at `source` (None: none):
  `hf` (a folder with a `save_to_disk` dataset's files, or `hf:name`), `wds` (a `.tar`, a folder of them, a glob),
  `clip_benchmark` (`dataset_type.txt`, or `<split>/nshards.txt` / `<split>/*.tar`), `imagefolder`
  (`ROOT/<class>/<images>` or `ROOT/<split>/<class>/...`), `laclip` (a `.csv`, or a folder with `<split>.csv` or
  exactly one `.csv`), `captions_csv` (a `.csv` file), `karpathy_json` (a `.json` file), `jsonl`
  (`.jsonl` / `.ndjson`), `text` (any other file).
* `decode_image(data)` - PIL RGB image from bytes or a path, or None (counted in a `ReadStats` when given).
* `image_ext(group)` / `oversized(group)` - a webdataset sample's image member and its members over the bound.
* `ReadStats` - records read and skipped, by reason, with the first few examples of each.
"""
from __future__ import annotations

import io
import os
import warnings
from collections import Counter
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from laclip_lite.constants import SPLITS  # noqa: F401  (importable from here as before)
from laclip_lite.data.tar_shards import OVERSIZED

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp")   # image files; a tar sample's image is the first of these it has
_HF_FILES = ("dataset_info.json", "state.json", "dataset_dict.json")   # what `save_to_disk` writes


# -- which layout --------------------------------------------------------------------------------------------
def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def split_dirs(root: Path) -> dict[str, Path]:
    """{split: folder} when ROOT's sub-folders are split names holding class folders."""
    subs = class_dirs(root)
    if subs and all(p.name in SPLITS for p in subs) and any(class_dirs(p) for p in subs):
        return {p.name: p for p in subs}
    return {}


def _suffix(p: Path, *suffixes: str) -> bool:
    return p.is_file() and p.suffix.lower() in suffixes


_RULES = {
    "hf": lambda p, split: p.is_dir() and any((p / f).exists() for f in _HF_FILES),
    "wds": lambda p, split: _suffix(p, ".tar") or (p.is_dir() and any(p.glob("*.tar"))),
    "clip_benchmark": lambda p, split: p.is_dir() and ((p / "dataset_type.txt").is_file() or any(
        (p / s / "nshards.txt").is_file() or ((p / s).is_dir() and any((p / s).glob("*.tar"))) for s in SPLITS)),
    "imagefolder": lambda p, split: p.is_dir() and bool(split_dirs(p) or any(image_files(d) for d in class_dirs(p))),
    "laclip": lambda p, split: _suffix(p, ".csv") or (p.is_dir() and ((p / f"{split}.csv").exists() or
                                                                      len(list(p.glob("*.csv"))) == 1)),
    "captions_csv": lambda p, split: _suffix(p, ".csv"),
    "karpathy_json": lambda p, split: _suffix(p, ".json"),
    "jsonl": lambda p, split: _suffix(p, ".jsonl", ".ndjson"),
    "text": lambda p, split: p.is_file(),
}


def detect(source: str | Path, among: tuple[str, ...], split: str = "train") -> str | None:
    """The first layout of `among` (tried in that order) that `source` is in; None when none matches or nothing
    is at `source` (the caller says what it looked for). `hf:name` is `hf` and a glob `wds` without a look."""
    text = str(source)
    if text.startswith("hf:") and "hf" in among:
        return "hf"
    if any(c in text for c in "*?[{") and "wds" in among:
        return "wds"
    p = Path(text)
    if not p.exists():
        return None
    return next((layout for layout in among if _RULES[layout](p, split)), None)


# -- one sample ----------------------------------------------------------------------------------------------
def image_ext(group: dict) -> str | None:
    """The extension of a webdataset sample's image member (the first of IMAGE_EXTS it has), None if none."""
    return next((e[1:] for e in IMAGE_EXTS if e[1:] in group), None)


def oversized(group: dict) -> list[str]:
    """A sample's members over `tar_shards`' size bound (read as OVERSIZED): bad data, the sample is skipped."""
    return sorted(e for e, data in group.items() if data is OVERSIZED)


class ReadStats:
    """Counts of records read and skipped (by reason), with the first few examples of each skip reason."""

    def __init__(self, where: str):
        self.where, self.read, self.skipped, self.examples = where, 0, Counter(), {}
        self.last_reason = ""                     # the reason of the latest skip (a dataset reports it per sample)

    def skip(self, reason: str, detail: str) -> None:
        self.skipped[reason] += 1
        self.last_reason = reason
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(detail)

    def merge(self, other: "ReadStats") -> None:
        """Add another pass's counts (e.g. a probe's training split to its test split)."""
        self.read += other.read
        self.skipped.update(other.skipped)
        for reason, examples in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine += examples[:max(0, 3 - len(mine))]

    @property
    def count(self) -> int:
        """Records skipped, all reasons together."""
        return sum(self.skipped.values())

    def as_dict(self) -> dict:
        return {"read": self.read, "skipped": dict(self.skipped), "examples": dict(self.examples)}

    def reasons(self) -> str:
        """"2 corrupt_image (e.g. a.jpg; b.jpg), 1 missing_label (e.g. ...)": the skips by reason, with examples."""
        return ", ".join(f"{n} {reason} (e.g. {'; '.join(self.examples[reason])})"
                         for reason, n in self.skipped.items())

    def summary(self) -> str:
        if not self.skipped:
            return f"{self.where}: {self.read} records read, none skipped"
        return f"{self.where}: {self.read} records read, {self.count} skipped: " + self.reasons()

    def warn(self) -> None:
        if self.skipped:
            warnings.warn(self.summary(), stacklevel=3)

    def __repr__(self) -> str:
        return f"ReadStats({self.as_dict()})"


def decode_image(data: bytes | str | Path, stats: ReadStats | None = None, key: str = "", where: str = ""):
    """PIL RGB image from bytes or a path, decoded here (where errors are caught); None when missing, empty or
    corrupt, counted in `stats` by reason when given."""
    stats = stats if stats is not None else ReadStats(where)
    try:
        if (len(data) if isinstance(data, (bytes, bytearray)) else os.path.getsize(data)) == 0:
            stats.skip("empty_file", f"{key}: {where}")
            return None
        img = Image.open(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data)
        img.load()
        return img if img.mode == "RGB" else img.convert("RGB")
    except FileNotFoundError:
        stats.skip("missing_image", f"{key}: {where}")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        stats.skip("corrupt_image", f"{key}: {where} ({type(e).__name__})")
    return None
