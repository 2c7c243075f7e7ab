"""Write a ShapeWorld split (plus optional rewrites) in the formats real CLIP data comes in.

Three layouts, each read back by `laclip_lite.data.readers`:

* **hf**     - a Hugging Face `datasets` folder (`save_to_disk`): columns `key`, `image` (Image feature, PNG
               bytes), `caption`, one string column per rewrite variant, and one ClassLabel column per task.
* **wds**    - webdataset-style tar shards `shard-000000.tar`, ...: per sample `{key}.png`, `{key}.txt`
               (the caption) and `{key}.json` (`{"rewrites": {variant: text}, "labels": {task: index}}`).
* **laclip** - the LaCLIP release layout: `images/{key}.png`, a header-less CSV `{split}.csv` with rows
               `images/{key}.png,caption` (the csv module quotes captions that hold commas), and one text
               file per rewrite source (`chatgpt.txt`, `bard.txt`, ...), line i rewriting CSV row i.

Two evaluation layouts, read back by `laclip_lite.data.eval_layouts` (and by CLIP_benchmark / torchvision):

* **imagefolder**    - `OUT/<split>/<class_folder>/{key}.png` for one task's classes (every class gets a folder,
                       so label indices survive an empty class; "red circle" is the folder `red_circle`).
* **clip_benchmark** - CLIP_benchmark's webdataset folder: `OUT/<split>/0.tar, 1.tar, ...` + `nshards.txt`, each
                       sample `{key}.png` + `{key}.cls` (classification: `classnames.txt` and
                       `zeroshot_classification_templates.txt` beside) or `{key}.txt` (retrieval:
                       `dataset_type.txt` reads `retrieval`).

`rewrites` is a dict variant -> list of texts aligned with `split.captions` (what
`laclip_lite.rewrite.job.rewrite_captions` returns). Images are PNG (lossless), so a reader gets back exactly
the pixels that were written. Writing is deterministic: the same split gives byte-identical files.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from laclip_lite.constants import EXPORT_EVAL_FORMATS, EXPORT_FORMATS
from laclip_lite.data import vocab
from laclip_lite.data.readers import is_variant_name  # stale rewrite files would be read back as rewrites
from laclip_lite.errors import DataError
from laclip_lite.templates import get_templates

FORMATS, EVAL_FORMATS = EXPORT_FORMATS, EXPORT_EVAL_FORMATS   # the layouts `export` writes (defined in constants)


def sample_key(i: int) -> str:
    return f"{i:06d}"


def png_bytes(image_chw) -> bytes:
    """uint8 [3,H,W] tensor/array -> PNG file bytes."""
    arr = np.ascontiguousarray(np.asarray(image_chw).transpose(1, 2, 0))
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _check_rewrites(split, rewrites: dict[str, list[str]] | None) -> dict[str, list[str]]:
    rewrites = dict(rewrites or {})
    n = len(split.captions)
    for variant, texts in rewrites.items():
        if len(texts) != n:
            raise DataError(f"rewrites[{variant!r}] has {len(texts)} texts but the split has {n} captions")
        if any("\n" in t or "\r" in t for t in texts):
            raise DataError(f"rewrites[{variant!r}] holds a line break; rewrite files need one text per line")
    reserved = {"key", "image", "caption", *vocab.TASKS}
    if reserved & set(rewrites):
        raise DataError(f"rewrite variant names {sorted(reserved & set(rewrites))} clash with column names")
    return rewrites


def _labels(split, i: int) -> dict[str, int]:
    return {task: int(split.labels[task][i]) for task in vocab.TASKS if task in split.labels}


def _clear(folder: Path, patterns: list[str]) -> None:
    """Remove earlier outputs of the same exporter (only files it writes), so no stale file is read back."""
    for pattern in patterns:
        for p in folder.glob(pattern):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


# -- Hugging Face ---------------------------------------------------------------------------------------------
def export_hf(split, out_dir: str | Path, rewrites: dict[str, list[str]] | None = None) -> Path:
    """`datasets.Dataset.save_to_disk(out_dir)`; -> out_dir."""
    import datasets

    rewrites = _check_rewrites(split, rewrites)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not ((out / "dataset_info.json").exists() or (out / "state.json").exists()):
            raise DataError(f"{out} exists and is not a Hugging Face dataset folder; refusing to overwrite it")
        shutil.rmtree(out)
    n = len(split.captions)
    features = {"key": datasets.Value("string"), "image": datasets.Image(), "caption": datasets.Value("string")}
    columns: dict[str, list] = {"key": [sample_key(i) for i in range(n)],
                                "image": [{"bytes": png_bytes(img), "path": None} for img in split.images],
                                "caption": list(split.captions)}
    for variant, texts in rewrites.items():
        features[variant] = datasets.Value("string")
        columns[variant] = list(texts)
    for task in vocab.TASKS:
        if task in split.labels:
            features[task] = datasets.ClassLabel(names=vocab.classnames(task))
            columns[task] = [int(v) for v in split.labels[task]]
    ds = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()           # 48 rows do not need a progress bar
    try:
        ds.save_to_disk(str(out))
    finally:
        if bars:
            datasets.enable_progress_bars()
    return out


# -- webdataset tar shards ------------------------------------------------------------------------------------
def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644   # fixed metadata: deterministic archives
    tar.addfile(info, io.BytesIO(data))


def export_wds(split, out_dir: str | Path, rewrites: dict[str, list[str]] | None = None,
               samples_per_shard: int = 24) -> list[Path]:
    """Tar shards of `samples_per_shard` samples each; -> the shard paths in order."""
    if samples_per_shard < 1:
        raise DataError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    rewrites = _check_rewrites(split, rewrites)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _clear(out, ["shard-*.tar"])
    n, paths = len(split.captions), []
    for s, start in enumerate(range(0, n, samples_per_shard)):
        path = out / f"shard-{s:06d}.tar"
        with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(start, min(n, start + samples_per_shard)):
                key = sample_key(i)
                meta = {"rewrites": {v: t[i] for v, t in rewrites.items()}, "labels": _labels(split, i)}
                _add(tar, f"{key}.png", png_bytes(split.images[i]))
                _add(tar, f"{key}.txt", split.captions[i].encode("utf-8"))
                _add(tar, f"{key}.json", json.dumps(meta, ensure_ascii=False).encode("utf-8"))
        paths.append(path)
    return paths


# -- LaCLIP release layout ------------------------------------------------------------------------------------
def export_laclip(split, out_dir: str | Path, rewrites: dict[str, list[str]] | None = None,
                  csv_name: str | None = None) -> Path:
    """images/*.png + header-less `{split}.csv` + `<variant>.txt` per rewrite source; -> the CSV path."""
    rewrites = _check_rewrites(split, rewrites)
    out = Path(out_dir)
    csv_path = out / (csv_name or f"{split.name}.csv")
    (out / "images").mkdir(parents=True, exist_ok=True)
    _clear(out / "images", ["*.png"])
    for p in out.glob("*.txt"):
        if is_variant_name(p.stem):
            p.unlink()
    rows = []
    for i, (img, caption) in enumerate(zip(split.images, split.captions)):
        rel = f"images/{sample_key(i)}.png"
        (out / rel).write_bytes(png_bytes(img))
        rows.append((rel, caption))
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    for variant, texts in rewrites.items():
        (out / f"{variant}.txt").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    return csv_path


def export_split(split, out_dir: str | Path, formats=FORMATS, rewrites: dict[str, list[str]] | None = None,
                 shards: int = 2) -> dict[str, Path | list[Path]]:
    """Every format in `formats` into `out_dir/<format>/`; wds in `shards` shards. -> format -> what was written."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise DataError(f"unknown export format(s) {unknown} (known: {', '.join(FORMATS)})")
    out, written = Path(out_dir), {}
    per_shard = max(1, -(-len(split.captions) // max(1, shards)))
    for fmt in formats:
        if fmt == "hf":
            written[fmt] = export_hf(split, out / "hf", rewrites)
        elif fmt == "wds":
            written[fmt] = export_wds(split, out / "wds", rewrites, samples_per_shard=per_shard)
        else:
            written[fmt] = export_laclip(split, out / "laclip", rewrites)
    return written


# -- evaluation layouts ---------------------------------------------------------------------------------------
def class_folder(classname: str) -> str:
    """A class name as an ImageFolder folder ("red circle" -> "red_circle"; the reader turns `_` back to spaces)."""
    name = "_".join(classname.split())
    if not name or "/" in name or name.startswith("."):
        raise DataError(f"class name {classname!r} cannot be a folder name")
    return name


def _task_labels(split, task: str) -> tuple[list[str], list[int]]:
    if task not in vocab.TASKS:
        raise DataError(f"unknown task {task!r} for a classification export (known: {', '.join(vocab.TASKS)})")
    if task not in split.labels:
        raise DataError(f"split {split.name!r} has no labels for task {task!r}")
    return vocab.classnames(task), [int(v) for v in split.labels[task]]


def export_imagefolder(split, out_dir: str | Path, task: str = "color_shape") -> Path:
    """`out_dir/<split>/<class_folder>/<key>.png`, every class of `task` a folder (possibly empty); -> the split
    folder. Another split exported into the same `out_dir` makes the `ROOT/{train,test}/<class>` layout."""
    names, labels = _task_labels(split, task)
    folder = Path(out_dir) / split.name
    if folder.exists():
        shutil.rmtree(folder)
    for name in names:
        (folder / class_folder(name)).mkdir(parents=True)
    for i, (img, label) in enumerate(zip(split.images, labels, strict=True)):
        (folder / class_folder(names[label]) / f"{sample_key(i)}.png").write_bytes(png_bytes(img))
    return folder


def export_clip_benchmark(split, out_dir: str | Path, task: str = "color_shape", samples_per_shard: int = 256,
                          templates: str | None = None) -> Path:
    """CLIP_benchmark's webdataset folder for one split: `out_dir/<split>/{0..n-1}.tar` + `nshards.txt`; task
    "retrieval" writes captions (`.txt`) and `dataset_type.txt`, a ShapeWorld task writes `.cls` labels,
    `classnames.txt` and `zeroshot_classification_templates.txt` (the kit's `templates` set, `{c}` as CLIP_benchmark
    writes it). -> the split folder."""

    if samples_per_shard < 1:
        raise DataError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    root = Path(out_dir)
    retrieval = task == "retrieval"
    names, labels = (None, None) if retrieval else _task_labels(split, task)
    folder = root / split.name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    n = len(split.captions)
    starts = list(range(0, n, samples_per_shard))
    for s, start in enumerate(starts):
        with tarfile.open(folder / f"{s}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(start, min(n, start + samples_per_shard)):
                key = f"s{i:07d}"
                _add(tar, f"{key}.png", png_bytes(split.images[i]))
                if retrieval:
                    _add(tar, f"{key}.txt", split.captions[i].encode("utf-8"))
                else:
                    _add(tar, f"{key}.cls", str(labels[i]).encode("utf-8"))
    (folder / "nshards.txt").write_text(f"{len(starts)}\n")
    if retrieval:
        (root / "dataset_type.txt").write_text("retrieval\n")
    else:
        (root / "dataset_type.txt").unlink(missing_ok=True)
        (root / "classnames.txt").write_text("".join(name + "\n" for name in names))
        lines = [t.replace("{}", "{c}") for t in get_templates(templates)]
        (root / "zeroshot_classification_templates.txt").write_text("".join(t + "\n" for t in lines))
    return folder
