"""`laclip-lite train`: train CLIP / LaCLIP / LaCLIP-MT from a preset, a YAML file and `--set` overrides."""
from __future__ import annotations

import json
import os
from pathlib import Path

from laclip_lite.checkpoint import load_checkpoint
from laclip_lite.config import Config, ConfigError, apply_overrides, build_config, parse_key_value
from laclip_lite.data.dataset import train_size
from laclip_lite.errors import DataError
from laclip_lite.runs import config_diff
from laclip_lite.schedule import plan_steps
from laclip_lite.train import EXIT_PREEMPTED, Preempted, train


def dry_run(cfg, world_size: int | None, samples: int | None) -> list[str]:
    """What `train` would do, without data loading or a model: the derived steps and the lr schedule."""
    world = world_size or int(os.environ.get("WORLD_SIZE", "1"))
    n = samples or cfg.data.num_samples or train_size(cfg)
    plan = plan_steps(cfg, world, n)
    t = cfg.train
    lines = [f"laclip-lite train --dry-run: {cfg.data.source}, policy {t.policy}"] + plan.lines()
    if t.epochs:
        lines.append(f"epochs                  {t.epochs:g} (warm-up {t.warmup_epochs:g})")
    lines += [f"lr                      {t.lr_start:g} -> {t.lr:g} (warm-up) -> cosine -> {t.lr_end:g}",
              f"AdamW                   wd {t.weight_decay:g} ({t.decay_rule} rule), betas {tuple(t.betas)}, "
              f"eps {t.eps:g}, grad clip {t.grad_clip or 'off'}",
              f"images seen             {plan.steps * plan.global_batch:,}"]
    return lines


def run(args) -> int:
    overrides = list(args.overrides) + ([f"train.policy={args.policy}"] if args.policy else [])
    if not args.out and not args.dry_run:
        raise ConfigError("train needs --out DIR (the run folder), or --dry-run")

    replan: list[str] = []
    resume = {"yes": True, "no": False, "auto": "auto"}[args.resume]
    if resume == "auto":
        resume = "auto" if args.out and (Path(args.out) / "checkpoint.pt").exists() else False
    if resume:
        saved = Path(args.out) / "config.yaml"
        if not saved.exists():
            raise FileNotFoundError(f"--resume: no run at {args.out} (missing {saved})")
        cfg = apply_overrides(Config.load(saved), overrides)
        replan = [parse_key_value(o)[0] for o in overrides]      # what the command line may change
        _check_saved_config(Path(args.out), cfg, replan)
        cfg.validate()
    else:
        cfg = build_config(args.preset, overrides, args.config)
    if args.dry_run:
        print("\n".join(dry_run(cfg, args.world_size, args.samples)))
        return 0

    try:
        final = train(cfg, args.out, resume=resume, progress=not args.no_progress, replan=replan)
    except Preempted:
        return EXIT_PREEMPTED           # the checkpoint is written and the message printed
    if int(os.environ.get("RANK", "0")) == 0:      # under torchrun only rank 0 prints the result
        print(json.dumps(final))
    return 0


def _check_saved_config(run_dir, cfg, replan: list[str]) -> None:
    """--resume: config.yaml (+ the command line's keys) must say what the checkpoint recorded, checked before any
    data is read (a config.yaml cut short would otherwise train with defaults)."""
    ckpt = run_dir / "checkpoint.pt"
    if not ckpt.exists():
        return                                   # the trainer names the missing checkpoint
    state = load_checkpoint(ckpt, verify=False, mmap=True)      # a file that is not a checkpoint: said as such
    derived = ("train.steps", "train.warmup_steps", "train.accum_steps")   # re-planned by the trainer, checked there
    diff = config_diff(state.get("config") or {}, cfg.to_dict(), skip=(*replan, *derived, "model.vocab_size",
                                                                         "model.pad_id"))
    if diff:
        raise DataError(f"--resume {run_dir}: config.yaml differs from the config checkpoint.pt recorded (checkpoint "
                        f"-> config.yaml): {'; '.join(diff[:8])}{' ...' if len(diff) > 8 else ''}; restore config.yaml "
                        "or pass the intended values with --set")
