"""Where a rewriting model comes from: a local folder (as `save_pretrained` writes it) or a hub name that is
already in the local Hugging Face cache (the kit never downloads).

A name that can only be a path (absolute, ``./``, ``~``, a trailing ``/``, more than one ``/``, or whose first
part is a local folder) and is not a folder fails at once with one line naming the path, before any caption is
read, instead of transformers' message about hub repository ids.
"""
from __future__ import annotations

import re
from pathlib import Path

from laclip_lite.errors import DataError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")   # "gpt2", "org/name"


def is_path_like(name: str) -> bool:
    """True when `name` cannot be a hub id, or names a local folder's child ("models/llama" with ./models)."""
    if not _HUB_ID.match(name):
        return True
    return "/" in name and Path(name.split("/", 1)[0]).is_dir()


def check_model_name(name: str) -> None:
    """A clear one-line DataError when `name` is meant as a folder and is not a model folder."""
    if not name:
        return
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise DataError(f"model folder {path} has no config.json (expected a folder written by save_pretrained)")
        return
    if path.exists():
        raise DataError(f"model path {path} is a file; expected a folder written by save_pretrained")
    if is_path_like(name):
        raise DataError(f"model folder not found: {path.resolve()}")


def load_error(name: str, what: str, error: Exception) -> DataError:
    """The one-line error for a model that transformers could not load (`what`: "causal LM", ...); call
    `check_model_name` first, so a missing folder is reported as such."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if Path(name).expanduser().is_dir():
        return DataError(f"cannot load {what} from {Path(name).expanduser()}: {first}")
    return DataError(f"cannot load {what} {name!r}: no folder {Path(name).expanduser().resolve()} and not a "
                     f"Hugging Face model in the local cache (the kit does not download; pass a folder)")
