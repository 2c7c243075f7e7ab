"""The paper's five ablations and three controls on ShapeWorld, over seeds, with paired error bars.

    laclip-lite ablate --seeds 0,1,2 --out runs/ablations             # the full grid (notebook 04: ablations="all")
    laclip-lite ablate --ablations augment,num_rewrites --controls leak --seeds 0,1,2 --out DIR

The grid is one list of `sweep.AblationPoint`s (ablation, value, arm, overrides):

* the paper's ablations (`sweep.ablation_points`): text augmentation (none / EDA / back-translation when
  translation models are given / the LLM stand-in), number of rewrites 0-4, meta-pair source (each alone at
  M = 1, and all four), image backbone (ViT / ResNet) and text tower (scratch / pretrained MiniLM locked /
  unlocked), each of the last two with CLIP and LaCLIP;
* the controls none of the paper's anchors ran (`control_points`): `leak` - the stand-in with and without its
  class-name leak (`rewrite.leak_free`); `faithfulness` - stand-in rewrites with a controlled error rate
  (`rewrite.error_rate` 0 / 10 / 25 / 50%); `data_size` and `steps` - the LaCLIP - CLIP gap against the
  number of training images and of optimizer steps.

Every point is judged against **CLIP with the same model and data** (same seed): `baseline_of` drops what
only a rewrite policy reads. The table reports each setting's mean ± sample std over seeds, and the paired
per-seed difference to that baseline with a 95% t-interval over seeds (n - 1 degrees of freedom): with three
seeds the interval is wide (t = 4.30), which is the honest width. Every metric is reported for the `default`
templates and the `heldout` set; no setting here was chosen by a held-out score.

Outputs in `out_dir`: `runs/<run>/` (one training run each, resumable), `ablations.csv` (ablation, setting,
seed, one column per metric), `ablations.md` (the table, with the wall and CPU time), `ablations.png` and
`ablations_heldout.png` (one panel per ablation), and for data_size / steps `gap_<control>.png`.
"""
from __future__ import annotations

import csv
import math
import resource
import statistics
import time
from pathlib import Path

from laclip_lite.config import Config, ConfigError
from laclip_lite.constants import EXPERIMENT_PRESET
from laclip_lite.sweep import ABLATIONS, AblationPoint, ablation_points

MAIN_METRIC = "color_shape_top1"
HELDOUT = "@heldout"
# The controls: name -> values. The leak / faithfulness values are LaCLIP arms with the stand-in; data_size and
# steps run CLIP and LaCLIP at every value.
CONTROLS: dict[str, list] = {
    "leak": ["shapes", "shapes-leak-free"],
    "faithfulness": [0.0, 0.1, 0.25, 0.5],
    "data_size": [1000, 3000, 10000, 30000],    # values fixed before any run on tiny-scarce (whose own 3,000
    "steps": [250, 500, 800, 1600],              # and 800 made those points the ablations' runs, reused)
}
PAIRED = ("backbone", "text_tower", "data_size", "steps")   # ablations whose every value runs CLIP and LaCLIP
# Overrides only a rewrite policy reads: a CLIP run with or without them trains the same model.
REWRITE_ONLY = ("data.num_rewrites", "data.sources", "rewrite.")


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


def label(point: AblationPoint) -> str:
    """The row name in tables: the value, with the policy where an ablation runs both."""
    return f"{point.value} / {point.arm.split(':')[0]}" if point.ablation in PAIRED else str(point.value)


def baseline_of(point: AblationPoint) -> AblationPoint:
    """The CLIP point a point is judged against: the same model and data, the original captions only."""
    kept = {k: v for k, v in point.overrides.items() if not k.startswith(REWRITE_ONLY)}
    return AblationPoint(point.ablation, "baseline", "clip", kept)


# --- running ---------------------------------------------------------------------------------------------
def point_config(point: AblationPoint, seed: int, preset: str = EXPERIMENT_PRESET,
                 overrides: list[str] | dict | None = None) -> Config:
    """The run of a grid point: the preset, the grid's overrides, then the point's arm and overrides."""
    from laclip_lite.config import apply_overrides
    from laclip_lite.experiments import Arm, arm_config

    cfg = arm_config(Arm.parse(point.arm), seed, preset, overrides)
    apply_overrides(cfg, dict(point.overrides))
    if cfg.data.augment in ("shapes", "llm"):       # the sources a run draws from, in order (the same training)
        cfg.data.sources = cfg.data.sources[:cfg.data.num_rewrites]
    return cfg.validate()


def run_folder(cfg: Config) -> str:
    """A run's folder name under runs/, from its whole configuration: two points that train the same model
    on the same data (CLIP at num_rewrites=0 and augment=none, ViT in the backbone ablation...) share one run."""
    from laclip_lite.utils import stable_hash
    t = cfg.train
    return f"{t.policy}-{cfg.data.augment}-{stable_hash(cfg.to_dict(), length=10)}-s{t.seed}"


def run_grid(points: list[AblationPoint], seeds: list[int], out_dir: str | Path, preset: str = EXPERIMENT_PRESET,
             overrides: list[str] | dict | None = None, jobs: int = 0, progress: bool = True,
             gpus=()) -> list[dict]:
    """Train every distinct run of the grid and its baselines (finished runs are reused) -> one row per
    (point, seed): ablation, setting, seed, every metric, `run` (its folder under runs/), and `baseline/<key>`
    of its CLIP run."""
    from laclip_lite.experiments import auto_jobs
    from laclip_lite.sweep import run_configs

    out_dir = Path(out_dir)
    configs, pairs = {}, {}                 # folder -> Config (each once); (point, seed) -> (run, baseline)
    for i, pt in enumerate(points):
        for seed in seeds:
            cfgs = point_config(pt, seed, preset, overrides), point_config(baseline_of(pt), seed, preset, overrides)
            pairs[i, seed] = tuple(run_folder(c) for c in cfgs)    # a bad parameter fails before any run
            configs.update({run_folder(c): c for c in cfgs})
    (out_dir / "runs").mkdir(parents=True, exist_ok=True)
    results = run_configs([(out_dir / "runs" / name, cfg) for name, cfg in configs.items()],
                          jobs=jobs or auto_jobs(runs=len(configs), gpus=gpus), progress=progress, gpus=gpus)
    metrics = {name: results[out_dir / "runs" / name] for name in configs}
    rows = []
    for i, pt in enumerate(points):
        for seed in seeds:
            run, base = pairs[i, seed]
            row = {"ablation": pt.ablation, "setting": label(pt), "seed": seed, **metrics[run], "run": run,
                   "baseline/run": base}
            row.update({f"baseline/{k}": v for k, v in metrics[base].items() if isinstance(v, (int, float))})
            rows.append(row)
    return rows


# --- statistics ------------------------------------------------------------------------------------------
def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): a t-interval over the values (n - 1 degrees of freedom); nan bounds for n < 2."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return mean, math.nan, math.nan
    from scipy.stats import t

    half = t.ppf(0.5 + level / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return mean, mean - half, mean + half


def summarise(rows: list[dict], metrics: list[str]) -> list[dict]:
    """One row per (ablation, setting): seeds, `<m>` mean, `<m>_std`, and the paired difference to the CLIP
    baseline, `<m>_diff`, `<m>_lo`, `<m>_hi` (95% t-interval over seeds; absent where the row is CLIP itself)."""
    out = []
    for key in dict.fromkeys((r["ablation"], r["setting"]) for r in rows):
        mine = [r for r in rows if (r["ablation"], r["setting"]) == key]
        s = {"ablation": key[0], "setting": key[1], "seeds": len(mine)}
        for m in metrics:
            vals = [r[m] for r in mine if r.get(m) is not None]
            if not vals:
                continue
            s[m] = statistics.fmean(vals)
            s[f"{m}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
            diffs = [r[m] - r[f"baseline/{m}"] for r in mine if r.get(m) is not None and f"baseline/{m}" in r]
            if diffs and not is_baseline(key[1]):
                s[f"{m}_diff"], s[f"{m}_lo"], s[f"{m}_hi"] = t_interval(diffs)
        out.append(s)
    return out


def is_baseline(setting: str) -> bool:
    """A setting that is CLIP itself (its difference to CLIP is zero by construction)."""
    return setting in ("none", "0") or setting.endswith(" / clip")


def _cell(s: dict, m: str) -> str:
    if m not in s:
        return "-"
    return f"{s[m]:.1f}" if s["seeds"] < 2 else f"{s[m]:.1f} ± {s[m + '_std']:.1f}"


def _diff_cell(s: dict, m: str) -> str:
    if f"{m}_diff" not in s:
        return "-"
    d, lo, hi = s[f"{m}_diff"], s[f"{m}_lo"], s[f"{m}_hi"]
    return f"{d:+.1f}" if math.isnan(lo) else f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]"


def markdown(summary: list[dict], metric: str = MAIN_METRIC) -> str:
    """The table: per setting, `metric` and its paired difference to CLIP, default and held-out templates."""
    held = metric + HELDOUT
    head = (f"| ablation | setting | seeds | {metric} | Δ vs CLIP [95% CI] | {held} | Δ vs CLIP [95% CI] |\n"
            "|---|---|---:|---:|---:|---:|---:|\n")
    return head + "".join(
        f"| {s['ablation']} | {s['setting']} | {s['seeds']} | {_cell(s, metric)} | {_diff_cell(s, metric)} | "
        f"{_cell(s, held)} | {_diff_cell(s, held)} |\n" for s in summary)


def write_outputs(rows: list[dict], out_dir: str | Path, seconds: float, cpu_seconds: float, command: str = "",
                  metric: str = MAIN_METRIC, preset: str = EXPERIMENT_PRESET,
                  overrides: list[str] | dict | None = None) -> list[dict]:
    """`ablations.csv`, `ablations.md`, the figures -> the summary rows."""
    from laclip_lite.sweep import ablation_figure

    out_dir = Path(out_dir)
    metric_cols = [k for k in dict.fromkeys(k for r in rows for k in r)
                   if k not in ("ablation", "setting", "seed") and not k.startswith("baseline/")]
    with open(out_dir / "ablations.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["ablation", "setting", "seed", *metric_cols], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    summary = summarise(rows, [metric, metric + HELDOUT, "shape_top1", "shape_top1" + HELDOUT])
    train = {r[f"{p}run"]: r[f"{p}train_seconds"] for r in rows for p in ("", "baseline/")   # a run counts once
             if f"{p}train_seconds" in r}
    seeds = sorted({r["seed"] for r in rows})
    text = (f"Zero-shot top-1 (%) on the ShapeWorld test split, mean ± sample std over seeds {seeds}; "
            "Δ: the paired per-seed difference to CLIP with the same model and data, mean and 95% t-interval "
            "over seeds (n - 1 degrees of freedom). `@heldout`: the template set never used for a choice.\n\n"
            + markdown(summary, metric)
            + f"\nThis command: wall time {seconds:.0f} s, CPU time {cpu_seconds:.0f} s (user + sys, all processes; "
            f"runs finished earlier were reused, not retrained). The {len(train)} distinct runs trained for "
            f"{sum(train.values()):.0f} s in all (train_seconds, wall, each run on its own)"
            + (f"; command: `{command}`" if command else "") + ".\n")
    if any(r["ablation"] == "leak" for r in rows):
        text += "\n" + leak_table(preset, overrides)
    (out_dir / "ablations.md").write_text(text)
    fig_rows = [{**r, "label": r["setting"]} for r in rows]
    for m, name in ((metric, "ablations.png"), (metric + HELDOUT, "ablations_heldout.png")):
        if any(m in r for r in rows):
            ablation_figure(fig_rows, m).savefig(out_dir / name, dpi=110, bbox_inches="tight")
    for control in ("data_size", "steps"):
        mine = [s for s in summary if s["ablation"] == control and s["setting"].endswith("/ laclip")]
        if mine:
            gap_figure(mine, control, metric).savefig(out_dir / f"gap_{control}.png", dpi=110, bbox_inches="tight")
    return summary


def leak_table(preset: str = EXPERIMENT_PRESET, overrides: list[str] | dict | None = None) -> str:
    """How often the zero-shot class names (`rewrite.shapes.CLASS_WORDS`) appear in the run's training captions
    and in the stand-in's rewrites of them, with and without `rewrite.leak_free` (Markdown)."""
    from laclip_lite.config import build_config
    from laclip_lite.data.dataset import shapeworld_split
    from laclip_lite.rewrite.shapes import class_name_leak, rewrite_shape_caption

    cfg = build_config(preset, overrides)
    captions = shapeworld_split(cfg, "train").captions
    rows = [("original captions", class_name_leak(captions))]
    for name, free in (("stand-in rewrites", False), ("stand-in rewrites, leak-free", True)):
        texts, caps = [], []
        for style in cfg.data.sources:
            texts += [rewrite_shape_caption(c, style, cfg.rewrite.seed, leak_free=free)[0] for c in captions]
            caps += captions
        rows.append((name, class_name_leak(caps, texts)))
    lines = ["| texts | with a class name (%) | distinct class names per text | class name the caption did not "
             "write (%) |", "|---|---:|---:|---:|"]
    for name, r in rows:
        pre = "" if "texts_with_class_name" in r else "rewrite_"
        unlicensed = f"{r['unlicensed']:.1f}" if "unlicensed" in r else "-"
        lines.append(f"| {name} | {r[pre + 'texts_with_class_name']:.1f} | {r[pre + 'class_names_per_text']:.2f} | "
                     f"{unlicensed} |")
    return (f"Class names (shape and colour words of the zero-shot prompts) in the {len(captions)} training "
            "captions and their stand-in rewrites (one per source):\n\n" + "\n".join(lines) + "\n")


def gap_figure(summary: list[dict], control: str, metric: str = MAIN_METRIC):
    """LaCLIP - CLIP (paired mean, 95% t-interval) against the control's value, default and held-out templates."""
    import numpy as np
    from matplotlib.figure import Figure

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


def ablate(seeds: list[int], out_dir: str | Path, ablations: list[str] | str = "all",
           controls: list[str] | str = (), preset: str = EXPERIMENT_PRESET, overrides: list[str] | dict | None = None,
           policy: str = "laclip", llm_model: str = "", bt_models: str = "", jobs: int = 0,
           progress: bool = True, command: str = "", skip: list[str] = (), gpus=()) -> list[dict]:
    """Run the grid over `seeds` and write the outputs (see the module docstring) -> the summary rows."""
    points, skipped = full_grid(policy, llm_model, bt_models, ablations, controls, skip)
    if not points:
        raise ConfigError("ablate: nothing to run (no ablation and no control named)")
    for a, v, why in skipped:
        print(f"ablate: {a}={v} skipped: {why}", flush=True)
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    rows = run_grid(points, seeds, out_dir, preset, overrides, jobs, progress, gpus)
    return write_outputs(rows, out_dir, time.perf_counter() - t0, _cpu_seconds() - cpu0, command,
                         preset=preset, overrides=overrides)


def _cpu_seconds() -> float:
    """User + sys CPU time of this process and its finished children (the pool's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


__all__ = ["ABLATIONS", "CONTROLS", "ablate", "baseline_of", "control_points", "full_grid", "run_grid",
           "summarise", "t_interval", "write_outputs"]
