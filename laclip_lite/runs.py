"""A run folder's contract: what the run really did (`run.json`) and the recorded plan that resume and eval check.

    plan = recorded_plan(trainer)        # into every checkpoint: config, world size, batches, tokenizer, data
    check_resume(state, trainer, allow)  # --resume: the checkpoint's plan against the one about to run
    check_recorded_config(run_dir, cfg, state)   # eval: config.yaml against the checkpoint's config
    write_run_json(trainer)              # run.json: source and counts, texts and their files, batches, versions
    load_run(run_dir)                    # a run folder -> (model, tokenizer, cfg), checked as above

A difference between what the checkpoint recorded and what is about to be used stops the run before step 0 with
one line naming both sides: a config.yaml cut short, a resume on another number of processes (an epochs run
would re-plan its steps and lr schedule), a CSV edited between a kill and `--resume` (the data fingerprint), a
tokenizer that is not the run's own. Keys given explicitly on the resume command line (`--set train.steps=...`)
may differ: the re-plan is printed and kept in run.json (`replanned`). Settings that change no result are
never compared (`IGNORED`: device, threads, DataLoader workers, evaluation batch size).
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

from laclip_lite.checkpoint import load_checkpoint
from laclip_lite.config import Config
from laclip_lite.data.tokenizer import CLIP_FILE_NAME, FILE_NAME, load_tokenizer
from laclip_lite.errors import DataError
from laclip_lite.models.clip import build_model
from laclip_lite.utils import atomic_write_text, resolve_device, stable_hash

RUN_JSON = "run.json"
# Config keys that change where and how fast a run computes, not what it computes.
IGNORED = ("train.device", "train.threads", "data.num_workers", "eval.num_workers", "eval.batch_size")


def flat(d: dict, prefix: str = "") -> dict:
    """{"train": {"steps": 4}} -> {"train.steps": 4}."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and not prefix:
            out.update(flat(v, f"{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(recorded: dict, now: dict, skip=()) -> list[str]:
    """'key: recorded -> now' for every config value that differs (flattened), except `IGNORED` and `skip`."""
    a, b = flat(recorded), flat(now)
    return [f"{k}: {a.get(k, '(absent)')!r} -> {b.get(k, '(absent)')!r}" for k in sorted(set(a) | set(b))
            if k not in IGNORED and k not in skip and a.get(k) != b.get(k)]


def config_hash(cfg) -> str:
    """The hash of a whole config as given (before training fills in anything): `ablate` names its run folders by
    it (`ablations.run_folder`) and `compare` / `ablate` reuse a finished run only when it matches."""
    return stable_hash(cfg.to_dict())


def tokenizer_hash(tokenizer) -> str:
    """Identifies a tokenizer by what it does: kind, sizes, special ids and the whole vocabulary."""
    backend = tokenizer.backend
    vocab = backend.get_vocab() if hasattr(backend, "get_vocab") else getattr(backend, "encoder", None)
    return stable_hash(tokenizer.kind, tokenizer.vocab_size, tokenizer.pad_id, tokenizer.eot_id,
                       sorted(vocab.items()) if vocab else None)


def recorded_plan(trainer) -> dict:
    """What resume and eval compare (stored in every checkpoint as "plan")."""
    plan, info = trainer.plan, trainer.data.info
    return {"world_size": trainer.world_size, "per_gpu_batch": trainer.cfg.train.batch_size,
            "accum_steps": trainer.cfg.train.accum_steps, "global_batch": plan.global_batch, "steps": plan.steps,
            "warmup_steps": plan.warmup_steps, "tokenizer_hash": tokenizer_hash(trainer.data.tokenizer),
            "data_fingerprint": info.get("fingerprint", ""), "data_count": info.get("fingerprint_count")}


def check_resume(state: dict, trainer, allow: list[str] | tuple = ()) -> list[str]:
    """Stop (DataError) when the checkpoint's recorded config / world size / plan / tokenizer / data differ from
    what this resume is about to use; -> the differences `allow` (keys given on the command line) let through."""
    where = trainer.out / "checkpoint.pt"
    problems, replanned = [], []
    recorded_cfg = state.get("config") or {}
    for line in config_diff(recorded_cfg, trainer.cfg.to_dict()):
        key = line.split(":", 1)[0]
        (replanned if key in allow or _derived_from(key, allow) else problems).append(line)
    ws = state.get("world_size")
    if ws is not None and int(ws) != trainer.world_size:
        problems.append(f"world size: {ws} -> {trainer.world_size} (run it with torchrun --nproc_per_node {ws})")
    plan = state.get("plan") or {}
    now = recorded_plan(trainer)
    for key in ("global_batch", "tokenizer_hash", "data_fingerprint"):
        batch_given = any(k in allow for k in ("train.global_batch", "train.batch_size", "train.accum_steps"))
        if key in plan and plan[key] != now[key] and not (key == "global_batch" and batch_given):
            extra = (f" ({plan.get('data_count')} -> {now.get('data_count')} captions)"
                     if key == "data_fingerprint" else "")
            problems.append(f"{key}: {plan[key]} -> {now[key]}{extra}")
    if problems:
        raise DataError(f"--resume {trainer.out}: what {where.name} recorded differs from what this resume would "
                        f"use (recorded -> now): {'; '.join(problems)}. Resume with what the run recorded, or "
                        "start a new run in another folder")
    return replanned


def _derived_from(key: str, allow) -> bool:
    """Keys an explicit override re-plans: steps / warm-up follow train.epochs, accum_steps the global batch."""
    derived = {"train.steps": ("train.epochs", "train.warmup_epochs"), "train.warmup_steps": ("train.epochs",
               "train.warmup_epochs"), "train.accum_steps": ("train.global_batch", "train.batch_size")}
    return any(a in allow for a in derived.get(key, ()))


def check_recorded_config(run_dir: Path, cfg, state: dict) -> None:
    """eval / load_run: config.yaml must say what the checkpoint recorded (a cut config.yaml would otherwise score
    the defaults: 1,000 test images instead of the run's 64)."""
    recorded = state.get("config") if isinstance(state, dict) else None
    if not recorded:
        return                          # a bare state dict or a checkpoint from before the kit recorded its config
    diff = config_diff(recorded, cfg.to_dict(), skip=("model.vocab_size", "model.pad_id"))
    if diff:
        raise DataError(f"{run_dir}: config.yaml differs from the config its checkpoint recorded (checkpoint -> "
                        f"config.yaml): {'; '.join(diff[:8])}{' ...' if len(diff) > 8 else ''}; restore config.yaml "
                        "(the checkpoint's 'config' holds the run's values)")


def check_tokenizer(run_dir: Path, tokenizer, state: dict) -> None:
    plan = state.get("plan") if isinstance(state, dict) else None
    if plan and plan.get("tokenizer_hash") and plan["tokenizer_hash"] != tokenizer_hash(tokenizer):
        raise DataError(f"{run_dir}: the tokenizer files are not the ones the run trained with (hash "
                        f"{tokenizer_hash(tokenizer)}, checkpoint recorded {plan['tokenizer_hash']})")


def git_commit() -> str:
    """The kit's git commit when it runs from a checkout ("" otherwise)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def versions() -> dict:

    import laclip_lite
    out = {"laclip_lite": laclip_lite.__version__, "python": platform.python_version(), "torch": torch.__version__}
    for name in ("tokenizers", "transformers", "datasets", "numpy"):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = getattr(mod, "__version__", "")
    return out


def run_record(trainer, replanned: list[str] | None = None) -> dict:
    """run.json: what the run really trains on and how (the plan table prints the same facts)."""
    cfg, info, plan = trainer.cfg, trainer.data.info, trainer.plan
    t = cfg.train
    per_loss = plan.negatives_per_loss              # images one loss contrasts (train.accum_mode)
    texts = info.get("texts_per_image", 1)
    counted = info.get("fingerprint_count") or 0        # samples with a caption, counted without decoding images
    n = info.get("images") if (info.get("images") or -1) > 0 else (plan.num_samples or counted)
    from laclip_lite.data.eval_layouts import parse_specs
    evals = [s.label for s in parse_specs(cfg.eval.datasets)]
    if cfg.data.is_shapeworld:
        evals = ["val (ShapeWorld)", "test (ShapeWorld, at the end)"] + evals
    return {
        "policy": t.policy,
        "source": {"path": cfg.data.source, "images": n, "streaming": info.get("streaming", False),
                   "fingerprint": info.get("fingerprint", ""), "captions": counted},
        "texts": {"per_image": texts, "drawn": info.get("texts", ""), "variants": info.get("variants", []),
                  "origin_files": info.get("rewrite_files", {}), "rewrites_from": info.get("rewrites_from")
                  or info.get("rewrites_dir", ""), "identical_to_caption": info.get("identical_to_caption", {})},
        "tokenizer": {"kind": trainer.data.tokenizer.kind, "source": trainer.data.tokenizer.source,
                      "vocab_size": trainer.data.tokenizer.vocab_size,
                      "hash": tokenizer_hash(trainer.data.tokenizer)},
        "batch": {"world_size": trainer.world_size, "per_gpu": t.batch_size, "accum_steps": t.accum_steps,
                  "global": plan.global_batch,
                  "accum_mode": t.accum_mode,
                  "negatives_per_loss": per_loss - 1 if t.policy != "mt" else f"{per_loss - 1} images x {texts} texts"},
        "schedule": {"steps": plan.steps, "warmup_steps": plan.warmup_steps, "steps_per_epoch": plan.steps_per_epoch,
                     "epochs": round(plan.steps * plan.global_batch / n, 2) if n > 0 else None},
        "eval": {"sets": evals, "every_steps": t.eval_every or "end only", "log_every": t.log_every},
        "replanned": replanned or [],
        "config_hash": config_hash(cfg),
        "versions": versions(),
        "git_commit": git_commit(),
    }


def write_run_json(trainer, replanned: list[str] | None = None) -> dict:
    record = run_record(trainer, replanned)
    path = trainer.out / RUN_JSON
    old = _read(path)
    if old.get("replanned"):                    # a resumed run keeps every earlier re-plan
        record["replanned"] = old["replanned"] + [r for r in record["replanned"] if r not in old["replanned"]]
    atomic_write_text(path, json.dumps(record, indent=1, default=str))
    return record


def plan_lines(record: dict) -> list[str]:
    """The plan table (stderr before step 0): the facts run.json records, one per line."""
    s, tx, b, sc, ev = record["source"], record["texts"], record["batch"], record["schedule"], record["eval"]
    share = ", ".join(f"{v} {c['share']:.0%}" for v, c in tx["identical_to_caption"].items()) or "-"
    rows = [("policy", record["policy"]),
            ("source", f"{s['path']} ({s['images']} images{', streamed' if s['streaming'] else ''}; data "
                       f"fingerprint {s['fingerprint']})"),
            ("texts per image", f"{tx['per_image']}: {tx['drawn']}"),
            ("rewrite files", _files(tx["origin_files"])),
            ("identical to caption", share),
            ("tokenizer", f"{record['tokenizer']['kind']} ({record['tokenizer']['vocab_size']} ids, "
                          f"{record['tokenizer']['hash']})"),
            ("batch", f"{b['per_gpu']} per GPU x {b['world_size']} GPU(s) x {b['accum_steps']} accum = {b['global']} "
                      f"global; negatives per loss {b['negatives_per_loss']}"),
            ("steps", f"{sc['steps']} (warm-up {sc['warmup_steps']}; epochs {sc['epochs']})"),
            ("eval", "none" if not ev["sets"] else f"{', '.join(ev['sets'])}; " + (
                f"every {ev['every_steps']} steps" if isinstance(ev["every_steps"], int) else "at the end"))]
    if record["replanned"]:
        rows.append(("re-planned on resume", "; ".join(record["replanned"])))
    width = max(len(k) for k, _ in rows)
    return [f"{k:<{width}}  {v}" for k, v in rows]


def _files(origin: dict) -> str:
    """variant -> file, shortened when every variant's file sits in one folder with the same note."""
    if not origin:
        return "-"
    heads = {(str(Path(p.split(" ")[0]).parent), " ".join(p.split(" ")[1:])) for p in origin.values()}
    if len(heads) == 1 and all(p.split(" ")[0].endswith(".txt") for p in origin.values()):
        folder, note = heads.pop()
        return f"{folder}/{{{','.join(origin)}}}.txt {note}".strip()
    return ", ".join(f"{v}={p}" for v, p in origin.items())


def _read(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------------------------------------------------
# Loading a run folder: the model, its tokenizer and its config, checked against what the checkpoint recorded


def _strip_prefixes(state: dict) -> dict:
    """Weights saved from torch.compile (`_orig_mod.`) or DDP (`module.`) wrappers -> plain module names."""
    for prefix in ("_orig_mod.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_run(run_dir: str | Path, device: str = "auto"):
    """A run folder (or its checkpoint.pt) -> (model in eval mode on `device`, tokenizer, cfg).

    Reads `config.yaml`, the tokenizer the run saved, and the weights in `checkpoint.pt` (`["model"]`),
    loaded with `torch.load(weights_only=True)`. Works on a run still training (its latest checkpoint). A
    config.yaml or tokenizer that is not what the checkpoint recorded stops with a DataError
    (`check_recorded_config`, `check_tokenizer`).
    """
    path = Path(run_dir)
    ckpt_path = path if path.suffix == ".pt" else path / "checkpoint.pt"
    run_dir = ckpt_path.parent
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    for needed in (run_dir / "config.yaml", ckpt_path):
        if not needed.is_file():
            raise FileNotFoundError(f"run folder {run_dir} has no {needed.name} (expected {needed})")
    cfg = Config.load(run_dir / "config.yaml")
    _check_tokenizer_files(run_dir)
    tokenizer = load_tokenizer(run_dir, cfg.model.context_length)
    if cfg.model.vocab_size == 0:  # a config saved before the tokenizer filled these in
        cfg.model.vocab_size, cfg.model.pad_id = tokenizer.vocab_size, tokenizer.pad_id
    checkpoint = load_checkpoint(ckpt_path)               # "not a checkpoint" / a checksum mismatch: named
    check_recorded_config(run_dir, cfg, checkpoint)      # a cut config.yaml would score the defaults' test set
    check_tokenizer(run_dir, tokenizer, checkpoint)
    model = build_model(cfg.model)
    state = checkpoint["model"] if isinstance(checkpoint, dict) and "model" in checkpoint else checkpoint
    try:
        model.load_state_dict(_strip_prefixes(state))
    except RuntimeError as e:
        raise DataError(f"{ckpt_path}: weights do not fit the model described by {run_dir / 'config.yaml'}: "
                        f"{str(e).splitlines()[0]}") from e
    model.to(resolve_device(device)).eval()
    return model, tokenizer, cfg


def _check_tokenizer_files(run_dir: Path) -> None:
    """The files `load_tokenizer` reads, each named when missing (a copied run folder often lacks one)."""
    meta = run_dir / "tokenizer_meta.json"
    if not meta.is_file():
        raise FileNotFoundError(f"run folder {run_dir} has no tokenizer_meta.json (the tokenizer the run saved; "
                                f"expected {meta})")
    kind = json.loads(meta.read_text()).get("kind")
    needed = run_dir / {"bpe": FILE_NAME, "clip": CLIP_FILE_NAME}.get(kind, "hf_tokenizer")
    if not needed.exists():
        raise FileNotFoundError(f"run folder {run_dir} has no {needed.name} (its {kind} tokenizer; expected {needed})")
