"""One writer per folder: an exclusive `fcntl.flock` on `OUT/.lock`, held for the life of a training, rewrite,
compare, ablate or sweep. A second writer stops at once with one line naming the holder's pid.

The lock belongs to the open file, so it goes away with the process that holds it (kill -9 included): a rerun
after a crash never has to clean anything up. The lock file itself stays (it only holds the last holder's pid).
Under torchrun only rank 0 takes it (every rank writes through rank 0). Locks are re-entrant within a process
(`compare` holds its folder while the runs it starts in this process lock their own sub-folders).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from laclip_lite.errors import FolderBusyError
from laclip_lite.files import write_error

LOCK_NAME = ".lock"
_held: dict[Path, int] = {}     # folders this process holds -> nesting depth


@contextlib.contextmanager
def folder_lock(folder: str | Path) -> Iterator[Path]:
    """Hold `folder`/.lock for the block (the folder is created); FolderBusyError when another process holds it."""
    folder = Path(folder).resolve()
    if int(os.environ.get("RANK", "0")) != 0:
        yield folder
        return
    if folder in _held:
        _held[folder] += 1
        try:
            yield folder
        finally:
            _held[folder] -= 1
        return
    path = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise write_error(e, path) from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise FolderBusyError(f"{folder} is in use by another laclip-lite process (pid {holder}, holding "
                                  f"{path}); wait for it to finish or stop it, then rerun") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held[folder] = 1
        try:
            yield folder
        finally:
            _held.pop(folder, None)
    finally:
        os.close(fd)        # closing the file releases the lock


def lock_holder(folder: str | Path) -> int | None:
    """The pid holding `folder`'s lock now, or None when it is free."""
    path = Path(folder) / LOCK_NAME
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 64, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
