"""Experiments: one configured run -> metrics, and the CLIP vs LaCLIP vs LaCLIP-MT comparison over seeds.

`compare()` is the paper's main claim in miniature: the same data, model, steps, batch and seeds; only the text
policy (and which rewrite cache it draws from) changes. Every run is evaluated zero-shot on the ShapeWorld test
split with several template sets phrased unlike the training captions, one of which (`heldout`) is never used
for any choice. Finished runs are skipped on a rerun, so an interrupted comparison resumes.
"""
from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from laclip_lite import utils
from laclip_lite.checkpoint import load_checkpoint
from laclip_lite.config import Config, ConfigError, build_config
from laclip_lite.constants import AUGMENTS, EVAL_TASKS, EXPERIMENT_PRESET, POLICIES
from laclip_lite.evaluate import eval_sets, evaluate
from laclip_lite.files import atomic_open, atomic_savefig, atomic_write_text
from laclip_lite.folder_lock import holds_folder
from laclip_lite.plots import bar_with_errors
from laclip_lite.runs import RUN_JSON, config_diff, config_hash, load_run
from laclip_lite.stats import MARGIN, contrast_markdown, contrast_rows, pair_key
from laclip_lite.train import BEST_CHECKPOINT, CHECKPOINT, Trainer
from laclip_lite.utils import resolve_device

TEMPLATE_SETS = ("default", "photo", "art", "spoken", "heldout")
RESULT = "result.json"


@dataclass(frozen=True)
class Arm:
    """One column of a comparison: a text policy and the rewrite cache it draws from."""
    policy: str          # clip | laclip | mt
    augment: str         # none | shapes | eda | backtranslate | llm

    @property
    def name(self) -> str:
        return self.policy if self.augment in ("none", "shapes") else f"{self.policy}:{self.augment}"

    @classmethod
    def parse(cls, text: str, default_augment: str = "shapes") -> "Arm":
        """"laclip" -> (laclip, default augment); "laclip:eda" -> (laclip, eda); "clip" never augments."""
        policy, _, augment = text.strip().partition(":")
        if policy not in POLICIES:
            raise ConfigError(f"unknown policy {policy!r} in --policies (known: {', '.join(POLICIES)}; add :eda etc.)")
        augment = augment or default_augment
        if policy == "clip":
            augment = "none"
        if augment not in AUGMENTS:
            raise ConfigError(f"unknown augment {augment!r} in --policies entry {text!r}")
        return cls(policy, augment)


def arm_config(arm: Arm, seed: int, preset: str = EXPERIMENT_PRESET,
               overrides: list[str] | dict | None = None) -> Config:
    cfg = build_config(preset, overrides)
    cfg.train.policy, cfg.train.seed, cfg.data.augment = arm.policy, seed, arm.augment
    return cfg.validate()


def run_sets(cfg: Config, template_sets=TEMPLATE_SETS, tasks=EVAL_TASKS) -> list:
    """What a finished run is scored on, in one `evaluate` call (keys as in runs.csv), from `evaluate.eval_sets`:
    the source's held-out test split (ShapeWorld's) as `<task>_top1[@<template set>]` and retrieval `i2t_R@K` /
    `t2i_R@K` (K = 1, 5, 10); the validation split with the default templates as `val/<task>_top1`, what any
    choice is made on (a preset, a step count, a best setting: `stats.choose`; the test split is for reporting);
    and, report-only, `<task>_top1@synonyms`: the test split with every class named by a synonym, never by its
    class name (`rewrite.shapes.synonym_classnames`). Every `eval.datasets` entry as `<name>/<metric>` (file-data
    runs are scored there). A file-data run without eval datasets has nothing to be scored on: -> []
    (run_experiment then reports the final loss with a note)."""
    return (eval_sets(cfg, "test", prefix="", tasks=tasks, template_sets=template_sets)
            + eval_sets(cfg, "val", datasets=False, tasks=tasks, retrieval_ks=())
            + eval_sets(cfg, "test", prefix="", datasets=False, tasks=tasks, retrieval_ks=(), synonyms=True))


NO_EVAL_NOTE = ("trained on file data with no eval.datasets: only the training loss is reported. Add evaluation "
                "sets (eval.datasets: an ImageFolder, a CLIP_benchmark folder, a captions CSV or Karpathy JSON) "
                "to score zero-shot / retrieval.")


@holds_folder("out_dir")
def run_experiment(cfg: Config, out_dir: str | Path, template_sets=TEMPLATE_SETS, tasks=EVAL_TASKS,
                   progress: bool = True, nproc_per_node: int = 1) -> dict:
    """Train one run (resuming if it was interrupted) and evaluate it; `out_dir/result.json` marks it done.

    A finished run is reused only when its config hash (`runs.config_hash`, kept in result.json) matches `cfg`;
    a folder holding a run of another config stops with a ConfigError naming the keys that differ.
    nproc_per_node > 1: the training runs under `torchrun` in that many processes (`train_with_torchrun`), and
    the run folder is read back here to evaluate."""

    out_dir = Path(out_dir)
    done = out_dir / RESULT
    wanted = config_hash(cfg)
    if done.exists():
        result = json.loads(done.read_text())
        if result.get("config_hash") != wanted:
            raise ConfigError(f"{out_dir} holds a finished run of another config ({_changed(out_dir, cfg)}); "
                              "use another --out, or delete that folder")
        return result
    if nproc_per_node > 1:
        final = train_with_torchrun(cfg, out_dir, nproc_per_node, progress)
        model, tokenizer, cfg = load_run(out_dir, cfg.train.device)
    else:
        trainer = Trainer(cfg, out_dir, resume=(out_dir / CHECKPOINT).exists(), progress=progress,
                          evaluate_at_end=False)
        final = trainer.run()
        model, tokenizer, cfg = trainer.model, trainer.data.tokenizer, trainer.cfg
    sets = run_sets(cfg, template_sets, tasks)
    scores = score(model, tokenizer, cfg, sets, progress)
    metrics = {"final_loss": final["final_loss"], "train_seconds": final["train_seconds"], **scores,
               **best_scores(model, tokenizer, cfg, out_dir, sets, scores, progress),
               "config_hash": wanted, **arm_facts(out_dir)}
    if "data" in final:             # file data: sample reads replaced (by reason), rewrites fallen back
        metrics["data"] = final["data"]
    if not sets:
        metrics["note"] = NO_EVAL_NOTE
    atomic_write_text(done, json.dumps(metrics, indent=1))
    return metrics


def score(model, tokenizer, cfg: Config, sets: list, progress: bool = False) -> dict:
    """One `evaluate` call with the run's evaluation settings (the final and the best-validation scores alike)."""
    return evaluate(model, tokenizer, sets, batch_size=cfg.eval.batch_size, num_workers=cfg.eval.num_workers,
                    progress=progress, seed=cfg.train.seed, digits=2)


def best_scores(model, tokenizer, cfg: Config, out_dir: Path, sets: list, final: dict,
                progress: bool = False) -> dict:
    """`train.best_metric`: the same evaluation at the best-validation checkpoint -> `best/<key>` for every key,
    and `best/step` (the step chosen on validation; the test split only reports it). {} when there is none.
    When the best step is the last one its weights are the final model's, so `final` (its scores) is reused;
    otherwise `model` is left holding the best weights."""
    path = out_dir / BEST_CHECKPOINT
    if not (cfg.train.best_metric and path.exists()):
        return {}
    state = load_checkpoint(path)
    step = int(state["step"])
    if step != cfg.train.steps:
        model.load_state_dict(state["model"])
        final = score(model, tokenizer, cfg, sets, progress)
    return {"best/step": step, **{f"best/{k}": v for k, v in final.items()}}


def arm_facts(run_dir: Path) -> dict:
    """What distinguishes one arm's training from another's, from its run.json, as `plan.*` columns of runs.csv /
    ablations.csv: the texts drawn, the largest share of rewrites identical to their caption, global batch, steps,
    epochs."""
    try:
        record = json.loads((Path(run_dir) / RUN_JSON).read_text())
    except (OSError, ValueError):
        return {}
    shares = [c["share"] for c in record["texts"]["identical_to_caption"].values()]
    return {"plan.texts": record["texts"]["drawn"], "plan.identical_max": max(shares) if shares else "-",
            "plan.global_batch": record["batch"]["global"], "plan.steps": record["schedule"]["steps"],
            "plan.epochs": record["schedule"]["epochs"]}


def arms_markdown(runs: list[dict], group: str = "policy") -> str:
    """One row per arm (its first seed's run.json): what it really trained on."""
    first = {}
    for r in runs:
        first.setdefault(r[group], r)
    cols = ["plan.texts", "plan.identical_max", "plan.global_batch", "plan.steps", "plan.epochs"]
    rows = [{group: name, **{c.removeprefix("plan."): r.get(c, "-") for c in cols}} for name, r in first.items()]
    return utils.markdown_table(rows, [group, *[c.removeprefix("plan.") for c in cols]], cell=str)


def _changed(out_dir: Path, cfg: Config) -> str:
    """The keys a finished run's config.yaml differs in from `cfg` (values the trainer fills in left out)."""
    try:
        saved = Config.load(out_dir / "config.yaml").to_dict()
    except (OSError, ValueError):
        return "its config.yaml is unreadable"
    filled = ("model.vocab_size", "model.pad_id", "train.accum_steps")
    diff = config_diff(saved, cfg.to_dict(), skip=filled)
    return "; ".join(diff[:6]) + (" ..." if len(diff) > 6 else "") if diff else "no config hash recorded"


def train_with_torchrun(cfg: Config, out_dir: str | Path, nproc_per_node: int, progress: bool = False) -> dict:
    """`torchrun --standalone --nproc_per_node N -m laclip_lite.cli train` on `cfg` (written to
    out_dir/launch.yaml), continuing the run in out_dir if it has a checkpoint (`--resume auto`); -> its
    final_metrics.json. One process per GPU on CUDA, gloo processes on a CPU. The launcher's output goes to
    out_dir/torchrun.log; a failed launch raises with the log's last lines."""

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    launch = out_dir / "launch.yaml"
    cfg.save(launch)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
           "-m", "laclip_lite.cli", "train", "--config", str(launch), "--out", str(out_dir), "--resume", "auto"]
    if not progress:
        cmd.append("--no-progress")
    log = out_dir / "torchrun.log"
    with open(log, "w") as f:
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    if code != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"torchrun ({nproc_per_node} processes) failed with status {code}; {log}:\n{tail}")
    return json.loads((out_dir / "final_metrics.json").read_text())


def run_cost(cfg: Config) -> float:
    """A rough relative cost of one run on a CPU, to start the dearest runs first (`utils.parallel_map`); not a
    prediction of time. Per sample of a step: the image tower (tiny ViT = 1; the ResNet scales with its stem width
    squared, 2.4 at 16 channels), plus each text the step encodes (a scratch text 0.17 per layer: LaCLIP-MT's 5
    texts made its step 1.66x CLIP's; a pretrained encoder ~10 locked, ~30 trained), plus rendering the world."""
    m = cfg.model
    image = 2.4 * (m.vision_width / 16) ** 2 * max(1, m.vision_layers) if m.vision == "resnet" else 1.0
    text = (10.0 if m.text_lock else 30.0) if m.text == "hf" else 0.17 * m.text_layers
    texts = 1 + cfg.data.num_rewrites if cfg.train.policy == "mt" else 1
    return cfg.train.steps * cfg.train.batch_size * (image + texts * text) + 5.0 * cfg.data.train_size


def auto_jobs(device: str = "auto", runs: int | None = None, gpus=()) -> int:
    """Runs to train side by side (`--jobs 0`): one per GPU in `gpus` (each job gets its own); else one on CUDA
    (a run fills the GPU); on a CPU one per core, each on one thread (two one-thread runs on 2 cores train ~1.5x
    faster than one two-thread run: the tiny models scale poorly across threads). Never more than `runs`."""

    if gpus:
        jobs = len(gpus)
    else:
        jobs = 1 if resolve_device(device).type == "cuda" else max(1, os.cpu_count() or 1)
    return max(1, min(jobs, runs or jobs))


def _run_config(job: tuple) -> tuple[str, dict]:
    folder, cfg_dict, threads, template_sets, tasks, nproc = job
    if threads:
        torch.set_num_threads(threads)
    return folder, run_experiment(Config.from_dict(cfg_dict), folder, template_sets, tasks, progress=False,
                                  nproc_per_node=nproc)


def run_configs(configs: dict[str, Config], out_dir: str | Path, jobs: int = 1, progress: bool = True, gpus=(),
                nproc_per_node: int = 1, template_sets=TEMPLATE_SETS, tasks=EVAL_TASKS,
                desc: str = "runs") -> dict[str, dict]:
    """The kit's one runner: train + evaluate each named Config in `out_dir/<name>` with `run_experiment`
    (finished folders are reused, interrupted ones resume) -> {name: metrics}, in the order given.

    `jobs` runs side by side in worker processes, cores / jobs threads each (0: `auto_jobs` from the first
    config's device); the dearest runs start first (`run_cost`). `gpus` (ids): one GPU per worker
    (`utils.parallel_map`). nproc_per_node > 1: each run trains under torchrun in that many processes, one run
    at a time. `compare`, `ablations.run_grid` and notebook 04 (`course.lesson04`) all train through here."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if jobs <= 0:
        first = next(iter(configs.values()), None)
        jobs = auto_jobs(first.train.device if first else "auto", len(configs), gpus)
    jobs = max(1, min(jobs, len(configs) or 1))
    if nproc_per_node > 1:          # a run takes the whole node: one at a time, in this process
        jobs, gpus = 1, ()
    threads = utils.threads_per_job(jobs)
    folders = {str(out_dir / name): name for name in configs}
    work = [(folder, configs[name].to_dict(), threads, tuple(template_sets), tuple(tasks), nproc_per_node)
            for folder, name in folders.items()]
    costs = {folder: run_cost(configs[name]) for folder, name in folders.items()}
    results = dict(tqdm(utils.parallel_map(_run_config, work, jobs, lambda job: costs[job[0]], gpus),
                        total=len(work), desc=f"{desc} ({jobs} at a time)", disable=not progress))
    return {name: results[folder] for folder, name in folders.items()}


@holds_folder("out_dir")
def compare(policies: list[str] | str = POLICIES, seeds=(0, 1, 2), out_dir: str | Path = "runs/compare",
            preset: str = EXPERIMENT_PRESET, overrides: list[str] | dict | None = None, augment: str = "shapes",
            template_sets=TEMPLATE_SETS, tasks=EVAL_TASKS, jobs: int = 1, progress: bool = True,
            worlds=None, gpus=(), nproc_per_node: int = 1) -> list[dict]:
    """Train every (policy, world, seed), evaluate, and write `runs.csv`, `summary.csv`, `summary.md`,
    `compare.png`, and the paired contrasts of the arms (`contrasts.csv` / `.md`, per world and pooled).

    `jobs` runs side by side (0: `auto_jobs`, what `laclip-lite compare` uses). `worlds`: values of
    `data.world_seed` (new images, captions, rewrites, val and test sets; None: the preset's and overrides'
    one); runs pair by (world, seed). `gpus` (ids): each job trains on one of them (`utils.parallel_map`).
    nproc_per_node > 1: each run trains under torchrun in that many processes (GPUs, or gloo processes on a
    CPU), one run at a time.

    Returns the summary rows: one per policy with `<metric>` (mean) and `<metric>_std` columns.
    """
    if isinstance(policies, str):
        policies = policies.split(",")
    arms = [Arm.parse(p, augment) for p in policies]
    seeds = utils.parse_seeds(seeds)
    if worlds is None:
        worlds = [build_config(preset, overrides).data.world_seed]
    worlds = utils.parse_seeds(worlds, "--worlds")
    for arm in arms:               # fail on a bad parameter before any run starts
        arm_config(arm, seeds[0], preset, overrides)
    if jobs <= 0:
        jobs = auto_jobs(build_config(preset, overrides).train.device, len(arms) * len(seeds) * len(worlds), gpus)
    out_dir = Path(out_dir)
    keys = [(arm, w, seed) for w in worlds for arm in arms for seed in seeds]
    configs = {run_name(arm, w, seed): arm_config(arm, seed, preset, with_world(overrides, w))
               for arm, w, seed in keys}
    results = run_configs(configs, out_dir, jobs, progress, gpus, nproc_per_node, template_sets, tasks,
                          desc="compare")
    runs = [{"policy": arm.name, "world": configs[run_name(arm, w, seed)].data.world_seed, "seed": seed,
             **results[run_name(arm, w, seed)]} for arm, w, seed in keys]
    summary = summarise(runs)
    write_tables(runs, summary, out_dir, tasks)
    write_compare_contrasts(runs, out_dir)
    return summary


def with_world(overrides: list[str] | dict | None, world: int) -> list[str] | dict:
    """The overrides with `data.world_seed=world` last (a dict stays a dict)."""
    if isinstance(overrides, dict):
        return {**overrides, "data.world_seed": int(world)}
    return [*(overrides or []), f"data.world_seed={int(world)}"]


def run_name(arm: Arm, world: int, seed: int) -> str:
    """A compare run's folder: the arm, the world and the seed, so a run on another world is never reused
    (world 0, every run made before worlds were an axis, keeps the name it had: `laclip-s1`)."""
    return f"{arm.name.replace(':', '-')}{f'-w{world}' if world else ''}-s{seed}"


def compare_plan(names: list[str]) -> list[tuple[str, str, str]]:
    """The contrasts of a comparison: every arm against every earlier one (LaCLIP − CLIP, MT − CLIP, MT − LaCLIP)."""
    return [(b, a, f"{b} − {a}") for i, a in enumerate(names) for b in names[i + 1:]]


def write_compare_contrasts(runs: list[dict], out_dir: Path, margin: float | None = None,
                            append_summary: bool = True) -> list[dict]:
    """`contrasts.csv` / `contrasts.md` of a comparison, per world and pooled over every (world, seed) pair,
    and per-world means in `summary.md` when several worlds ran -> the contrast rows."""

    margin = MARGIN if margin is None else margin
    names = list(dict.fromkeys(r["policy"] for r in runs))
    metrics = [m for t in ("color_shape", "shape", "color") for m in (f"{t}_top1", f"{t}_top1@heldout")]
    metrics = [m for m in [*metrics, "color_shape_top1@synonyms"] if any(m in r for r in runs)]
    if len(names) < 2 or not metrics:
        return []
    worlds = sorted({pair_key(r)[0] for r in runs})
    scopes = [(str(w), [r for r in runs if pair_key(r)[0] == w]) for w in worlds] if len(worlds) > 1 else []
    scopes.append(("pooled" if len(worlds) > 1 else str(worlds[0]), runs))
    rows = []
    for scope, mine in scopes:
        groups = {n: [r for r in mine if r["policy"] == n] for n in names}
        rows += contrast_rows(groups, compare_plan(names), metrics, margin, world=scope)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_open(out_dir / "contrasts.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    text = (f"Paired contrasts (a − b, points of zero-shot top-1 on the test split), mean and 95% t-interval over "
            f"the (world, seed) pairs: worlds {worlds}; `pooled` treats every (world, seed) pair as one replicate. "
            "A one-world interval conditions on that world and its test set. \"reads as\" (colour+shape, default "
            f"templates): a > b / a < b where the interval excludes 0, \"level within ±{margin:g}\" where the "
            f"equivalence test says so (TOST at alpha 0.05: the 90% interval inside ±{margin:g} points), otherwise "
            "\"not distinguishable with N pairs\". Shape and colour apart.\n\n"
            + contrast_markdown(rows, metrics, keys=("world",)))
    atomic_write_text(out_dir / "contrasts.md", text)
    if not append_summary:
        return rows
    with open(out_dir / "summary.md", "a") as f:
        if len(worlds) > 1:
            per = summarise([{**r, "policy": f"{r['policy']} (world {r['world']})"} for r in runs])
            f.write("\n\nPer world (mean ± std over its seeds):\n\n" + summary_markdown(per, metrics))
        f.write("\n\n" + text)
    return rows


def summarise(runs: list[dict], group: str | tuple = "policy", metrics: list[str] | None = None,
              digits: int | None = 2) -> list[dict]:
    """The kit's one summary over seeds: mean and sample std of every numeric metric (or of `metrics`), one row
    per `group` value in first-seen order (`group`: a key, or a tuple of keys such as ("ablation", "setting")),
    with `seeds` (runs in the group). Rounded to `digits` (None: not rounded). `ablations.summarise` adds the
    paired differences to CLIP on top."""
    keys = (group,) if isinstance(group, str) else tuple(group)
    order = list(dict.fromkeys(tuple(r[k] for k in keys) for r in runs))
    if metrics is None:
        metrics = [k for k in runs[0] if k not in (*keys, "seed", "world") and not k.startswith("plan.")
                   and isinstance(runs[0][k], (int, float))]          # plan.* columns are facts, not metrics

    def rounded(x: float) -> float:
        return round(x, digits) if digits is not None else x

    rows = []
    for name in order:
        mine = [r for r in runs if tuple(r[k] for k in keys) == name]
        row = {**dict(zip(keys, name)), "seeds": len(mine)}
        for m in metrics:
            values = [r[m] for r in mine if isinstance(r.get(m), (int, float)) and not isinstance(r[m], bool)]
            if values:
                row[m] = rounded(statistics.fmean(values))
                row[f"{m}_std"] = rounded(statistics.stdev(values)) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def over_seeds(n: int, worlds: int = 1) -> str:
    """How a summary aggregates n runs, for captions: "mean ± std over 3 seeds", "... over 9 runs (3 worlds x 3
    seeds)", or one seed's "no spread"."""
    if worlds > 1:
        return f"mean ± std over {n} runs ({worlds} worlds x {n // worlds} seeds)"
    return f"mean ± std over {n} seeds" if n > 1 else "one seed (no spread: raise seeds for error bars)"


def summary_cell(row: dict, metric: str) -> str:
    """"mean ± std" of a summary row's metric; just the value from one seed (its std would read as 0.0)."""
    if metric not in row:
        return "-"
    if row.get("seeds", 2) < 2:
        return f"{row[metric]:.1f}"
    return f"{row[metric]:.1f} ± {row[metric + '_std']:.1f}"


def summary_markdown(summary: list[dict], metrics: list[str], group: str = "policy") -> str:
    """The summary rows as a Markdown table: one row per `group` value, "mean ± std" per metric ("-" if absent)."""
    cells = [{group: r[group], **{m: summary_cell(r, m) for m in metrics}} for r in summary]
    return utils.markdown_table(cells, [group, *metrics], right=metrics, cell=str)


def dataset_headline(row: dict) -> list[str]:
    """The columns of `eval.datasets` results worth a table: `<name>/top1` and `<name>/*_R@1`."""
    return [k for k in row if "/" in k and k.split("/", 1)[1] in
            ("top1", "image_to_text_R@1", "text_to_image_R@1")]


def write_tables(runs: list[dict], summary: list[dict], out_dir: Path, tasks=EVAL_TASKS, group: str = "policy") -> None:
    for name, rows in (("runs.csv", runs), ("summary.csv", summary)):
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with atomic_open(out_dir / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
    seeds = summary[0]["seeds"]
    worlds = len({r.get("world", 0) for r in runs})
    headline = [m for t in tasks for m in (f"{t}_top1", f"{t}_top1@heldout")] + ["i2t_R@1", "t2i_R@1"]
    headline = [m for m in headline if m in summary[0]]
    on_files = dataset_headline(summary[0])
    if headline:
        caption = (f"Zero-shot top-1 (%) on the ShapeWorld test split and retrieval R@1, {over_seeds(seeds, worlds)}. "
                   "`@heldout`: the template set never used for any choice.")
        main = "color_shape_top1" if "color_shape_top1" in summary[0] else headline[0]
        unit = "%"
        headline += on_files
    elif on_files:         # runs scored on eval.datasets (file data)
        headline, main, unit = on_files, on_files[0], "%"
        caption = (f"Evaluation sets (`eval.datasets`): zero-shot top-1 / probe top-1 / retrieval R@1 (%), "
                   f"{over_seeds(seeds, worlds)}.")
    else:                  # runs on file data with no eval.datasets (see run_sets)
        headline = [m for m in ("final_loss", "train_seconds") if m in summary[0]]
        caption = (f"Final training loss and training time, {over_seeds(seeds, worlds)}. These runs trained on file "
                   "data and had no evaluation sets: give them `eval.datasets` (an ImageFolder, a CLIP_benchmark "
                   "folder, a captions CSV or a Karpathy JSON) to score zero-shot and retrieval.")
        main, unit = "final_loss", ""
    arms = ("\n\nWhat each arm trained on (its run.json; identical_max: the largest share of a rewrite variant "
            "equal to its caption):\n\n" + arms_markdown(runs, group)) if any("plan.texts" in r for r in runs) else ""
    atomic_write_text(out_dir / "summary.md", caption + "\n\n" + summary_markdown(summary, headline, group) + arms)
    for metric, name in ((main, "compare.png"), (f"{main}@heldout", "compare_heldout.png")):
        if metric in summary[0]:
            fig = bar_with_errors(runs, metric, group=group, ylabel=f"{metric} ({unit})" if unit else metric)
            atomic_savefig(fig, out_dir / name, dpi=120, bbox_inches="tight")
