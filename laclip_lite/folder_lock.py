"""One writer per folder: an exclusive `fcntl.flock` on `OUT/.lock`, held for the life of a training, rewrite,
compare, ablate or sweep. A second writer stops at once with one line naming the holder's pid.

The lock belongs to the open file, so it goes away with the process that holds it (kill -9 included): a rerun
after a crash never has to clean anything up. The lock file itself stays (it only holds the last holder's pid).
Under torchrun only rank 0 takes it (every rank writes through rank 0). Locks are re-entrant within a process
and its subprocesses (`run_experiment` holds a run folder while the `torchrun` it starts trains into it): a held
lock is named in the environment (LACLIP_LITE_HELD_LOCKS) that child processes inherit.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import inspect
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from laclip_lite.errors import FolderBusyError
from laclip_lite.files import write_error
from laclip_lite.utils import parse_shard

LOCK_NAME = ".lock"
HELD_ENV = "LACLIP_LITE_HELD_LOCKS"     # lock files held by this process or an ancestor (os.pathsep-separated)
ORPHAN_WAIT_S = 30.0            # how long a rerun waits for a killed holder's forked children to let the lock go
_held: dict[Path, int] = {}     # lock files this process holds -> nesting depth


@contextlib.contextmanager
def folder_lock(folder: str | Path, shard: tuple[int, int] | None = None) -> Iterator[Path]:
    """Hold `folder`/.lock for the block (the folder is created); FolderBusyError when another process holds it.
    `shard` (i, n) with n > 1: the lock of that shard only (`.lock-shard-i-of-n`), for jobs that split one folder's
    work between processes by design (`rewrite --shard`, `sweep --shard`)."""
    folder = Path(folder).resolve()
    name = LOCK_NAME if not shard or shard[1] <= 1 else f"{LOCK_NAME}-shard-{shard[0]}-of-{shard[1]}"
    key = folder / name
    if int(os.environ.get("RANK", "0")) != 0:
        yield folder
        return
    if key not in _held and str(key) in os.environ.get(HELD_ENV, "").split(os.pathsep):
        yield folder                # held by the process that started this one (it waits for us)
        return
    if key in _held:
        _held[key] += 1
        try:
            yield folder
        finally:
            _held[key] -= 1
        return
    path = key
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise write_error(e, path) from e
    try:
        _acquire(fd, folder, path)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            raise write_error(e, path) from e
        _held[key] = 1
        _name_in_env(key, True)
        try:
            yield folder
        finally:
            _held.pop(key, None)
            _name_in_env(key, False)
            if created:
                _remove_if_unused(folder, path)
    finally:
        os.close(fd)        # closing the file releases the lock


def _remove_if_unused(folder: Path, path: Path) -> None:
    """A folder this lock created that holds nothing else (the job stopped before writing anything): removed, so a
    run that stops before step 0 leaves no folder behind. Done while the lock is still held."""
    with contextlib.suppress(OSError):
        if [p.name for p in folder.iterdir()] == [path.name]:
            path.unlink()
            folder.rmdir()


def _name_in_env(key: Path, held: bool) -> None:
    names = [n for n in os.environ.get(HELD_ENV, "").split(os.pathsep) if n and n != str(key)]
    os.environ[HELD_ENV] = os.pathsep.join(names + ([str(key)] if held else []))


def _acquire(fd: int, folder: Path, path: Path) -> None:
    """flock the lock file, or FolderBusyError naming the live holder. A lock whose recorded holder is dead is
    held by that run's forked children (DataLoader workers inherit the lock with the file; they notice their
    parent's death within seconds): wait for them, saying so, up to ORPHAN_WAIT_S."""
    deadline, said = time.monotonic() + ORPHAN_WAIT_S, False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        text = os.pread(fd, 64, 0).decode(errors="replace").strip()
        holder = int(text) if text.isdigit() else None
        if holder is None or _alive(holder) or time.monotonic() > deadline:
            gone = "" if holder is None or _alive(holder) else f" (pid {holder} is gone; its child processes " \
                                                               "still hold the lock)"
            raise FolderBusyError(f"{folder} is in use by another laclip-lite process (pid {text or 'unknown'}, "
                                  f"holding {path}){gone}; wait for it to finish or stop it, then rerun")
        if not said:
            print(f"laclip-lite: {folder}: the run that held it (pid {holder}) was killed; waiting up to "
                  f"{ORPHAN_WAIT_S:g} s for its leftover worker processes to exit", file=sys.stderr)
            said = True
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:         # someone else's process: alive
        return True
    return True


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


def holds_folder(arg: str = "out_dir", shard_arg: str | None = None) -> Callable:
    """Decorator: the function holds the folder lock of its argument `arg` while it runs (see `folder_lock`);
    `shard_arg` names an argument holding a shard spec ("i/n", or (i, n)) that selects that shard's lock."""
    def wrap(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            shard = bound.arguments.get(shard_arg) if shard_arg else None
            if isinstance(shard, str) or shard is None:
                shard = parse_shard(shard)
            with folder_lock(bound.arguments[arg], shard):
                return fn(*args, **kwargs)
        return locked
    return wrap
