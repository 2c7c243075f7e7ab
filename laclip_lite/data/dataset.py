"""What a run trains on: step 3 of the training-data path, `get_train_data(cfg, tokenizer, rewrites)` -> batches.

The path, in the order the work happens (the trainer calls the three steps; `train.build_train_data` chains them):
`rewrite.prepare.prepare_rewrites(cfg)` (which texts each sample has and where they come from; it may run the
rewrite job) -> `data.tokenizer.build_tokenizer(..., rewrites.corpus)` -> `get_train_data(cfg, tokenizer,
rewrites)`. The texts arrive as a `Rewrites`: the data layer never depends on the rewrite package.

One function per source kind behind one batch interface (`Pairs.batch(step) -> Batch`):
* ShapeWorld (the embedded default): the split is rendered in memory and every text tokenized up front.
* Files (LaCLIP CSV + rewrite files, webdataset shards, a Hugging Face dataset): records are read by
  `laclip_lite.data.readers`, decoded and augmented in DataLoader workers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from laclip_lite.config import Config
from laclip_lite.data import readers
from laclip_lite.data.loader import Batch, InMemoryPairs, MapPairs, ShardPairs, texts_per_image
from laclip_lite.data.shapeworld import ShapeWorld
from laclip_lite.data.tokenizer import Tokenizer
from laclip_lite.data.transforms import PilTransform
from laclip_lite.utils import stable_hash


class Pairs(Protocol):
    """What the trainer reads batches from (InMemoryPairs, MapPairs, ShardPairs)."""
    augmented: bool                               # images come cropped (in DataLoader workers); else the trainer crops

    def batch(self, step: int) -> Batch: ...      # the images and texts of optimizer step `step` on this rank


@dataclass
class Rewrites:
    """Per training sample, which texts exist and where they come from (made by `rewrite.prepare`)."""
    captions: list[str]             # every sample's original caption, in sample order (no image decoded)
    variants: list[str]             # rewrite variants in use, in text order after the original
    where: str                      # where the rewrites in use come from ("" when none are in use)
    files: dict                     # variant -> the file (or place) its texts come from, for run.json
    census: dict                    # variant -> {"n", "identical", "share"}: rewrites equal to their caption
    corpus: list[str] | None        # the text the BPE tokenizer is trained on (None: the tokenizer needs none)
    texts: dict = field(default_factory=dict)   # ShapeWorld: variant -> one rewrite per caption (files: per record)
    source: object = None           # file data: the opened reader of each sample's caption and rewrites


@dataclass
class TrainData:
    pairs: Pairs                    # .batch(step) -> Batch
    tokenizer: Tokenizer
    variants: list[str]             # rewrite variants in use, in text order after the original
    num_images: int
    info: dict = field(default_factory=dict)   # what a person should see: sizes, skipped samples, cache folder
    from_files: bool = False        # samples are read from files (reads replaced / skipped are counted, reported)


def source_kind(cfg: Config) -> str:
    """What each step of the training-data path dispatches on (`rewrite.prepare.prepare_rewrites`,
    `get_train_data`): "shapeworld" (rendered in memory, with its own val / test splits: `held_out_splits`) or
    "files" (CSV, tar shards, HF dataset: read by `readers`)."""
    return "shapeworld" if cfg.data.is_shapeworld else "files"


def shapeworld_split(cfg: Config, name: str):
    """The rendered split `name` of the run's world. Rendered once per process (a lesson renders its 20,000
    training images once, not once per cell that needs them); every call gets its own copy, so a caller that
    edits the images or captions in place never changes what the next call sees."""

    sizes = {"train": cfg.data.train_size, "val": cfg.data.val_size, "test": cfg.data.test_size}
    key = (cfg.data.world_seed, cfg.model.image_size, name, sizes[name])
    if key not in _RENDERED:
        split = ShapeWorld(seed=cfg.data.world_seed, image_size=cfg.model.image_size).split(name, sizes[name])
        _RENDERED[key] = split
        while sum(s.images.nbytes for s in _RENDERED.values()) > _RENDERED_BYTES and len(_RENDERED) > 1:
            del _RENDERED[next(iter(_RENDERED))]             # the oldest first
    else:
        _RENDERED[key] = _RENDERED.pop(key)                  # most recently used last
    return _RENDERED[key].copy()


def held_out_splits(cfg: Config) -> tuple[str, ...]:
    """The training source's own held-out splits, each an evaluation set (`shapeworld_split`): a ShapeWorld run's
    "val" (when data.val_size > 0) and "test"; () for file data, which is scored on `eval.datasets`."""
    if source_kind(cfg) != "shapeworld":
        return ()
    return ("val", "test") if cfg.data.val_size else ("test",)


_RENDERED: dict[tuple, object] = {}     # (world seed, image size, split, n) -> ShapeWorldSplit, oldest first
_RENDERED_BYTES = 512 << 20             # keep at most this many bytes of rendered images per process


def train_size(cfg: Config) -> int:
    """Training samples of the run's source, counted without decoding an image: ShapeWorld's `data.train_size`,
    a CSV's / HF dataset's rows; 0 for tar shards (a stream: unknown until read)."""
    if source_kind(cfg) == "shapeworld":
        return cfg.data.train_size
    source = readers.open_source(cfg.data, rewrites=False)
    return len(source) if hasattr(source, "__len__") else 0


def data_fingerprint(captions: list[str], variants: list[str], census: dict) -> str:
    return stable_hash(list(captions), variants, census)


def get_train_data(cfg: Config, tokenizer: Tokenizer, rewrites: Rewrites, rank: int = 0,
                   world_size: int = 1) -> TrainData:
    """Batches of `train.batch_size x train.accum_steps` images per process per step (the trainer splits each
    into `accum_steps` micro-batches), with the texts `rewrites` says each sample has, tokenized by `tokenizer`.
    `info["fingerprint"]` identifies the data (captions, rewrites in use and their census): resume compares it."""
    kind = {"shapeworld": _shapeworld_train_data, "files": _file_train_data}[source_kind(cfg)]
    return kind(cfg, tokenizer, rewrites, rank, world_size)


def _shapeworld_train_data(cfg: Config, tokenizer: Tokenizer, rewrites: Rewrites, rank: int,
                           world_size: int) -> TrainData:
    split = shapeworld_split(cfg, "train")
    captions, variants = rewrites.captions, rewrites.variants
    rows = [texts_per_image(c, [rewrites.texts[v][i] for v in variants]) for i, c in enumerate(captions)]
    k = 1 + len(variants)
    tokens = tokenizer([t for row in rows for t in row]).view(len(rows), k, -1)
    pairs = InMemoryPairs(split.images, tokens, cfg.train.policy, step_batch(cfg), cfg.train.seed,
                          rank, world_size)
    where, census = rewrites.where, rewrites.census
    info = {"source": "shapeworld", "images": len(captions), "texts_per_image": k, "variants": variants,
            "rewrites_dir": where, "rewrite_files": rewrites.files,
            "identical_to_caption": census, "texts": describe_texts(cfg.train.policy, variants, where),
            "fingerprint": data_fingerprint([t for row in rows for t in row], variants, census),
            "fingerprint_count": len(captions)}
    return TrainData(pairs, tokenizer, variants, len(captions), info)


def step_batch(cfg: Config) -> int:
    """Images one process takes per optimizer step: `batch_size` per micro-batch x `accum_steps` micro-batches."""
    return cfg.train.batch_size * cfg.train.accum_steps


def _file_train_data(cfg: Config, tokenizer: Tokenizer, rewrites: Rewrites, rank: int,
                     world_size: int) -> TrainData:
    source, variants, census = rewrites.source, rewrites.variants, rewrites.census
    streaming = not hasattr(source, "__len__")
    transform = PilTransform(cfg.model.image_size, train=True, crop_scale=cfg.data.crop_scale, hflip=cfg.data.hflip,
                             seed=cfg.train.seed)
    kind = ShardPairs if streaming else MapPairs
    dataset = (readers.IterableRecordDataset if streaming else readers.RecordDataset)(
        source, transform, variants=variants, seed=cfg.train.seed)
    pairs = kind(dataset, tokenizer, cfg.train.policy, step_batch(cfg), cfg.train.seed,
                 num_workers=cfg.data.num_workers, rank=rank, world_size=world_size,
                 num_texts=1 + len(variants), pin_memory=torch.cuda.is_available())
    n = -1 if streaming else len(dataset)
    info = {"source": cfg.data.source, "images": n, "texts_per_image": 1 + len(variants), "variants": variants,
            "rewrites_from": rewrites.where, "rewrite_files": rewrites.files,
            "identical_to_caption": census, "texts": describe_texts(cfg.train.policy, variants, rewrites.where),
            "streaming": streaming, "fingerprint": data_fingerprint(rewrites.captions, variants, census),
            "fingerprint_count": len(rewrites.captions)}
    return TrainData(pairs, tokenizer, variants, n, info, from_files=True)


def describe_texts(policy: str, variants: list[str], rewrites_from: str) -> str:
    """What the text policy really draws from, in words (the plan tables show this)."""
    k = 1 + len(variants)
    if policy == "clip" or not variants:
        return "the original caption only" + ("" if policy == "clip" else " (no rewrites in use)")
    what = f"{'1 drawn from' if policy == 'laclip' else 'all'} {k}: original + {', '.join(variants)}"
    return f"{what} (from {rewrites_from})"
