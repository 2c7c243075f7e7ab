"""Faults: atomic writes that clean up, one writer per folder, pool workers that die with their parent, readers
that survive what a crash leaves, checkpoints that check their tensors, data kept inside its root and size, and a
stalled torchrun rank that ends the job naming it. The lock, the pool and the rank are tested with real processes.
"""
from __future__ import annotations

import errno
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest
import torch

from laclip_lite import files, utils
from laclip_lite.checkpoint import load_checkpoint, save_checkpoint
from laclip_lite.data.laclip_csv import BadRow, resolve_under
from laclip_lite.data.readers import LaclipCsvSource, TarShardSource
from laclip_lite.data.tar_shards import tar_members
from laclip_lite.data.tokenizer import load_tokenizer
from laclip_lite.errors import DataError, FolderBusyError, WriteError
from laclip_lite.folder_lock import folder_lock, lock_holder

SAMPLES = Path(__file__).resolve().parent.parent / "data_samples"


# -- atomic writes --------------------------------------------------------------------------------------------
def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_write_replaces_whole_and_keeps_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        files.atomic_write_text(tmp_path / "a.txt", "one")
        files.atomic_write_text(tmp_path / "a.txt", "two")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").read_text() == "two"
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640       # not mkstemp's 0600
    assert _leftovers(tmp_path) == ["a.txt"]


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_an_error_or_ctrl_c_mid_write_leaves_the_old_file_and_no_temp(tmp_path, exc):
    files.atomic_write_text(tmp_path / "a.txt", "old")
    with pytest.raises(type(exc)):
        with files.atomic_open(tmp_path / "a.txt") as f:
            f.write("half")
            raise exc
    assert (tmp_path / "a.txt").read_text() == "old" and _leftovers(tmp_path) == ["a.txt"]


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "disk full at"), (errno.EACCES, "cannot write"),
                                         (errno.EROFS, "cannot write")])
def test_full_disk_and_refused_writes_say_so_naming_the_file(tmp_path, monkeypatch, code, words):
    def refuse(*a, **k):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(WriteError, match=words) as e:
        files.atomic_write_text(tmp_path / "b.txt", "x")
    assert str(tmp_path / "b.txt") in str(e.value) and _leftovers(tmp_path) == []


def test_torch_save_atomic_removes_its_temp_on_error(tmp_path, monkeypatch):
    def broken(obj, f):
        Path(f).write_bytes(b"partial")
        raise RuntimeError("unexpected pos 303744 vs 303632")
    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError):
        utils.torch_save_atomic({"x": torch.ones(2)}, tmp_path / "checkpoint.pt")
    assert _leftovers(tmp_path) == []


# -- readers of what a crash leaves ---------------------------------------------------------------------------
def test_a_partial_last_jsonl_line_is_dropped_with_a_note(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    assert utils.read_jsonl(path) == [{"step": 1}, {"step": 2}]
    assert "metrics.jsonl:3: dropped a partial last line" in capsys.readouterr().err
    path.write_text('{"step": 1}\n{"ste\n{"step": 3}\n')
    with pytest.raises(DataError, match="metrics.jsonl:2: not valid JSON"):
        utils.read_jsonl(path)


def test_a_corrupt_run_tokenizer_is_named(tmp_path):
    (tmp_path / "tokenizer_meta.json").write_text('{"kind": "bpe", "context_length": 16, "source": "x"}')
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "trunc')
    with pytest.raises(DataError, match="tokenizer.json is corrupt"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer_meta.json").write_text('{"kind": "bp')
    with pytest.raises(DataError, match="tokenizer_meta.json is corrupt"):
        load_tokenizer(tmp_path)


# -- checkpoints ----------------------------------------------------------------------------------------------
def test_checkpoint_checksum_catches_a_changed_tensor(tmp_path):
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3)}, "step": 4,
             "optimizer": {"state": {0: {"exp_avg": torch.ones(3)}}, "param_groups": [{"lr": 0.1}]}}
    save_checkpoint(state, tmp_path / "ok.pt")
    loaded = load_checkpoint(tmp_path / "ok.pt")
    assert loaded["step"] == 4 and torch.equal(loaded["model"]["w"], state["model"]["w"])
    raw = torch.load(tmp_path / "ok.pt", weights_only=True)
    raw["model"]["w"][0, 1] += 1e-6                     # finite, plausible, wrong
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(DataError, match="bad.pt is corrupt: its tensors do not match"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"model": {"w": torch.ones(1)}}, tmp_path / "old.pt")    # no checksum (an older kit): loads
    assert load_checkpoint(tmp_path / "old.pt")["model"]["w"].item() == 1


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint", bytes(range(256)) * 20])
def test_not_a_checkpoint_is_said_as_such(tmp_path, content):
    (tmp_path / "x.pt").write_bytes(content)
    with pytest.raises(DataError, match="x.pt is not a checkpoint") as e:
        load_checkpoint(tmp_path / "x.pt")
    assert "weights_only=False" not in str(e.value)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(DataError, match="not a checkpoint .it holds a list"):
        load_checkpoint(tmp_path / "list.pt")


# -- data inside its root and size ----------------------------------------------------------------------------
def test_csv_image_paths_that_leave_the_root_are_bad_rows(tmp_path):
    shutil.copytree(SAMPLES / "laclip" / "images", tmp_path / "images")
    (tmp_path / "outside.png").write_bytes((tmp_path / "images" / "000000.png").read_bytes())
    csv = tmp_path / "data" / "train.csv"
    csv.parent.mkdir()
    (csv.parent / "images").symlink_to(tmp_path / "images")            # a symlinked image folder is fine
    long = "x" * 200_000                                               # over csv's field limit: a bad row
    csv.write_text(f"images/000000.png,a shape\n../outside.png,escapes\n{tmp_path}/outside.png,absolute\n"
                   f"images/../../outside.png,climbs\nimages/000001.png,{long}\n")
    source = LaclipCsvSource(csv)
    assert source[0] is not None
    assert [source[i] for i in range(1, 5)] == [None] * 4
    assert source.stats.skipped["bad_row"] == 4
    with pytest.raises(BadRow, match="outside the dataset root"):
        resolve_under(csv.parent, "a/../../b.png")
    assert resolve_under(csv.parent, "a/./b.png") == csv.parent / "a" / "b.png"


def test_an_empty_csv_is_named(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv: no data rows"):
        LaclipCsvSource(tmp_path / "empty.csv")


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_tar_members_over_the_bound_are_skipped_and_counted(tmp_path):
    png = (SAMPLES / "laclip" / "images" / "000000.png").read_bytes()
    shard = _tar(tmp_path / "s.tar", [("a.png", png), ("a.txt", b"small"), ("b.png", png + bytes(5000)),
                                      ("b.txt", b"big")])
    names = [(n, d is None) for n, d in tar_members(str(shard), max_member=len(png) + 100)]
    assert names == [("a.png", False), ("a.txt", False), ("b.png", True), ("b.txt", False)]
    source = TarShardSource(str(shard), max_member=len(png) + 100)
    assert [r.caption for r in source] == ["small"]
    assert source.stats.skipped == {"oversized_member": 1}


@pytest.mark.parametrize("size", [2**88 - 1, 40 << 30])        # the largest a header can claim; 40 GiB
def test_a_tar_header_claiming_more_than_the_file_is_a_corrupt_shard(tmp_path, size):
    info = tarfile.TarInfo("huge.png")
    info.size = size
    shard = tmp_path / "h.tar"
    shard.write_bytes(info.tobuf(tarfile.GNU_FORMAT) + bytes(2048))  # GNU base-256 for sizes of 8 GiB and more
    data = bytearray(shard.read_bytes())
    data[257:263] = b"ustar\x00"                                       # read by the kit's own parser
    data[148:156] = b"        "
    data[148:156] = f"{sum(data[:512]):06o}\0 ".encode()
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match="h.tar: truncated tar shard .a member of [0-9]+ bytes at byte 0"):
        list(tar_members(str(shard)))
    source = TarShardSource(str(shard))
    assert list(source) == [] and source.stats.skipped == {"corrupt_shard": 1}


# -- one writer per folder (real processes) -------------------------------------------------------------------
def _holder(folder: Path) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import time
        from laclip_lite.folder_lock import folder_lock
        with folder_lock({str(folder)!r}):
            print("held", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_stops_naming_the_holder_and_a_killed_holder_frees_the_folder(tmp_path):
    proc = _holder(tmp_path / "run")
    try:
        assert lock_holder(tmp_path / "run") == proc.pid
        with pytest.raises(FolderBusyError, match=f"in use by another laclip-lite process .pid {proc.pid}"):
            with folder_lock(tmp_path / "run"):
                pass
    finally:
        proc.kill()
        proc.wait()
    assert lock_holder(tmp_path / "run") is None                       # kill -9 released it: nothing to clean
    with folder_lock(tmp_path / "run"):
        with folder_lock(tmp_path / "run"):                            # re-entrant in one process
            assert lock_holder(tmp_path / "run") == os.getpid()
    with folder_lock(tmp_path / "run", shard=(0, 2)), folder_lock(tmp_path / "run", shard=(1, 2)):
        pass                                                           # shards of one job lock apart


def test_a_killed_holders_forked_children_are_waited_for(tmp_path, capsys):
    """DataLoader workers are forked: they share the lock and outlive a kill -9 of their parent by seconds."""
    code = textwrap.dedent(f"""
        import os, time
        from laclip_lite.folder_lock import folder_lock
        with folder_lock({str(tmp_path / "run")!r}):
            if os.fork() == 0:
                time.sleep(3)
                os._exit(0)
            print("held", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    proc.kill()
    proc.wait()
    t0 = time.monotonic()
    with folder_lock(tmp_path / "run"):
        assert 1 < time.monotonic() - t0 < 25
    assert f"the run that held it (pid {proc.pid}) was killed; waiting" in capsys.readouterr().err


# -- pool workers die with their parent (real processes) ------------------------------------------------------
def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_pool_workers_die_when_their_parent_is_killed():
    code = "import time\nfrom laclip_lite.utils import parallel_map\nprint('go', flush=True)\n" \
           "list(parallel_map(time.sleep, [60, 60], jobs=2))\n"
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "go"
        deadline = time.monotonic() + 60
        while len(workers := [k for k in _children(parent.pid) if "spawn_main" in
                              Path(f"/proc/{k}/cmdline").read_text(errors="replace")]) < 2:
            assert time.monotonic() < deadline, "the pool never started"
            time.sleep(0.2)
        time.sleep(1.0)                                                 # the workers' initializer has run
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "orphaned pool workers outlived their parent"
    finally:
        parent.kill()
        for w in _children(parent.pid):
            os.kill(w, signal.SIGKILL)


def test_stopping_early_stops_the_pool_at_once():
    t0 = time.perf_counter()
    results = utils.parallel_map(time.sleep, [0, 60, 60], jobs=2)
    assert next(results) is None
    results.close()                                 # the caller stopped (an error, Ctrl-C): no waiting for 60 s
    assert time.perf_counter() - t0 < 30
    assert not [k for k in _children(os.getpid()) if _alive(k) and "spawn_main" in
                Path(f"/proc/{k}/cmdline").read_text(errors="replace")]


# -- a stalled torchrun rank ends the job naming it (real processes) ------------------------------------------
STALL = """
import os, signal, sys
import torch
from laclip_lite import distributed as dist
dist.init_from_env("cpu", timeout_s=3)
for step in range(1000):
    if dist.rank() == 1 and step == 5:
        os.kill(os.getpid(), signal.SIGSTOP)
    try:
        dist.all_reduce_mean(torch.ones(2))
    except RuntimeError as e:
        assert dist.is_timeout(e), e
        print(dist.timeout_message(step, 3), flush=True)
        sys.exit(2)
"""


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="torchrun")
def test_a_stopped_rank_ends_the_job_naming_it(tmp_path):
    (tmp_path / "stall.py").write_text(STALL)
    torchrun = str(Path(sys.executable).parent / "torchrun")
    proc = subprocess.Popen([torchrun, "--nproc_per_node", "2", "--master_port", str(_free_port()),
                             str(tmp_path / "stall.py")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        line, deadline = "", time.monotonic() + 90
        while "collective timed out" not in line:
            assert time.monotonic() < deadline and proc.poll() is None, "rank 0 never reported the stalled rank"
            line = proc.stdout.readline()
        assert line.startswith("rank 0 of 2: a collective timed out after 3 s at step 5: rank 1 stopped answering")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)                             # the stopped rank included
        proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

