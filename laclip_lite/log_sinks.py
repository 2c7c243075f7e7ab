"""Where a training run's numbers go besides `metrics.jsonl`: TensorBoard, Weights & Biases, plain log lines.

`train.log_to` lists the sinks: `jsonl` (metrics.jsonl, always written), `tensorboard` (event files in
`<run>/tensorboard/`, needs the `tensorboard` package: `pip install 'laclip_lite[logging]'`), `wandb` (needs
`wandb`; offline mode unless WANDB_MODE is set, files in `<run>/wandb/`; `wandb sync` uploads them later). A sink
whose package is missing stops the run before step 0 (`check_sinks`).

Each metrics row (every `train.log_every` steps) goes to every sink as scalars under the row's own names: loss,
lr, logit_scale, grad_norm, step_time, data_fraction (the data-wait share), samples_per_s, and the evaluation
metrics (`val/...`, `<set>/...`). The resolved config goes in once as hyper-parameters (TensorBoard: the HParams
plugin and a `config` text; W&B: the run config). With progress bars off, `plain_line` gives one log line per row,
at most one every `train.print_every_s` seconds (and always the last).
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import yaml

from laclip_lite.config import ConfigError

SINKS = ("jsonl", "tensorboard", "wandb")
_PACKAGE = {"tensorboard": "tensorboard", "wandb": "wandb"}


def check_sinks(log_to: list[str]) -> None:
    """Every sink named is known and its package is installed; else a one-line error naming what is missing."""

    for name in log_to:
        if name not in SINKS:
            raise ConfigError(f"train.log_to: {name!r} is not one of: {', '.join(SINKS)}")
        package = _PACKAGE.get(name)
        if package and importlib.util.find_spec(package) is None:
            raise ConfigError(f"train.log_to={name} needs the {package} package, which is not installed "
                              f"(pip install {package}, or drop {name} from train.log_to)")


def flat_config(config: dict) -> dict:
    """{"train": {"lr": 1e-3}} -> {"train.lr": 1e-3}; lists and None become strings (hyper-parameter values)."""
    out = {}
    for section, values in config.items():
        for key, value in (values or {}).items():
            out[f"{section}.{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


class LogSinks:
    """The TensorBoard / W&B writers of one run (rank 0 only). `log(row)` sends a metrics row; `close()` flushes."""

    def __init__(self, log_to: list[str], out_dir: str | Path, config: dict, global_batch: int):
        check_sinks(log_to)
        self.out, self.global_batch = Path(out_dir), global_batch
        self.tb = self.wandb_run = None
        if "tensorboard" in log_to:
            self.tb = _tensorboard_writer(self.out / "tensorboard", config)
        if "wandb" in log_to:
            self.wandb_run = _wandb_run(self.out, config)

    def scalars(self, row: dict) -> dict:
        """The numbers of a metrics row (+ samples/s from the step time), without the step itself."""
        out = {k: float(v) for k, v in row.items() if k != "step" and isinstance(v, (int, float))
               and not isinstance(v, bool)}
        if row.get("step_time"):
            out["samples_per_s"] = self.global_batch / row["step_time"]
        return out

    def log(self, row: dict, step: int | None = None) -> None:
        step = int(row["step"] if step is None else step)
        values = self.scalars(row)
        if self.tb is not None:
            for name, value in values.items():
                self.tb.add_scalar(name, value, step)
            self.tb.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(values, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def _tensorboard_writer(folder: Path, config: dict):
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    writer = SummaryWriter(log_dir=str(folder))
    writer.add_text("config", "```\n" + yaml.safe_dump(config, sort_keys=False) + "```", 0)
    for summary in hparams(flat_config(config), {}):     # the HParams plugin's experiment + session start
        writer.file_writer.add_summary(summary)
    return writer


def _wandb_run(out: Path, config: dict):
    import wandb

    os.environ.setdefault("WANDB_MODE", "offline")          # nothing leaves the machine unless asked for
    return wandb.init(project=os.environ.get("WANDB_PROJECT", "laclip_lite"), name=out.name, dir=str(out),
                      config=config, reinit=True)


class PlainLines:
    """One plain log line per metrics row when progress bars are off (Slurm / papermill logs): at most one every
    `every_s` seconds, and always the last row."""

    def __init__(self, every_s: float, total: int, stream=None):
        self.every_s, self.total, self.stream = every_s, total, stream or sys.stderr
        self.last = float("-inf")

    def __call__(self, row: dict, samples_per_s: float | None = None) -> None:
        now = time.monotonic()
        if now - self.last < self.every_s and row["step"] < self.total:
            return
        self.last = now
        rate = f", {samples_per_s:,.0f} samples/s" if samples_per_s else ""
        evals = "".join(f", {k} {v:.2f}" for k, v in row.items() if "/" in k and isinstance(v, (int, float)))
        print(f"laclip-lite: step {row['step']}/{self.total}: loss {row['loss']:.4f}, lr {row['lr']:.3g}, "
              f"logit scale {row['logit_scale']:.1f}{rate}, data wait {row.get('data_fraction', 0):.0%}{evals}",
              file=self.stream, flush=True)
