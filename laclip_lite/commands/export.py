"""`laclip-lite export`: write a ShapeWorld split as a Hugging Face dataset, webdataset shards, or the
LaCLIP release layout (CSV + images + rewrite files), e.g. to try the file readers or another trainer.

    laclip-lite export --format all --out data_samples --n 48 --rewriter shapes

`--format all` writes `OUT/hf`, `OUT/wds`, `OUT/laclip`; a single format writes straight into `OUT`.
With `--rewriter`, the captions are rewritten first (`laclip_lite.rewrite.job.rewrite_captions`) and every
layout carries the rewrites; when that rewriter cannot run here, the export goes on without rewrites and says so.
"""
from __future__ import annotations

import argparse
import sys

HELP = "export a ShapeWorld split as a HF dataset, webdataset tar shards or the LaCLIP CSV layout"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["hf", "wds", "laclip", "all"], default="all", help="output layout")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, default=48, help="number of samples")
    p.add_argument("--split", default="train", help="ShapeWorld split: train | val | test")
    p.add_argument("--seed", type=int, default=0, help="ShapeWorld world seed")
    p.add_argument("--image-size", type=int, default=32, help="image side in pixels")
    p.add_argument("--shards", type=int, default=2, help="wds: number of tar shards")
    p.add_argument("--rewriter", default="", help="also export rewrites made by this rewriter (e.g. shapes)")


def _rewrites(captions: list[str], rewriter: str) -> dict[str, list[str]]:
    """Rewrites from the rewrite job, or {} with a message when it is not available."""
    try:
        from laclip_lite.rewrite.job import rewrite_captions
    except ImportError as e:
        print(f"laclip-lite export: --rewriter {rewriter}: the rewrite job is not available ({e}); "
              "exporting without rewrites", file=sys.stderr)
        return {}
    import tempfile

    from laclip_lite.config import RewriteConfig

    with tempfile.TemporaryDirectory(prefix="laclip-export-rewrites-") as tmp:
        return rewrite_captions(captions, tmp, RewriteConfig(rewriter=rewriter), progress=False)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from laclip_lite.data.export import FORMATS, export_hf, export_laclip, export_split, export_wds
    from laclip_lite.data.shapeworld import ShapeWorld
    from laclip_lite.errors import DataError

    if args.n < 1:
        raise DataError(f"--n must be >= 1, got {args.n}")
    if args.shards < 1:
        raise DataError(f"--shards must be >= 1, got {args.shards}")
    split = ShapeWorld(seed=args.seed, image_size=args.image_size).split(args.split, args.n)
    rewrites = _rewrites(split.captions, args.rewriter) if args.rewriter else {}
    out = Path(args.out)
    if args.format == "all":
        written = export_split(split, out, FORMATS, rewrites, shards=args.shards)
    elif args.format == "hf":
        written = {"hf": export_hf(split, out, rewrites)}
    elif args.format == "wds":
        written = {"wds": export_wds(split, out, rewrites, samples_per_shard=-(-args.n // args.shards))}
    else:
        written = {"laclip": export_laclip(split, out, rewrites)}
    variants = ", ".join(rewrites) or "none"
    for fmt, what in written.items():
        shown = ", ".join(str(p) for p in what) if isinstance(what, list) else str(what)
        print(f"{fmt}: {shown}")
    print(f"{args.n} samples of ShapeWorld(seed={args.seed}, image_size={args.image_size}) split "
          f"{args.split!r}; rewrites: {variants}")
    return 0
