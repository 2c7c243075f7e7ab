"""The trap suite: every user mistake, on every command, exits non-zero with one line and no traceback.

One row per trap: the command line (`{placeholders}` filled by the row's setup), the exit code it must give and a
fragment its last stderr line must hold. A new command or option is held to the same rule by adding a row. Rows
with exit code 0 are faults the kit recovers from (a partial last metrics line, a corrupt tokenizer cache): the run
goes on and says what it did. `classify` is what the issue's count used: handled / traceback / silent.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

from laclip_lite import cli
from laclip_lite.config import ConfigError, build_config
from laclip_lite.data.export import export_clip_benchmark
from laclip_lite.data.shapeworld import ShapeWorld
from laclip_lite.data.vocab import classnames
from laclip_lite.train import train
from laclip_lite.utils import cache_dir

FAST = ["--preset", "test", "--no-progress"]


# -- setups: each makes the files its row needs under `tmp` and returns the placeholders ------------------------
def _yaml_list(tmp: Path, run: Path) -> dict:
    (tmp / "list.yaml").write_text("- train.steps: 5\n")
    return {"file": tmp / "list.yaml"}


def _yaml_broken(tmp: Path, run: Path) -> dict:
    (tmp / "bad.yaml").write_text("train:\n  steps: [1, 2\n")
    return {"file": tmp / "bad.yaml"}


def _empty_csv(tmp: Path, run: Path) -> dict:
    (tmp / "empty.csv").write_text("")
    return {"file": tmp / "empty.csv"}


def _corrupt_shards(tmp: Path, run: Path) -> dict:
    shards = tmp / "shards"
    shards.mkdir()
    for i in range(2):
        (shards / f"shard-{i:06d}.tar").write_bytes(os.urandom(3000))
    return {"dir": shards}


def _a_file(tmp: Path, run: Path) -> dict:
    (tmp / "afile").write_text("x")
    return {"file": tmp / "afile"}


def _random_checkpoint(tmp: Path, run: Path) -> dict:
    fake = _copy_run(run, tmp / "fake")
    (fake / "checkpoint.pt").write_bytes(os.urandom(5000))
    return {"dir": fake}


def _flipped_checkpoint(tmp: Path, run: Path) -> dict:
    bad = _copy_run(run, tmp / "flipped")
    path = bad / "checkpoint.pt"
    with zipfile.ZipFile(path) as z:   # torch stores tensors uncompressed: flip bytes inside the largest record
        info = max(z.infolist(), key=lambda i: i.file_size)
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data = bytearray(path.read_bytes())
    for i in range(start + info.file_size // 2, start + info.file_size // 2 + 8):
        data[i] ^= 0x01         # the low bit of a float's mantissa: finite, nothing NaN, nothing torch checks
    path.write_bytes(bytes(data))
    return {"dir": bad}


def _eight_classnames(tmp: Path, run: Path) -> dict:
    export_clip_benchmark(ShapeWorld(seed=0).split("test", 24), tmp / "cb", "shape")
    names = tmp / "names.txt"
    names.write_text("".join(f"{n}\n" for n in classnames("shape")) + "extra one\nextra two\n")
    return {"dir": tmp / "cb", "file": names}


def _held(tmp: Path, run: Path) -> dict:
    """A folder whose lock another live process holds (the lock taken, then sleeping until the test ends)."""
    folder = tmp / "held"
    code = textwrap.dedent(f"""
        import sys, time
        from laclip_lite.folder_lock import folder_lock
        with folder_lock({str(folder)!r}):
            print("held", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=tmp)
    assert proc.stdout.readline().strip() == "held"
    _HOLDERS.append(proc)
    return {"dir": folder, "pid": proc.pid}


def _captions(tmp: Path, run: Path) -> dict:
    (tmp / "caps.txt").write_text("a red circle\na blue square\n")
    return {"file": tmp / "caps.txt"}


def _partial_metrics(tmp: Path, run: Path) -> dict:
    resumed = _copy_run(run, tmp / "resumed")
    with open(resumed / "metrics.jsonl", "a") as f:
        f.write('{"step": 9, "lo')          # what a full disk leaves
    return {"dir": resumed}


def _corrupt_tokenizer_cache(tmp: Path, run: Path) -> dict:
    cached = sorted((cache_dir() / "tokenizers").glob("bpe-*.json"))
    assert cached, "the trained run left no tokenizer cache"
    for path in cached:
        path.write_text(path.read_text()[:100])
    return {"dir": tmp / "after_cache"}


def _copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(".lock"))
    return to


def _nothing(tmp: Path, run: Path) -> dict:
    return {}


_HOLDERS: list[subprocess.Popen] = []

# (id, argv, setup, exit code, fragment of the last stderr line)
CASES = [
    # train: values checked by config.validate before any work
    ("train-log-every-0", ["train", *FAST, "--set", "train.log_every=0", "--out", "{tmp}/r"], _nothing, 2,
     "train.log_every must be >= 1"),
    ("train-ckpt-every-negative", ["train", *FAST, "--set", "train.ckpt_every=-1", "--out", "{tmp}/r"], _nothing, 2,
     "train.ckpt_every must be >= 0"),
    ("train-eval-every-negative", ["train", *FAST, "--set", "train.eval_every=-5", "--out", "{tmp}/r"], _nothing, 2,
     "train.eval_every must be >= 0"),
    ("train-log-every-negative", ["train", *FAST, "--set", "train.log_every=-2", "--out", "{tmp}/r"], _nothing, 2,
     "train.log_every must be >= 1"),
    ("train-warmup-negative", ["train", *FAST, "--set", "train.warmup_steps=-1", "--out", "{tmp}/r"], _nothing, 2,
     "train.warmup_steps must be >= 0"),
    ("train-test-size-0", ["train", *FAST, "--set", "data.test_size=0", "--out", "{tmp}/r"], _nothing, 2,
     "data.test_size must be >= 1"),
    ("train-batch-over-data", ["train", *FAST, "--set", "train.batch_size=100", "--out", "{tmp}/r"], _nothing, 2,
     "is larger than the data"),
    ("train-device-banana", ["train", *FAST, "--set", "train.device=banana", "--out", "{tmp}/r"], _nothing, 2,
     "device 'banana'"),
    ("train-lr-diverges", ["train", *FAST, "--set", "train.lr=1e6", "--out", "{tmp}/r"], _nothing, 2,
     "no checkpoint was saved before it"),
    ("train-config-list", ["train", *FAST, "--config", "{file}", "--out", "{tmp}/r"], _yaml_list, 2,
     "holds a mapping of sections"),
    ("train-config-bad-yaml", ["train", *FAST, "--config", "{file}", "--out", "{tmp}/r"], _yaml_broken, 2,
     "not valid YAML"),
    ("train-config-missing", ["train", *FAST, "--config", "{tmp}/nope.yaml", "--out", "{tmp}/r"], _nothing, 2,
     "config file not found"),
    ("train-out-holds-a-run", ["train", *FAST, "--out", "{run}"], _nothing, 2, "already holds a run"),
    ("train-out-in-use", ["train", *FAST, "--out", "{dir}"], _held, 2, "in use by another laclip-lite process"),
    ("train-out-under-a-file", ["train", *FAST, "--out", "{file}/r"], _a_file, 2, "afile"),
    ("train-empty-csv", ["train", *FAST, "--set", "data.source={file}", "--out", "{tmp}/r"], _empty_csv, 2,
     "no data rows"),
    ("train-all-shards-corrupt", ["train", *FAST, "--set", "data.source={dir}", "--set", "data.format=wds",
                                  "--out", "{tmp}/r"], _corrupt_shards, 2, "no readable captions"),
    ("train-resume-nothing", ["train", *FAST, "--resume", "--out", "{tmp}/none"], _nothing, 2, "no run at"),
    ("train-resume-not-a-checkpoint", ["train", "--no-progress", "--resume", "--out", "{dir}"], _random_checkpoint, 2,
     "is not a checkpoint"),
    ("train-unknown-key", ["train", *FAST, "--set", "train.stpes=5", "--out", "{tmp}/r"], _nothing, 2,
     "train.stpes"),
    # recovered, and said: exit 0
    ("train-resume-partial-metrics-line", ["train", "--no-progress", "--resume", "--set", "train.steps=6",
                                           "--out", "{dir}"], _partial_metrics, 0, "dropped a partial last line"),
    ("train-corrupt-tokenizer-cache", ["train", *FAST, "--out", "{dir}"], _corrupt_tokenizer_cache, 0,
     "rebuilding it"),
    # eval
    ("eval-batch-size-0", ["eval", "--checkpoint", "{run}", "--batch-size", "0"], _nothing, 2, "--batch-size"),
    ("eval-device-banana", ["eval", "--checkpoint", "{run}", "--device", "banana"], _nothing, 2, "device 'banana'"),
    ("eval-few-shot-1000", ["eval", "--checkpoint", "{run}", "--few-shot", "1000", "--no-retrieval"], _nothing, 2,
     "--few-shot 1000"),
    ("eval-not-a-checkpoint", ["eval", "--checkpoint", "{dir}"], _random_checkpoint, 2, "is not a checkpoint"),
    ("eval-flipped-checkpoint", ["eval", "--checkpoint", "{dir}"], _flipped_checkpoint, 2,
     "do not match the checksum"),
    ("eval-eight-classnames-for-six", ["eval", "--checkpoint", "{run}", "--dataset", "{dir}", "--classnames",
                                       "{file}"], _eight_classnames, 2, "8 class names"),
    ("eval-no-run", ["eval", "--checkpoint", "{tmp}/nowhere"], _nothing, 2, "run folder not found"),
    ("eval-suite-bad-yaml", ["eval", "--checkpoint", "{run}", "--suite", "{file}"], _yaml_broken, 2,
     "not valid YAML"),
    # compare / ablate / sweep
    ("compare-seeds-not-ints", ["compare", "--seeds", "a,b", "--out", "{tmp}/c"], _nothing, 2, "--seeds must be"),
    ("compare-out-in-use", ["compare", "--preset", "test", "--policies", "clip", "--seeds", "0", "--jobs", "1",
                            "--out", "{dir}"], _held, 2, "in use by another laclip-lite process"),
    ("ablate-seeds-not-ints", ["ablate", "--seeds", "x", "--out", "{tmp}/a"], _nothing, 2, "--seeds must be"),
    ("sweep-grid-bad-yaml", ["sweep", "notebooks/03_laclip_training.ipynb", "--grid", "{file}", "--out",
                             "{tmp}/s"], _yaml_broken, 2, "not valid YAML"),
    # demo
    ("demo-only-unknown", ["demo", "--only", "nope", "--out", "{tmp}/d"], _nothing, 2, "unknown notebook"),
    ("demo-p-misspelt", ["demo", "-p", "stpes=5", "--out", "{tmp}/d"], _nothing, 2, "did you mean steps"),
    ("demo-p-negative-count", ["demo", "--only", "02_text_rewriting", "-p", "n_captions=-1", "--out", "{tmp}/d"],
     _nothing, 2, "n_captions: -1 is out of range"),
    ("demo-p-no-equals", ["demo", "-p", "steps", "--out", "{tmp}/d"], _nothing, 2, "key=value"),
    # export / rewrite
    ("export-split-unknown", ["export", "--format", "laclip", "--split", "nope", "--out", "{tmp}/x"], _nothing, 2,
     "--split 'nope'"),
    ("rewrite-num-variants-100000", ["rewrite", "--input", "{file}", "--out", "{tmp}/rw", "--rewriter", "eda",
                                     "--num-variants", "100000"], _captions, 2, "num_variants"),
    ("rewrite-input-missing", ["rewrite", "--input", "{tmp}/none.txt", "--out", "{tmp}/rw"], _nothing, 2,
     "none.txt"),
    ("rewrite-out-in-use", ["rewrite", "--input", "{file}", "--out", "{dir}", "--rewriter", "eda"],
     [_captions, _held], 2, "in use by another laclip-lite process"),
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One finished `test`-preset run (4 steps, a checkpoint every 2), shared by the rows that need a run."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("trap_run") / "run"
    train(build_config("test", {"train.device": "cpu", "train.ckpt_every": 2}), out, progress=False,
          evaluate_at_end=False)
    yield out
    for proc in _HOLDERS:
        proc.kill()
        proc.wait()
    _HOLDERS.clear()


def run_cli(argv: list[str]) -> tuple[int, str, BaseException | None]:
    """(exit code, stdout + stderr, the exception that escaped main() or None) of `laclip-lite argv`."""
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(buf):
        try:
            rc, escaped = cli.main(argv), None
        except SystemExit as e:                 # argparse's usage errors: exit 2 with a usage line
            rc, escaped = e.code if isinstance(e.code, int) else 1, None
        except Exception as e:                  # a traceback for the person at the terminal
            rc, escaped = 1, e
    return rc, buf.getvalue(), escaped


def classify(want_rc: int, fragment: str, rc: int, output: str, escaped: BaseException | None) -> str:
    """handled (the right exit, one line holding the fragment), traceback, silent (exit 0 where it must fail, or
    nothing said where a note is due), or other (failed, but not with the expected line)."""
    if escaped is not None or "Traceback (most recent call last)" in output:
        return "traceback"
    last = ([line for line in output.splitlines() if line.strip()] or [""])[-1]
    if want_rc != 0 and rc == 0:
        return "silent"
    if want_rc == 0:
        return "handled" if rc == 0 and fragment in output else ("silent" if rc == 0 else "other")
    return "handled" if rc == want_rc and fragment in last else "other"


def fill(argv: list[str], values: dict) -> list[str]:
    return [a.format(**values) for a in argv]


def setup_case(setup, tmp: Path, run: Path) -> dict:
    values = {"tmp": tmp, "run": run}
    for fn in setup if isinstance(setup, list) else [setup]:
        values.update(fn(tmp, run))
    return values


@pytest.mark.parametrize("name, argv, setup, want_rc, fragment", CASES, ids=[c[0] for c in CASES])
def test_trap(name, argv, setup, want_rc, fragment, tmp_path, trained_run, monkeypatch):
    monkeypatch.delenv("LACLIP_LITE_DEBUG", raising=False)
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    rc, output, escaped = run_cli(fill(argv, setup_case(setup, tmp_path, trained_run)))
    verdict = classify(want_rc, fragment, rc, output, escaped)
    assert verdict == "handled", f"{name}: {verdict} (exit {rc}; want {want_rc} and {fragment!r})\n{output[-2000:]}"
    if want_rc:
        errors = [line for line in output.splitlines() if ": error: " in line or line.startswith("usage:")]
        assert errors, output


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    argv = ["train", *FAST, "--set", "train.log_every=0", "--out", str(tmp_path / "r")]
    assert "Traceback" not in run_cli(argv)[1]
    rc, output, _ = run_cli(["--debug", *argv])
    assert rc == 2 and "Traceback (most recent call last)" in output and "train.log_every" in output
    monkeypatch.setenv("LACLIP_LITE_DEBUG", "1")
    rc, output, _ = run_cli(argv)
    assert rc == 2 and "Traceback (most recent call last)" in output


def test_classify_tells_the_verdicts_apart():
    assert classify(2, "x", 2, "laclip-lite t: error: x here\n", None) == "handled"
    assert classify(2, "x", 0, "done\n", None) == "silent"
    assert classify(2, "x", 1, "Traceback (most recent call last):\n ...\nValueError: x\n", None) == "traceback"
    assert classify(2, "x", 1, "", ValueError("x")) == "traceback"
    assert classify(2, "x", 2, "laclip-lite t: error: something else\n", None) == "other"
    assert classify(0, "note", 0, "a note here\n", None) == "handled"
    assert classify(0, "note", 0, "nothing said\n", None) == "silent"


@pytest.mark.parametrize("overrides", [{"train.ckpt_every": 0, "train.eval_every": 0}, {"data.val_size": 0},
                                       {"train.warmup_steps": 0, "train.grad_clip": 0}, {"train.batch_size": 64}])
def test_range_checks_pass_the_values_that_mean_off_or_fit(overrides):
    build_config("test", overrides)                   # 0 = off for cadences, a batch of exactly the data


@pytest.mark.parametrize("overrides, fragment", [({"data.val_size": 0, "train.eval_every": 2}, "data.val_size"),
                                                 ({"train.lr": float("inf")}, "train.lr"),
                                                 ({"model.embed_dim": 0}, "model.embed_dim")])
def test_range_checks_stop_the_values_that_break_a_run(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build_config("test", overrides)
