"""Accumulation at one global batch, side by side in one run: `global` vs `micro` step time, peak memory vs one
big batch.

    python benchmarks/accumulation.py [--preset tiny] [--global-batch 512] [--accum 4] [--rounds 5] [--steps 5]

Three trainers on the same data and global batch G: `big` (one batch of G, accum 1), `micro` (accum A, each
micro-batch its own loss) and `global` (accum A, one loss over all G: laclip_lite.accumulate). Timed blocks of
optimizer steps alternate between them so that machine noise hits all alike; the table gives seconds per step
(median, min) and each one's ratio to `micro`. Peak memory: one more step of each under torch's CPU memory
profiler (torch.profiler, profile_memory=True): the running sum of every allocation and free by torch's
allocator during the step, its maximum above the level at the step's start (activations, gradients, the
global mode's feature cache; not Python objects, which tracemalloc would see but torch's tensors bypass).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def peak_step_bytes(trainer) -> int:
    """Peak bytes torch allocates above the start level during one optimizer step (CPU memory profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        trainer.train_step()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage     # an op's own allocations at its start; "[memory]" rows: frees
        peak = max(peak, live)
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--global-batch", type=int, default=512, help="images per optimizer step (one process)")
    ap.add_argument("--accum", type=int, default=4, help="micro-batches per step of the micro and global arms")
    ap.add_argument("--rounds", type=int, default=5, help="alternating timed blocks per arm")
    ap.add_argument("--steps", type=int, default=5, help="optimizer steps per block")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()

    import torch

    from laclip_lite.config import build_config
    from laclip_lite.train import Trainer

    torch.set_num_threads(args.threads)
    g, a = args.global_batch, args.accum
    arms = {"big": (g, 1, "micro"), "micro": (g // a, a, "micro"), "global": (g // a, a, "global")}
    trainers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (batch, accum, mode) in arms.items():
            cfg = build_config(args.preset, args.overrides + [
                f"train.batch_size={batch}", f"train.accum_steps={accum}", f"train.accum_mode={mode}",
                "train.steps=100000", "train.device=cpu", f"train.threads={args.threads}"])
            trainers[name] = Trainer(cfg, f"{tmp}/{name}", progress=False, evaluate_at_end=False)
            for _ in range(2):                                   # warm-up: allocator, optimizer state
                trainers[name].train_step()
        times = {name: [] for name in trainers}
        for _ in range(args.rounds):
            for name, trainer in trainers.items():
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    trainer.train_step()
                times[name].append((time.perf_counter() - t0) / args.steps)
        peaks = {name: peak_step_bytes(trainer) for name, trainer in trainers.items()}
    cfg = trainers["big"].cfg
    print(f"preset {args.preset}: global batch {g} = {g // a} x {a} micro-batches (big: {g} x 1), "
          f"image {cfg.model.image_size}px, {args.threads} thread(s), {args.rounds} rounds x {args.steps} steps")
    print(f"{'arm':7s} {'negatives/loss':>14s} {'s/step (median)':>16s} {'min':>8s} {'vs micro':>9s} "
          f"{'peak MB':>8s} {'vs big':>7s}")
    base = statistics.median(times["micro"])
    for name, (batch, accum, mode) in arms.items():
        per_loss = g if mode == "global" or accum == 1 else batch
        med = statistics.median(times[name])
        print(f"{name:7s} {per_loss:14d} {med:16.4f} {min(times[name]):8.4f} {med / base:8.2f}x "
              f"{peaks[name] / 2**20:8.1f} {peaks[name] / peaks['big']:6.2f}x")


if __name__ == "__main__":
    main()
