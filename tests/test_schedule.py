"""The release's recipe: epochs -> steps, the global batch, its lr schedule and weight-decay rule, the presets."""
import math
import subprocess
import sys

import pytest
import torch

from laclip_lite.config import ConfigError, build_config
from laclip_lite.schedule import lr_lambda, plan_steps

CC3M, CC12M = 2_900_000, 12_423_374     # issue 12's CC3M count; CC12M's published size


@pytest.mark.parametrize("preset,n,gpus,per_epoch", [
    ("laclip-cc3m", CC3M, 8, 354),       # 2,900,000 // 8,192 = 354 (354.00): 256 x 8 GPUs x 4 micro-batches
    ("laclip-cc3m", CC3M, 32, 354),      # 256 x 32 GPUs x 1
    ("laclip-cc12m", CC12M, 8, 1516),    # 12,423,374 // 8,192 = 1,516 (1,516.5)
    ("laclip-cc12m", CC12M, 32, 1516),
])
def test_steps_from_epochs_match_a_hand_computation(preset, n, gpus, per_epoch):
    plan = plan_steps(build_config(preset), gpus, n)
    assert plan.global_batch == 8192 and plan.accum_steps == 32 // gpus and plan.steps_per_epoch == per_epoch
    assert plan.negatives_per_loss == 8192                                     # accum_mode=global
    assert plan.steps == 35 * per_epoch and plan.warmup_steps == per_epoch      # 35 epochs, 1 warm-up epoch


def test_cli_dry_run_prints_the_derived_steps():
    out = subprocess.run([sys.executable, "-m", "laclip_lite.cli", "train", "--preset", "laclip-cc3m", "--dry-run",
                          "--world-size", "8", "--samples", str(CC3M)], check=True, capture_output=True,
                         text=True).stdout
    assert "global batch            8192" in out and "steps per epoch         354" in out
    assert "negatives per loss      8,191 per sample (8,192 samples in each loss: the global batch)" in out
    assert "optimizer steps         12,390" in out and "warm-up steps           354" in out
    micro = subprocess.run([sys.executable, "-m", "laclip_lite.cli", "train", "--preset", "laclip-cc3m",
                            "--dry-run", "--world-size", "8", "--samples", str(CC3M), "--set",
                            "train.accum_mode=micro"], check=True, capture_output=True, text=True).stdout
    assert "negatives per loss      2,047 per sample (2,048 samples in each loss: one micro-batch x 8" in micro


def test_global_batch_picks_the_accumulation_and_rejects_a_remainder():
    cfg = build_config("laclip-cc3m", ["train.global_batch=16384"])
    assert plan_steps(cfg, 8, CC3M).accum_steps == 8 and plan_steps(cfg, 64, CC3M).accum_steps == 1
    cfg = build_config("laclip-cc3m", ["train.global_batch=8192"])
    assert plan_steps(cfg, 8, CC3M).accum_steps == 4 and plan_steps(cfg, 32, CC3M).accum_steps == 1
    with pytest.raises(ConfigError, match="not a multiple"):
        plan_steps(build_config("laclip-cc3m", ["train.global_batch=1000"]), 8, CC3M)
    with pytest.raises(ConfigError, match="data.num_samples"):
        plan_steps(build_config("laclip-cc3m"), 8, 0)
    # LAION-style B/32: 32,768 per step on any number of GPUs, warm-up 2,000 steps (counted in steps)
    b32 = plan_steps(build_config("vit-b32"), 32, 400_000_000)
    assert b32.accum_steps == 4 and b32.global_batch == 32_768 and b32.warmup_steps == 2000
    assert b32.steps == 32 * (400_000_000 // 32_768)


def test_release_lr_schedule_endpoints():
    base, start, end, warmup, total = 1e-3, 1e-6, 1e-5, 10, 110
    f = lr_lambda(warmup, total, base, start, end)
    assert f(0) * base == pytest.approx(start + (base - start) / warmup)
    assert f(warmup - 1) * base == pytest.approx(base) and f(warmup) * base == pytest.approx(base)
    assert f(total) * base == pytest.approx(end)
    # the cosine part equals the release's utils.cosine_scheduler: end + (base-end)/2 (1 + cos(pi i / (T-W)))
    for i in (1, 37, 99):
        want = end + 0.5 * (base - end) * (1 + math.cos(math.pi * i / (total - warmup)))
        assert f(warmup + i) * base == pytest.approx(want)


def test_release_weight_decay_rule_decays_embeddings_not_norms(tmp_path, monkeypatch):
    monkeypatch.setenv("LACLIP_LITE_CACHE", str(tmp_path / "cache"))
    from laclip_lite.models.clip import build_model, param_groups

    cfg = build_config("test", ["train.decay_rule=release"])
    cfg.model.vocab_size = 50
    model = build_model(cfg.model)
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = param_groups(model, 0.5, "release")
    decayed = {names[id(p)] for p in decay["params"]}
    assert "text.token_embedding.weight" in decayed and "text.positional_embedding" in decayed
    assert not any("bias" in n or "ln" in n for n in decayed)
    assert all(p.ndim >= 2 for p in decay["params"]) and no_decay["weight_decay"] == 0
    kit = {names[id(p)] for p in param_groups(model, 0.5, "kit")[0]["params"]}
    assert "text.token_embedding.weight" not in kit


def test_release_presets_say_what_the_release_does():
    cfg = build_config("laclip-cc3m")
    t = cfg.train
    assert (t.lr, t.weight_decay, t.eps, t.epochs, t.warmup_epochs, t.batch_size) == (1e-3, 0.5, 1e-8, 35, 1, 256)
    assert (t.global_batch, t.accum_mode) == (8192, "global")          # the paper's batch, its negatives kept
    assert (t.lr_start, t.lr_end, t.grad_clip, t.decay_rule, tuple(t.betas)) == (1e-6, 1e-5, 0, "release", (0.9, 0.98))
    assert cfg.data.crop_scale == [0.5, 1.0] and cfg.data.tokenizer == "clip"
    assert (cfg.model.text_act, cfg.model.vision_act) == ("quickgelu", "gelu")


def test_quickgelu_is_clips_activation():
    from laclip_lite.models.transformer import MLP, QuickGELU

    x = torch.linspace(-4, 4, 9)
    assert torch.allclose(QuickGELU()(x), x * torch.sigmoid(1.702 * x))
    assert isinstance(MLP(8, act="quickgelu").gelu, QuickGELU)
    assert isinstance(MLP(8).gelu, torch.nn.GELU)                          # the default is unchanged
