"""Process-group helpers for `torchrun` (multi-GPU, or several CPU processes with gloo).

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in each process's environment;
`init_from_env` joins the group (NCCL on CUDA, gloo on CPU) and returns (rank, world_size). Without those
variables (a plain `python` run, a notebook) everything here degrades to a single process: rank 0 of 1.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device: str = "auto") -> tuple[int, int]:
    """Join the torchrun process group when WORLD_SIZE > 1; -> (rank, world_size). Idempotent."""
    if is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = env_world_size()
    if world <= 1:
        return 0, 1
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={world} but {', '.join(missing)} not set: launch with torchrun")
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://")
    return dist.get_rank(), dist.get_world_size()


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def local_device(device: str = "auto") -> torch.device:
    """This process's device: cuda:LOCAL_RANK for CUDA runs, else the CPU."""
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if device in ("auto", "cuda"):
        return torch.device("cuda", local_rank())
    return torch.device(device)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor | float) -> torch.Tensor | float:
    """Mean over ranks of a tensor (returns a new tensor) or of a Python number (returns a float)."""
    if not is_initialized():
        return value
    is_number = not isinstance(value, torch.Tensor)
    t = torch.tensor(float(value), dtype=torch.float64) if is_number else value.detach().clone()
    if dist.get_backend() == "nccl" and t.device.type != "cuda":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t = t / dist.get_world_size()
    return float(t) if is_number else t.to(value.device)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks of a tensor (a new tensor on the input's device); the tensor itself outside torchrun."""
    if not is_initialized():
        return t
    out = t.detach().clone()
    if dist.get_backend() == "nccl" and out.device.type != "cuda":
        out = out.cuda()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(t.device)


def cleanup() -> None:
    if is_initialized():
        dist.destroy_process_group()
