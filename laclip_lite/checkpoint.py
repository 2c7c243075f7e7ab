"""Checkpoint files: saved atomically with a checksum of their tensors, verified on load.

torch does not check its zip's CRCs on load, so a checkpoint with flipped bytes can load silently into wrong
weights; the CRC-32 of every tensor (names included) is stored beside them (`state["checksum"]`) and checked
here. A file torch cannot read at all is said to be "not a checkpoint", naming it (never torch's advice to
retry with weights_only=False: the kit loads nothing but tensors and plain values).
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import torch

from laclip_lite.errors import DataError
from laclip_lite.utils import torch_save_atomic

CHECKSUM = "checksum"       # the state's key: {"crc32": int, "tensors": int}


def tensor_checksum(state: Any) -> dict:
    """CRC-32 over every tensor in a (nested) state, in order, each with its key path: {"crc32", "tensors"}."""
    crc, count = 0, 0

    def walk(obj: Any, where: str) -> None:
        nonlocal crc, count
        if isinstance(obj, torch.Tensor):
            t = obj.detach().to("cpu").contiguous().reshape(-1)
            crc = zlib.crc32(f"{where}:{t.dtype}:{tuple(obj.shape)}".encode(), crc)
            crc = zlib.crc32(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"", crc)
            count += 1
        elif isinstance(obj, dict):
            for k, v in obj.items():
                if k != CHECKSUM:
                    walk(v, f"{where}/{k}")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{where}/{i}")

    walk(state, "")
    return {"crc32": crc, "tensors": count}


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write `state` (plain values and tensors) to `path` atomically, with the checksum of its tensors."""
    torch_save_atomic({**state, CHECKSUM: tensor_checksum(state)}, path)


def load_checkpoint(path: str | Path, verify: bool = True, mmap: bool = False) -> dict:
    """A checkpoint written by `save_checkpoint` (or a bare state dict), loaded with weights_only=True on the CPU.
    DataError when the file is not a checkpoint or (verify) its tensors do not match their checksum. mmap=True
    with verify=False reads only what is used (a checkpoint's recorded config, without its weights)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as e:      # torch raises RuntimeError, UnpicklingError, EOFError, ValueError, ... for a bad file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise DataError(f"{path} is not a checkpoint (torch cannot read it: {first}); it may be truncated or "
                        "another kind of file") from None
    if not isinstance(state, dict):
        raise DataError(f"{path} is not a checkpoint (it holds a {type(state).__name__}, not a dict of tensors)")
    saved = state.pop(CHECKSUM, None)
    if verify and saved is not None and tensor_checksum(state) != saved:
        raise DataError(f"{path} is corrupt: its tensors do not match the checksum saved with them (a damaged "
                        "copy or disk); use another copy or retrain")
    return state
