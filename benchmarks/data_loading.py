"""Does data loading keep the model busy? JPEG decode speed at 224 px, and the data share of a tiny step.

    python benchmarks/data_loading.py [--n 1500] [--steps 30] [--workers 0,2] [--format laclip|wds|hf]
                                      [--jpeg-n 256] [--jpeg-side 400]

1. **Images/s per worker at 224 px**: `--jpeg-n` photo-like JPEGs (`--jpeg-side` x 3/4 of it, quality 90,
   ShapeWorld scenes plus sensor-like noise so they do not compress like flat drawings) in the LaCLIP layout
   (CSV + files) and in webdataset tar shards, read through the trainer's own datasets (decode + one
   RandomResizedCrop to 224 + uint8) with each worker count; per worker = images/s / max(1, workers).
2. **Data share of a tiny step**: exports `--n` ShapeWorld images (with stand-in rewrites) to `--format`, then
   trains the tiny preset from it (LaCLIP policy: PNG decode + crop + tokenisation per sample) with each worker
   count and prints the share of each step spent waiting for the batch (goal: <= 10%), next to the in-memory
   ShapeWorld path for reference.
All settings run in one process, one after another, so their ratios are measured side by side.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
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

    from laclip_lite.train import build_train_data

    pairs = build_train_data(cfg).pairs
    for step in range(warmup):
        pairs.batch(step)
    t0 = time.perf_counter()
    images = sum(len(pairs.batch(step).images) for step in range(warmup, warmup + batches))
    return images / (time.perf_counter() - t0)


def photo_jpegs(n: int, side: int) -> list[bytes]:
    """n JPEGs of side x 3/4 side: ShapeWorld scenes with Gaussian noise (sigma 12), quality 90."""
    import io

    import numpy as np
    from PIL import Image

    from laclip_lite.data.shapeworld import ShapeWorld

    split = ShapeWorld(seed=0, image_size=128).split("train", n)
    rng = np.random.default_rng(0)
    out = []
    for img in split.images:
        pil = Image.fromarray(img.permute(1, 2, 0).numpy()).resize((side, side * 3 // 4), Image.BILINEAR)
        arr = np.clip(np.asarray(pil, dtype=np.float32) + rng.normal(0, 12, (side * 3 // 4, side, 3)), 0, 255)
        buf = io.BytesIO()
        Image.fromarray(arr.astype(np.uint8)).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def write_jpeg_layouts(folder: Path, jpegs: list[bytes]) -> tuple[Path, Path]:
    """The same JPEGs as a LaCLIP CSV + files and as 4 webdataset tar shards; -> (csv path, shard folder)."""
    import io
    import tarfile

    (folder / "laclip" / "images").mkdir(parents=True)
    rows = []
    for i, data in enumerate(jpegs):
        (folder / "laclip" / "images" / f"{i:06d}.jpg").write_bytes(data)
        rows.append(f"images/{i:06d}.jpg,a photo of scene {i}\n")
    (folder / "laclip" / "train.csv").write_text("".join(rows))
    (folder / "wds").mkdir()
    per = -(-len(jpegs) // 4)
    for s in range(4):
        with tarfile.open(folder / "wds" / f"shard-{s:06d}.tar", "w") as tar:
            for i in range(s * per, min((s + 1) * per, len(jpegs))):
                for ext, data in (("jpg", jpegs[i]), ("txt", f"a photo of scene {i}".encode())):
                    info = tarfile.TarInfo(f"{i:06d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return folder / "laclip" / "train.csv", folder / "wds"


def decode_rate(dataset, workers: int, streaming: bool) -> tuple[float, float]:
    """(images/s, images/s per worker) for one pass over `dataset` through a DataLoader with `workers`."""
    from torch.utils.data import DataLoader

    def collate(items):
        return len(items)

    kwargs = {"batch_size": 32, "num_workers": workers, "collate_fn": collate}
    if not streaming:       # map-style: (step, index) items, as the trainer's sampler yields them
        kwargs["sampler"] = [(0, i) for i in range(len(dataset))]
    t0 = time.perf_counter()
    n = sum(DataLoader(dataset, **kwargs))
    rate = n / (time.perf_counter() - t0)
    return rate, rate / max(1, workers)


def jpeg_table(args) -> None:
    from laclip_lite.data.readers import IterableRecordDataset, LaclipCsvSource, RecordDataset, TarShardSource
    from laclip_lite.data.transforms import PilTransform

    jpegs = photo_jpegs(args.jpeg_n, args.jpeg_side)
    kb = sum(map(len, jpegs)) / len(jpegs) / 1024
    with tempfile.TemporaryDirectory() as tmp:
        csv_path, shards = write_jpeg_layouts(Path(tmp), jpegs)
        transform = PilTransform(224, train=True, crop_scale=(0.5, 1.0))
        print(f"JPEG decode + RandomResizedCrop to 224 px: {args.jpeg_n} images of {args.jpeg_side}x"
              f"{args.jpeg_side * 3 // 4} (~{kb:.0f} KB), one pass each")
        print(f"{'layout':24s} {'workers':>7s} {'images/s':>9s} {'per worker':>11s}")
        for w in (int(x) for x in args.workers.split(",")):
            for name, ds, streaming in (
                    ("laclip csv + files", RecordDataset(LaclipCsvSource(csv_path), transform), False),
                    ("wds tar shards", IterableRecordDataset(TarShardSource(shards), transform), True)):
                rate, per = decode_rate(ds, w, streaming)
                print(f"{name:24s} {w:7d} {rate:9.1f} {per:11.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--workers", default="0,2")
    ap.add_argument("--format", default="laclip", choices=["laclip", "wds", "hf"])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--jpeg-n", type=int, default=256, help="JPEGs for the 224 px decode table (0 = skip it)")
    ap.add_argument("--jpeg-side", type=int, default=400, help="JPEG width in pixels (height 3/4 of it)")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f} at start (shared machine: "
          "wall times are upper bounds)")
    if args.jpeg_n:
        jpeg_table(args)
        print()

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
