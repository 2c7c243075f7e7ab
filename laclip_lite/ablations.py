"""The paper's five ablations and the controls on ShapeWorld, over (world, seed) pairs, with paired intervals.

    laclip-lite ablate --seeds 0,1,2 --out runs/ablations             # the full grid (notebook 04: ablations="all")
    laclip-lite ablate --ablations augment,num_rewrites --controls leak --worlds 0,1,2 --seeds 0,1,2 --out DIR
    laclip-lite ablate --out docs/results/ablations --contrasts-only   # contrasts from a committed ablations.csv

The grid is one list of `AblationPoint`s (ablation, value, arm, overrides):

* the paper's ablations (`ablation_points`): text augmentation (none / EDA / back-translation when
  translation models are given / the LLM stand-in), number of rewrites 0-4, meta-pair source (each alone at
  M = 1, and all four), image backbone (ViT / ResNet) and text tower (scratch / pretrained MiniLM locked /
  unlocked), each of the last two with CLIP and LaCLIP;
* the controls none of the paper's anchors ran (`control_points`): `leak` - the stand-in with and without its
  class-name leak (`rewrite.leak_free`); `faithfulness` - stand-in rewrites with a controlled error rate
  (`rewrite.error_rate` 0 / 10 / 25 / 50%); `data_size` and `steps` - the LaCLIP - CLIP gap against the
  number of training images and of optimizer steps (at fixed steps: data size and passes move together);
  `data_epochs` - the gap on a grid of images x passes per image (steps derived from `train.epochs`), drawn as
  a phase diagram; `policy` - CLIP, LaCLIP and MT side by side; `standin` - the stand-in taken apart
  (`rewrite.standin`: denoise-only, structure-only, random-lexicon, partial-knowledge with systematic errors);
  `rewrite_subsets` - M rewrites averaged over every subset of M sources (the `num_rewrites` ablation adds the
  sources in a fixed order, so its M = 1 is the ChatGPT-style source alone).

Every point is judged against **CLIP with the same model, data, world and seed** (`baseline_of` drops what only
a rewrite policy reads), and every pair of settings a claim compares gets its own paired contrast
(`contrast_plan`: neighbours of an ordered ablation and the last against the first, each source against all
four, each stand-in control against the full stand-in, gap against gap where both arms run at every value).
Intervals are t-intervals over the (world, seed) pairs (`laclip_lite.stats`); where one includes 0 the text
says "not distinguishable with N pairs", and "level" needs the equivalence test (TOST, margin `stats.MARGIN`).
Runs are scored on the test split (report-only) and the validation split (`val/<metric>`, for choices); the
`@heldout` template set is never used for a choice. Runs are scored at the end of training (no best-validation
checkpoint: the trainer keeps none).

Outputs in `out_dir`: `runs/<run>/` (one training run each, resumable), `ablations.csv` (ablation, setting,
world, seed, one column per metric), `ablations.md` (the table vs CLIP, the contrasts, the wall and CPU time),
`contrasts.csv` / `contrasts.md` (per world and pooled when several worlds ran), `ablations.png` and
`ablations_heldout.png` (one panel per ablation), for data_size / steps `gap_<control>.png`, for data_epochs
`phase_data_epochs.png`.
"""
from __future__ import annotations

import csv
import itertools
import math
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from laclip_lite.config import Config, ConfigError, apply_overrides, build_config
from laclip_lite.constants import AUGMENTS, EXPERIMENT_PRESET, SOURCES
from laclip_lite.data.dataset import shapeworld_split
from laclip_lite.errors import ParameterError
from laclip_lite.experiments import Arm, arm_config, auto_jobs, run_configs, summary_cell
from laclip_lite.experiments import summarise as summarise_runs
from laclip_lite.files import atomic_open, atomic_savefig, atomic_write_text
from laclip_lite.folder_lock import holds_folder
from laclip_lite.plots import mean_std_bars
from laclip_lite.rewrite.quality import distinct_n
from laclip_lite.rewrite.shapes import STANDIN_MODES, class_name_leak, parse_caption, rewrite_shape_caption
from laclip_lite.runs import config_hash
from laclip_lite.schedule import plan_steps
from laclip_lite.stats import MARGIN, cell, contrast_markdown, contrast_rows, difference_rows, pair_key, t_interval
from laclip_lite.stats import read_rows as read
from laclip_lite.utils import markdown_table

MAIN_METRIC = "color_shape_top1"
HELDOUT = "@heldout"
# The controls: name -> values. The leak / faithfulness values are LaCLIP arms with the stand-in; data_size and
# steps run CLIP and LaCLIP at every value.
CONTROLS: dict[str, list] = {
    "leak": ["shapes", "shapes-leak-free"],
    "faithfulness": [0.0, 0.1, 0.25, 0.5],
    "data_size": [1000, 3000, 10000, 30000],    # values fixed before any run on tiny-scarce (whose own 3,000
    "steps": [250, 500, 800, 1600],              # and 800 made those points the ablations' runs, reused)
    "policy": ["laclip", "mt"],                  # MT vs LaCLIP beside CLIP, on the same grid
    "standin": list(STANDIN_MODES),              # the stand-in taken apart (rewrite.standin)
    "rewrite_subsets": [1, 2, 3, 4],             # M rewrites, averaged over every subset of M sources
    "data_epochs": [(n, e) for n in (1000, 3000, 10000, 30000) for e in (10, 35, 77)],  # images x passes
}
PAIRED = ("backbone", "text_tower", "data_size", "steps", "data_epochs")   # every value runs CLIP and LaCLIP
BEST_METRIC = "val/" + MAIN_METRIC              # data_epochs: each run also scored at its best step on this
VALIDATIONS = 10                                 # ... chosen among this many validations, evenly spaced
PAPER_EPOCHS = (30, 40)                          # the paper's regime: a fixed ~30-40 passes per caption
# Overrides only a rewrite policy reads: a CLIP run with or without them trains the same model.
REWRITE_ONLY = ("data.num_rewrites", "data.sources", "rewrite.")


ABLATIONS: dict[str, list] = {
    "augment": list(AUGMENTS),                                         # text augmentation strategy
    "num_rewrites": [0, 1, 2, 3, 4],                                   # rewrites per caption taking part
    "source": [*SOURCES, "all"],                                       # one meta-pair source alone (M = 1), all four
    "backbone": ["vit", "resnet"],                                     # image tower, CLIP vs LaCLIP each
    "text_tower": ["scratch", "minilm-locked", "minilm-unlocked"],     # text tower, CLIP vs LaCLIP each
}
# The image towers of the backbone ablation. The ResNet is lesson 01's small CNN (the tiny-rich preset: CLIP's
# modified ResNet, 16-channel stem, one bottleneck block per stage), ~2.4x the tiny ViT's step cost on one CPU
# thread; the tiny presets' ViT width (64) as a ResNet stem costs ~30x (3.5 s a step of 256), out of reach here.
BACKBONES = {
    "vit": {"model.vision": "vit"},
    "resnet": {"model.vision": "resnet", "model.vision_width": 16, "model.vision_layers": 1},
}
TEXT_TOWERS = {
    "scratch": {},
    "minilm-locked": {"model.text": "hf", "model.text_model": "minilm", "model.text_lock": True},
    "minilm-unlocked": {"model.text": "hf", "model.text_model": "minilm", "model.text_lock": False},
}


@dataclass
class AblationPoint:
    ablation: str
    value: Any
    arm: str                  # experiments.Arm spec: "clip", "laclip:eda", ...
    overrides: dict           # config overrides on top of the notebook's

    @property
    def label(self) -> str:
        """The row name in tables: the value, with the policy where an ablation runs both (`PAIRED`)."""
        return f"{self.value} / {self.arm.split(':')[0]}" if self.ablation in PAIRED else str(self.value)


def ablation_points(ablations: list[str] | str, values: dict | None, policy: str = "laclip",
                    llm_model: str = "", bt_models: str = "") -> tuple[list[AblationPoint], list[tuple]]:
    """Grid points for the named ablations -> (points, skipped [(ablation, value, why)]).

    `values` restricts an ablation's values ({} = all). A value that needs a model nobody gave
    (augment=llm without `llm_model`, backtranslate without `bt_models`) is skipped with the reason.
    """
    names = list(ABLATIONS) if ablations in ("all", ["all"]) else list(ablations)
    unknown = [a for a in names if a not in ABLATIONS]
    if unknown:
        raise ParameterError(f"ablations: unknown {unknown} (known: {', '.join(ABLATIONS)}, or 'all')")
    values = values or {}
    for a, vs in values.items():
        if a not in ABLATIONS:
            raise ParameterError(f"values: unknown ablation {a!r} (known: {', '.join(ABLATIONS)})")
        bad = [v for v in vs if v not in ABLATIONS[a]]
        if bad:
            raise ParameterError(f"values[{a!r}]: {bad} not among {ABLATIONS[a]}")
    points, skipped = [], []
    for a in names:
        for v in values.get(a, ABLATIONS[a]):
            if a == "augment":
                if v == "none":
                    points.append(AblationPoint(a, v, "clip", {}))
                elif v in ("llm", "backtranslate") and not (llm_model if v == "llm" else bt_models):
                    skipped.append((a, v, f"needs {'llm_model' if v == 'llm' else 'bt_models'}"))
                else:
                    model = {"llm": llm_model, "backtranslate": bt_models}.get(v)
                    points.append(AblationPoint(a, v, f"{policy}:{v}", {"rewrite.model": model} if model else {}))
            elif a == "num_rewrites":
                points.append(AblationPoint(a, v, "clip", {}) if v == 0 else
                              AblationPoint(a, v, f"{policy}:shapes", {"data.num_rewrites": v}))
            elif a == "source":
                points.append(AblationPoint(a, v, f"{policy}:shapes", {} if v == "all" else
                                            {"data.sources": [v], "data.num_rewrites": 1}))
            elif a == "backbone":
                for arm in ("clip", f"{policy}:shapes"):
                    points.append(AblationPoint(a, v, arm, dict(BACKBONES[v])))
            else:
                for arm in ("clip", f"{policy}:shapes"):
                    points.append(AblationPoint(a, v, arm, dict(TEXT_TOWERS[v])))
    return points, skipped


def control_points(controls: list[str] | str, policy: str = "laclip") -> list[AblationPoint]:
    """Grid points of the named controls ('all' = every one), each beside the CLIP run it is judged against."""
    names = list(CONTROLS) if controls in ("all", ["all"]) else [c for c in controls if c]
    unknown = [c for c in names if c not in CONTROLS]
    if unknown:
        raise ConfigError(f"--controls: unknown {unknown} (known: {', '.join(CONTROLS)}, or 'all')")
    points = []
    for c in names:
        if c == "leak":
            points += [AblationPoint(c, "none", "clip", {}), AblationPoint(c, "shapes", f"{policy}:shapes", {}),
                       AblationPoint(c, "shapes-leak-free", f"{policy}:shapes", {"rewrite.leak_free": True})]
        elif c == "faithfulness":
            points.append(AblationPoint(c, "none", "clip", {}))
            points += [AblationPoint(c, f"{rate:.0%}", f"{policy}:shapes",
                                     {"rewrite.error_rate": rate} if rate else {}) for rate in CONTROLS[c]]
        elif c == "policy":
            points += [AblationPoint(c, "none", "clip", {})]
            points += [AblationPoint(c, p, f"{p}:shapes", {}) for p in CONTROLS[c]]
        elif c == "standin":
            points.append(AblationPoint(c, "none", "clip", {}))
            points += [AblationPoint(c, m, f"{policy}:shapes", {} if m == "full" else {"rewrite.standin": m})
                       for m in CONTROLS[c]]
        elif c == "rewrite_subsets":
            points.append(AblationPoint(c, "none", "clip", {}))
            points += [AblationPoint(c, subset_label(sub), f"{policy}:shapes",
                                     {"data.sources": list(sub), "data.num_rewrites": m})
                       for m in CONTROLS[c] for sub in itertools.combinations(SOURCES, m)]
        elif c == "data_epochs":
            points += [AblationPoint(c, f"{n}x{e}", arm, {"data.train_size": n, "train.epochs": e,
                                                          "train.best_metric": BEST_METRIC})
                       for n, e in CONTROLS[c] for arm in ("clip", f"{policy}:shapes")]
        else:
            key = "data.train_size" if c == "data_size" else "train.steps"
            points += [AblationPoint(c, v, arm, {key: v}) for v in CONTROLS[c] for arm in ("clip", f"{policy}:shapes")]
    return points


def full_grid(policy: str = "laclip", llm_model: str = "", bt_models: str = "",
              ablations: list[str] | str = "all", controls: list[str] | str = (),
              skip: list[str] = ()) -> tuple[list[AblationPoint], list]:
    """The paper's ablations (all five by default) then the named controls -> (points, skipped values).
    `skip`: "ablation=value" entries to leave out (e.g. "text_tower=minilm-unlocked").

    The ablations are the grid notebook 04 runs with `ablations = "all"` and `values = {}` (its own preset and
    steps), and what `laclip-lite ablate` runs."""
    points, skipped = ablation_points(ablations, {}, policy, llm_model, bt_models) if ablations else ([], [])
    points += control_points(controls, policy)
    wanted = {item: tuple(item.split("=", 1)) for item in skip}           # "a=v" -> (a, v)
    known = {(p.ablation, str(p.value)) for p in points}
    bad = [item for item, pair in wanted.items() if pair not in known]
    if bad:
        raise ConfigError(f"--skip: {bad} not in the grid (entries are ablation=value, e.g. "
                          f"text_tower=minilm-unlocked; see --list)")
    skipped += [(a, v, "--skip") for a, v in sorted(wanted.values())]
    return [p for p in points if (p.ablation, str(p.value)) not in wanted.values()], skipped


def subset_label(sources) -> str:
    """"M=2 chatgpt+bard": a setting of the rewrite_subsets control."""
    return f"M={len(sources)} {'+'.join(sources)}"


def label(point: AblationPoint) -> str:
    """The row name in tables (`AblationPoint.label`: one rule for the CLI and notebook 04)."""
    return point.label


def baseline_of(point: AblationPoint) -> AblationPoint:
    """The CLIP point a point is judged against: the same model and data, the original captions only."""
    kept = {k: v for k, v in point.overrides.items() if not k.startswith(REWRITE_ONLY)}
    return AblationPoint(point.ablation, "baseline", "clip", kept)


# --- running ---------------------------------------------------------------------------------------------
def point_config(point: AblationPoint, seed: int, preset: str = EXPERIMENT_PRESET,
                 overrides: list[str] | dict | None = None, world: int | None = None) -> Config:
    """The run of a grid point: the preset, the grid's overrides, then the point's arm and overrides; `world`
    (when given) sets `data.world_seed`."""
    cfg = arm_config(Arm.parse(point.arm), seed, preset, overrides)
    apply_overrides(cfg, dict(point.overrides))
    if world is not None:
        cfg.data.world_seed = int(world)
    if cfg.data.augment in ("shapes", "llm"):       # the sources a run draws from, in order (the same training)
        cfg.data.sources = cfg.data.sources[:cfg.data.num_rewrites]
    if cfg.train.best_metric and not cfg.train.eval_every:     # VALIDATIONS evenly spaced to choose the best step
        cfg.train.eval_every = max(1, plan_steps(cfg, 1, cfg.data.train_size).steps // VALIDATIONS)
    return cfg.validate()


def run_folder(cfg: Config) -> str:
    """A run's folder name under runs/, from its whole configuration: two points that train the same model
    on the same data (CLIP at num_rewrites=0 and augment=none, ViT in the backbone ablation...) share one run.
    The hash covers `data.world_seed`; another world is also named (`-w<world>`)."""
    t = cfg.train
    world = f"-w{cfg.data.world_seed}" if cfg.data.world_seed else ""      # world 0 keeps its earlier names
    return f"{t.policy}-{cfg.data.augment}-{config_hash(cfg)[:10]}{world}-s{t.seed}"


def run_grid(points: list[AblationPoint], seeds: list[int], out_dir: str | Path, preset: str = EXPERIMENT_PRESET,
             overrides: list[str] | dict | None = None, jobs: int = 0, progress: bool = True,
             worlds: list[int] = (0,), gpus=()) -> list[dict]:
    """Train every distinct run of the grid and its baselines (finished runs are reused) -> one row per
    (point, world, seed): ablation, setting, world, seed, every metric, `run` (its folder under runs/), and
    `baseline/<key>` of its CLIP run (the same world and seed)."""
    out_dir = Path(out_dir)
    configs, pairs = {}, {}                 # folder -> Config (each once); (point, seed) -> (run, baseline)
    replicates = [(w, seed) for w in worlds for seed in seeds]
    for i, pt in enumerate(points):
        for w, seed in replicates:
            cfgs = (point_config(pt, seed, preset, overrides, w),
                    point_config(baseline_of(pt), seed, preset, overrides, w))
            pairs[i, w, seed] = tuple(run_folder(c) for c in cfgs)    # a bad parameter fails before any run
            configs.update({run_folder(c): c for c in cfgs})
    metrics = run_configs(configs, out_dir / "runs", jobs=jobs or auto_jobs(runs=len(configs), gpus=gpus),
                          progress=progress, gpus=gpus)
    rows = []
    for i, pt in enumerate(points):
        for w, seed in replicates:
            run, base = pairs[i, w, seed]
            row = {"ablation": pt.ablation, "setting": label(pt), "world": w, "seed": seed, **metrics[run], "run": run,
                   "baseline/run": base}
            row.update({f"baseline/{k}": v for k, v in metrics[base].items() if isinstance(v, (int, float))})
            rows.append(row)
    return rows


# --- statistics (laclip_lite.stats: the one home of intervals, contrasts and their words) ------------------
def summarise(rows: list[dict], metrics: list[str]) -> list[dict]:
    """One row per (ablation, setting): seeds, `<m>` mean, `<m>_std` (`experiments.summarise`), and the paired
    difference to the CLIP baseline, `<m>_diff`, `<m>_lo`, `<m>_hi` (95% t-interval over seeds; absent where the
    row is CLIP itself)."""
    out = summarise_runs(rows, group=("ablation", "setting"), metrics=metrics, digits=None)
    for s in out:
        if is_baseline(s["setting"]):
            continue
        mine = [r for r in rows if (r["ablation"], r["setting"]) == (s["ablation"], s["setting"])]
        for m in metrics:
            diffs = [r[m] - r[f"baseline/{m}"] for r in mine if r.get(m) is not None and f"baseline/{m}" in r]
            if diffs:
                s[f"{m}_diff"], s[f"{m}_lo"], s[f"{m}_hi"] = t_interval(diffs)
    return out


CONTRAST_METRICS = ("color_shape_top1", "color_shape_top1@heldout", "shape_top1", "shape_top1@heldout",
                    "color_top1", "color_top1@heldout",          # colour+shape, then shape and colour apart
                    "color_shape_top1@synonyms")                  # prompts naming classes by synonyms only


def contrast_plan(ablation: str, settings: list[str]) -> list[tuple[str, str, str]]:
    """The paired contrasts an ablation's claims need, as (a, b, "a − b") over its settings (table order):

    * an ablation that runs CLIP and LaCLIP at every value (`PAIRED`): the LaCLIP − CLIP gap of each value against
      the gap of the value before it (groups named "gap <value>"), and the last against the first;
    * `source` (and its subsets): each single source against all four;
    * every other (ordered) ablation: each setting against the one before it, and the last against the first
      rewrite setting when they are not neighbours (4 vs 1 rewrites, 50% vs 0% errors)."""
    if ablation == "data_epochs":
        return grid_plan(settings)
    if ablation in PAIRED:
        values = [s.split(" / ")[0] for s in settings if not s.endswith(" / clip")]
        gaps = [f"gap {v}" for v in dict.fromkeys(values)]
        plan = [(b, a, f"{b} − {a}") for a, b in zip(gaps, gaps[1:])]
        if len(gaps) > 2:
            plan.append((gaps[-1], gaps[0], f"{gaps[-1]} − {gaps[0]}"))
        return plan
    if ablation == "source":
        return [(s, "all", f"{s} − all") for s in settings if s != "all"]
    if ablation == "standin":
        return [(s, "full", f"{s} − full") for s in settings if s not in ("none", "full")] + \
            [("full", "none", "full − none")]
    plan = [(b, a, f"{b} − {a}") for a, b in zip(settings, settings[1:])]
    rewrites = [s for s in settings if not is_baseline(s)]
    if len(rewrites) > 2:
        plan.append((rewrites[-1], rewrites[0], f"{rewrites[-1]} − {rewrites[0]}"))
    return plan


def grid_plan(settings: list[str]) -> list[tuple[str, str, str]]:
    """The data_epochs grid's contrasts: the gap at each (images, passes) against the gap with the next smaller
    image count at the same passes, and against the next fewer passes at the same image count."""
    cells = sorted({tuple(int(x) for x in s.split(" / ")[0].split("x")) for s in settings})
    plan = []
    for n, e in cells:
        smaller_n = [c for c in cells if c[1] == e and c[0] < n]
        fewer_e = [c for c in cells if c[0] == n and c[1] < e]
        for other in ([max(smaller_n)] if smaller_n else []) + ([max(fewer_e)] if fewer_e else []):
            a, b = f"gap {n}x{e}", f"gap {other[0]}x{other[1]}"
            plan.append((a, b, f"{a} − {b}"))
    return plan


def subset_means(rows: list[dict], metrics) -> dict[str, list[dict]]:
    """The rewrite_subsets control: per (world, seed), the mean over every subset of M sources -> {"M=m (mean of
    k subsets)": rows}; CLIP is "M=0"."""
    out: dict[str, list[dict]] = {}
    sizes = sorted({int(r["setting"].split()[0][2:]) for r in rows if r["setting"].startswith("M=")})
    base = [r for r in rows if r["setting"] == "none"]
    if base:
        out["M=0"] = base
    for m in sizes:
        mine = [r for r in rows if r["setting"].startswith(f"M={m} ")]
        subsets = len({r["setting"] for r in mine})
        by_pair: dict[tuple, list[dict]] = {}
        for r in mine:
            by_pair.setdefault(pair_key(r), []).append(r)
        group = []
        for (w, seed), rs in by_pair.items():
            if len(rs) != subsets:
                continue                     # a pair without every subset is left out (not averaged short)
            row = {"world": w, "seed": seed}
            for met in metrics:
                vals = [r[met] for r in rs if isinstance(r.get(met), (int, float))]
                if len(vals) == subsets:
                    row[met] = statistics.fmean(vals)
            group.append(row)
        out[f"M={m} (mean of {subsets} subsets)"] = group
    return out


def contrasts(rows: list[dict], metrics: list[str] = CONTRAST_METRICS, margin: float = MARGIN) -> list[dict]:
    """Every ablation's `contrast_plan`, paired by (world, seed) -> `stats.contrast_rows` rows with `ablation`."""
    worlds = sorted({pair_key(r)[0] for r in rows})
    if len(worlds) > 1:                  # each world alone, then every (world, seed) pair pooled
        per = [c for w in worlds for c in _contrasts([r for r in rows if pair_key(r)[0] == w], metrics, margin,
                                                     world=str(w))]
        return per + _contrasts(rows, metrics, margin, world="pooled")
    return _contrasts(rows, metrics, margin)


def _contrasts(rows: list[dict], metrics, margin: float, **extra) -> list[dict]:
    out = []
    for ablation in dict.fromkeys(r["ablation"] for r in rows):
        mine = [r for r in rows if r["ablation"] == ablation]
        settings = list(dict.fromkeys(r["setting"] for r in mine))
        groups = {s: [r for r in mine if r["setting"] == s] for s in settings}
        if ablation in PAIRED:
            for s in settings:
                v, _, arm = s.partition(" / ")
                if arm != "clip" and f"{v} / clip" in groups:
                    groups[f"gap {v}"] = difference_rows(groups[s], groups[f"{v} / clip"], list(metrics))
        ms = [m for m in metrics if any(m in r for r in mine)]
        if ablation == "rewrite_subsets":
            groups = subset_means(mine, ms)
            names = list(groups)
            plan = [(b, a, f"{b} − {a}") for a, b in zip(names, names[1:])]
            if len(names) > 3:
                plan.append((names[-1], names[1], f"{names[-1]} − {names[1]}"))
            out += contrast_rows(groups, plan, ms, margin, **extra, ablation=ablation)
            continue
        out += contrast_rows(groups, contrast_plan(ablation, settings), ms, margin, **extra, ablation=ablation)
    return out


def contrasts_text(rows: list[dict], metrics: list[str] = CONTRAST_METRICS, margin: float = MARGIN) -> str:
    """The contrast table (Markdown) with how to read it, and one sentence per contrast on colour+shape."""
    ms = [m for m in metrics if any(m in r for r in rows)]
    if not rows or not ms:
        return ""
    pairs = sorted({r["pairs"] for r in rows})
    lines = [f"Paired contrasts between settings (a − b, points of zero-shot top-1), mean and {95}% t-interval over "
             f"the (world, seed) pairs both settings ran ({', '.join(map(str, pairs))} pairs; the interval "
             "conditions on the worlds and test sets that ran: seeds of one world say nothing about other worlds). "
             "`gap v`: LaCLIP − CLIP at setting v. \"reads as\" (colour+shape, default templates): a > b or a < b "
             f"where the interval excludes 0; \"level within ±{margin:g}\" only where the equivalence test (TOST, "
             f"two one-sided t-tests at alpha 0.05, i.e. the 90% interval inside ±{margin:g} points) says so; "
             "otherwise \"not distinguishable with N pairs\". Shape and colour are given apart.", "",
             contrast_markdown(rows, ms, keys=("world", "ablation") if "world" in rows[0] else ("ablation",)), ""]
    held = ms[0] + HELDOUT
    for r in rows:
        if ms[0] not in r:
            continue
        extra = (f"; held-out templates {_ci(r, held)}: {r[held + '_verdict']}" if held in r else "")
        where = f" (world {r['world']})" if "world" in r else ""
        lines.append(f"- {r['ablation']}{where}: {r['contrast']} {_ci(r, ms[0])} colour+shape: {r[ms[0] + '_verdict']}"
                     + extra + ".")
    return "\n".join(lines) + "\n"


def _ci(row: dict, m: str) -> str:
    return cell(row, m)


def write_contrasts(rows: list[dict], out_dir: str | Path, margin: float = MARGIN) -> list[dict]:
    """`contrasts.csv` (one row per contrast, every metric's mean, lo, hi, TOST p and verdict) and
    `contrasts.md` -> the contrast rows."""
    out_dir = Path(out_dir)
    found = contrasts(rows, margin=margin)
    if not found:
        return found
    keys = list(dict.fromkeys(k for r in found for k in r))
    with atomic_open(out_dir / "contrasts.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(found)
    atomic_write_text(out_dir / "contrasts.md", contrasts_text(found, margin=margin))
    return found


def read_rows(path: str | Path) -> list[dict]:
    """An `ablations.csv` back as result rows (`stats.read_rows`): committed results can be recomputed."""
    return read(path)


def is_baseline(setting: str) -> bool:
    """A setting that is CLIP itself (its difference to CLIP is zero by construction)."""
    return setting in ("none", "0") or setting.endswith(" / clip")


def _diff_cell(s: dict, m: str) -> str:
    if f"{m}_diff" not in s:
        return "-"
    d, lo, hi = s[f"{m}_diff"], s[f"{m}_lo"], s[f"{m}_hi"]
    return f"{d:+.1f}" if math.isnan(lo) else f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]"


def markdown(summary: list[dict], metric: str = MAIN_METRIC) -> str:
    """The table: per setting, `metric` and its paired difference to CLIP, default and held-out templates."""
    held = metric + HELDOUT
    cells = [{"ablation": s["ablation"], "setting": s["setting"], "seeds": s["seeds"], "m": summary_cell(s, metric),
              "dm": _diff_cell(s, metric), "h": summary_cell(s, held), "dh": _diff_cell(s, held)} for s in summary]
    columns = ["ablation", "setting", "seeds", "m", "dm", "h", "dh"]
    return markdown_table(cells, columns, ["ablation", "setting", "seeds", metric, "Δ vs CLIP [95% CI]", held,
                                           "Δ vs CLIP [95% CI]"], right=columns[2:], cell=str)


def write_outputs(rows: list[dict], out_dir: str | Path, seconds: float, cpu_seconds: float, command: str = "",
                  metric: str = MAIN_METRIC, preset: str = EXPERIMENT_PRESET,
                  overrides: list[str] | dict | None = None) -> list[dict]:
    """`ablations.csv`, `ablations.md`, the figures -> the summary rows."""
    out_dir = Path(out_dir)
    metric_cols = [k for k in dict.fromkeys(k for r in rows for k in r)
                   if k not in ("ablation", "setting", "world", "seed") and not k.startswith("baseline/")]
    head = ["ablation", "setting", *(["world"] if any("world" in r for r in rows) else []), "seed"]
    with atomic_open(out_dir / "ablations.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*head, *metric_cols], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    reported = [metric, metric + HELDOUT, "shape_top1", "shape_top1" + HELDOUT, "color_top1", "color_top1" + HELDOUT]
    best = any(k.startswith("best/") for r in rows for k in r)      # runs scored at a best-validation checkpoint
    summary = summarise(rows, reported + ([f"best/{m}" for m in reported] if best else []))
    train = {r[f"{p}run"]: r[f"{p}train_seconds"] for r in rows for p in ("", "baseline/")   # a run counts once
             if f"{p}train_seconds" in r}
    seeds = sorted({r["seed"] for r in rows})
    worlds = sorted({pair_key(r)[0] for r in rows})
    text = (f"Zero-shot top-1 (%) on the ShapeWorld test split, mean ± sample std over the (world, seed) pairs "
            f"(worlds {worlds}, seeds {seeds}; the `seeds` column counts pairs); "
            "Δ: the paired difference to CLIP with the same model, data, world and seed, mean and 95% t-interval "
            "over the pairs (n - 1 degrees of freedom; with one world it conditions on that world and its test "
            "set). `@heldout`: the template set never used for a choice. Test-split numbers are for reporting: "
            "choose settings on the validation split (`laclip_lite.stats.choose`).\n\n"
            + markdown(summary, metric)
            + "\nShape and colour apart (the same runs):\n\n" + markdown(summary, "shape_top1")
            + "\n" + markdown(summary, "color_top1")
            + ("\nThe same runs scored at their best-validation checkpoint (`train.best_metric` = "
               f"{BEST_METRIC}, the step chosen among {VALIDATIONS} validations; `best/step` per run in "
               "ablations.csv):\n\n" + markdown([s for s in summary if f"best/{metric}" in s], f"best/{metric}")
               if best else "")
            + f"\nThis command: wall time {seconds:.0f} s, CPU time {cpu_seconds:.0f} s (user + sys, all processes; "
            f"runs finished earlier were reused, not retrained). The {len(train)} distinct runs trained for "
            f"{sum(train.values()):.0f} s in all (train_seconds, wall, each run on its own)"
            + (f"; command: `{command}`" if command else "") + ".\n")
    found = write_contrasts(rows, out_dir)
    if found:
        text += "\n" + contrasts_text(found)
    if any(r["ablation"] == "leak" for r in rows):
        text += "\n" + leak_table(preset, overrides)
    if any(r["ablation"] == "standin" for r in rows):
        text += "\n" + standin_table(preset, overrides)
    atomic_write_text(out_dir / "ablations.md", text)
    fig_rows = [{**r, "label": r["setting"]} for r in rows]
    for m, name in ((metric, "ablations.png"), (metric + HELDOUT, "ablations_heldout.png")):
        if any(m in r for r in rows):
            atomic_savefig(ablation_figure(fig_rows, m), out_dir / name, dpi=110, bbox_inches="tight")
    for control in ("data_size", "steps"):
        mine = [s for s in summary if s["ablation"] == control and not s["setting"].endswith("/ clip")]
        if mine:
            atomic_savefig(gap_figure(mine, control, metric), out_dir / f"gap_{control}.png", dpi=110,
                           bbox_inches="tight")
    grid = [s for s in summary if s["ablation"] == "data_epochs" and not s["setting"].endswith("/ clip")]
    if grid:
        atomic_savefig(phase_figure(grid), out_dir / "phase_data_epochs.png", dpi=110, bbox_inches="tight")
        if best:
            atomic_savefig(phase_figure(grid, [f"best/{m}" for m in ("color_shape_top1", "shape_top1", "color_top1")]),
                           out_dir / "phase_data_epochs_best.png", dpi=110, bbox_inches="tight")
    return summary


def leak_table(preset: str = EXPERIMENT_PRESET, overrides: list[str] | dict | None = None) -> str:
    """How often the zero-shot class names (`rewrite.shapes.CLASS_WORDS`) appear in the run's training captions
    and in the stand-in's rewrites of them, with and without `rewrite.leak_free` (Markdown)."""

    cfg = build_config(preset, overrides)
    captions = shapeworld_split(cfg, "train").captions
    rows = [("original captions", class_name_leak(captions))]
    for name, free in (("stand-in rewrites", False), ("stand-in rewrites, leak-free", True)):
        texts, caps = [], []
        for style in cfg.data.sources:
            texts += [rewrite_shape_caption(c, style, cfg.rewrite.seed, leak_free=free)[0] for c in captions]
            caps += captions
        rows.append((name, class_name_leak(caps, texts)))
    cells = []
    for name, r in rows:
        pre = "" if "texts_with_class_name" in r else "rewrite_"
        cells.append({"texts": name, "with": f"{r[pre + 'texts_with_class_name']:.1f}",
                      "per": f"{r[pre + 'class_names_per_text']:.2f}",
                      "unlicensed": f"{r['unlicensed']:.1f}" if "unlicensed" in r else "-"})
    table = markdown_table(cells, ["texts", "with", "per", "unlicensed"],
                           ["texts", "with a class name (%)", "distinct class names per text",
                            "class name the caption did not write (%)"], right=["with", "per", "unlicensed"], cell=str)
    return (f"Class names (shape and colour words of the zero-shot prompts) in the {len(captions)} training "
            "captions and their stand-in rewrites (one per source):\n\n" + table)


def standin_table(preset: str = EXPERIMENT_PRESET, overrides: list[str] | dict | None = None) -> str:
    """What each `rewrite.standin` mode writes for the run's training captions (one rewrite per source): the
    share stating exactly the caption's facts, texts with a class name, class names the caption did not write,
    and distinct-2 of the first source's texts (as many as the captions: distinct-n falls with corpus size)."""

    cfg = build_config(preset, overrides)
    captions = shapeworld_split(cfg, "train").captions
    cells = [{"mode": "(original captions)", "same": "100.0",
              "with": f"{class_name_leak(captions)['texts_with_class_name']:.1f}", "unlicensed": "-",
              "distinct": f"{distinct_n(captions, 2):.3f}"}]
    for mode in STANDIN_MODES:
        texts, caps = [], []
        for style in cfg.data.sources:
            texts += [rewrite_shape_caption(c, style, cfg.rewrite.seed, mode=mode)[0] for c in captions]
            caps += captions
        same = 100.0 * sum(parse_caption(t) == parse_caption(c) for t, c in zip(texts, caps)) / len(texts)
        leak = class_name_leak(caps, texts)
        cells.append({"mode": mode, "same": f"{same:.1f}", "with": f"{leak['rewrite_texts_with_class_name']:.1f}",
                      "unlicensed": f"{leak['unlicensed']:.1f}",
                      "distinct": f"{distinct_n(texts[:len(captions)], 2):.3f}"})
    columns = ["mode", "same", "with", "unlicensed", "distinct"]
    table = markdown_table(cells, columns, ["stand-in mode", "same facts as the caption (%)", "with a class name (%)",
                                            "class name the caption did not write (%)", "distinct-2"],
                           right=columns[1:], cell=str)
    return (f"The stand-in's modes on the {len(captions)} training captions (one rewrite per source, "
            f"{len(captions) * len(cfg.data.sources)} texts each; facts as the stand-in's own parser reads them; "
            f"distinct-2 over the first source's {len(captions)} texts, as many as the captions):"
            "\n\n" + table)


def gap_figure(summary: list[dict], control: str, metric: str = MAIN_METRIC):
    """LaCLIP - CLIP (paired mean, 95% t-interval) against the control's value, default and held-out templates."""
    xs = [float(s["setting"].split(" / ")[0]) for s in summary]
    fig = Figure(figsize=(5, 3.4), layout="constrained")
    ax = fig.add_subplot()
    for m, color in ((metric, "tab:blue"), (metric + HELDOUT, "tab:orange")):
        d = np.array([s.get(f"{m}_diff", np.nan) for s in summary])
        lo = np.array([s.get(f"{m}_lo", np.nan) for s in summary])
        hi = np.array([s.get(f"{m}_hi", np.nan) for s in summary])
        ax.errorbar(xs, d, yerr=[np.nan_to_num(d - lo), np.nan_to_num(hi - d)], marker="o", capsize=4,
                    color=color, label=m)
    ax.axhline(0, color="gray", lw=1, ls="--")
    ax.set_xscale("log")
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.set_xlabel({"data_size": "training images", "steps": "optimizer steps"}.get(control, control))
    ax.set_ylabel("LaCLIP − CLIP (points)")
    ax.set_title(f"The gap against {control.replace('_', ' ')} (95% t-interval over seeds)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def phase_figure(summary: list[dict], metrics=("color_shape_top1", "shape_top1", "color_top1"),
                 paper_epochs: tuple[float, float] = PAPER_EPOCHS):
    """The data_epochs phase diagram: LaCLIP − CLIP (paired mean over (world, seed) pairs) on a grid of training
    images (rows) x passes per image (columns), one panel per metric (colour+shape, shape and colour apart).
    A cell's text is the mean and its 95% interval; a cell whose interval includes 0 is hatched. The paper's
    regime (a fixed ~30-40 passes) is outlined."""
    cells = {tuple(int(x) for x in s["setting"].split(" / ")[0].split("x")): s for s in summary}
    ns, es = sorted({n for n, _ in cells}), sorted({e for _, e in cells})
    ms = [m for m in metrics if any(f"{m}_diff" in s for s in summary)]
    fig = Figure(figsize=(3.6 * max(1, len(ms)) + 0.6, 0.9 * len(ns) + 1.8), layout="constrained")
    axes = fig.subplots(1, max(1, len(ms)), squeeze=False)[0]
    for ax, m in zip(axes, ms):
        grid = np.full((len(ns), len(es)), np.nan)
        for (n, e), s in cells.items():
            grid[ns.index(n), es.index(e)] = s.get(f"{m}_diff", np.nan)
        bound = max(1.0, float(np.nanmax(np.abs(grid)))) if np.isfinite(grid).any() else 1.0
        image = ax.imshow(grid, cmap="RdBu", vmin=-bound, vmax=bound, origin="lower", aspect="auto")
        for (n, e), s in cells.items():
            i, j = ns.index(n), es.index(e)
            if f"{m}_diff" not in s:
                continue
            lo, hi = s[f"{m}_lo"], s[f"{m}_hi"]
            text = f"{s[f'{m}_diff']:+.1f}" + ("" if math.isnan(lo) else f"\n[{lo:+.1f}, {hi:+.1f}]")
            ax.text(j, i, text, ha="center", va="center", fontsize=7)
            if math.isnan(lo) or lo <= 0 <= hi:
                ax.add_patch(_hatch(j, i))
        inside = [j for j, e in enumerate(es) if paper_epochs[0] <= e <= paper_epochs[1]]
        if inside:
            ax.add_patch(Rectangle((min(inside) - 0.5, -0.5), len(inside), len(ns), fill=False, lw=2.2,
                                   ec="black"))
        ax.set_xticks(range(len(es)), [str(e) for e in es])
        ax.set_yticks(range(len(ns)), [f"{n:,}" for n in ns])
        ax.set_xlabel("passes per image (epochs)")
        ax.set_ylabel("training images")
        ax.set_title(f"LaCLIP − CLIP: {m}", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(f"Gain against data size at fixed epochs (hatched: 95% interval includes 0; outlined: the "
                 f"paper's ~{paper_epochs[0]}-{paper_epochs[1]} epochs)", fontsize=9)
    return fig


def ablation_figure(rows: list[dict], metric: str):
    """One panel per ablation: `metric` mean ± std per setting (seeds as dots); CLIP's level dashed."""
    ablations = list(dict.fromkeys(r["ablation"] for r in rows))
    widths = [max(2.6, 0.8 * len({r["label"] for r in rows if r["ablation"] == a}) + 1.2) for a in ablations]
    fig = Figure(figsize=(sum(widths), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(ablations), width_ratios=widths, sharey=True))
    for ax, a in zip(axes, ablations):
        mine = [r for r in rows if r["ablation"] == a and r.get(metric) is not None]
        labels = list(dict.fromkeys(r["label"] for r in mine))
        vals = [[float(r[metric]) for r in mine if r["label"] == lab] for lab in labels]
        colors = ["tab:gray" if lab.split(" / ")[-1] == "clip" or lab in ("none", "0") else "tab:blue"
                  for lab in labels]
        xs, means = mean_std_bars(ax, vals, color=colors, alpha=0.8)
        for x, mean in zip(xs, means):
            ax.annotate(f"{mean:.1f}", (x, mean), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=9)
        base = [mean for lab, mean in zip(labels, means) if lab in ("none", "0")]
        if base:
            ax.axhline(base[0], color="tab:gray", ls="--", lw=1)
        ax.set_xticks(xs, labels, rotation=30, ha="right", fontsize=9)
        ax.tick_params(axis="y", labelsize=9)
        ax.set_title(a, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(metric)
    n_seeds = max((len(v) for v in vals), default=1) if ablations else 1
    spread = "mean ± std over seeds, dots are seeds" if n_seeds > 1 else "one seed: no spread"
    fig.suptitle(f"Ablations: {metric} ({spread}; gray and dashed: CLIP)", fontsize=10)
    return fig


def _hatch(j: int, i: int):
    return Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", ec="gray", lw=0)


@holds_folder("out_dir")
def ablate(seeds: list[int], out_dir: str | Path, ablations: list[str] | str = "all",
           controls: list[str] | str = (), preset: str = EXPERIMENT_PRESET, overrides: list[str] | dict | None = None,
           policy: str = "laclip", llm_model: str = "", bt_models: str = "", jobs: int = 0,
           progress: bool = True, command: str = "", skip: list[str] = (), worlds: list[int] = (0,),
           gpus=()) -> list[dict]:
    """Run the grid over `worlds` x `seeds` and write the outputs (see the module docstring) -> the summary rows.
    `gpus`: one GPU per job (`utils.parallel_map`)."""
    points, skipped = full_grid(policy, llm_model, bt_models, ablations, controls, skip)
    if not points:
        raise ConfigError("ablate: nothing to run (no ablation and no control named)")
    for a, v, why in skipped:
        print(f"ablate: {a}={v} skipped: {why}", flush=True)
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    rows = run_grid(points, seeds, out_dir, preset, overrides, jobs, progress, worlds, gpus)
    return write_outputs(rows, out_dir, time.perf_counter() - t0, _cpu_seconds() - cpu0, command,
                         preset=preset, overrides=overrides)


def _cpu_seconds() -> float:
    """User + sys CPU time of this process and its finished children (the pool's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


__all__ = ["ABLATIONS", "CONTROLS", "ablate", "baseline_of", "control_points", "full_grid", "run_grid",
           "summarise", "t_interval", "write_outputs"]
