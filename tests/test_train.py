"""The training loop on the `test` preset: every policy, exact resume, checkpoints, errors."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from laclip_lite.config import build_config
from laclip_lite.train import CHECKPOINT, NonFiniteLossError, Trainer, lr_lambda, train


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LACLIP_LITE_CACHE", str(tmp_path / "cache"))


def _cfg(*overrides):
    return build_config("test", list(overrides))


@pytest.mark.parametrize("policy", ["clip", "laclip", "mt"])
def test_each_policy_trains_and_writes_a_run(tmp_path, policy):
    cfg = _cfg(f"train.policy={policy}", "data.augment=shapes" if policy != "clip" else "data.augment=none")
    final = train(cfg, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for name in ("config.yaml", CHECKPOINT, "metrics.jsonl", "final_metrics.json", "tokenizer.json"):
        assert (run / name).exists(), name
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert "test/color_shape_top1" in final and 0 <= final["test/color_shape_top1"] <= 100
    state = torch.load(run / CHECKPOINT, weights_only=True)
    assert state["step"] == 4 and set(state) >= {"model", "optimizer", "scheduler", "rng_cpu"}


def test_mt_sees_all_texts_in_one_text_batch(tmp_path):
    cfg = _cfg("train.policy=mt", "data.augment=shapes", "data.num_rewrites=4")
    trainer = Trainer(cfg, tmp_path / "run", progress=False, evaluate_at_end=False)
    batch = trainer.data.pairs.batch(0)
    assert batch.tokens.shape[:2] == (cfg.train.batch_size, 5)


def test_resume_continues_exactly(tmp_path):
    """Train 8 steps straight; train 4 + resume to 8 from the checkpoint: same losses, same weights."""
    over = ["train.steps=8", "train.ckpt_every=4", "train.log_every=2", "train.policy=laclip", "data.augment=shapes"]
    train(_cfg(*over), tmp_path / "full", progress=False, evaluate_at_end=False)
    first = Trainer(_cfg(*over), tmp_path / "part", progress=False, evaluate_at_end=False)
    for _ in range(5):              # one step past the step-4 checkpoint, then "crash"
        first.train_step()
        if first.step == 4:
            first.save()
    resumed = train(_cfg(*over), tmp_path / "part", resume=True, progress=False, evaluate_at_end=False)
    full_rows = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    part_rows = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    def losses(rows):
        return [json.loads(r)["loss"] for r in rows]

    assert losses(part_rows)[-2:] == losses(full_rows)[-2:]
    a = torch.load(tmp_path / "full" / CHECKPOINT, weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["step"] == 8


def _run_kill_and_resume(tmp_path, common: list[str], steps: int) -> int:
    """`laclip-lite train COMMON` to the end in tmp_path/full; the same in tmp_path/cut, killed with SIGKILL after
    its first checkpoint and finished with --resume. Returns the step the interrupted run had saved."""
    env = {**os.environ, "LACLIP_LITE_CACHE": str(tmp_path / "cache")}
    cli = [sys.executable, "-m", "laclip_lite.cli", "train"]
    subprocess.run(cli + common + ["--out", str(tmp_path / "full")], check=True, env=env, capture_output=True)
    proc = subprocess.Popen(cli + common + ["--out", str(tmp_path / "cut")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "cut" / CHECKPOINT
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved_step = torch.load(ckpt, weights_only=True)["step"]
    assert 0 < saved_step < steps, "the run finished before it could be interrupted"
    subprocess.run(cli + ["--out", str(tmp_path / "cut"), "--resume", "--no-progress"], check=True, env=env,
                   capture_output=True)
    return saved_step


def test_cli_kill_and_resume(tmp_path):
    """kill -9 a CLI run after its first checkpoint; --resume finishes with the uninterrupted final loss."""
    common = ["--preset", "test", "--set", "train.steps=40", "--set", "train.ckpt_every=5",
              "--set", "train.log_every=5", "--no-progress"]
    saved_step = _run_kill_and_resume(tmp_path, common, steps=40)
    full = json.loads((tmp_path / "full" / "final_metrics.json").read_text())
    cut = json.loads((tmp_path / "cut" / "final_metrics.json").read_text())
    def rows(run):
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [(x["step"], round(x["loss"], 4)) for x in map(json.loads, lines)]

    assert cut["final_loss"] == full["final_loss"], (saved_step, rows("full"), rows("cut"))
    assert cut["test/color_shape_top1"] == full["test/color_shape_top1"]


def test_refuses_to_overwrite_and_resume_needs_a_run(tmp_path):
    train(_cfg(), tmp_path / "run", progress=False, evaluate_at_end=False)
    with pytest.raises(FileExistsError, match="resume"):
        Trainer(_cfg(), tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(_cfg(), tmp_path / "nothing", resume=True)


def test_nan_guard_stops_with_a_clear_message(tmp_path):
    trainer = Trainer(_cfg(), tmp_path / "run", progress=False, evaluate_at_end=False)
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="step 0"):
        trainer.train_step()


def test_logit_scale_clamped_and_no_decay_groups(tmp_path):
    trainer = Trainer(_cfg("train.lr=10", "train.steps=2"), tmp_path / "run", progress=False, evaluate_at_end=False)
    with torch.no_grad():
        trainer.model.logit_scale.fill_(10.0)
    trainer.train_step()
    assert trainer.model.logit_scale.detach().exp().item() <= 100.0 + 1e-4
    decay_ids = {id(p) for g in trainer.optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(trainer.model.logit_scale) not in decay_ids
    assert all(p.ndim >= 2 for g in trainer.optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"])


def test_micro_accumulation_matches_the_mean_of_the_micro_batch_losses(tmp_path):
    """accum_mode=micro, accum_steps=2 (a backward per micro-batch, each loss / 2) gives the gradient of the mean
    of the two micro-batch losses: each micro-batch's contrastive loss has its own negatives. (accum_mode=global,
    one loss over the whole batch: tests/test_accumulate.py.)"""
    cfg = _cfg("train.accum_steps=2", "train.grad_clip=0")
    accumulating = Trainer(cfg, tmp_path / "accum", progress=False, evaluate_at_end=False)
    reference = Trainer(cfg, tmp_path / "full", progress=False, evaluate_at_end=False)
    for a, b in zip(accumulating.model.state_dict().values(), reference.model.state_dict().values()):
        assert torch.equal(a, b)                                       # the same seed: the same initial weights
    seen = {}                                                          # the gradients the optimizer steps on
    accumulating.optimizer.register_step_pre_hook(lambda *_: seen.update(
        {n: p.grad.clone() for n, p in accumulating.model.named_parameters() if p.grad is not None}))
    row = accumulating.train_step()
    batch = reference.data.pairs.batch(0)
    reference.model.train()
    images = reference._prepare(batch.images, 0, reference.data.pairs.augmented)
    micro = [reference.loss_fn(*reference._features(x)) for x in zip(images.chunk(2), batch.tokens.chunk(2))]
    full = torch.stack(micro).mean()
    full.backward()                                                    # one backward over the full batch
    assert row["step"] == 1 and row["loss"] == pytest.approx(full.item(), rel=1e-5)
    expected = {n: p.grad for n, p in reference.model.named_parameters() if p.grad is not None}
    assert seen.keys() == expected.keys() and len(seen) > 10
    for name, grad in expected.items():
        torch.testing.assert_close(seen[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_lr_schedule_warmup_then_cosine():
    f = lr_lambda(10, 110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0)


@pytest.mark.parametrize("source", ["laclip/train.csv", "wds", "hf"])
def test_trains_from_each_real_format_sample(tmp_path, source):
    """LaCLIP CSV + rewrite files, webdataset shards, HF dataset: MT sees the original + 4 shipped rewrites."""
    root = Path(__file__).resolve().parents[1] / "data_samples"
    cfg = _cfg("train.policy=mt", f"data.source={root / source}", "train.batch_size=8", "train.steps=3",
               "train.log_every=1")
    trainer = Trainer(cfg, tmp_path / "run", progress=False, evaluate_at_end=False)
    assert trainer.data.pairs.texts_per_image == 5
    batch = trainer.data.pairs.batch(0)
    assert batch.images.shape == (8, 3, 32, 32) and batch.tokens.shape[:2] == (8, 5)
    final = trainer.run()
    assert final["step"] == 3 and final["final_loss"] > 0


def test_streaming_resume_replays_the_same_batches(tmp_path):
    root = Path(__file__).resolve().parents[1] / "data_samples"
    cfg = _cfg("train.policy=laclip", f"data.source={root / 'wds'}", "train.batch_size=8")
    a = Trainer(cfg, tmp_path / "a", progress=False, evaluate_at_end=False).data.pairs
    b = Trainer(_cfg("train.policy=laclip", f"data.source={root / 'wds'}", "train.batch_size=8"), tmp_path / "b",
                progress=False, evaluate_at_end=False).data.pairs
    first = [a.batch(s) for s in range(4)]
    again = b.batch(3)                      # a resumed run starting at step 3
    assert torch.equal(again.tokens, first[3].tokens)


def test_cli_kill_and_resume_on_a_csv_source_gives_bit_identical_weights(tmp_path):
    """kill -9 a CLI run on the dirty CC3M-like CSV (2 DataLoader workers crop and replace unreadable samples);
    --resume ends with exactly the weights of the uninterrupted run: the crops, the replacements and the text
    draws are functions of (seed, step, index), not of worker or process state."""
    from laclip_lite.data.dirty import export_dirty_laclip

    csv_path = export_dirty_laclip(tmp_path / "dirty")
    common = ["--preset", "test", "--no-progress"] + [x for kv in (
        f"data.source={csv_path}", "train.policy=laclip", "train.batch_size=8", "data.num_workers=2",
        "train.steps=16", "train.ckpt_every=4", "train.log_every=2") for x in ("--set", kv)]
    saved_step = _run_kill_and_resume(tmp_path, common, steps=16)
    a = torch.load(tmp_path / "full" / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=True)
    assert a["step"] == b["step"] == 16
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), saved_step
    full, cut = (json.loads((tmp_path / r / "final_metrics.json").read_text()) for r in ("full", "cut"))
    assert cut["data"] == full["data"]             # the skip counts survive the kill too


def test_the_trainer_never_changes_the_callers_config(tmp_path):
    """The trainer resolves steps / warm-up (from train.epochs), accum_steps (from train.global_batch), vocab_size
    and pad_id on its own copy, `trainer.cfg`; the config passed in is the same after training."""
    cfg = _cfg("train.epochs=1", "train.warmup_epochs=0.5", "train.global_batch=16", "train.batch_size=8")
    given = cfg.to_dict()
    trainer = Trainer(cfg, tmp_path / "run", progress=False, evaluate_at_end=False)
    trainer.run()
    assert cfg.to_dict() == given
    resolved = trainer.cfg.to_dict()
    assert given["model"]["vocab_size"] == 0
    assert resolved["model"]["vocab_size"] == trainer.data.tokenizer.vocab_size > 0
    assert resolved["train"]["accum_steps"] == 2 and resolved["train"]["steps"] == trainer.plan.steps
