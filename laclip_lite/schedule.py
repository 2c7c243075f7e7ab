"""How long a run trains and at what learning rate: epochs -> steps, the global batch, the lr schedule.

The LaCLIP release (train.py) trains `--epochs 35 --warmup-epochs 1` with `--batch-size 256` per GPU: the number
of optimizer steps follows from the dataset size and the number of GPUs,

    global batch    = train.batch_size x world size x train.accum_steps   (images per optimizer step)
    steps per epoch = floor(dataset size / global batch)                   (the ragged end is dropped)
    train.steps     = train.epochs x steps per epoch;  train.warmup_steps = train.warmup_epochs x steps per epoch

With `train.warmup_epochs` = 0 the warm-up stays `train.warmup_steps` (open_clip counts it in steps).
(The release: DistributedSampler gives each GPU ceil(N / GPUs) samples, its DataLoader drops the last partial
batch, and `update_freq` divides the batches: the same numbers for every realistic N). `train.global_batch`
asks for a global batch instead and picks `accum_steps` for the GPUs at hand; with `train.accum_mode=global` each
loss then contrasts the whole global batch (with `micro`, one micro-batch on every process).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from laclip_lite.config import Config, ConfigError


@dataclass
class StepPlan:
    num_samples: int            # training samples one epoch covers (0 = unknown: train.steps as given)
    world_size: int             # processes (GPUs)
    batch_size: int             # images per micro-batch per process
    accum_steps: int            # micro-batches per optimizer step
    global_batch: int           # images per optimizer step, all processes together
    steps_per_epoch: int        # 0 when the run is not counted in epochs
    steps: int                  # optimizer steps of the whole run
    warmup_steps: int           # warm-up steps
    accum_mode: str = "micro"   # train.accum_mode: what one contrastive loss contrasts (laclip_lite.accumulate)

    @property
    def negatives_per_loss(self) -> int:
        """Samples one contrastive loss contrasts: the global batch (`global`) or one micro-batch on every
        process (`micro`)."""
        return negatives_per_loss(self.accum_mode, self.batch_size, self.world_size, self.accum_steps)

    def lines(self) -> list[str]:
        per_loss = self.negatives_per_loss
        why = ("the global batch" if per_loss == self.global_batch else
               f"one micro-batch x {self.world_size} process(es); accum_mode=global would contrast all "
               f"{self.global_batch}")
        out = [f"processes (GPUs)        {self.world_size}",
               f"batch per process       {self.batch_size} x {self.accum_steps} micro-batch(es) "
               f"(accum_mode {self.accum_mode})",
               f"global batch            {self.global_batch}",
               f"negatives per loss      {per_loss - 1:,} per sample ({per_loss:,} samples in each loss: {why})"]
        if self.steps_per_epoch:
            out += [f"training samples        {self.num_samples:,}",
                    f"steps per epoch         {self.steps_per_epoch:,} (= {self.num_samples:,} // {self.global_batch})"]
        out += [f"optimizer steps         {self.steps:,}", f"warm-up steps           {self.warmup_steps:,}"]
        return out


def negatives_per_loss(mode: str, batch_size: int, world_size: int, accum_steps: int) -> int:
    """Samples one contrastive loss contrasts under `train.accum_mode` (each image's negatives: this minus one)."""
    return batch_size * world_size * (accum_steps if mode == "global" else 1)


def resolve_accum(cfg: Config, world_size: int) -> int:
    """`train.accum_steps`, or the one that makes `train.global_batch` on `world_size` processes."""
    t = cfg.train
    if not t.global_batch:
        return t.accum_steps
    per_step = t.batch_size * world_size
    if t.global_batch % per_step:
        raise ConfigError(f"train.global_batch={t.global_batch} is not a multiple of train.batch_size x processes "
                          f"= {t.batch_size} x {world_size} = {per_step}; choose a global batch that is, or "
                          "another train.batch_size")
    return t.global_batch // per_step


def plan_steps(cfg: Config, world_size: int, num_samples: int) -> StepPlan:
    """The steps a run takes (`train.epochs` > 0: derived from `num_samples`; else `train.steps` as given)."""
    t = cfg.train
    accum = resolve_accum(cfg, world_size)
    global_batch = t.batch_size * world_size * accum
    if t.epochs <= 0:
        return StepPlan(num_samples, world_size, t.batch_size, accum, global_batch, 0, t.steps, t.warmup_steps,
                        t.accum_mode)
    if num_samples <= 0:
        raise ConfigError("train.epochs needs the dataset size: tar shards cannot be counted without reading "
                          "them, so set data.num_samples (the number of training samples)")
    per_epoch = num_samples // global_batch
    if per_epoch < 1:
        raise ConfigError(f"{num_samples} training samples cannot fill one global batch of {global_batch}")
    steps = max(1, round(t.epochs * per_epoch))
    warmup = round(t.warmup_epochs * per_epoch) if t.warmup_epochs else t.warmup_steps   # epochs or steps
    return StepPlan(num_samples, world_size, t.batch_size, accum, global_batch, per_epoch, steps, warmup,
                    t.accum_mode)


def apply_plan(cfg: Config, plan: StepPlan) -> None:
    """Write the derived numbers into the config (config.yaml then records what the run really did)."""
    cfg.train.accum_steps, cfg.train.steps, cfg.train.warmup_steps = plan.accum_steps, plan.steps, plan.warmup_steps


def lr_lambda(warmup: int, total: int, base: float = 1.0, start: float = 0.0, end: float = 0.0):
    """Multiplier on the peak lr `base` for step s: linear warm-up from `start` (absolute lr) to `base`, then cosine
    decay to `end` (absolute) at `total`. With start = end = 0 the warm-up begins at base/warmup (no wasted step)
    and the decay ends at 0. With the release's start 1e-6 / end 1e-5 the cosine part equals its
    `utils.cosine_scheduler` exactly; its warm-up (np.linspace(start, base, W)) reaches `base` one step earlier
    than ours (a difference of at most base/W per warm-up step)."""
    lo, hi = start / base, end / base

    def f(step: int) -> float:
        if step < warmup:
            return lo + (1.0 - lo) * (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return hi + (1.0 - hi) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return f
