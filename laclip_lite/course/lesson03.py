"""Lesson 03, CLIP vs LaCLIP vs LaCLIP-MT: the plumbing behind notebooks/03_laclip_training.ipynb.

The notebook writes out LaCLIP's text draw and LaCLIP-MT's loss in its own cells, checked against the loader and
`laclip_lite.losses`; the functions here plan and train the arms (`experiments.compare`), score them (ShapeWorld's
tasks, or the `eval_datasets` on file data), and draw the tables, figures and the learning-curve widget.
"""
from __future__ import annotations

import csv
import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from laclip_lite.constants import AUGMENTS, POLICIES
from laclip_lite.course import common, lesson01
from laclip_lite.course.common import HEADLINE, Lesson, hwc, number, over_seeds_caption, seeds, table
from laclip_lite.course.heartbeat import heartbeat
from laclip_lite.data.dataset import held_out_splits, shapeworld_split
from laclip_lite.data.readers import open_source, texts_of
from laclip_lite.experiments import Arm, arm_config, compare, dataset_headline, summary_markdown
from laclip_lite.metrics import encode_images, encode_texts
from laclip_lite.plots import learning_curves
from laclip_lite.rewrite.prepare import select_variants, shapeworld_rewrites
from laclip_lite.runs import load_run
from laclip_lite.utils import iter_jsonl

HEARTBEAT_S = 30.0    # seconds between progress lines of the trainings (worker processes report nowhere else)

NOTEBOOK = "03_laclip_training"


def start(namespace: dict) -> Lesson:
    """Check the parameters cell (a typo or a wrong type stops here) and make `out_dir`."""
    return common.start(NOTEBOOK, namespace, check=_check)


def _check(lesson: Lesson) -> None:
    for text in lesson.params["policies"]:
        policy, _, augment = text.partition(":")
        if policy not in POLICIES or (augment and augment not in AUGMENTS):
            raise common.ParameterError(f"policies: {text!r} is not a text policy: allowed {', '.join(POLICIES)}, "
                                        f"each optionally with :augment ({', '.join(AUGMENTS)}), e.g. laclip:eda")


finish = common.finish


@dataclass
class Comparison:
    out_dir: Path
    summary: list[dict]
    runs: list[dict]
    run_dirs: dict      # "<arm>-s<seed>" -> folder


def augment(lesson: Lesson) -> str:
    """The `augment` parameter resolved: "auto" is the stand-in on ShapeWorld and, on file data, "none" - the
    rewrites the data carries (data.rewrites_dir, files beside the CSV, tar JSON, HF columns), never the stand-in,
    which finds nothing to rewrite in captions outside ShapeWorld."""
    value = lesson.params["augment"]
    if value != "auto":
        return value
    return "shapes" if lesson.params.get("data", "shapeworld") == "shapeworld" else "none"


def _arms(lesson: Lesson):
    return [Arm.parse(p, augment(lesson)) for p in lesson.params["policies"]]




@dataclass
class Plan:
    rows: list[dict]                              # one per arm
    texts: list[str] = field(default_factory=list)   # one training image's original caption, then its rewrites
    names: list[str] = field(default_factory=list)   # "original", then the rewrite variants
    batch_size: int = 0
    epochs: float = 0.0                           # how often training sees each image


def training_plan(lesson: Lesson) -> Plan:
    """What each arm trains on: same data, model, steps and batch; only the text policy differs. On ShapeWorld:
    how scarce the data is on purpose, and one training image with the texts the policies draw from."""

    rows, cfgs = [], {}
    for arm in _arms(lesson):
        cfg = arm_config(arm, seeds(lesson)[0], lesson.params["preset"], lesson.overrides())
        cfgs[arm.name] = cfg
        k = 1 + (cfg.data.num_rewrites if arm.policy != "clip" else 0)   # file data: at most; run.json says
        texts = {"clip": "1 (the original)", "laclip": f"1 drawn from {k}", "mt": f"all {k}"}[arm.policy]
        rows.append({"arm": arm.name, "texts per image per step": texts, "rewrites": arm.augment,
                     "steps": cfg.train.steps, "batch": cfg.train.batch_size, "image tower": cfg.model.vision,
                     "text tower": cfg.model.text, "data": cfg.data.source})
    lesson.markdown(table(rows), "The arms", key=True)
    cfg = next(iter(cfgs.values()))
    plan = Plan(rows, batch_size=cfg.train.batch_size)
    if not held_out_splits(cfg):                 # file data: scored on eval_datasets only
        sets = lesson.params.get("eval_datasets") or []
        lesson.markdown(f"Training on `{cfg.data.source}`. "
                        + (f"After training every arm is scored on {len(sets)} evaluation set(s): "
                           + ", ".join(f"`{d}`" for d in sets) + "." if sets else
                           "**No `eval_datasets` given**, so the arms are compared by their final training loss "
                           "only (a loss says little about what a model learned: pass an ImageFolder or "
                           "CLIP_benchmark folder with `-p eval_datasets PATH`)."))
        plan.names, plan.texts = _first_record_texts(next((c for c in cfgs.values() if c.train.policy != "clip"), cfg))
        if plan.texts:
            lesson.markdown("The first training image's texts (what the policies draw from):\n\n"
                            + table([{"text": n, "": t} for n, t in zip(plan.names, plan.texts)]))
        return plan

    split = shapeworld_split(cfg, "train")
    plan.epochs = cfg.train.steps * cfg.train.batch_size / len(split)
    lesson.markdown(
        f"**Scarce on purpose.** {len(split):,} training images, {cfg.train.steps:,} steps of "
        f"{cfg.train.batch_size}: each image comes around about **{plan.epochs:.0f} times**. CLIP sees the same "
        "image with the same caption every time, so its text tower can memorise those exact words; this is the "
        "regime LaCLIP's rewrites are for (in the paper, zero-shot ImageNet gains +5.7 points on CC3M, its "
        "smallest dataset and the largest gain relative to CLIP's 15.8%; +8.2 on CC12M, the largest in points; "
        "+2.4 on LAION-400M). With fresh "
        "images every step (lesson 01's data-rich world) there would be nothing to memorise.")
    with_rw = next((c for c in cfgs.values() if c.data.augment != "none"), None)
    common.warm_rewrite_cache(with_rw or cfg, lesson.progress)
    plan.texts, plan.names = [split.captions[0]], ["original"]
    if with_rw is not None:
        rw = shapeworld_rewrites(with_rw, list(split.captions))
        plan.names += select_variants(list(rw), with_rw)
        plan.texts += [rw[v][0] for v in plan.names[1:]]
    by = {"shapes": "the world-aware stand-in (not an LLM)", "eda": "EDA", "llm": "the LLM",
          "backtranslate": "back-translation"}.get(with_rw.data.augment if with_rw else "none", "")
    lesson.figure(_image_with_texts(split.images[0], plan.texts, plan.names, by), "example_texts",
                  "One image and its texts")
    return plan


def _first_record_texts(cfg) -> tuple[list[str], list[str]]:
    """(names, texts) of the first readable record of a file source: its caption, then the rewrites in use."""

    record = next((r for r in open_source(cfg.data) if r is not None), None)
    if record is None:
        return [], []
    variants = select_variants(list(record.rewrites), cfg) if record.rewrites and cfg.train.policy != "clip" else []
    return ["original", *variants], texts_of(record, variants)


def _image_with_texts(image, texts: list[str], names: list[str], rewriter: str = ""):
    fig = Figure(figsize=(10, 1.6), layout="constrained")
    a1, a2 = fig.subplots(1, 2, width_ratios=[1, 6])
    a1.imshow(hwc(image), interpolation="nearest")
    a1.set_axis_off()
    lines = [f"{name:>8}: {textwrap.shorten(t, 95)}" for name, t in zip(names, texts)]
    a2.text(0, 0.5, "\n".join(lines), va="center", fontsize=9, linespacing=1.5, family="monospace")
    a2.set_axis_off()
    fig.suptitle("CLIP sees only the original; LaCLIP one text drawn at random each time; MT all at once"
                 + (f"\n(rewrites by {rewriter})" if rewriter else ""), fontsize=10)
    return fig



def train_policies(lesson: Lesson) -> Comparison:
    """`experiments.compare`: every (arm, seed) on the same budget; finished runs are reused on a rerun."""

    p = lesson.params
    out = lesson.out_dir / "compare"
    n_jobs = common.jobs(lesson)
    # In parallel, start the slowest arm (MT) first, so the others fill the other worker meanwhile.
    order = sorted(p["policies"], key=lambda a: not a.startswith("mt")) if n_jobs > 1 else list(p["policies"])
    n_runs = len(p["policies"]) * len(seeds(lesson))
    common.display_markdown(f"Training {n_runs} run(s), {n_jobs} at a time"
                            + (" in worker processes" if n_jobs > 1 else "") + f"; a progress line every "
                            f"{HEARTBEAT_S:.0f} s (each run's `metrics.jsonl` in `{out}` grows as it trains).")
    for arm in _arms(lesson):
        common.warm_rewrite_cache(lesson.config({"data.augment": arm.augment}), lesson.progress)
    steps = lesson.config().train.steps
    runs = {f"{a.name}-s{s}": (out / f"{a.name.replace(':', '-')}-s{s}", steps) for a in _arms(lesson)
            for s in seeds(lesson)}
    with heartbeat(runs, every_s=HEARTBEAT_S):
        summary = compare(order, seeds(lesson), out, p["preset"], lesson.overrides(), augment(lesson),
                          jobs=n_jobs, progress=lesson.progress, nproc_per_node=p["nproc_per_node"])
    names = [a.name for a in _arms(lesson)]
    summary = sorted(summary, key=lambda r: names.index(r["policy"]))
    with open(out / "runs.csv", newline="") as f:
        runs = sorted(({k: number(v) for k, v in r.items()} for r in csv.DictReader(f)),
                      key=lambda r: (names.index(r["policy"]), r["seed"]))
    dirs = {f"{r['policy']}-s{r['seed']}": out / f"{str(r['policy']).replace(':', '-')}-s{r['seed']}" for r in runs}
    scores = score_columns(summary)
    columns = scores + ["final_loss", "train_seconds"]
    what = ("Zero-shot top-1 (%) on the ShapeWorld test split and retrieval R@1; `@heldout`: templates never used "
            "for any choice" if any(m in HEADLINE for m in scores) else
            "Scores on the evaluation sets" if scores else "No evaluation set: the final training loss only")
    lesson.markdown(f"{what}; {over_seeds_caption(lesson)}.\n\n" + summary_markdown(summary, columns),
                    "CLIP vs LaCLIP vs LaCLIP-MT", key=True)
    for row in summary:
        for m in columns:
            if m in row:
                lesson.metrics[f"{row['policy']}/{m}"] = row[m]
    comparison = Comparison(out, summary, runs, dirs)
    _skip_counts(lesson, comparison)
    return comparison


NOT_SCORES = {"policy", "seed", "seeds", "final_loss", "train_seconds", "step"}


def score_columns(rows: list[dict]) -> list[str]:
    """The evaluation metrics present in `rows`: the ShapeWorld headline first, then any other number (e.g. the
    `eval_datasets` scores); never bookkeeping (loss, time, seed) or a `_std` column."""
    present = [k for r in rows for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    present = [k for k in dict.fromkeys(present) if k not in NOT_SCORES and not k.endswith("_std")
               and "skip" not in k]

    headline = [m for m in HEADLINE if m in present]           # ShapeWorld's tasks
    on_files = [m for m in dataset_headline(dict.fromkeys(present)) if m not in headline]   # eval.datasets
    return headline + on_files


def _skip_counts(lesson: Lesson, comparison: Comparison) -> None:
    """Samples the data layer skipped (unreadable images, empty captions), when the runs report them."""
    rows = []
    for name, d in comparison.run_dirs.items():
        path = d / "final_metrics.json"
        final = json.loads(path.read_text()) if path.exists() else {}
        found = {k: v for k, v in _flat(final).items() if "skip" in k and isinstance(v, (int, float))}
        if found:
            rows.append({"run": name, **found})
    if rows:
        lesson.markdown("Samples skipped by the data layer (unreadable or empty), per run:\n\n" + table(rows),
                        "Skipped samples", key=True)
        for r in rows:
            for k, v in r.items():
                if k != "run":
                    lesson.metrics[f"{r['run']}/{k}"] = v


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out



def learning_curves_by_policy(lesson: Lesson, comparison: Comparison):
    """Training loss and logit scale of every run."""

    lesson.figure(learning_curves(comparison.run_dirs, ("loss", "logit_scale"),
                                  title="Learning curves (MT's loss averages over its texts)"),
                  "learning_curves", "Learning curves", key=True)



def results_table(lesson: Lesson, comparison: Comparison):
    """The scores as bars (one panel per metric): the mean over seeds, with the spread when there are several;
    the final loss when the runs have no evaluation metric."""
    metrics = score_columns(comparison.runs) or ["final_loss"]
    one = len(seeds(lesson)) == 1
    title = over_seeds_caption(lesson).capitalize() + ("" if one else "; dots are seeds")
    if metrics == ["final_loss"]:
        title = "Final training loss (no evaluation set given); " + title
    lesson.figure(common.bars(comparison.runs, metrics, "policy", title), "results", "Results", key=True)


def similarity_by_policy(lesson: Lesson, comparison: Comparison, world_split: str = "test"):
    """The similarity matrix of each arm's model (first seed) on the same test images and captions."""

    if world_split not in held_out_splits(lesson.config()):
        lesson.markdown(f"The similarity matrices use the source's own {world_split} split (ShapeWorld's); skipped "
                        "on file data, which has none.")
        return {}
    n = min(lesson.params.get("n_show", 8), 8)
    first = {}
    for name, d in comparison.run_dirs.items():
        first.setdefault(name.rsplit("-s", 1)[0], d)
    sims, split = {}, None
    for arm, d in first.items():
        model, tok, cfg = load_run(d, device=lesson.params["device"])
        split = split or shapeworld_split(cfg, world_split)
        sims[arm] = lesson01._pairs_similarity(model, tok, split.images[:n], split.captions[:n])
    lo = min(float(v.min()) for v in sims.values())
    hi = max(float(v.max()) for v in sims.values())
    # The key on the left: image i's thumbnail and its caption (row i / column i of every matrix).
    fig = Figure(figsize=(9.8, 0.62 * n + 1.3), layout="constrained")
    gs = fig.add_gridspec(n, 2 + len(sims), width_ratios=[0.75, 2.9] + [2.0] * len(sims))
    for i in range(n):
        thumb = fig.add_subplot(gs[i, 0])
        thumb.imshow(hwc(split.images[i]), interpolation="nearest")
        thumb.set_axis_off()
        text = fig.add_subplot(gs[i, 1])
        text.text(0, 0.5, f"{i}: " + textwrap.shorten(split.captions[i], 36), va="center", fontsize=9)
        text.set_axis_off()
    maps = []
    for a, (arm, sim) in enumerate(sims.items()):
        ax = fig.add_subplot(gs[:, 2 + a])
        maps.append(ax)
        mappable = ax.imshow(sim, vmin=lo, vmax=hi, cmap="viridis")
        rest = (sim.sum() - sim.diagonal().sum()).item() / (n * n - n)
        ax.set_title(f"{arm}\ndiagonal {sim.diagonal().mean().item():.2f}\nrest {rest:.2f}", fontsize=10)
        ax.set_xticks(range(n), [str(i) for i in range(n)], fontsize=9)
        ax.set_yticks(range(n), [str(i) for i in range(n)], fontsize=9)
        ax.set_xlabel("image")
        if a == 0:
            ax.set_ylabel("caption")
    fig.colorbar(mappable, ax=maps, shrink=0.5, location="right")
    lesson.figure(fig, "similarity_by_policy", "Similarity matrices by policy", key=True)
    return sims



def features_with_all_texts(lesson: Lesson, comparison: Comparison, n: int = 8):
    """(image features [n, D], text features [n, K, D], scale) of the first `n` training images and all K of
    their texts, from the first run's model: what one LaCLIP-MT step sees. On file data a random toy batch."""

    cfg = lesson.config()
    if not held_out_splits(cfg) or augment(lesson) not in ("shapes", "eda"):    # not rendered here: a toy batch
        g = torch.Generator().manual_seed(lesson.params["seed"])
        k = 1 + cfg.data.num_rewrites
        lesson.markdown(f"(A random toy batch of {n} images × {k} texts: the real texts are read on ShapeWorld.)")
        return (F.normalize(torch.randn(n, 16, generator=g), dim=-1),
                F.normalize(torch.randn(n, k, 16, generator=g), dim=-1), torch.tensor(1 / 0.07))

    by_arm = {name.rsplit("-s", 1)[0]: d for name, d in comparison.run_dirs.items()}
    run_dir = next((by_arm[a] for a in ("mt", "laclip") if a in by_arm), next(iter(by_arm.values())))
    lesson.markdown(f"Features from the `{run_dir.name}` model.")
    model, tok, run_cfg = load_run(run_dir, device=lesson.params["device"])
    arm_cfg = lesson.config({"data.augment": augment(lesson)})
    split = shapeworld_split(arm_cfg, "train")
    rewrites = shapeworld_rewrites(arm_cfg, list(split.captions))
    variants = select_variants(list(rewrites), arm_cfg)
    texts = [[split.captions[i]] + [rewrites[v][i] for v in variants] for i in range(n)]
    image_features = encode_images(model, split.images[:n])
    text_features = encode_texts(model, tok, [t for row in texts for t in row]).view(n, len(texts[0]), -1)
    return image_features, text_features, model.logit_scale.exp().detach().cpu()


def _curves(run_dirs: dict) -> dict:
    """run name -> (steps, losses) from each run's metrics.jsonl."""

    out = {}
    for name, d in run_dirs.items():
        rows = [r for _, r in iter_jsonl(d / "metrics.jsonl") if "loss" in r and "step" in r]
        out[name] = ([r["step"] for r in rows], [r["loss"] for r in rows])
    return out


def _curves_at(curves: dict, step: int):
    fig = Figure(figsize=(6.5, 3.2), layout="constrained")
    ax = fig.add_subplot()
    at = {}
    for name, (steps, losses) in curves.items():
        faint, = ax.plot(steps, losses, alpha=0.25)
        shown = [(s_, v) for s_, v in zip(steps, losses) if s_ <= step]
        if shown:
            line, = ax.plot([a for a, _ in shown], [b for _, b in shown], label=name, color=faint.get_color())
            at[name] = shown[-1][1]
            ax.scatter([shown[-1][0]], [shown[-1][1]], color=line.get_color(), zorder=3)
    ax.axvline(step, color="gray", ls=":")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("At step " + f"{step}: " + ", ".join(f"{k} {v:.2f}" for k, v in at.items()), fontsize=9)
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def curve_explorer(lesson: Lesson, comparison: Comparison):
    """A step slider over the arms' learning curves: each arm's loss up to that step. A widget when `interactive`
    is True; else the same view at the middle of training."""
    curves = _curves(comparison.run_dirs)
    last = max((max(s_) for s_, _ in curves.values() if s_), default=0)
    if not lesson.params["interactive"]:
        lesson.figure(_curves_at(curves, last // 2), "curves_midway", "Learning curves at mid-training")
        return None
    import ipywidgets as W

    slider = W.IntSlider(value=last, min=0, max=last, step=max(1, last // 50), description="step",
                         continuous_update=False)
    out = common.live_output([slider], lambda: _curves_at(curves, slider.value))
    return common.show_widget(W.VBox([W.HTML("<b>Move the step</b>: where does CLIP's loss fall below the others, "
                                             "and why?"), slider, out]))
