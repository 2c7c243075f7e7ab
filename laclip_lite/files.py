"""Writing files so that a crash, Ctrl-C or a full disk never leaves a half-written one behind.

Every write goes to a temporary file beside its target (`.NAME.XXXX`) and is renamed over it when complete; on
any error or interrupt the temporary file is removed. The file gets the permissions an ordinary `open()` would
give (0666 less the process umask), not mkstemp's 0600. A full disk or a refused write becomes a `WriteError`
that says "disk full at PATH" / "cannot write PATH" (one line, the CLI's).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from laclip_lite.errors import WriteError

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_REFUSED = {errno.EACCES, errno.EPERM, errno.EROFS}


def write_error(e: OSError, path: str | Path) -> OSError:
    """An OSError from writing `path` as the one-line error a person can act on (others unchanged)."""
    if e.errno in _DISK_FULL:
        return WriteError(e.errno, f"disk full at {path} (free some space and rerun; nothing partial was kept)")
    if e.errno in _REFUSED:
        return WriteError(e.errno, f"cannot write {path} ({os.strerror(e.errno).lower()}; choose a folder you "
                                   "can write to)")
    return e


def _umask() -> int:
    mask = os.umask(0o022)      # read it by setting it (the only portable way), then put it back
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path`; when the block ends normally it replaces `path` atomically. On an error,
    Ctrl-C or any other exception the temporary file is removed (and ENOSPC / EACCES become WriteError)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as e:
        raise write_error(e, path) from e
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise write_error(e, path) from e
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """open() for writing, atomically: the file appears complete or not at all (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        try:
            with open(tmp, mode, **kwargs) as f:
                yield f
        except OSError as e:
            raise write_error(e, path) from e


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_savefig(fig, path: str | Path, **kwargs) -> None:
    """A matplotlib figure written atomically (the format from the file's suffix)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", **kwargs)


def append_line(path: str | Path, line: str) -> None:
    """Append one line (a JSON lines row). Appends cannot be atomic: a crash can leave a partial last line, which
    the readers drop with a note (`utils.read_jsonl`)."""
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
    except OSError as e:
        raise write_error(e, path) from e


def append_jsonl(path: str | Path, row: dict) -> None:
    append_line(path, json.dumps(row))


def _remove(tmp: str | Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
