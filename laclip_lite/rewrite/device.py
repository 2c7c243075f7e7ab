"""Which device a rewrite process uses, so `--shard i/n` can run one process per GPU.

    laclip-lite rewrite ... --shard 1/4 --device cuda:1        # explicit, one per shard
    laclip-lite rewrite ... --shard 1/4                        # --device auto (the default): see below
    torchrun --nproc_per_node 4 -m laclip_lite.cli rewrite ... --shard auto     # LOCAL_RANK picks the GPU

`auto`, in this order:

1. no CUDA -> ``cpu``;
2. exactly one GPU visible -> ``cuda:0`` (a launcher that gives each process its own GPU sets
   ``CUDA_VISIBLE_DEVICES=<i>``; torch then sees only that GPU, whatever LOCAL_RANK says);
3. ``LOCAL_RANK`` set (torchrun, SLURM wrappers) -> ``cuda:LOCAL_RANK`` (an error when that GPU is not visible);
4. a shard ``i/n`` -> ``cuda:(i mod visible GPUs)``;
5. else ``cuda:0``.

The device is not part of the rewrite cache key (shards on different GPUs share one cache), but sampling on a
GPU draws other random numbers than on a CPU: finish a job on the same kind of device it started on. The
vLLM backend places itself: give each shard process its GPU with CUDA_VISIBLE_DEVICES=<i>.
"""
from __future__ import annotations

import os
import re

import torch

from laclip_lite.errors import ConfigError

_SPEC = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_spec(spec: str) -> None:
    """Syntax only (no device is queried): auto, cpu, mps, cuda or cuda:N."""
    if not _SPEC.match(spec or ""):
        raise ConfigError(f"rewrite.device={spec!r}: expected auto, cpu, mps, cuda or cuda:N")


def rewrite_device(spec: str = "auto", shard: tuple[int, int] | None = None) -> tuple[str, str]:
    """(device, why) for this process: `spec` resolved as the module docstring says; `why` is for the log."""
    check_device_spec(spec)
    if spec in ("cpu", "mps"):
        return spec, "asked for"
    if not torch.cuda.is_available():
        if spec == "auto":
            return "cpu", "no CUDA device"
        raise ConfigError(f"rewrite.device={spec!r} but CUDA is not available on this machine")
    count = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    seen = f"{count} visible" + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else "")
    if spec.startswith("cuda:"):
        index = int(spec.split(":")[1])
        if index >= count:
            raise ConfigError(f"rewrite.device={spec!r} but only GPUs 0..{count - 1} are visible: {seen}")
        return spec, "asked for"
    if count == 1:
        return "cuda:0", f"the only GPU visible: {seen}"
    local = os.environ.get("LOCAL_RANK")
    if local is not None:
        if not local.isdigit() or int(local) >= count:
            raise ConfigError(f"LOCAL_RANK={local} names no visible GPU: {seen}; pass --device cuda:N")
        return f"cuda:{local}", f"LOCAL_RANK={local}, {seen}"
    if shard is not None:
        return f"cuda:{shard[0] % count}", f"shard {shard[0]}/{shard[1]} on GPU {shard[0] % count} of {seen}"
    return "cuda:0", f"first of {seen}"
