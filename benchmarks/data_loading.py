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
