"""Process-group helpers for `torchrun` (multi-GPU, or several CPU processes with gloo).

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in each process's environment;
`init_from_env` joins the group (NCCL on CUDA, gloo on CPU) and returns (rank, world_size). Without those
variables (a plain `python` run, a notebook) everything here degrades to a single process: rank 0 of 1.
"""
from __future__ import annotations

import datetime
import os
import time

import torch
import torch.distributed as dist

STORE_KEY = "laclip_lite/timed_out/"    # + rank: set by each rank whose collective timed out (stalled_ranks)


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device: str = "auto", timeout_s: float = 0) -> tuple[int, int]:
    """Join the torchrun process group when WORLD_SIZE > 1; -> (rank, world_size). Idempotent.

    timeout_s > 0: a collective that waits longer for another rank raises (train.dist_timeout) instead of
    hanging for the backend's default (gloo: 30 minutes)."""
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
    timeout = datetime.timedelta(seconds=timeout_s) if timeout_s > 0 else None
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://", timeout=timeout)
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


def is_timeout(e: BaseException) -> bool:
    """Whether an exception from a collective is the process group's timeout (gloo: "Timed out waiting")."""
    text = str(e).lower()
    return isinstance(e, RuntimeError) and ("timed out" in text or "timeout" in text)


def stalled_ranks(wait_s: float = 5.0) -> list[int] | None:
    """After a collective timed out in this rank: the ranks that did not also time out within `wait_s`, i.e. the
    ones that stopped answering (a stopped, stalled or busy process). Each rank that times out says so in the
    torchrun store; None when the store cannot tell (it is gone, or this is not a torchrun group)."""
    try:
        store = dist.distributed_c10d._get_default_store()      # private: AttributeError if it moves
        store.set_timeout(datetime.timedelta(seconds=wait_s))
        me, world = dist.get_rank(), dist.get_world_size()
        store.set(f"{STORE_KEY}{me}", "1")
        deadline = time.monotonic() + wait_s
        while True:
            missing = [r for r in range(world) if r != me and not store.check([f"{STORE_KEY}{r}"])]
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.2)
    except Exception:          # the store itself is unreachable: say what we know without it
        return None


def timeout_message(step: int, timeout_s: float) -> str:
    """The one line a rank prints when a collective timed out: which rank(s) stopped answering, at which step."""
    me, world = rank(), world_size()
    missing = stalled_ranks()
    if missing is None:
        who = "another rank stopped answering"
    elif missing:
        names = ", ".join(str(r) for r in missing)
        who = f"rank{'s' if len(missing) > 1 else ''} {names} stopped answering (stopped, stalled or busy)"
    else:
        who = "every rank timed out (a collective the ranks did not all reach)"
    return (f"rank {me} of {world}: a collective timed out after {timeout_s:g} s at step {step}: {who}; the job "
            f"ends here (raise train.dist_timeout if a rank legitimately works that long alone)")


def cleanup(synchronize: bool = False) -> None:
    """Tear down the process group. synchronize=True (a job that finished on every rank): wait for every rank
    first, so no rank destroys the group under another's last collective (gloo then aborts that rank's threads:
    "terminate called without an active exception"). Not on an error path: a dead peer would hold the barrier
    for the whole `train.dist_timeout`."""
    if is_initialized():
        if synchronize and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()
