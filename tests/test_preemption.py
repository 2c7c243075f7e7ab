"""Preemption: SIGTERM / SIGUSR1 checkpoint and exit cleanly, `--resume auto` continues to the same weights,
`train.keep_checkpoints` keeps every N-th checkpoint, and `srun` without torchrun is refused."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from laclip_lite.config import build_config
from laclip_lite.train import CHECKPOINT, EXIT_PREEMPTED, Preempted, Trainer, train


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LACLIP_LITE_CACHE", str(tmp_path / "cache"))


def test_sigterm_checkpoints_and_resume_auto_gives_bit_identical_weights(tmp_path):
    """A CLI run started with --resume auto (no checkpoint yet: a fresh start) gets SIGTERM mid-run: it saves the
    step it is at and exits with status 75; the same command again resumes and ends with the weights of an
    uninterrupted run, bit for bit."""
    env = {**os.environ, "LACLIP_LITE_CACHE": str(tmp_path / "cache")}
    steps = 100
    cmd = [sys.executable, "-m", "laclip_lite.cli", "train", "--preset", "test", "--set", f"train.steps={steps}",
           "--set", "train.ckpt_every=0", "--set", "train.log_every=3", "--no-progress", "--resume", "auto"]
    subprocess.run(cmd + ["--out", str(tmp_path / "full")], check=True, env=env, capture_output=True)
    cut = tmp_path / "cut"
    proc = subprocess.Popen(cmd + ["--out", str(cut)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while not (cut / "metrics.jsonl").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err
    saved = torch.load(cut / CHECKPOINT, weights_only=True)["step"]
    assert 0 < saved < steps and f"SIGTERM at step {saved}" in err and "--resume auto" in err
    assert not (cut / "final_metrics.json").exists()
    done = subprocess.run(cmd + ["--out", str(cut)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    a = torch.load(tmp_path / "full" / CHECKPOINT, weights_only=True)["model"]
    b = torch.load(cut / CHECKPOINT, weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(r)["step"] for r in (cut / "metrics.jsonl").read_text().splitlines()]
    assert rows == list(range(3, steps, 3)) + [steps]                 # no row lost or repeated


def test_sigusr1_in_process_saves_the_step_and_restores_the_handlers(tmp_path):
    previous = signal.getsignal(signal.SIGUSR1)
    trainer = Trainer(build_config("test", ["train.steps=8"]), tmp_path / "run", progress=False,
                      evaluate_at_end=False)
    step = trainer.train_step

    def step_then_signal():
        row = step()
        if trainer.step == 3:
            os.kill(os.getpid(), signal.SIGUSR1)
        return row

    trainer.train_step = step_then_signal
    with pytest.raises(Preempted, match="SIGUSR1 at step 3"):
        trainer.run()
    assert torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)["step"] == 3
    assert signal.getsignal(signal.SIGUSR1) is previous


def test_keep_checkpoints_keeps_every_nth(tmp_path):
    train(build_config("test", ["train.steps=8", "train.ckpt_every=2", "train.keep_checkpoints=2"]),
          tmp_path / "run", progress=False, evaluate_at_end=False)
    kept = sorted(p.name for p in (tmp_path / "run").glob("checkpoint_*.pt"))
    assert kept == ["checkpoint_00000004.pt", "checkpoint_00000008.pt"]
    assert torch.load(tmp_path / "run" / kept[0], weights_only=True)["step"] == 4
    train(build_config("test", ["train.steps=4", "train.ckpt_every=2"]), tmp_path / "default", progress=False,
          evaluate_at_end=False)
    assert not list((tmp_path / "default").glob("checkpoint_*.pt"))


def test_resume_auto_starts_a_new_run_and_srun_without_torchrun_is_refused(tmp_path, monkeypatch):
    final = train(build_config("test"), tmp_path / "run", resume="auto", progress=False, evaluate_at_end=False)
    assert final["step"] == 4
    again = train(build_config("test"), tmp_path / "run", resume="auto", progress=False, evaluate_at_end=False)
    assert again["step"] == 4                                          # resumed at the end: nothing left to do
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(RuntimeError, match="SLURM_NTASKS=2 but WORLD_SIZE is unset"):
        Trainer(build_config("test"), tmp_path / "srun")
