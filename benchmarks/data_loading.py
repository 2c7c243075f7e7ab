"""Does data loading keep the model busy? Data share of the step time when training from files.

    python benchmarks/data_loading.py [--n 1500] [--steps 30] [--workers 0,2] [--format laclip|wds|hf]

Exports `--n` ShapeWorld images (with stand-in rewrites) to a real format in a temporary folder, then trains
the tiny preset from it (LaCLIP policy: PNG decode + crop + tokenisation per sample) with each worker count
and prints the share of each step spent waiting for the batch (goal: <= 10% on the tiny preset), next to the
in-memory ShapeWorld path for reference. All settings run in one process, one after another.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path


def measure(cfg, out: Path, steps: int) -> tuple[float, float]:
    from laclip_lite.train import Trainer

    trainer = Trainer(cfg, out, progress=False, evaluate_at_end=False)
    for _ in range(3):
        trainer.train_step()                 # start workers, fill the prefetch queue
    rows = [trainer.train_step() for _ in range(steps)]
    step = statistics.median(r["step_time"] for r in rows)
    data = statistics.median(r["data_time"] for r in rows)
    return step, data / step


def write_jpeg_shards(folder: Path, n: int, size: int = 256, shards: int = 8, quality: int = 90,
                      seed: int = 0) -> Path:
    """`n` photo-like JPEGs (`size` px: smooth colour fields with noise, ~15-25 KB at 256 px like a resized web
    photo) with ShapeWorld captions, as webdataset tar shards `{key}.jpg` + `{key}.txt`. -> the folder."""
    import io
    import tarfile

    import numpy as np
    from PIL import Image

    from laclip_lite.data.shapeworld import ShapeWorld

    folder.mkdir(parents=True, exist_ok=True)
    captions = ShapeWorld(seed=seed, image_size=8).split("train", n).captions
    rng = np.random.default_rng(seed)
    per = -(-n // shards)
    for s in range(shards):
        with tarfile.open(folder / f"shard-{s:06d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(s * per, min(n, (s + 1) * per)):
                coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((size, size),
                                                                                                  Image.BICUBIC)
                pixels = np.asarray(coarse, dtype=np.int16) + rng.integers(-12, 13, (size, size, 3))
                buf = io.BytesIO()
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=quality)
                for name, data in ((f"{i:08d}.jpg", buf.getvalue()), (f"{i:08d}.txt", captions[i].encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return folder


def loader_images_per_s(cfg, batches: int, warmup: int = 2) -> float:
    """Images/s the training data loader of `cfg` delivers (decode + crop + tokenise, `data.num_workers`
    workers), over `batches` batches after `warmup` (workers start, queues fill); no model runs."""
    import time

    from laclip_lite.data.dataset import build_train_data

    pairs = build_train_data(cfg).pairs
    for step in range(warmup):
        pairs.batch(step)
    t0 = time.perf_counter()
    images = sum(len(pairs.batch(step).images) for step in range(warmup, warmup + batches))
    return images / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--workers", default="0,2")
    ap.add_argument("--format", default="laclip", choices=["laclip", "wds", "hf"])
    ap.add_argument("--preset", default="tiny")
    args = ap.parse_args()

    from laclip_lite.config import RewriteConfig, build_config
    from laclip_lite.data.export import export_split
    from laclip_lite.data.shapeworld import ShapeWorld
    from laclip_lite.rewrite.job import rewrite_captions

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        split = ShapeWorld(seed=0, image_size=32).split("train", args.n)
        rewrites = rewrite_captions(split.captions, tmp / "rw", RewriteConfig(), progress=False)
        export_split(split, tmp / "data", formats=(args.format,), rewrites=rewrites)
        source = {"laclip": tmp / "data" / "laclip" / "train.csv", "wds": tmp / "data" / "wds",
                  "hf": tmp / "data" / "hf"}[args.format]
        base = ["train.policy=laclip", "train.steps=100000"]
        print(f"tiny preset, LaCLIP policy, {args.n} images; median over {args.steps} steps")
        print(f"{'source':28s} {'workers':>7s} {'s/step':>8s} {'data share':>11s}")
        step, share = measure(build_config(args.preset, base + ["data.augment=shapes"]), tmp / "mem", args.steps)
        print(f"{'shapeworld (in memory)':28s} {'-':>7s} {step:8.3f} {share:10.1%}")
        for w in (int(x) for x in args.workers.split(",")):
            cfg = build_config(args.preset, base + [f"data.source={source}", f"data.num_workers={w}"])
            step, share = measure(cfg, tmp / f"files-{w}", args.steps)
            print(f"{args.format + ' files':28s} {w:7d} {step:8.3f} {share:10.1%}")


if __name__ == "__main__":
    main()
