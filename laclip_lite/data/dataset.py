"""What a run trains on: `cfg.data` -> tokenizer + batches, with the rewrites the text policy draws from.

* ShapeWorld (the embedded default): the split is rendered in memory; rewrites come from the rewrite cache
  (`data.augment` picks the rewriter; the cache is made once and shared by every run with the same captions).
* Files (LaCLIP CSV + rewrite files, webdataset shards, a Hugging Face dataset): records are read by
  `laclip_lite.data.readers`, decoded in DataLoader workers; their rewrites come with the records.

`data.sources` and `data.num_rewrites` select which rewrites take part, so the paper's "meta-pair source" and
"number of augmented texts" ablations are one parameter each.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch

from laclip_lite.config import Config
from laclip_lite.constants import SOURCES, canonical_source
from laclip_lite.data.loader import InMemoryPairs, StreamingPairs, texts_per_image
from laclip_lite.data.tokenizer import Tokenizer, build_tokenizer
from laclip_lite.errors import DataError
from laclip_lite.utils import cache_dir, stable_hash


@dataclass
class TrainData:
    pairs: object                   # InMemoryPairs or StreamingPairs: .batch(step) -> Batch
    tokenizer: Tokenizer
    variants: list[str]             # rewrite variants in use, in text order after the original
    num_images: int
    info: dict = field(default_factory=dict)   # what a person should see: sizes, skipped samples, cache folder


def shapeworld_split(cfg: Config, name: str):
    from laclip_lite.data.shapeworld import ShapeWorld

    sizes = {"train": cfg.data.train_size, "val": cfg.data.val_size, "test": cfg.data.test_size}
    return ShapeWorld(seed=cfg.data.world_seed, image_size=cfg.model.image_size).split(name, sizes[name])


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
    if cfg.data.augment != "shapes" or cfg.rewrite.leak_free or cfg.rewrite.error_rate:
        world = copy.deepcopy(cfg)        # the plain stand-in's rewrites (the controls change only the training text)
        world.data.augment, world.data.rewrites_dir = "shapes", ""
        world.rewrite.leak_free, world.rewrite.error_rate = False, 0.0
        rewrites = shapeworld_rewrites(world, captions)
    return captions + [t for v in sorted(rewrites) for t in rewrites[v]]


def build_train_data(cfg: Config, rank: int = 0, world_size: int = 1) -> TrainData:
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
    pairs = InMemoryPairs(split.images, tokens, cfg.train.policy, cfg.train.batch_size, cfg.train.seed,
                          rank, world_size)
    info = {"source": "shapeworld", "images": len(captions), "texts_per_image": k, "variants": variants,
            "rewrites_dir": str(rewrite_cache_dir(cfg, captions)) if rewrites else ""}
    return TrainData(pairs, tokenizer, variants, len(captions), info)


def _file_train_data(cfg: Config, rank: int, world_size: int) -> TrainData:
    from laclip_lite.data import readers
    from laclip_lite.data.loader import ShardPairs
    from laclip_lite.data.transforms import PilTransform

    source = readers.open_source(cfg.data, split="train", rank=rank, world_size=world_size)
    streaming = not hasattr(source, "__len__")
    available = list(getattr(source, "variants", []) or [])
    variants = select_variants(available, cfg) if available and cfg.data.num_rewrites else []
    tokenizer = build_tokenizer(cfg.data, cfg.model, _file_corpus(cfg, source, streaming))
    transform = PilTransform(cfg.model.image_size, train=True, crop_scale=cfg.data.crop_scale,
                             seed=cfg.train.seed + rank)
    kind = ShardPairs if streaming else StreamingPairs
    reader = readers.IterableRecordDataset if streaming else readers.RecordDataset
    dataset = reader(source, transform, variants=variants)
    pairs = kind(dataset, tokenizer, cfg.train.policy, cfg.train.batch_size, cfg.train.seed,
                 num_workers=cfg.data.num_workers, rank=rank, world_size=world_size,
                 num_texts=1 + len(variants), pin_memory=torch.cuda.is_available())
    n = -1 if streaming else len(dataset)
    info = {"source": cfg.data.source, "images": n, "texts_per_image": 1 + len(variants), "variants": variants,
            "streaming": streaming}
    return TrainData(pairs, tokenizer, variants, n, info)


def _file_corpus(cfg: Config, source, streaming: bool) -> list[str] | None:
    """Captions (+ shipped rewrites) for the BPE, read without decoding a single image."""
    if cfg.model.text == "hf" or cfg.data.tokenizer != "bpe":
        return None
    if not streaming:
        return list(source.captions())
    import json
    import tarfile

    from laclip_lite.data.readers import TarShardSource

    texts: list[str] = []
    for shard in TarShardSource(source.shards).my_shards():      # every shard, whatever this rank reads
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith(".txt"):
                    texts.append(tar.extractfile(member).read().decode("utf-8", "replace").strip())
                elif member.name.endswith(".json"):
                    texts.extend(json.loads(tar.extractfile(member).read()).get("rewrites", {}).values())
    return texts
