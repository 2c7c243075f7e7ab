"""What a run trains on: `cfg.data` -> tokenizer + batches, with the rewrites the text policy draws from.

* ShapeWorld (the embedded default): the split is rendered in memory; rewrites come from the rewrite cache
  (`data.augment` picks the rewriter; the cache is made once and shared by every run with the same captions).
* Files (LaCLIP CSV + rewrite files, webdataset shards, a Hugging Face dataset): records are read by
  `laclip_lite.data.readers`, decoded and augmented in DataLoader workers. A `clip` run reads the original
  captions only; `laclip` / `mt` use the rewrites shipped with the data when present, else (CSV) the rewrite
  job's cache for `data.augment`, else stop before training naming what is missing (`_file_rewrites`).

`data.sources` and `data.num_rewrites` select which rewrites take part, so the paper's "meta-pair source" and
"number of augmented texts" ablations are one parameter each.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from laclip_lite.config import Config
from laclip_lite.constants import SOURCES, canonical_source
from laclip_lite.data.loader import InMemoryPairs, MapPairs, texts_per_image
from laclip_lite.data.tokenizer import Tokenizer, build_tokenizer
from laclip_lite.errors import DataError
from laclip_lite.utils import cache_dir, stable_hash


@dataclass
class TrainData:
    pairs: object                   # InMemoryPairs or MapPairs: .batch(step) -> Batch
    tokenizer: Tokenizer
    variants: list[str]             # rewrite variants in use, in text order after the original
    num_images: int
    info: dict = field(default_factory=dict)   # what a person should see: sizes, skipped samples, cache folder


def shapeworld_split(cfg: Config, name: str):
    """The rendered split `name` of the run's world. Rendered once per process (a lesson renders its 20,000
    training images once, not once per cell that needs them); every call gets its own copy, so a caller that
    edits the images or captions in place never changes what the next call sees."""
    from laclip_lite.data.shapeworld import ShapeWorld

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


_RENDERED: dict[tuple, object] = {}     # (world seed, image size, split, n) -> ShapeWorldSplit, oldest first
_RENDERED_BYTES = 512 << 20             # keep at most this many bytes of rendered images per process


def rewrite_cache_dir(cfg: Config, captions: list[str]) -> Path:
    """The cache folder of (captions, rewriter settings): `data.rewrites_dir` or one under the kit's cache."""
    if cfg.data.rewrites_dir:
        return Path(cfg.data.rewrites_dir)
    rcfg = rewrite_config(cfg)
    return cache_dir() / "rewrites" / f"{rcfg.rewriter}-{stable_hash(captions, vars(rcfg))}"


def rewrite_config(cfg: Config):
    """The rewrite job settings for `data.augment`: every source is generated, `data.sources` selects later."""
    rcfg = copy.deepcopy(cfg.rewrite)
    rcfg.rewriter = cfg.data.augment
    rcfg.sources = list(SOURCES)
    return rcfg


def select_variants(available: list[str], cfg: Config) -> list[str]:
    """The rewrite variants a run uses: `data.sources` (for LLM-style sources) then the first `num_rewrites`."""
    if cfg.data.augment in ("llm", "shapes") or set(available) & set(SOURCES):
        unknown = [s for s in cfg.data.sources if canonical_source(s) not in available]
        if unknown:
            raise DataError(f"data.sources names {unknown} but the rewrites hold only {available}")
        wanted = [canonical_source(s) for s in cfg.data.sources]
        chosen = [v for v in wanted if v in available]
    else:
        chosen = sorted(available)
    return chosen[:cfg.data.num_rewrites]


def shapeworld_rewrites(cfg: Config, captions: list[str]) -> dict[str, list[str]]:
    if cfg.data.augment == "none":
        return {}
    out_dir = rewrite_cache_dir(cfg, captions)
    if cfg.data.rewrites_dir and out_dir.exists():
        from laclip_lite.rewrite.job import load_rewrites
        rewrites = load_rewrites(out_dir)
    else:
        from laclip_lite.rewrite.job import rewrite_captions
        rewrites = rewrite_captions(captions, out_dir, rewrite_config(cfg))
    for variant, texts in rewrites.items():
        if len(texts) != len(captions):
            raise DataError(f"rewrite file {out_dir / (variant + '.txt')} has {len(texts)} lines "
                            f"but there are {len(captions)} captions")
    return rewrites


def tokenizer_corpus(cfg: Config, captions: list[str], rewrites: dict[str, list[str]]) -> list[str]:
    """The text a run's BPE is trained on: the world's text, whatever the run's text policy.

    The paper's models all share CLIP's one BPE, trained on a broad corpus. Our analogue for ShapeWorld: the
    original captions plus the world-aware rewrites of them. Every run on the same world (CLIP, LaCLIP, MT,
    EDA...) therefore gets the same tokenizer, so a comparison changes only the text the model trains on.
    """
    if cfg.model.text == "hf" or cfg.data.tokenizer != "bpe":
        return captions
    if cfg.data.augment != "shapes" or cfg.rewrite.leak_free or cfg.rewrite.error_rate or \
            cfg.rewrite.standin != "full":
        world = copy.deepcopy(cfg)        # the plain stand-in's rewrites (the controls change only the training text)
        world.data.augment, world.data.rewrites_dir = "shapes", ""
        world.rewrite.leak_free, world.rewrite.error_rate, world.rewrite.standin = False, 0.0, "full"
        rewrites = shapeworld_rewrites(world, captions)
    return captions + [t for v in sorted(rewrites) for t in rewrites[v]]


def build_train_data(cfg: Config, rank: int = 0, world_size: int = 1) -> TrainData:
    """Batches of `train.batch_size x train.accum_steps` images per process per step (the trainer splits each
    into `accum_steps` micro-batches)."""
    if cfg.data.is_shapeworld:
        return _shapeworld_train_data(cfg, rank, world_size)
    return _file_train_data(cfg, rank, world_size)


def _shapeworld_train_data(cfg: Config, rank: int, world_size: int) -> TrainData:
    split = shapeworld_split(cfg, "train")
    captions = list(split.captions)
    rewrites = shapeworld_rewrites(cfg, captions)
    variants = select_variants(list(rewrites), cfg) if rewrites else []
    tokenizer = build_tokenizer(cfg.data, cfg.model, tokenizer_corpus(cfg, captions, rewrites))
    rows = [texts_per_image(c, [rewrites[v][i] for v in variants]) for i, c in enumerate(captions)]
    k = 1 + len(variants)
    tokens = tokenizer([t for row in rows for t in row]).view(len(rows), k, -1)
    pairs = InMemoryPairs(split.images, tokens, cfg.train.policy, step_batch(cfg), cfg.train.seed,
                          rank, world_size)
    info = {"source": "shapeworld", "images": len(captions), "texts_per_image": k, "variants": variants,
            "rewrites_dir": str(rewrite_cache_dir(cfg, captions)) if rewrites else ""}
    return TrainData(pairs, tokenizer, variants, len(captions), info)


def step_batch(cfg: Config) -> int:
    """Images one process takes per optimizer step: `batch_size` per micro-batch x `accum_steps` micro-batches."""
    return cfg.train.batch_size * cfg.train.accum_steps


# Which shipped rewrite variants each `data.augment` accepts as its own.
_KIND = {"llm": re.compile(rf"^({'|'.join(SOURCES)}|coco|rewrite\d*)$"),
         "shapes": re.compile(rf"^({'|'.join(SOURCES)}|coco)$"),
         "eda": re.compile(r"^eda\d+$"), "backtranslate": re.compile(r"^bt\d+$")}


def _file_train_data(cfg: Config, rank: int, world_size: int) -> TrainData:
    from laclip_lite.data import readers
    from laclip_lite.data.loader import ShardPairs
    from laclip_lite.data.transforms import PilTransform

    wants = cfg.train.policy != "clip" and cfg.data.num_rewrites > 0   # clip reads the original caption only
    source = readers.open_source(cfg.data, split="train", rank=rank, world_size=world_size, rewrites=wants)
    streaming = not hasattr(source, "__len__")
    variants, rewrites_from = [], ""
    if wants:
        source, variants, rewrites_from = _file_rewrites(cfg, source, rank, world_size)
    tokenizer = build_tokenizer(cfg.data, cfg.model, _file_corpus(cfg, source))
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
            "rewrites_from": rewrites_from, "texts": describe_texts(cfg.train.policy, variants, rewrites_from),
            "streaming": streaming}
    return TrainData(pairs, tokenizer, variants, n, info)


def describe_texts(policy: str, variants: list[str], rewrites_from: str) -> str:
    """What the text policy really draws from, in words (the plan tables show this)."""
    k = 1 + len(variants)
    if policy == "clip" or not variants:
        return "the original caption only" + ("" if policy == "clip" else " (no rewrites in use)")
    what = f"{'1 drawn from' if policy == 'laclip' else 'all'} {k}: original + {', '.join(variants)}"
    return f"{what} (from {rewrites_from})"


def _file_rewrites(cfg: Config, source, rank: int, world_size: int):
    """(source, variants, where from): the rewrites a laclip / mt run on file data uses, or a DataError before
    training naming what is missing. Shipped rewrites (files beside the CSV or in `data.rewrites_dir`, the tar
    samples' JSON, HF columns) are used when present and of the kind `data.augment` names ("none" takes any);
    otherwise a CSV gets `eda` / `shapes` rewrites from the rewrite job's cache (made now when absent) and
    `llm` / `backtranslate` ones read from that cache (made by `laclip-lite rewrite`)."""
    from laclip_lite.data import readers

    augment = cfg.data.augment
    shipped = list(getattr(source, "variants", []) or [])
    usable = [v for v in shipped if augment == "none" or _KIND[augment].match(v)]
    where = _describe_source(source)
    if usable:
        return source, select_variants(usable, cfg), where
    if augment == "none":
        return source, [], ""
    if not isinstance(source, readers.LaclipCsvSource):
        raise DataError(f"data.augment={augment} on {cfg.data.source}: the data carries no {augment} rewrites "
                        f"(found: {shipped or 'none'}); tar shards need them in each sample's JSON "
                        "({'rewrites': {...}}), HF datasets as columns. Write them in, or train with "
                        "data.augment=none / train.policy=clip")
    captions = list(source.captions())
    out_dir = rewrite_cache_dir(cfg, captions)
    from laclip_lite.rewrite.job import load_rewrites, rewrite_captions

    rcfg = rewrite_config(cfg)
    if augment in ("eda", "shapes"):
        rewrite_captions(captions, out_dir, rcfg, progress=False)      # cheap; resumes / reuses the cache
    elif not _cache_complete(out_dir, captions, rcfg):
        names = ", ".join(f"{source.csv_path.parent}/{v}.txt" for v in rcfg.sources)
        raise DataError(
            f"data.augment={augment} on {source.csv_path}: no {augment} rewrites found - no rewrite files beside "
            f"the CSV ({names}, or {source.csv_path.stem}_<variant>.txt), none in data.rewrites_dir "
            f"({cfg.data.rewrites_dir or 'not set'}), and no finished rewrite cache at {out_dir}. Make them first: "
            f"laclip-lite rewrite --input {source.csv_path} --out DIR --rewriter {augment} --model MODEL, "
            "then --set data.rewrites_dir=DIR")
    rewrites = load_rewrites(out_dir)
    files = {v: out_dir / f"{v}.txt" for v in rewrites}
    source = readers.open_source(cfg.data, "train", rank, world_size, rewrite_files=files)
    return source, select_variants(list(rewrites), cfg), str(out_dir)


def _cache_complete(out_dir: Path, captions: list[str], rcfg) -> bool:
    from laclip_lite.rewrite.job import job_settings

    report = out_dir / "report.json"
    if not report.exists():
        return False
    import json
    try:
        fingerprint = json.loads(report.read_text()).get("fingerprint")
        return fingerprint == stable_hash(list(captions), job_settings(rcfg))
    except ValueError:
        return False


def _describe_source(source) -> str:
    files = getattr(source, "rewrite_files", None)
    if files:
        return ", ".join(str(p) for p in files.values())
    if hasattr(source, "shards"):
        return "the shards' JSON"
    return "the dataset's columns"


def _file_corpus(cfg: Config, source) -> list[str] | None:
    """The original captions for the BPE, read without decoding a single image. Rewrites are left out, so every
    text policy on the same data gets the same tokenizer (a comparison changes only the texts trained on)."""
    if cfg.model.text == "hf" or cfg.data.tokenizer != "bpe":
        return None
    return list(source.captions())        # CSV / HF rows, or every tar shard's .txt members
