"""The machinery every lesson shares: checked parameters, the output folder, showing and saving what a step found.

    lesson = lesson01.start(globals())        # each lesson module's start() calls `start` here
    ...
    lesson01.finish(lesson)                   # <out_dir>/metrics.json next to the notebook

Figures are built with `matplotlib.figure.Figure`, saved under `<out_dir>/figures/` and displayed as PNG, so a
notebook run headless with papermill keeps every figure in its outputs. Nothing here opens a window. Widgets
(`ipywidgets`) appear only when the parameter `interactive` is True; otherwise each lesson draws the same views
as static figures.
"""
from __future__ import annotations

import copy
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from laclip_lite.config import Config, build_config
from laclip_lite.constants import EVAL_TASKS
from laclip_lite.course.params import ParameterError, check_parameters, config_overrides, run_by_papermill
from laclip_lite.data.dataset import held_out_splits, shapeworld_split
from laclip_lite.experiments import TEMPLATE_SETS, over_seeds
from laclip_lite.plots import mean_std_bars, smallest_text_pt
from laclip_lite.rewrite.job import rewrite_captions
from laclip_lite.rewrite.prepare import rewrite_cache_dir, rewrite_config
from laclip_lite.utils import atomic_write_text, markdown_table, resolve_device

HEADLINE = ("color_shape_top1", "color_shape_top1@heldout", "shape_top1", "color_top1", "i2t_R@1", "t2i_R@1")


@dataclass
class Lesson:
    """One run of one notebook: its checked parameters, output folder, and what it reports."""

    notebook: str
    params: dict
    out_dir: Path
    started: float = field(default_factory=time.perf_counter)
    progress: bool = True                           # progress bars (off headless: they'd be saved at 0%)
    metrics: dict = field(default_factory=dict)     # flat numbers: the sweep table's columns
    report: list = field(default_factory=list)      # items for REPORT.md: {"title", "markdown" | "figure", "key"}

    def overrides(self, extra: dict | None = None) -> dict:
        """The config overrides the parameters imply (`params.config_overrides`: the config-key parameters such
        as steps, seed, data, eval_datasets, then `overrides`), then `extra`."""
        return {**config_overrides(self.notebook, self.params), **(extra or {})}

    def config(self, extra: dict | None = None) -> Config:
        return build_config(self.params["preset"], self.overrides(extra))

    def figure(self, fig, name: str, title: str = "", key: bool = False) -> Path:
        """Save `fig` as `figures/<name>.png`, show it, and remember it for the report."""
        path = self.out_dir / "figures" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")
        display_png(path.read_bytes())
        with Image.open(path) as png:
            width = png.size[0]
        self.report.append({"title": title or name, "figure": str(path.relative_to(self.out_dir)), "key": key,
                            "smallest_text_pt": round(smallest_text_pt(fig, width), 1)})   # as shown (plots.py)
        return path

    def markdown(self, text: str, title: str = "", key: bool = False) -> None:
        """Show Markdown (a table, a note); `key` items go into the demo's REPORT.md."""
        display_markdown(text)
        if title or key:
            self.report.append({"title": title, "markdown": text, "key": key})


def in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def display_markdown(text: str) -> None:
    if in_kernel():
        from IPython.display import Markdown, display
        display(Markdown(text))
    else:
        print(text)


def display_png(data: bytes) -> None:
    if in_kernel():
        from IPython.display import Image, display
        display(Image(data=data))


def live_output(controls: list, draw):
    """A widget Output showing `draw()` (a matplotlib figure, or a Markdown string), drawn now and again whenever
    one of the `controls` changes value: the one mechanism behind every lesson's widget."""
    import ipywidgets as W
    from IPython.display import Image, Markdown, display

    out = W.Output()

    def redraw(_=None) -> None:
        view = draw()
        with out:
            out.clear_output(wait=True)
            display(Markdown(view) if isinstance(view, str) else Image(data=fig_png(view)))

    for control in controls:
        control.observe(redraw, names="value")
    redraw()
    return out


def show_widget(ui):
    """Display a lesson's widget when running in a kernel; return it either way."""
    if in_kernel():
        from IPython.display import display
        display(ui)
    return ui


def fig_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def project_root() -> Path:
    """The checkout holding the package (where `runs/` lives), or the working directory for an install."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").exists() else Path.cwd()


def start(notebook: str, namespace: dict, check=None) -> Lesson:
    """Check the notebook's parameters (see `laclip_lite.course.params`), validate the config they make (and
    `check(lesson)`, the lesson's own checks), then create the output folder. Every problem stops the notebook
    here, before any work, with a message naming it."""
    params = check_parameters(notebook, namespace)     # types, allowed values, and the config they make
    data = params.get("data", "shapeworld")
    if data != "shapeworld":
        if not data.startswith("hf:") and not Path(data).expanduser().exists() and "*" not in data \
                and "{" not in data:
            raise ParameterError(f"data: {data!r} is neither 'shapeworld' nor an existing path")
    resolve_device(params["device"])                     # "cuda" on a machine without one fails here
    out_dir = Path(params["out_dir"]).expanduser() if params["out_dir"] else \
        project_root() / "runs" / "notebooks" / notebook
    lesson = Lesson(notebook, params, out_dir.resolve(), progress=not run_by_papermill(namespace))
    if check is not None:
        check(lesson)
    lesson.out_dir.mkdir(parents=True, exist_ok=True)
    device = str(resolve_device(params["device"]))
    lesson.markdown(f"**{notebook}** · preset `{params['preset']}` · device `{device}` · seed {params['seed']}"
                    f" · writing to `{lesson.out_dir}`")
    return lesson


def finish(lesson: Lesson) -> dict:
    """Write `<out_dir>/metrics.json`: parameters, the run's numbers, report items, wall time."""

    result = {"notebook": lesson.notebook, "parameters": lesson.params, "metrics": lesson.metrics,
              "report": lesson.report, "wall_seconds": round(time.perf_counter() - lesson.started, 1),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_text(lesson.out_dir / "metrics.json", json.dumps(result, indent=1, default=str))
    lines = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in lesson.metrics.items())
    display_markdown(f"Wrote `{lesson.out_dir / 'metrics.json'}` ({result['wall_seconds']} s).\n\n"
                      f"| metric | value |\n|---|---:|\n{lines}")
    return result


def _fmt(v) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    """`utils.markdown_table` of dict rows: every key as a column unless given, numbers right-aligned, floats to
    one decimal from 10 up and two below."""

    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    numeric = [c for c in columns if any(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool)
                                         for r in rows)]

    def cell(v) -> str:
        return (f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}") if isinstance(v, float) else str(v)

    return markdown_table(rows, columns, right=numeric, cell=cell)


def thumbs_row(fig, gs_row, images) -> None:
    for i, img in enumerate(images):
        ax = fig.add_subplot(gs_row[i])
        ax.imshow(hwc(img), interpolation="nearest")
        ax.set_axis_off()


def hwc(img) -> np.ndarray:
    a = img.detach().cpu().numpy() if hasattr(img, "detach") else np.asarray(img)
    return a.transpose(1, 2, 0) if a.ndim == 3 and a.shape[0] in (1, 3) else a


def warm_rewrite_cache(cfg: Config, progress: bool) -> None:
    """Make the world's stand-in rewrites (every run's tokenizer is trained on them) with our own progress
    setting, so the library's later calls find them cached and print nothing. Only a source rendered in memory,
    the one with held-out splits of its own (`held_out_splits`: ShapeWorld), has its rewrites made from its
    rendered captions; file data reads or rewrites its own (`rewrite.prepare`)."""

    if not held_out_splits(cfg) or cfg.data.rewrites_dir:
        return

    captions = shapeworld_split(cfg, "train").captions       # rendered once per kernel (dataset.shapeworld_split)
    for augment in dict.fromkeys(["shapes", cfg.data.augment]):
        if augment not in ("shapes", "eda"):
            continue                             # llm / backtranslate need a model: the library reports those
        c = copy.deepcopy(cfg)
        c.data.augment = augment
        rewrite_captions(captions, rewrite_cache_dir(c, captions), rewrite_config(c), progress=progress)


def held_out_metrics(cfg: Config) -> list[str]:
    """The columns a run scores on its source's own test split (`held_out_splits`; the run's evaluation sets):
    zero-shot top-1 per task and template set, retrieval recall@1/5/10 both ways, and the final training loss;
    [] when the source has none (file data is scored on eval.datasets: `<name>/<metric>`, known once scored)."""

    if "test" not in held_out_splits(cfg):
        return []
    zero_shot = [f"{task}_top1" + ("" if s == "default" else f"@{s}") for task in EVAL_TASKS for s in TEMPLATE_SETS]
    return zero_shot + [f"{d}_R@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)] + ["final_loss"]


def seeds(lesson: Lesson) -> list[int]:
    return list(lesson.params["seeds"] or [lesson.params["seed"]])


def over_seeds_caption(lesson: Lesson) -> str:
    return over_seeds(len(seeds(lesson)))


def jobs(lesson: Lesson) -> int:
    """The `jobs` parameter; 0 = auto: one run at a time on CUDA, two on a CPU with 2+ cores. On a small shared
    CPU two single-threaded runs side by side train ~1.5x faster than one run on two threads."""

    if lesson.params["jobs"] > 0:
        return lesson.params["jobs"]
    return 1 if resolve_device(lesson.params["device"]).type == "cuda" else max(1, min(2, os.cpu_count() or 1))


def number(v: str):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return int(f) if f.is_integer() and "." not in v else f


def bars(rows: list[dict], metrics: list[str], group: str, title: str = "", ncols: int = 3):
    """One panel per metric (`ncols` per row): `plots.mean_std_bars` per group value (the mean over seeds, the
    sample std as an error bar, seeds as dots; one seed has no spread). ValueError when no row has a metric."""
    metrics = [m for m in metrics if any(r.get(m) not in (None, "") for r in rows)]
    if not metrics:
        raise ValueError("bars: none of the rows has a metric to draw")
    names = list(dict.fromkeys(str(r[group]) for r in rows))
    ncols = min(ncols, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = Figure(figsize=(min(9.8, max(3.2, 0.75 * len(names) + 1.4) * ncols), 3.0 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes[len(metrics):]:
        ax.set_axis_off()
    for ax, m in zip(axes, metrics):
        vals = [[float(r[m]) for r in rows if str(r[group]) == g and r.get(m) not in (None, "")] for g in names]
        xs, means = mean_std_bars(ax, vals)
        for x, mean in zip(xs, means):
            ax.annotate(f"{mean:.1f}" if abs(mean) >= 10 else f"{mean:.2f}", (x, mean), xytext=(0, 3),
                        textcoords="offset points", ha="center", fontsize=9)
        ax.set_xticks(xs, names, rotation=30 if len(names) > 3 else 0, ha="right" if len(names) > 3 else "center",
                      fontsize=9)
        ax.tick_params(axis="y", labelsize=9)
        ax.set_title(m, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig

