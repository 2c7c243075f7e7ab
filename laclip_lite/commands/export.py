"""`laclip-lite export`: write a ShapeWorld split in the layouts real data comes in, or a trained model for open_clip.

    laclip-lite export --format all --out data_samples --n 48 --rewriter shapes          # training layouts
    laclip-lite export --format imagefolder --task color_shape --split test --checkpoint RUN --out evalsets/if
    laclip-lite export --format clip_benchmark --task retrieval --split test --n 200 --out evalsets/wds_ret
    laclip-lite export --format open_clip --checkpoint RUN --out RUN/open_clip           # the model itself

Training layouts: `--format all` writes `OUT/hf`, `OUT/wds`, `OUT/laclip`; a single format writes straight into
`OUT`. With `--rewriter`, the captions are rewritten first (`laclip_lite.rewrite.job.rewrite_captions`) and every
layout carries the rewrites; when that rewriter cannot run here, the export goes on without rewrites and says so.

Evaluation layouts (`imagefolder`, `clip_benchmark`; `laclip_lite.data.eval_layouts` reads them back): one folder per
split under OUT (`--split train,test` writes both, for the probes); `--task` a ShapeWorld task or `retrieval`
(clip_benchmark only). With `--checkpoint RUN` the split is exactly the one that run is evaluated on (its world
seed, image size and split size); otherwise `--seed`, `--image-size` and `--n` say which.

`--format open_clip` writes a model config JSON and a state dict that `open_clip` loads
(`laclip_lite.models.open_clip_export`).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from laclip_lite.config import Config, RewriteConfig
from laclip_lite.data.export import (
    EVAL_FORMATS,
    FORMATS,
    export_clip_benchmark,
    export_hf,
    export_imagefolder,
    export_laclip,
    export_split,
    export_wds,
)
from laclip_lite.data.shapeworld import ShapeWorld
from laclip_lite.data.vocab import TASKS
from laclip_lite.errors import DataError
from laclip_lite.models.open_clip_export import export_open_clip


def _rewrites(captions: list[str], rewriter: str) -> dict[str, list[str]]:
    """Rewrites from the rewrite job, or {} with a message when it is not available."""
    try:
        from laclip_lite.rewrite.job import rewrite_captions
    except ImportError as e:
        print(f"laclip-lite export: --rewriter {rewriter}: the rewrite job is not available ({e}); "
              "exporting without rewrites", file=sys.stderr)
        return {}

    with tempfile.TemporaryDirectory(prefix="laclip-export-rewrites-") as tmp:
        return rewrite_captions(captions, tmp, RewriteConfig(rewriter=rewriter), progress=False)


def run(args: argparse.Namespace) -> int:
    if args.format == "open_clip":
        return _open_clip(args)
    if args.format in EVAL_FORMATS:
        return _eval_layout(args)
    n = 48 if args.n is None else args.n
    split_name = args.split or "train"
    if split_name not in ("train", "val", "test"):
        raise DataError(f"--split {split_name!r}: the split must be train, val or test")
    if n < 1:
        raise DataError(f"--n must be >= 1, got {n}")
    if args.shards < 1:
        raise DataError(f"--shards must be >= 1, got {args.shards}")
    split = ShapeWorld(seed=args.seed, image_size=args.image_size).split(split_name, n)
    rewrites = _rewrites(split.captions, args.rewriter) if args.rewriter else {}
    out = Path(args.out)
    if args.format == "all":
        written = export_split(split, out, FORMATS, rewrites, shards=args.shards)
    elif args.format == "hf":
        written = {"hf": export_hf(split, out, rewrites)}
    elif args.format == "wds":
        written = {"wds": export_wds(split, out, rewrites, samples_per_shard=-(-n // args.shards))}
    else:
        written = {"laclip": export_laclip(split, out, rewrites)}
    variants = ", ".join(rewrites) or "none"
    for fmt, what in written.items():
        shown = ", ".join(str(p) for p in what) if isinstance(what, list) else str(what)
        print(f"{fmt}: {shown}")
    print(f"{n} samples of ShapeWorld(seed={args.seed}, image_size={args.image_size}) split "
          f"{split_name!r}; rewrites: {variants}")
    return 0


def _eval_layout(args) -> int:
    """ImageFolder / CLIP_benchmark folder of one or more ShapeWorld splits."""
    splits = [s.strip() for s in (args.split or "test").split(",") if s.strip()]
    bad = [s for s in splits if s not in ("train", "val", "test")]
    if bad or not splits:
        raise DataError(f"--split {args.split!r}: each split must be train, val or test")
    tasks = list(TASKS) + (["retrieval"] if args.format == "clip_benchmark" else [])
    if args.task not in tasks:
        raise DataError(f"--task {args.task!r} is not one of {', '.join(tasks)} for --format {args.format}")
    if args.n is not None and args.n < 1:
        raise DataError(f"--n must be >= 1, got {args.n}")
    world, sizes, where = _world(args)
    for name in splits:
        split = world.split(name, args.n or sizes[name])
        if args.format == "imagefolder":
            folder = export_imagefolder(split, args.out, args.task)
        else:
            folder = export_clip_benchmark(split, args.out, args.task, samples_per_shard=-(-len(split) // args.shards))
        print(f"{args.format}: {folder} ({len(split)} images of split {name!r}, task {args.task}; {where})")
    print(f"score it: laclip-lite eval --checkpoint RUN --dataset {Path(args.out)}")
    return 0


def _world(args):
    """The ShapeWorld to export and each split's size: the run's (--checkpoint) or --seed / --image-size / 48."""
    if args.checkpoint:
        run = Path(args.checkpoint)
        run = run.parent if run.suffix == ".pt" else run
        if not (run / "config.yaml").is_file():
            raise FileNotFoundError(f"run folder {run} has no config.yaml (expected {run / 'config.yaml'})")
        cfg = Config.load(run / "config.yaml")
        d = cfg.data
        sizes = {"train": d.train_size, "val": d.val_size, "test": d.test_size}
        return (ShapeWorld(seed=d.world_seed, image_size=cfg.model.image_size), sizes,
                f"the splits of run {run}")
    sizes = dict.fromkeys(("train", "val", "test"), 48)
    return ShapeWorld(seed=args.seed, image_size=args.image_size), sizes, f"ShapeWorld(seed={args.seed})"


def _open_clip(args) -> int:
    if not args.checkpoint:
        raise DataError("--format open_clip needs --checkpoint RUN_DIR (the run to export)")
    paths = export_open_clip(args.checkpoint, args.out, args.name)
    name = paths["config"].stem
    print(f"open_clip: {paths['config']}, {paths['local_config']}, {paths['weights']}\n"
          f"load it:  open_clip.add_model_config('{paths['config']}'); "
          f"open_clip.create_model_and_transforms('{name}', pretrained='{paths['weights']}')\n"
          f"     or:  open_clip.create_model_and_transforms('local-dir:{paths['weights'].parent}')\n"
          "Tokens: open_clip's tokenizer is not the run's; encode texts with laclip_lite.data.tokenizer."
          f"load_tokenizer('{args.checkpoint}')")
    return 0
