"""LaCLIP-MT step vs CLIP step on the same preset, measured side by side in one run.

    python benchmarks/mt_step.py [--preset tiny] [--rounds 5] [--steps 10] [--set key=value ...]

Builds two trainers on the same data (CLIP policy: one text per image; MT: all 1 + M texts per image, M =
`data.num_rewrites`), then alternates timed blocks of optimizer steps between them so that machine noise hits
both alike. Prints seconds per step of each, the ratio (goal: MT <= 2.0x CLIP at M = 4) and the data-loading
share of each step (goal: <= 10%).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--rounds", type=int, default=5, help="alternating timed blocks per policy")
    ap.add_argument("--steps", type=int, default=10, help="optimizer steps per block")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()

    from laclip_lite.config import build_config
    from laclip_lite.train import Trainer

    trainers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for policy in ("clip", "mt"):
            cfg = build_config(args.preset, args.overrides + [f"train.policy={policy}", "data.augment=shapes",
                                                              "train.steps=100000"])
            trainers[policy] = Trainer(cfg, f"{tmp}/{policy}", progress=False, evaluate_at_end=False)
            for _ in range(3):                               # warm-up: allocator, kernels
                trainers[policy].train_step()
        times = {p: [] for p in trainers}
        data = {p: [] for p in trainers}
        for _ in range(args.rounds):
            for policy, trainer in trainers.items():
                t0, d = time.perf_counter(), 0.0
                for _ in range(args.steps):
                    d += trainer.train_step()["data_time"]
                elapsed = time.perf_counter() - t0
                times[policy].append(elapsed / args.steps)
                data[policy].append(d / elapsed)
    k = trainers["mt"].data.pairs.texts_per_image
    cfg = trainers["clip"].cfg
    print(f"preset {args.preset}: batch {cfg.train.batch_size}, image {cfg.model.image_size}px, "
          f"context {cfg.model.context_length}, MT texts per image K = {k} (M = {k - 1})")
    print(f"{'policy':8s} {'s/step (median)':>16s} {'min':>8s} {'data share':>11s}")
    for p in trainers:
        print(f"{p:8s} {statistics.median(times[p]):16.4f} {min(times[p]):8.4f} {statistics.median(data[p]):10.1%}")
    ratio = statistics.median(times["mt"]) / statistics.median(times["clip"])
    print(f"MT / CLIP step time: {ratio:.2f}x (goal <= 2.0x)")


if __name__ == "__main__":
    main()
