"""Lesson 04, ablations: the plumbing behind notebooks/04_ablations.ipynb.

The notebook reads the sweep's table with pandas and plots one ablation in its own cells, checked against the
lesson's aggregated table; the functions here build the grid (a setting shared by two ablations runs once), train
and score every run, aggregate seeds, and draw the figures and the ablation/metric chooser widget.
"""
from __future__ import annotations

import csv
import difflib
from pathlib import Path

from laclip_lite import ablations
from laclip_lite.ablations import ablation_figure, ablation_points, point_config
from laclip_lite.config import Config
from laclip_lite.course import common
from laclip_lite.course.common import Lesson, over_seeds_caption, seeds, table
from laclip_lite.course.heartbeat import heartbeat
from laclip_lite.course.sweep import ablation_sweep_yaml
from laclip_lite.experiments import run_configs, summarise, summary_cell
from laclip_lite.plots import bar_with_errors
from laclip_lite.utils import markdown_table

HEARTBEAT_S = 30.0    # seconds between progress lines of the trainings (worker processes report nowhere else)

NOTEBOOK = "04_ablations"


def start(namespace: dict) -> Lesson:
    """Check the parameters cell (a typo or a wrong type stops here) and make `out_dir`."""
    return common.start(NOTEBOOK, namespace, check=_check)


def _check(lesson: Lesson) -> None:
    p = lesson.params
    ablation_points(p["ablations"], p["values"], p["policy"], p["llm_model"], p["bt_models"])   # names, values
    reported = common.held_out_metrics(lesson.config())     # [] on file data: its metrics are known once scored
    if reported and p["metric"] not in reported:
        close = difflib.get_close_matches(p["metric"], reported, n=1)
        raise common.ParameterError(f"metric: {p['metric']!r} is not a metric the runs report"
                                    + (f" (did you mean {close[0]}?)" if close else "")
                                    + f"; allowed: {', '.join(reported)}")


finish = common.finish


def ablation_grid(lesson: Lesson):
    """The grid: one run per distinct configuration (a value shared by two ablations runs once), and the same
    grid written as a papermill sweep of notebook 03 for running it at scale."""
    p = lesson.params
    points, skipped = ablation_points(p["ablations"], p["values"], p["policy"], p["llm_model"], p["bt_models"])
    runs = _ablation_runs(lesson, points)
    rows = [{"ablation": pt.ablation, "value": pt.value, "arm": pt.arm,
             "overrides": ", ".join(f"{k}={v}" for k, v in pt.overrides.items()) or "-",
             "run": runs[i][0][0].name} for i, pt in enumerate(points)]
    unique = len({r["run"] for r in rows})
    note = "".join(f"\n- skipped {a}={v}: {why}" for a, v, why in skipped)
    yaml_path = lesson.out_dir / "ablations_sweep.yaml"
    yaml_path.write_text(ablation_sweep_yaml(points, p, seeds(lesson)))
    lesson.markdown(f"{len(points)} grid points, {unique} distinct runs × {len(seeds(lesson))} seed(s) = "
                    f"{unique * len(seeds(lesson))} trainings of {lesson.config().train.steps} steps.{note}\n\n"
                    + table(rows) + f"\nThe same grid as a papermill sweep of notebook 03 (on many machines, "
                    f"`--shard i/n` each):\n\n```bash\nlaclip-lite sweep notebooks/03_laclip_training.ipynb "
                    f"--grid {yaml_path} --out runs/ablations --shard 0/4\n```", "The grid", key=True)
    return points


def run_config(lesson: Lesson, point, seed: int | None = None) -> tuple[Path, Config]:
    """(run folder, config) of one grid point's run for `seed` (default: the notebook's `seed`): the config is
    `ablations.point_config` on the notebook's preset and overrides, the folder `out_dir/runs/` +
    `ablations.run_folder` (its whole configuration hashed), the naming `laclip-lite ablate --out out_dir` uses:
    identical configurations (augment=none and num_rewrites=0, say) share one folder, and so one training, and
    the CLI and this notebook reuse each other's runs."""
    seed = lesson.params["seed"] if seed is None else seed
    cfg = point_config(point, seed, lesson.params["preset"], lesson.overrides())
    return lesson.out_dir / "runs" / ablations.run_folder(cfg), cfg


def run_folder(lesson: Lesson, point, seed: int | None = None) -> Path:
    """The folder one grid point's run trains into (see `run_config`): equal folders, one training."""
    return run_config(lesson, point, seed)[0]


def _ablation_runs(lesson: Lesson, points) -> list[list[tuple[Path, Config]]]:
    """Per point, per seed: (run folder, config). Identical configurations share a folder."""
    return [[run_config(lesson, pt, seed) for seed in seeds(lesson)] for pt in points]


def run_ablations(lesson: Lesson, points) -> list[dict]:
    """Train and evaluate every distinct run (`experiments.run_configs`; finished runs are reused, also those
    `laclip-lite ablate` made into the same folder); one row per (point, seed)."""
    runs = _ablation_runs(lesson, points)
    unique = {d: cfg for per_seed in runs for d, cfg in per_seed}
    for cfg in unique.values():
        common.warm_rewrite_cache(cfg, lesson.progress)
    runs_steps = {d.name: (d, cfg.train.steps) for d, cfg in unique.items()}
    common.display_markdown(f"Training {len(unique)} distinct run(s), {common.jobs(lesson)} at a time; a progress "
                            f"line every {HEARTBEAT_S:.0f} s.")
    with heartbeat(runs_steps, every_s=HEARTBEAT_S):
        by_name = run_configs({d.name: cfg for d, cfg in unique.items()}, lesson.out_dir / "runs",
                              jobs=common.jobs(lesson), progress=lesson.progress)
    results = {d: by_name[d.name] for d in unique}
    rows = []
    for pt, per_seed in zip(points, runs):
        for d, cfg in per_seed:
            rows.append({"ablation": pt.ablation, "value": str(pt.value), "arm": pt.arm, "seed": cfg.train.seed,
                         "label": pt.label, **results[d]})
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(lesson.out_dir / "ablations_runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return rows


def ablation_table(lesson: Lesson, rows: list[dict]) -> str:
    """One aggregated table: every ablation's settings, the mean over seeds (± std with more than one)."""
    metric = plotted_metric(lesson, rows)
    cols = list(dict.fromkeys([metric, f"{metric}@heldout", "t2i_R@1", "i2t_R@1"]))
    cols = [c for c in cols if any(r.get(c) not in (None, "") for r in rows)]       # only what the runs have
    table_rows = []
    for ablation in dict.fromkeys(r["ablation"] for r in rows):
        mine = [{k: v for k, v in r.items() if k not in ("ablation", "value", "arm")} for r in rows
                if r["ablation"] == ablation]
        for s in summarise(mine, group="label"):
            table_rows.append({"ablation": ablation, "setting": s["label"], "seeds": s["seeds"],
                               **{c: summary_cell(s, c) for c in cols}})
            lesson.metrics[f"{ablation}/{s['label']}/{metric}"] = s.get(metric)
    text = markdown_table(table_rows, ["ablation", "setting", "seeds", *cols], right=["seeds", *cols], cell=str)
    (lesson.out_dir / "ablations.md").write_text(text)
    what = ("Zero-shot top-1 (%) on the ShapeWorld test split (`@heldout`: templates never tuned on) and retrieval "
            "R@1" if common.held_out_metrics(lesson.config()) else f"`{metric}` of every run")
    lesson.markdown(f"{what}; {over_seeds_caption(lesson)}.\n\n" + text, "Ablations", key=True)
    return text


def ablation_figures(lesson: Lesson, rows: list[dict]):
    """One panel per ablation: `metric` per setting (error bars only with several seeds); CLIP dashed."""
    lesson.figure(ablation_figure(rows, plotted_metric(lesson, rows)), "ablations", "Ablations", key=True)


def plotted_metric(lesson: Lesson, rows: list[dict]) -> str:
    """The `metric` parameter when the runs have it; else (file data without an evaluation set) the final loss."""
    metric = lesson.params["metric"]
    if any(r.get(metric) not in (None, "") for r in rows):
        return metric
    if metric != "final_loss" and not getattr(lesson, "_said_fallback", False):
        lesson.markdown(f"No run has `{metric}` (no evaluation set on this data): showing `final_loss` instead.")
        lesson._said_fallback = True
    return "final_loss"


def metrics_of(rows: list[dict]) -> list[str]:
    """The numeric columns of the run rows a figure can plot."""
    skip = {"seed", "step"}
    return [k for k in dict.fromkeys(k for r in rows for k in r)
            if k not in skip and any(isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)
                                     for r in rows)]


def bar_figure(frame, ablation: str, metric: str):
    """One ablation's settings as bars of `metric` from a pandas DataFrame of runs (`plots.bar_with_errors`)."""

    mine = frame[frame["ablation"] == ablation]
    several = mine.groupby("label")[metric].count().max() > 1
    spread = "mean ± std over seeds" if several else "one seed: no spread"
    return bar_with_errors(mine, metric, group="label", title=f"{ablation}: {metric} ({spread})")


def ablation_chooser(lesson: Lesson, frame):
    """Choose the ablation and the metric, see its bars. A widget when `interactive` is True; else the figure
    for every ablation at the notebook's metric."""
    rows = frame.to_dict("records")
    metric = plotted_metric(lesson, rows)
    ablations = list(dict.fromkeys(frame["ablation"]))
    if not lesson.params["interactive"]:
        for a in ablations:
            lesson.figure(bar_figure(frame, a, metric), f"chooser_{a}", f"{a}: {metric}")
        return None
    import ipywidgets as W

    metrics = [m for m in metrics_of(rows) if m not in ("train_seconds",)]
    pick_a = W.Dropdown(options=ablations, value=ablations[0], description="ablation")
    pick_m = W.Dropdown(options=metrics, value=metric if metric in metrics else metrics[0], description="metric")
    out = common.live_output([pick_a, pick_m], lambda: bar_figure(frame, pick_a.value, pick_m.value))
    return common.show_widget(W.VBox([W.HBox([pick_a, pick_m]), out]))

