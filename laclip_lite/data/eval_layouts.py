"""Evaluation datasets in the layouts people keep them in, detected from the path and read offline.

* **CLIP_benchmark webdataset folder** (`clip_benchmark`): `ROOT/<split>/0.tar, 1.tar, ...` (`nshards.txt` in the
  split folder gives the count; without it every `*.tar` is read), each sample an image (`.webp/.png/.jpg/.jpeg`)
  and a `.cls` class index; `ROOT/classnames.txt` and `ROOT/zeroshot_classification_templates.txt`, one per line.
  `ROOT/dataset_type.txt` reading `retrieval` makes it a retrieval set: captions in `.txt`, one per line.
* **ImageFolder** (`imagefolder`): `ROOT/<class>/*.{jpg,jpeg,png,webp}`, or `ROOT/{train,val,test}/<class>/...`.
  Class names are the folder names with `_` read as a space, unless a classnames file gives them: one name per
  line in sorted folder order, or a JSON object folder -> name (the LaCLIP release's `imagenet_labels.json`).
* **Captions CSV** (`captions_csv`): the LaCLIP layout (`relative/path.jpg,caption` rows, read by the kit's
  `LaclipCsvSource`); an image repeated once per caption is one image with several captions. Retrieval.
* **Karpathy split JSON** (`karpathy_json`): COCO / Flickr `{"images": [{"filename", "filepath"?, "split",
  "sentences": [{"raw"}]}]}`; images under `image_root` (default: the JSON's folder). Retrieval.

`EvalSpec` (its schema in `laclip_lite.config`, with `parse_specs`) is one entry of `eval.datasets` (or of a
`--suite` file); `open_eval_set(spec)` returns a `ClassificationSet` or a `RetrievalSet`, and `batches(...)`
streams uint8 image batches with their targets, decoded in DataLoader workers. An unreadable image is skipped and
counted, never fatal. The metrics live in `laclip_lite.metrics`, applied by `laclip_lite.evaluate` (`FileSet`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from laclip_lite.config import RESERVED_PREFIXES, TASKS, EvalSpec, parse_spec, parse_specs  # noqa: F401  (the schema lives in config)
from laclip_lite.data.formats import (
    SPLITS,
    ReadStats,
    class_dirs,
    decode_image,
    detect,
    image_ext,
    image_files,
    oversized,
    split_dirs,
)
from laclip_lite.data.readers import LaclipCsvSource
from laclip_lite.data.tar_shards import MAX_MEMBER_BYTES, tar_samples
from laclip_lite.data.transforms import pil_to_uint8
from laclip_lite.errors import DataError
from laclip_lite.templates import get_templates

LAYOUTS = {
    "clip_benchmark": "CLIP_benchmark webdataset folder (ROOT/test/*.tar [+ nshards.txt], classnames.txt)",
    "imagefolder": "ImageFolder (ROOT/<class>/*.jpg|png|webp, or ROOT/{train,val,test}/<class>/...)",
    "captions_csv": "captions CSV file (relative/path.jpg,caption rows: the LaCLIP layout)",
    "karpathy_json": "Karpathy-split JSON file (COCO / Flickr: images[].filename, split, sentences[].raw)",
}
CB_TEMPLATES = "zeroshot_classification_templates.txt"


# ---------------------------------------------------------------------------------------------------------
# Which layout a path is in
def detect_layout(path: str | Path) -> str:
    """One of LAYOUTS, from what is at `path` (`formats.detect`); a DataError names the layouts looked for when
    none matches."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"evaluation dataset not found: {p}")
    layout = detect(p, ("captions_csv", "karpathy_json", "clip_benchmark", "imagefolder"))
    if layout is None:
        looked = "; ".join(LAYOUTS.values())
        raise DataError(f"{p}: matches no evaluation layout (looked for: {looked})")
    return layout


# ---------------------------------------------------------------------------------------------------------
# The datasets
class _Splits:
    """What both kinds of evaluation set share: `units(split)`, or a DataError naming the splits there are."""

    def units(self, split: str):
        if split not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise DataError(f"{self.path}: no {split!r} split (splits found: {have})")
        return self.splits[split]


@dataclass
class ClassificationSet(_Splits):
    """Labelled images of one dataset: `units(split)` lists what `batches` reads (files or tar shards)."""
    name: str
    path: Path
    layout: str
    classnames: list[str]
    templates: list[str]
    splits: dict[str, object] = field(default_factory=dict)   # split -> list of (file, label) or of tar shards
    kind: str = "classification"


@dataclass
class RetrievalSet(_Splits):
    """Images with one or more captions each: `units(split)` lists (image file, [captions]) or tar shards."""
    name: str
    path: Path
    layout: str
    splits: dict[str, object] = field(default_factory=dict)
    kind: str = "retrieval"


def load_classnames(path: str | Path, folders: list[str] | None = None) -> list[str]:
    """A classnames file -> names in label order. Lines (one per class, in sorted folder order), or a JSON object
    folder -> name (needs `folders`) or a JSON list. A count that differs from the folders' gives both counts."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"classnames file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise DataError(f"{path}: not valid JSON ({e})") from None
        if isinstance(data, dict):
            if folders is None:
                raise DataError(f"{path}: a folder -> name mapping needs an ImageFolder; give a list instead")
            missing = [f for f in folders if f not in data]
            if missing:
                raise DataError(f"{path}: no name for class folder(s) {missing[:5]} ({len(missing)} of "
                                f"{len(folders)} missing)")
            return [str(data[f]) for f in folders]
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of names or an object folder -> name")
        names = [str(n) for n in data]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if folders is not None and len(names) != len(folders):
        raise DataError(f"{path}: {len(names)} class names but the dataset has {len(folders)} classes "
                        "(class folders, in sorted order)")
    if not names:
        raise DataError(f"{path}: no class names")
    return names


def _templates(spec: EvalSpec, own: Path | None) -> list[str]:
    if spec.templates:
        return get_templates(spec.templates)
    return get_templates(own if own is not None and own.is_file() else None)


def _imagefolder_split(folder: Path) -> tuple[list[str], list[tuple[str, int]]]:
    classes = class_dirs(folder)
    items = [(str(f), label) for label, d in enumerate(classes) for f in image_files(d)]
    return [d.name for d in classes], items


def _open_imagefolder(spec: EvalSpec, root: Path) -> ClassificationSet:
    by_split = split_dirs(root)
    splits, folders = {}, None
    for split, folder in (by_split or {spec.split: root}).items():
        names, items = _imagefolder_split(folder)
        if folders is not None and names != folders:
            raise DataError(f"{folder}: class folders differ from those of the other splits "
                            f"({len(names)} vs {len(folders)}); every split needs the same classes")
        folders, splits[split] = names, items
    if by_split and spec.split == "test" and "test" not in splits and "val" in splits:
        splits["test"] = splits["val"]        # ImageNet keeps its evaluation images as "val"
    classnames = load_classnames(spec.classnames, folders) if spec.classnames else \
        [f.replace("_", " ") for f in folders]
    return ClassificationSet(spec.label, root, "imagefolder", classnames, _templates(spec, None), splits)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None


def _cb_shards(root: Path, split: str) -> list[str]:
    folder = root / split
    nshards = folder / "nshards.txt"
    if nshards.is_file():
        try:
            n = int(_read_text(nshards).strip())
        except ValueError:
            raise DataError(f"{nshards}: expected the number of shards, got {_read_text(nshards)[:40]!r}") from None
        shards = [folder / f"{i}.tar" for i in range(n)]
        missing = [s.name for s in shards if not s.is_file()]
        if missing:
            raise DataError(f"{nshards} says {n} shards but {folder} lacks {missing[:5]}")
        return [str(s) for s in shards]
    return [str(s) for s in sorted(folder.glob("*.tar"), key=lambda s: (len(s.stem), s.stem))]


def _open_clip_benchmark(spec: EvalSpec, root: Path):
    kind = _read_text(root / "dataset_type.txt").strip().lower() if (root / "dataset_type.txt").is_file() \
        else "classification"
    splits = {s: shards for s in SPLITS if (root / s).is_dir() and (shards := _cb_shards(root, s))}
    if kind == "retrieval":
        return RetrievalSet(spec.label, root, "clip_benchmark", splits)
    if kind != "classification":
        raise DataError(f"{root / 'dataset_type.txt'}: dataset type {kind!r} is not supported "
                        "(classification or retrieval)")
    names_file = Path(spec.classnames) if spec.classnames else root / "classnames.txt"
    if not names_file.is_file():
        raise FileNotFoundError(f"{root}: no classnames.txt (zero-shot needs the class names; pass classnames)")
    classnames = load_classnames(names_file)
    own = root / "classnames.txt"
    if spec.classnames and own.is_file() and len(own_names := load_classnames(own)) != len(classnames):
        raise DataError(f"{names_file}: {len(classnames)} class names, but {root} has {len(own_names)} classes "
                        f"({own}); give one name per class, in the dataset's order")
    return ClassificationSet(spec.label, root, "clip_benchmark", classnames, _templates(spec, root / CB_TEMPLATES),
                             splits)


def _open_captions_csv(spec: EvalSpec, path: Path) -> RetrievalSet:
    source = LaclipCsvSource(path, image_root=spec.image_root or None)
    groups: dict[str, list[str]] = {}
    for rel, caption in source.rows():
        groups.setdefault(str(source.image_root / rel), []).append(caption)
    if not groups:
        raise DataError(f"{path}: no rows")
    return RetrievalSet(spec.label, path, "captions_csv", {spec.split: list(groups.items())})


def _open_karpathy(spec: EvalSpec, path: Path) -> RetrievalSet:
    try:
        data = json.loads(_read_text(path))
    except ValueError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: not a Karpathy-split JSON (no 'images' list; looked for: {LAYOUTS['karpathy_json']})")
    root = Path(spec.image_root) if spec.image_root else path.parent
    splits: dict[str, list] = {}
    for i, img in enumerate(data["images"]):
        try:
            file = root / img.get("filepath", "") / img["filename"]
            captions = [s["raw"].strip() for s in img["sentences"]]
        except (KeyError, TypeError, AttributeError):
            raise DataError(f"{path}: images[{i}] lacks 'filename' or 'sentences[].raw'") from None
        split = "train" if img.get("split") == "restval" else img.get("split", "test")
        if captions:
            splits.setdefault(split, []).append((str(file), captions))
    return RetrievalSet(spec.label, path, "karpathy_json", splits)


def open_eval_set(spec: EvalSpec | str | dict):
    """The dataset at `spec.path` in whatever layout it is in -> ClassificationSet or RetrievalSet."""
    spec = spec if isinstance(spec, EvalSpec) else parse_spec(spec)
    path = Path(spec.path).expanduser()
    layout = detect_layout(path)
    opener = {"clip_benchmark": _open_clip_benchmark, "imagefolder": _open_imagefolder,
              "captions_csv": _open_captions_csv, "karpathy_json": _open_karpathy}[layout]
    dataset = opener(spec, path)
    task = resolve_task(spec, dataset)
    dataset.units("train" if task in ("linear_probe", "fewshot") else spec.split)   # a missing split fails here
    if task in ("linear_probe", "fewshot"):
        dataset.units(spec.split)
    return dataset


def resolve_task(spec: EvalSpec, dataset) -> str:
    """The spec's task, or the layout's own (zero-shot for labelled images, retrieval for captions)."""
    task = spec.task or ("retrieval" if dataset.kind == "retrieval" else "zeroshot")
    if (task == "retrieval") != (dataset.kind == "retrieval"):
        raise DataError(f"{spec.path}: task {task!r} needs a {'retrieval' if task == 'retrieval' else 'labelled'} "
                        f"dataset, but this {LAYOUTS[dataset.layout].split(' (')[0]} is {dataset.kind}")
    return task


# ---------------------------------------------------------------------------------------------------------
# Streaming batches
class _Stream(torch.utils.data.IterableDataset):
    """Decoded samples (uint8 [S,S,3] numpy or None, target, (skip reason, where) or None) of a list of units;
    units are dealt to DataLoader workers round-robin, so 2 workers read every sample exactly once between them."""

    def __init__(self, units: list, shards: bool, kind: str, image_size: int):
        self.units, self.shards, self.kind, self.image_size = units, shards, kind, image_size

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        for unit in self.units[worker::workers]:
            if self.shards:
                for key, group in tar_samples(unit):
                    yield self._from_tar(unit, key, group)
            else:
                file, target = unit
                img, bad = self._decode(file, file)
                yield img, target, bad

    def _decode(self, data, where: str):
        """Image bytes or path -> (uint8 [S,S,3], None): the evaluation transform (`pil_to_uint8`: shorter side
        resized, centre crop), skipped for an image already S x S (the same pixels, without copies); an unreadable
        one -> (None, (reason, where)), the reason `formats.decode_image` counts it under."""
        stats = ReadStats(where)
        img = decode_image(data, stats, where=where)             # decoded once, here, where errors are caught
        if img is None:
            return None, (stats.last_reason, where)
        if img.size == (self.image_size, self.image_size):
            return np.asarray(img), None
        return pil_to_uint8(img, self.image_size, train=False).permute(1, 2, 0).numpy(), None

    def _from_tar(self, shard: str, key: str, group: dict[str, bytes]):
        where = f"{shard}:{key}"
        if oversized(group):                                 # a member over tar_shards.MAX_MEMBER_BYTES: skipped
            return None, None, ("oversized_member", f"{where} (a member over {MAX_MEMBER_BYTES:,} bytes)")
        ext = image_ext(group)
        if self.kind == "retrieval":
            target = group["txt"].decode("utf-8").splitlines() if "txt" in group else []
            target = [t.strip() for t in target if t.strip()]
        else:
            try:
                target = int(group["cls"].decode("utf-8").strip())
            except (KeyError, ValueError):
                target = None
        if ext is None:
            return None, None, ("missing_image", where)
        if target is None or target == []:
            return None, None, ("missing_caption" if self.kind == "retrieval" else "missing_label", where)
        img, bad = self._decode(group[ext], f"{where}.{ext}")
        return img, target, bad


def _collate(items):
    """-> (uint8 images [B,3,S,S] of the readable samples, their targets, [(reason, where)] of the unreadable)."""
    good = [(img, t) for img, t, _ in items if img is not None]
    bad = [b for img, _, b in items if img is None]
    images = torch.from_numpy(np.stack([img for img, _ in good])).permute(0, 3, 1, 2).contiguous() if good else None
    return images, [t for _, t in good], bad


def batches(dataset, split: str, image_size: int, batch_size: int = 256, num_workers: int = 0,
            progress: bool = True, stats: ReadStats | None = None) -> Iterator[tuple[torch.Tensor, list]]:
    """(uint8 images [B,3,S,S], targets) of `split`, resized (shorter side) and centre-cropped to `image_size`;
    targets are class indices or caption lists. Images yielded are counted in `stats.read`, unreadable samples in
    `stats.skipped` by reason (`formats.ReadStats`, the training readers' counter)."""
    units = dataset.units(split)
    shards = bool(units) and isinstance(units[0], str)
    stream = _Stream(list(units), shards, dataset.kind, image_size)
    workers = min(num_workers, len(units))
    loader = torch.utils.data.DataLoader(stream, batch_size=batch_size, num_workers=workers, collate_fn=_collate,
                                         persistent_workers=False)
    total = None if shards else -(-len(units) // batch_size) + max(0, workers - 1)
    stats = stats if stats is not None else ReadStats(f"{dataset.name}/{split}")
    Image.init()             # PIL's decoders (PNG, JPEG, WebP, ...) imported here once, not again in every worker
    # tqdm.auto's bar calls iter() on what it is given: handed the loader, it would start a second set of workers
    for images, targets, bad in tqdm(iter(loader), total=total, desc=f"eval {dataset.name}/{split}", unit="batch",
                                     disable=not progress, leave=False, mininterval=1.0):
        for reason, where in bad:
            stats.skip(reason, where)
        if images is not None:
            stats.read += len(targets)
            yield images, targets

