"""One training loop for CLIP, LaCLIP and LaCLIP-MT.

    batch (uint8 images, tokens) -> augment + normalise on device -> towers -> ClipLoss -> AdamW step

The text policy (`train.policy`) is the only difference between the three methods: `clip` and `laclip` feed
one text per image (the original, or one drawn uniformly from {original, rewrites}), `mt` feeds all K texts
(flattened to N*K rows through the text tower as one batch) and averages the contrastive loss over them.

What the loop guarantees:
* AdamW (no weight decay on biases, norms, embeddings and the logit scale; or the release's rule,
  `train.decay_rule`); linear warm-up from `lr_start`, then cosine to `lr_end` (`laclip_lite.schedule`).
* `train.epochs` > 0: steps and warm-up follow from the dataset size and the global batch (batch_size x
  processes x accum_steps; `train.global_batch` picks accum_steps for the GPUs at hand).
* Gradient clipping (`grad_clip`, 0 = off), accumulation (a step takes batch_size x accum_steps images per
  process in accum_steps micro-batches; `train.accum_mode`: `micro` = each micro-batch's loss contrasts its own
  samples, `global` = one loss over the whole global batch, exactly the full batch's gradient;
  laclip_lite.accumulate), bf16 autocast on CUDA only (fp32 on CPU).
* Images are augmented once: in-memory data on the device here, file data in the DataLoader workers.
* File data: an unreadable sample is replaced by a readable one (the same on every rank), so batches stay full;
  the replaced reads and fallen-back rewrites are counted over all ranks, written to data_info.json and
  final_metrics.json ("data") and printed in one line at the end.
* The logit scale is clamped to <= ln(100) after every optimizer step.
* A non-finite loss stops the run with a message naming the step (and keeps the last good checkpoint).
* Checkpoints every `ckpt_every` steps (atomic; `torch.load(weights_only=True)` loads them; every
  `keep_checkpoints`-th also kept as checkpoint_<step>.pt) and `resume=True` continues exactly: model, optimizer,
  scheduler, RNG, and the data position (batches are a function of step); `resume="auto"` starts a new run when
  there is no checkpoint yet. SIGTERM / SIGUSR1 checkpoint the current step and raise Preempted (the CLI exits
  with status 75): a requeued job with `--resume auto` continues to the same weights.
* Under `torchrun` (WORLD_SIZE > 1): DDP, features gathered with gradient, local-loss form; rank 0 logs and
  saves. The resulting gradients equal one process on the combined batch.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from laclip_lite import distributed as dist
from laclip_lite.accumulate import accumulate
from laclip_lite.checkpoint import load_checkpoint, save_checkpoint
from laclip_lite.config import Config, ConfigError, parse_specs
from laclip_lite.constants import EVAL_TASKS
from laclip_lite.data.dataset import TrainData, get_train_data
from laclip_lite.data.eval_layouts import open_eval_set
from laclip_lite.data.readers import SKIP_REASONS
from laclip_lite.data.tokenizer import Tokenizer, build_tokenizer, load_tokenizer
from laclip_lite.data.transforms import normalize, random_resized_crop
from laclip_lite.errors import RankTimeout, TrainingDiverged
from laclip_lite.evaluate import eval_sets, evaluate
from laclip_lite.folder_lock import folder_lock
from laclip_lite.log_sinks import LogSinks, PlainLines, check_sinks
from laclip_lite.losses import ClipLoss
from laclip_lite.models.clip import build_model, param_groups
from laclip_lite.models.text import trim_padding
from laclip_lite.rewrite.prepare import prepare_rewrites
from laclip_lite.runs import check_resume, plan_lines, recorded_plan, write_run_json
from laclip_lite.schedule import apply_plan, lr_lambda, plan_steps, resolve_accum
from laclip_lite.utils import (
    append_jsonl,
    atomic_write_text,
    autocast,
    autocast_dtype,
    read_jsonl,
    resolve_device,
    seed_everything,
    step_generator,
)

CHECKPOINT = "checkpoint.pt"
BEST_CHECKPOINT = "checkpoint_best.pt"


class NonFiniteLossError(TrainingDiverged):
    """The loss became NaN or inf."""


EXIT_PREEMPTED = 75     # the CLI's exit status after a stop signal (EX_TEMPFAIL: "try again"; a requeue resumes)


class Preempted(RuntimeError):
    """Training stopped on SIGTERM / SIGUSR1 after writing a checkpoint; `--resume auto` continues it."""

    def __init__(self, step: int, signal_name: str):
        super().__init__(f"stopped by {signal_name} at step {step} (checkpoint saved)")
        self.step, self.signal_name = step, signal_name


class StopSignals:
    """SIGTERM (Slurm's and torchrun's stop) and SIGUSR1 (`sbatch --signal=USR1@90`) set a flag that the loop
    reads between steps; under torchrun every rank learns the flag of any rank (one all-reduce per step), so all
    save the same step. The previous handlers come back with `restore()`. Outside the main thread (where Python
    cannot set handlers) it does nothing."""

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self):
        self.name = ""
        self._previous: dict = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.name = signal.Signals(signum).name

    def requested(self, world_size: int = 1) -> bool:
        if world_size > 1:
            flag = dist.all_reduce_sum(torch.tensor([1.0 if self.name else 0.0]))
            if flag.item() and not self.name:
                self.name = "a stop signal on another rank"
        return bool(self.name)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def _check_launch() -> None:
    """`srun` with several tasks per job but no torchrun would train one run twice into one folder: refuse."""
    tasks = int(os.environ.get("SLURM_NTASKS", "1") or 1)
    if tasks > 1 and "WORLD_SIZE" not in os.environ:
        raise RuntimeError(f"SLURM_NTASKS={tasks} but WORLD_SIZE is unset: {tasks} copies of this run would train "
                           "into one folder. Start one torchrun per node (srun --ntasks-per-node=1 torchrun "
                           "--nproc_per_node=GPUS ...), see docs/scale.md")


def build_optimizer(model: torch.nn.Module, cfg: Config, device: torch.device):
    t = cfg.train
    groups = param_groups(model, t.weight_decay, t.decay_rule)
    # The fused kernel runs on CUDA and CPU (on CPU ~6x faster than the per-parameter loop for our models).
    opt = torch.optim.AdamW(groups, lr=t.lr, betas=tuple(t.betas), eps=t.eps, fused=device.type in ("cuda", "cpu"))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(t.warmup_steps, t.steps, t.lr, t.lr_start, t.lr_end))
    return opt, sched


def build_train_data(cfg: Config, rank: int = 0, world_size: int = 1, tokenizer: Tokenizer | None = None) -> TrainData:
    """The training-data path, in the order the work happens: the texts of every sample and where they come from
    (may run the rewrite job), the tokenizer built from them (`tokenizer`: a resumed run's own instead), then the
    batches. Every guard (rewrites in use, identical share, made from these captions) runs before step 0."""
    rewrites = prepare_rewrites(cfg, rank, world_size)
    if tokenizer is None:
        tokenizer = build_tokenizer(cfg.data, cfg.model, rewrites.corpus)
    return get_train_data(cfg, tokenizer, rewrites, rank, world_size)


class Trainer:
    """Holds the pieces of one run; `run()` trains to `train.steps` and returns the final metrics. `trainer.cfg` is
    the resolved copy of the config it was given (accum_steps, steps, warmup_steps, vocab_size, pad_id filled in)."""

    def __init__(self, cfg: Config, out_dir: str | Path, resume: bool | str = False, progress: bool = True,
                 evaluate_at_end: bool = True, replan: list[str] | tuple = ()):
        cfg.validate()
        cfg = copy.deepcopy(cfg)        # the resolved config (accum_steps, steps, warmup, vocab_size, pad_id) is
        self.cfg, self.out = cfg, Path(out_dir)   # `trainer.cfg`; the caller's is never changed
        self.progress, self.evaluate_at_end = progress, evaluate_at_end
        self.rank, self.world_size = dist.init_from_env(cfg.train.device, cfg.train.dist_timeout)
        self.is_main = self.rank == 0
        self.device = dist.local_device(cfg.train.device) if self.world_size > 1 else resolve_device(cfg.train.device)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.amp = autocast_dtype(cfg.train.precision, self.device)
        if cfg.train.precision == "bf16" and self.device.type != "cuda":
            print("laclip-lite: train.precision=bf16 ignored on CPU (fp32 is ~100x faster here)", file=sys.stderr)

        ckpt_path = self.out / CHECKPOINT
        _check_launch()
        if resume == "auto":            # a requeued job: continue when a checkpoint exists, start otherwise
            resume = ckpt_path.exists()
        if resume and not ckpt_path.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
        if not resume and ckpt_path.exists():
            raise FileExistsError(f"{self.out} already holds a run ({CHECKPOINT}); pass resume=True (--resume) "
                                  "to continue it, or choose another output folder")

        seed_everything(cfg.train.seed)
        if self.world_size > 1 and not self.is_main:
            dist.barrier()              # rank 0 builds the tokenizer and rewrite caches first
        cfg.train.accum_steps = resolve_accum(cfg, self.world_size)
        self.data = build_train_data(cfg, self.rank, self.world_size, tokenizer=_own_tokenizer(self.out, resume))
        if self.world_size > 1 and self.is_main:
            dist.barrier()
        self.plan = self._plan_steps()
        cfg.model.vocab_size = self.data.tokenizer.vocab_size
        cfg.model.pad_id = self.data.tokenizer.pad_id
        self.model = build_model(cfg.model).to(self.device)
        if cfg.model.grad_checkpointing:
            self.model.set_grad_checkpointing(True)
        if cfg.model.vision == "resnet":        # NHWC convolutions: faster on CUDA and, with oneDNN, on a CPU
            self.model.to(memory_format=torch.channels_last)   # (lesson 01's ResNet: 0.34 -> 0.26 s a step)
        self.optimizer, self.scheduler = build_optimizer(self.model, cfg, self.device)
        self.loss_fn = ClipLoss(local_loss=True, gather_with_grad=True, rank=self.rank,
                                world_size=self.world_size, multi_text=cfg.train.policy == "mt")
        self._eval_sets: dict = {}      # split -> its evaluation sets (`evaluate.eval_sets`), made on first use
        if self.is_main:
            _check_eval_datasets(cfg)   # a bad eval set fails before training
        check_sinks(cfg.train.log_to)   # a sink whose package is missing fails before training
        self.step = 0
        self.best: dict = {}            # train.best_metric: {metric, value, step} of checkpoint_best.pt
        self.window: list[dict] = []    # per-step rows since the last metrics.jsonl row (kept in checkpoints)
        self.data_skipped: Counter = Counter()  # this rank's replaced reads / fallen-back rewrites (in checkpoints)
        self.replanned: list[str] = []
        if resume:                      # the checkpoint's recorded plan against this one, before anything is written
            self.replanned = check_resume(_recorded(ckpt_path), self, replan)
            self._load(ckpt_path)
        self.ddp_model = self.model
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = DistributedDataParallel(self.model, device_ids=ids)
        self.forward_model = torch.compile(self.ddp_model) if cfg.train.compile else self.ddp_model
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            cfg.save(self.out / "config.yaml")
            if not resume:                      # a resumed run keeps (and was checked against) its own tokenizer
                self.data.tokenizer.save(self.out)
            atomic_write_text(self.out / "data_info.json", json.dumps(self.data.info, indent=1))
            self._write_run_json()

    def _write_run_json(self) -> None:
        """run.json (what really runs, `laclip_lite.runs`) and, before step 0, the same facts as a plan table."""

        record = write_run_json(self, self.replanned)
        if self.data.from_files:                 # what the text policy really draws from, before step 0
            print(f"laclip-lite: {self.cfg.data.source}: {record['source']['images']} images; texts: "
                  f"{self.data.info['texts']}", file=sys.stderr)
        if self.replanned:
            print(f"laclip-lite: resume re-plans (given on the command line): {'; '.join(self.replanned)}",
                  file=sys.stderr)
        if self.progress:
            print("\n".join(plan_lines(record)), file=sys.stderr)

    # -- one optimizer step -------------------------------------------------------------------------------
    def _prepare(self, images_u8: torch.Tensor, step: int, augmented: bool = False) -> torch.Tensor:
        """This process's images of one step on the device, cropped (in-memory data) and normalised. The whole
        step's batch is cropped at once, as rows rank*B..(rank+1)*B of the global batch, so the crops do not
        depend on how the step is split into micro-batches or processes."""
        cfg = self.cfg
        images = images_u8.to(self.device, non_blocking=True)
        n = images.shape[0]
        if not augmented:               # in-memory data; file data was cropped once, in the DataLoader workers
            images = random_resized_crop(images, cfg.data.crop_scale, step_generator(cfg.train.seed, step, 3),
                                         hflip=cfg.data.hflip, offset=self.rank * n, total=n * self.world_size)
        images = normalize(images)
        if cfg.model.vision == "resnet":
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def _features(self, micro: tuple[torch.Tensor, torch.Tensor]):
        """(prepared images [n,3,H,W], tokens [n,L] or [n,K,L]) -> fp32 (image [n,D], text [n,D] or [n,K,D], scale)."""
        images, tokens = micro
        tokens = trim_padding(tokens, self.cfg.model.pad_id).to(self.device, non_blocking=True)
        multi = tokens.dim() == 3
        flat = tokens.flatten(0, 1) if multi else tokens
        with autocast(self.amp, self.device):
            img, txt, scale = self.forward_model(images, flat)
        if multi:
            txt = txt.view(tokens.shape[0], tokens.shape[1], -1)
        return img.float(), txt.float(), scale.float()

    def _accumulate(self, batch, step: int) -> float:
        """Forward + backward of the step's micro-batches (`train.accum_mode`: laclip_lite.accumulate)."""

        accum = self.cfg.train.accum_steps
        images = self._prepare(batch.images, step, self.data.pairs.augmented)
        micro = list(zip(images.chunk(accum), batch.tokens.chunk(accum)))

        def no_sync(j: int):
            return self.ddp_model.no_sync() if self.world_size > 1 and j < accum - 1 else _null()

        def check(loss: torch.Tensor, j: int) -> None:
            if not torch.isfinite(loss):
                raise NonFiniteLossError(_diverged(loss.item(), step, j, self.out / CHECKPOINT))

        return accumulate(self.cfg.train.accum_mode, self._features, micro, self.loss_fn, no_sync, check, self.model)

    def train_step(self) -> dict:
        cfg, step = self.cfg, self.step
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        batch = self.data.pairs.batch(step)
        self.data_skipped.update(batch.skipped)
        t0 = time.perf_counter()
        total = self._accumulate(batch, step)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.train.grad_clip or float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        with torch.no_grad():
            self.model.clamp_logit_scale()
        self.step += 1
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return {"step": self.step, "loss": self._global_loss(total), "lr": self.scheduler.get_last_lr()[0],
                "logit_scale": self.model.logit_scale.detach().exp().item(), "grad_norm": float(grad_norm),
                "data_time": batch.data_time, "step_time": time.perf_counter() - t0 + batch.data_time}

    # -- checkpoints --------------------------------------------------------------------------------------
    def save(self) -> None:
        skipped = self._all_ranks_skipped() if self.world_size > 1 else dict(self.data_skipped)  # every rank joins
        if not self.is_main:
            return
        save_checkpoint(self._state(skipped), self.out / CHECKPOINT)
        self._keep_checkpoint()

    def _state(self, skipped: dict) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "config": self.cfg.to_dict(),
            "world_size": self.world_size,
            "plan": self._recorded_plan(),
            "window": self.window,
            "data_skipped": skipped,
            "best": self.best,
        }

    def _keep_best(self, row: dict) -> None:
        """`train.best_metric`: after a validation evaluation, checkpoint_best.pt keeps the best step so far (rank 0;
        higher is better; the record travels in every checkpoint, so a resumed run keeps comparing to it)."""
        name = self.cfg.train.best_metric
        if not name or not self.is_main:
            return
        if name not in row:
            found = sorted(k for k in row if "/" in k)
            raise ConfigError(f"train.best_metric={name} is not among the validation metrics: {', '.join(found)}")
        value = float(row[name])
        if self.best and value <= self.best["value"]:
            return
        self.best = {"metric": name, "value": value, "step": self.step}
        save_checkpoint(self._state(dict(self.data_skipped)), self.out / BEST_CHECKPOINT)

    def _keep_checkpoint(self) -> None:
        """`train.keep_checkpoints` = N > 0: every N-th periodic checkpoint is also kept as
        checkpoint_<step>.pt (a hard link to checkpoint.pt when the file system allows, else a copy)."""
        t = self.cfg.train
        if not (t.keep_checkpoints and t.ckpt_every) or self.step % (t.keep_checkpoints * t.ckpt_every):
            return
        kept = self.out / f"checkpoint_{self.step:08d}.pt"
        kept.unlink(missing_ok=True)
        try:
            os.link(self.out / CHECKPOINT, kept)
        except OSError:
            shutil.copyfile(self.out / CHECKPOINT, kept)

    def _recorded_plan(self) -> dict:
        return recorded_plan(self)

    def _load(self, path: Path) -> None:
        state = load_checkpoint(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.window = list(state.get("window", []))
        self.best = dict(state.get("best") or {})
        # every rank saw its share of the saved counts; rank 0 keeps the total, the others start from 0
        self.data_skipped = Counter(state.get("data_skipped", {}) if self.is_main else {})
        torch.set_rng_state(state["rng_cpu"])
        if state.get("rng_cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])

    # -- data: steps from epochs, skipped samples ---------------------------------------------------------
    def _plan_steps(self):
        """`train.epochs` -> train.steps / warmup_steps from the dataset size (written into cfg and config.yaml)."""
        cfg = self.cfg
        n = cfg.data.num_samples or max(self.data.num_images, 0)
        plan = plan_steps(cfg, self.world_size, n)
        apply_plan(cfg, plan)
        self.data.info["steps"] = {"global_batch": plan.global_batch, "accum_mode": plan.accum_mode,
                                   "negatives_per_loss": plan.negatives_per_loss,
                                   "steps_per_epoch": plan.steps_per_epoch, "steps": plan.steps,
                                   "warmup_steps": plan.warmup_steps}
        return plan

    def _all_ranks_skipped(self) -> dict:
        """The skip counts summed over ranks (a collective: every rank calls it)."""

        counts = torch.tensor([self.data_skipped.get(r, 0) for r in SKIP_REASONS], dtype=torch.long)
        counts = dist.all_reduce_sum(counts.to(self.device)).cpu()
        return {r: int(c) for r, c in zip(SKIP_REASONS, counts) if c}

    def _data_report(self) -> dict:
        """Samples read and replaced (by reason) over the whole run; into data_info.json, printed once."""
        if not self.data.from_files:    # in-memory data: nothing is read, nothing replaced
            return {}
        skipped = self._all_ranks_skipped() if self.world_size > 1 else dict(self.data_skipped)
        reads = self.step * self.plan.global_batch
        report = {"samples_read": reads, "samples_replaced": {k: v for k, v in skipped.items() if k != "short_rewrite"},
                  "rewrites_fallen_back": skipped.get("short_rewrite", 0)}
        if self.is_main:
            self.data.info.update(report)
            atomic_write_text(self.out / "data_info.json", json.dumps(self.data.info, indent=1))
            print(f"laclip-lite: {data_summary(report)}", file=sys.stderr)
        return {"data": report}

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.cfg
        metrics_path = self.out / "metrics.jsonl"
        if self.is_main and self.step == 0 and metrics_path.exists():
            metrics_path.unlink()
        if self.is_main and self.step > 0:
            _truncate_metrics(metrics_path, self.step)
        started = time.perf_counter()
        bar = tqdm(total=cfg.train.steps, initial=self.step, disable=not (self.progress and self.is_main),
                   desc=f"train[{cfg.train.policy}]", dynamic_ncols=True, mininterval=1.0)
        sinks, plain = self._log_sinks()
        stop = StopSignals()
        try:
            while self.step < cfg.train.steps:
                if stop.requested(self.world_size):
                    self._stop(stop, bar)
                self.window.append(self.train_step())
                bar.update(1)
                row = self._log_row()
                if row is not None:
                    if self.is_main:
                        append_jsonl(metrics_path, row)
                        sinks.log(row)
                        if plain and "loss" in row:
                            plain(row, sinks.scalars(row).get("samples_per_s"))
                    if "loss" in row:
                        bar.set_postfix(loss=f"{row['loss']:.3f}", scale=f"{row['logit_scale']:.1f}")
                if cfg.train.ckpt_every and self.step % cfg.train.ckpt_every == 0 and self.step < cfg.train.steps:
                    self.save()
        except BaseException:
            sinks.close()
            raise
        finally:
            stop.restore()
        bar.close()
        self.save()
        final = {"step": self.step, "final_loss": _last_loss(metrics_path),
                 "train_seconds": round(time.perf_counter() - started, 1)}
        final.update(self._data_report())
        if self.best:
            final["best"] = self.best
        if self.evaluate_at_end:
            final.update(self.evaluate("test"))
        if self.is_main:
            atomic_write_text(self.out / "final_metrics.json", json.dumps(final, indent=1))
            sinks.log({k: v for k, v in final.items() if "/" in k}, step=self.step)   # the end-of-run evaluation
        sinks.close()
        return final

    def _log_row(self) -> dict | None:
        """The metrics.jsonl row of this step, or None: the training summary every `log_every` steps (and at the
        last), the val evaluation every `eval_every` steps, each on its own cadence (one row when both fall due)."""
        t, step = self.cfg.train, self.step
        log_now = step % t.log_every == 0 or step == t.steps
        eval_now = bool(t.eval_every) and step % t.eval_every == 0
        if not (log_now or eval_now):
            return None
        row = {"step": step}
        if log_now:
            row = _summarise(self.window)
            self.window = []
        if eval_now:
            row.update(self.evaluate("val"))
            self._keep_best(row)
        return row

    def _global_loss(self, local: float) -> float:
        """The step's loss over the global batch: every rank's local-loss-form loss averaged (an all-reduce), so
        the logged curve does not depend on the number of processes."""
        if self.world_size == 1:
            return local
        return float(dist.all_reduce_mean(float(local)))

    def _log_sinks(self):
        """TensorBoard / W&B writers (rank 0; `train.log_to`) and, with progress bars off, plain log lines."""

        t = self.cfg.train
        sinks = LogSinks(t.log_to if self.is_main else [], self.out, self.cfg.to_dict(), self.plan.global_batch)
        plain = PlainLines(t.print_every_s, t.steps) if self.is_main and not self.progress else None
        return sinks, plain

    def _stop(self, stop: "StopSignals", bar) -> None:
        """A stop signal arrived (on any rank): checkpoint this step on every rank's word, then raise Preempted."""
        bar.close()
        self.save()                     # the window of unlogged rows travels in the checkpoint
        if self.is_main:
            print(f"laclip-lite: {stop.name} at step {self.step}: checkpoint saved in {self.out / CHECKPOINT}; "
                  "continue with --resume auto", file=sys.stderr)
        raise Preempted(self.step, stop.name)

    def evaluate(self, split: str) -> dict:
        """What training reports (`evaluate.eval_sets`): the source's own held-out `split` when it has one ("val"
        every `train.eval_every` steps, "test" at the end: zero-shot top-1 with the default templates and
        retrieval R@1, as `<split>/<metric>`); and every `eval.datasets` entry on its own split, as
        `<name>/<metric>`. Rank 0 only."""
        if not self.is_main:
            return {}
        if split not in self._eval_sets:
            self._eval_sets[split] = eval_sets(self.cfg, split, tasks=EVAL_TASKS, retrieval_ks=(1,))
        e = self.cfg.eval
        return evaluate(self.model, self.data.tokenizer, self._eval_sets[split], batch_size=e.batch_size,
                        num_workers=e.num_workers, seed=self.cfg.train.seed, digits=2)


def _own_tokenizer(out: Path, resume: bool):
    """A resumed run's own tokenizer (never retrained from data that may have changed); None for a new run."""
    if not resume:
        return None
    return load_tokenizer(out)


def _recorded(path: Path) -> dict:
    """A checkpoint's recorded config, world size and plan (memory-mapped: the weights are not read)."""
    state = load_checkpoint(path, verify=False, mmap=True)
    return {k: state.get(k) for k in ("config", "world_size", "plan")}


def data_summary(report: dict) -> str:
    """One line: how many sample reads were replaced, by reason, and how many rewrites fell back."""
    replaced = report["samples_replaced"]
    n = sum(replaced.values())
    why = f" ({', '.join(f'{v} {k}' for k, v in sorted(replaced.items()))})" if n else ""
    return (f"data: {report['samples_read']:,} sample reads, {n} replaced by a readable sample{why}; "
            f"{report['rewrites_fallen_back']} rewrites under two words used the original caption")


def _check_eval_datasets(cfg: Config) -> None:
    """`eval.datasets` parsed, and each opened once (layout, classnames, templates, splits) so a bad path fails now."""
    for spec in parse_specs(cfg.eval.datasets):
        open_eval_set(spec)


def _diverged(loss: float, step: int, micro: int, ckpt: Path) -> str:
    """The one line for a NaN / inf loss: where, what to change, and the last good checkpoint if there is one."""
    kept = f"the last good checkpoint is {ckpt}" if ckpt.exists() else "no checkpoint was saved before it"
    return (f"loss is {loss} at step {step} (micro-batch {micro}); lower train.lr, raise train.warmup_steps, or "
            f"check the data; {kept}")


def _null():
    return contextlib.nullcontext()


def _summarise(rows: list[dict]) -> dict:
    last = rows[-1]
    out = {"step": last["step"], "loss": sum(r["loss"] for r in rows) / len(rows), "lr": last["lr"],
           "logit_scale": last["logit_scale"], "grad_norm": last["grad_norm"]}
    step_time = sum(r["step_time"] for r in rows) / len(rows)
    out["step_time"] = step_time
    out["data_time"] = sum(r["data_time"] for r in rows) / len(rows)
    out["data_fraction"] = out["data_time"] / step_time if step_time else 0.0
    return out


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows logged after the checkpoint we resume from, so metrics.jsonl has no duplicate steps."""
    rows = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def _last_loss(path: Path) -> float | None:
    rows = [r for r in read_jsonl(path) if "loss" in r]       # an eval-only row has no loss
    return rows[-1]["loss"] if rows else None


def train(cfg: Config, out_dir: str | Path, resume: bool | str = False, progress: bool = True,
          evaluate_at_end: bool = True, replan: list[str] | tuple = ()) -> dict:
    """Train one run into `out_dir` (config.yaml, checkpoint.pt, metrics.jsonl, final_metrics.json, run.json).
    resume: True (continue; a checkpoint must exist), "auto" (continue if one exists), False (a new run).
    `replan`: config keys a resume may change from what the checkpoint recorded (given on the command line).
    SIGTERM / SIGUSR1 save a checkpoint and raise Preempted."""
    with folder_lock(out_dir):      # one writer per run folder (rank 0 holds it; a second writer stops here)
        trainer = None
        try:
            trainer = Trainer(cfg, out_dir, resume=resume, progress=progress, evaluate_at_end=evaluate_at_end,
                              replan=replan)
            final = trainer.run()
            dist.cleanup(synchronize=True)      # every rank finished: wait for all before the group goes
            return final
        except RuntimeError as e:
            _raise_rank_timeout(e, trainer, cfg)
            raise
        finally:
            dist.cleanup()


def _raise_rank_timeout(e: RuntimeError, trainer: Trainer | None, cfg: Config) -> None:
    """A collective that timed out under torchrun -> RankTimeout naming the rank(s) that stopped answering."""

    if dist.world_size() > 1 and dist.is_timeout(e):
        raise RankTimeout(dist.timeout_message(trainer.step if trainer else 0, cfg.train.dist_timeout)) from e
