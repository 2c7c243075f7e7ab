"""train.log_to: TensorBoard event files read back, W&B (offline) calls, a missing package stops the run before
step 0, plain log lines when progress bars are off."""
import importlib.machinery
import json
import sys
import types

import pytest

from laclip_lite.config import ConfigError, build_config
from laclip_lite.train import Trainer, train


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LACLIP_LITE_CACHE", str(tmp_path / "cache"))


def test_tensorboard_event_file_reads_back_the_metrics(tmp_path):
    pytest.importorskip("tensorboard")          # in the dev extra ([logging]); the package is optional for users
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    train(build_config("test", ["train.log_to=jsonl,tensorboard"]), run, progress=False)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "lr", "logit_scale", "grad_norm", "samples_per_s", "data_fraction", "step_time"} <= tags
    assert "test/color_shape_top1" in tags                                  # the end-of-run evaluation
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    loss = events.Scalars("loss")
    assert [e.step for e in loss] == [r["step"] for r in rows] == [2, 4]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in rows], rel=1e-6)
    final = json.loads((run / "final_metrics.json").read_text())
    assert events.Scalars("test/color_shape_top1")[-1].value == pytest.approx(final["test/color_shape_top1"])
    assert "config/text_summary" in events.Tags()["tensors"]              # the config as text


def test_a_missing_package_stops_the_run_before_training(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match="train.log_to=wandb needs the wandb package"):
        Trainer(build_config("test", ["train.log_to=jsonl,wandb"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="train.log_to='csv' is not one of"):
        build_config("test", ["train.log_to=csv"])


def test_wandb_runs_offline_with_the_config_and_each_row(tmp_path, monkeypatch):
    calls = {"log": []}

    class FakeRun:
        def log(self, values, step):
            calls["log"].append((step, values))

        def finish(self):
            calls["finished"] = True

    def init(**kwargs):
        calls["init"] = dict(kwargs, mode=__import__("os").environ.get("WANDB_MODE"))
        return FakeRun()

    fake = types.ModuleType("wandb")
    fake.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    fake.init = init
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    train(build_config("test", ["train.log_to=jsonl,wandb"]), tmp_path / "run", progress=False)
    assert calls["init"]["mode"] == "offline" and calls["init"]["dir"] == str(tmp_path / "run")
    assert calls["init"]["config"]["train"]["steps"] == 4
    steps = [s for s, _ in calls["log"]]
    assert steps == [2, 4, 4] and "loss" in calls["log"][0][1] and "test/color_shape_top1" in calls["log"][-1][1]
    assert calls["finished"]


def test_plain_lines_when_progress_bars_are_off(tmp_path, capsys):
    train(build_config("test", ["train.print_every_s=0"]), tmp_path / "run", progress=False, evaluate_at_end=False)
    err = capsys.readouterr().err
    assert "laclip-lite: step 2/4: loss" in err and "laclip-lite: step 4/4: loss" in err and "samples/s" in err
    train(build_config("test", ["train.print_every_s=3600"]), tmp_path / "quiet", progress=False,
          evaluate_at_end=False)
    err = capsys.readouterr().err
    assert "step 2/4" in err and "step 4/4" in err                     # the first row, and always the last
    train(build_config("test", ["train.print_every_s=3600", "train.steps=6"]), tmp_path / "six", progress=False,
          evaluate_at_end=False)
    err = capsys.readouterr().err
    assert "step 2/6" in err and "step 4/6" not in err and "step 6/6" in err
