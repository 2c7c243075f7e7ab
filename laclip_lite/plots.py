"""The figures the notebooks show. Every function returns a `matplotlib.figure.Figure` and shows nothing.

Figures are built without `pyplot`, so library code never opens a window, never needs a display, and a figure
returned into a Jupyter cell is drawn exactly once. In a notebook the returned figure displays itself; in a
script call `fig.savefig("out.png")`.

* `show_images`              a grid of images with (wrapped) captions.
* `similarity_heatmap`       texts x images cosine similarities with the images along the top
                             (the figure of openai/CLIP's "Interacting with CLIP").
* `zero_shot_topk`           one image and a bar chart of its top-k class probabilities; `topk_images` for many.
* `learning_curves`          metrics.jsonl rows of one or several runs, one panel per metric.
* `bar_with_errors`          mean +- std bars (seeds as dots) for compare / ablation tables; `mean_std_bars`
                             draws such bars on an axes of your own figure (the ablation panels).
* `loss_matrix_walkthrough`  logits -> softmax over rows (image->text) and over columns (text->image): the
                             two cross-entropies whose mean is the CLIP loss.
"""
from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Text

MIN_FONT_PT = 9.0     # the smallest text a figure may show, as seen in the notebook
DISPLAY_PX = 1000     # JupyterLab shows a wider PNG shrunk to its output area (~1000 px in a 1280-px window)


def smallest_text_pt(fig: Figure, width_px: float | None = None, display_px: float = DISPLAY_PX) -> float:
    """The smallest visible text of `fig`, in points as a student sees it: its font size, times the factor by
    which the notebook shrinks a saved PNG wider than `display_px` (`width_px`: the saved width; default: the
    figure's width at its dpi). inf when the figure has no text."""
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    if not sizes:
        return math.inf
    width = width_px if width_px is not None else fig.get_figwidth() * fig.dpi
    return min(sizes) * min(1.0, display_px / width)


def _array(x) -> np.ndarray:
    """torch tensor / list / array -> numpy (detached, on the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _image(img) -> np.ndarray:
    """One image as [3,H,W] or [H,W,3]; uint8 0..255 or float 0..1 (0..255 floats are rescaled) -> HWC for imshow."""
    a = _array(img)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim != 3:
        raise ValueError(f"expected an image [3,H,W] or [H,W,3], got shape {a.shape}")
    if a.dtype == np.uint8:
        return a
    a = a.astype(np.float32)
    return np.clip(a / 255.0 if a.max() > 1.0 else a, 0.0, 1.0)


def _grid(n: int, ncols: int | None, width: float, height: float) -> tuple[Figure, list]:
    ncols = max(1, min(n, ncols or 8))
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(ncols * width, nrows * height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_axis_off()
    return fig, axes[:n]


def show_images(images, captions: Sequence[str] | None = None, n: int = 16, ncols: int | None = 4,
                title: str | None = None, wrap: int = 26) -> Figure:
    """A grid of the first `n` images, each titled with its caption (wrapped at `wrap` characters)."""
    n = min(n, len(images))
    if n == 0:
        raise ValueError("show_images got no images")
    fig, axes = _grid(n, ncols, 2.3, 2.9 if captions is not None else 2.3)
    for i, ax in enumerate(axes):
        ax.imshow(_image(images[i]), interpolation="nearest")
        ax.set_axis_off()
        if captions is not None:
            ax.set_title(textwrap.fill(str(captions[i]), wrap), fontsize=MIN_FONT_PT)
    if title:
        fig.suptitle(title)
    return fig


def similarity_heatmap(sim, images=None, texts: Sequence[str] | None = None, vmin: float | None = None,
                       vmax: float | None = None, title: str = "Cosine similarity between text and image features",
                       annotate: bool = True) -> Figure:
    """Texts (rows) x images (columns) cosine similarity, the images drawn above their columns.

    `sim[t, i]` = cos(text t, image i), e.g. `text_features @ image_features.T`.
    """
    s = _array(sim).astype(float)
    if s.ndim != 2:
        raise ValueError(f"similarity_heatmap expects a 2-D [texts, images] matrix, got shape {s.shape}")
    n_txt, n_img = s.shape
    if images is not None and len(images) != n_img:
        raise ValueError(f"similarity_heatmap: {len(images)} images for {n_img} columns")
    if texts is not None and len(texts) != n_txt:
        raise ValueError(f"similarity_heatmap: {len(texts)} texts for {n_txt} rows")
    fig = Figure(figsize=(min(9.6, max(5.0, 0.7 * n_img + 4.0)), max(3.5, 0.6 * n_txt + 2.0)), layout="constrained")
    ax = fig.add_subplot()
    mappable = ax.imshow(s, vmin=vmin, vmax=vmax, cmap="viridis")
    ax.set_yticks(range(n_txt), [textwrap.shorten(str(t), 48) for t in texts] if texts is not None
                  else [f"text {t}" for t in range(n_txt)], fontsize=MIN_FONT_PT)
    ax.set_xticks([] if images is not None else range(n_img))
    if images is not None:
        for i, img in enumerate(images):
            ax.imshow(_image(img), extent=(i - 0.5, i + 0.5, -1.6, -0.6), origin="lower", interpolation="nearest")
    if annotate and n_txt * n_img <= 400:
        lo, hi = np.nanmin(s), np.nanmax(s)
        for y in range(n_txt):
            for x in range(n_img):
                dark = s[y, x] < (lo + hi) / 2
                ax.text(x, y, f"{s[y, x]:.2f}", ha="center", va="center", fontsize=MIN_FONT_PT,
                        color="white" if dark else "black")
    for side in ("left", "top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_xlim(-0.5, n_img - 0.5)
    ax.set_ylim(n_txt - 0.5, -1.7 if images is not None else -0.5)
    fig.colorbar(mappable, ax=ax, shrink=0.7)
    ax.set_title(title)
    return fig


def _draw_topk(ax, probs: np.ndarray, classnames: Sequence[str], k: int, label: int | None) -> None:
    top = np.argsort(-probs)[:k]
    y = np.arange(len(top))
    colors = ["tab:green" if label is not None and c == label else "tab:blue" for c in top]
    ax.barh(y, probs[top], color=colors)
    ax.set_yticks(y, [classnames[c] for c in top], fontsize=MIN_FONT_PT)
    ax.tick_params(axis="x", labelsize=MIN_FONT_PT)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability", fontsize=MIN_FONT_PT)


def zero_shot_topk(probs, classnames: Sequence[str], image=None, k: int = 5, label: int | None = None,
                   title: str | None = None) -> Figure:
    """One image (optional) beside a bar chart of its `k` most probable classes; the true `label` in green.

    `probs` [C] for one image, e.g. a row of `metrics.class_probabilities(...)`.
    """
    p = _array(probs).astype(float).ravel()
    if len(p) != len(classnames):
        raise ValueError(f"zero_shot_topk: {len(p)} probabilities for {len(classnames)} class names")
    fig = Figure(figsize=(6.0 if image is not None else 4.0, 2.4), layout="constrained")
    axes = fig.subplots(1, 2 if image is not None else 1, squeeze=False).ravel()
    if image is not None:
        axes[0].imshow(_image(image), interpolation="nearest")
        axes[0].set_axis_off()
    _draw_topk(axes[-1], p, classnames, k, label)
    if title:
        fig.suptitle(title)
    return fig


def topk_images(images, probs, classnames: Sequence[str], k: int = 5, n: int = 8,
                labels: Sequence[int] | None = None, ncols: int = 2) -> Figure:
    """The openai/CLIP zero-shot figure: for each of the first `n` images, the image and its top-k bars."""
    p = _array(probs).astype(float)
    n = min(n, len(images), len(p))
    if n == 0:
        raise ValueError("topk_images got no images")
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(ncols * 4.8, nrows * 1.9), layout="constrained")
    axes = fig.subplots(nrows, 2 * ncols, squeeze=False, width_ratios=[1, 2] * ncols)
    for slot in range(nrows * ncols):
        img_ax, bar_ax = axes[slot // ncols, 2 * (slot % ncols)], axes[slot // ncols, 2 * (slot % ncols) + 1]
        img_ax.set_axis_off()
        if slot >= n:
            bar_ax.set_axis_off()
            continue
        img_ax.imshow(_image(images[slot]), interpolation="nearest")
        _draw_topk(bar_ax, p[slot], classnames, k, None if labels is None else int(labels[slot]))
    return fig


def _read_rows(source) -> list[dict]:
    """A list of metric rows, a metrics.jsonl path, or a run folder holding metrics.jsonl -> rows."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        path = path / "metrics.jsonl" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"metrics file not found: {path}")
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return list(source)


def learning_curves(runs, keys: Sequence[str] = ("loss",), x: str = "step", title: str | None = None) -> Figure:
    """One panel per metric in `keys`, one line per run.

    `runs` is one run (a list of metrics.jsonl rows, a metrics.jsonl path or a run folder) or a dict
    name -> run. Rows without a key are skipped for that key (evaluations are logged less often than loss).
    """
    named = {name: _read_rows(r) for name, r in runs.items()} if isinstance(runs, Mapping) else {"": _read_rows(runs)}
    keys = [keys] if isinstance(keys, str) else list(keys)
    seen = {k for rows in named.values() for row in rows for k in row}
    missing = [k for k in keys if k not in seen]
    if missing:
        raise ValueError(f"learning_curves: no row has {missing}; the rows have: {', '.join(sorted(seen))}")
    fig = Figure(figsize=(4.2 * len(keys), 3.2), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False).ravel()
    for ax, key in zip(axes, keys):
        for name, rows in named.items():
            pts = [(r[x], r[key]) for r in rows if key in r and x in r and r[key] is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o" if len(pts) < 12 else None, label=name or None)
        ax.set_xlabel(x)
        ax.set_title(key)
        ax.grid(alpha=0.3)
        if len(named) > 1:
            ax.legend(fontsize=MIN_FONT_PT)
    if title:
        fig.suptitle(title)
    return fig


def _lookup(row: Mapping, key: str) -> Any:
    """row[key], or a nested value by a path "zero_shot/color_shape/top1" (also with dots)."""
    if key in row:
        return row[key]
    for sep in ("/", "."):
        value: Any = row
        for part in key.split(sep):
            if not isinstance(value, Mapping) or part not in value:
                break
            value = value[part]
        else:
            return value
    return None


def bar_with_errors(table_rows, metric: str, group: str = "policy", ylabel: str | None = None,
                    title: str | None = None) -> Figure:
    """Mean +- standard deviation of `metric` per value of `group` (seeds as dots), in first-seen order.

    `table_rows` is a list of dicts (or a pandas DataFrame); std is the sample std (ddof=1) when a group has
    several rows, else 0. Rows without the metric are skipped.
    """
    if hasattr(table_rows, "to_dict"):
        table_rows = table_rows.to_dict("records")
    values: dict[str, list[float]] = {}
    for row in table_rows:
        v = _lookup(row, metric)
        if v is not None:
            values.setdefault(str(_lookup(row, group)), []).append(float(v))
    if not values:
        raise ValueError(f"bar_with_errors: no row has the metric {metric!r}")
    names = list(values)
    fig = Figure(figsize=(max(3.5, 1.1 * len(names) + 1.5), 3.4), layout="constrained")
    ax = fig.add_subplot()
    xs, means = mean_std_bars(ax, [values[g] for g in names])
    for x, g, mean in zip(xs, names, means):
        ax.annotate(f"{mean:.1f} (n={len(values[g])})", (x, 0), xytext=(0, 3),
                    textcoords="offset points", ha="center", fontsize=MIN_FONT_PT, color="black",
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.8, "linewidth": 0})
    ax.set_xticks(xs, names)
    ax.set_xlabel(group)
    ax.set_ylabel(ylabel or metric)
    ax.set_title(title or f"{metric}: mean ± std")
    ax.grid(axis="y", alpha=0.3)
    return fig


def mean_std_bars(ax, values: Sequence[Sequence[float]], color: str | Sequence[str] = "tab:blue",
                  alpha: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """On `ax`, one bar per group at x = 0, 1, ...: the mean of its values, an error bar of the sample std
    (ddof=1; 0 for a single value, which has no spread) and each value as a dot (one per seed). -> (xs, means)."""
    xs = np.arange(len(values))
    means = np.array([np.mean(v) for v in values])
    stds = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values])
    ax.bar(xs, means, yerr=stds, capsize=4, color=color, alpha=alpha)
    for x, v in zip(xs, values):
        ax.scatter(np.full(len(v), x), v, color="black", s=10, zorder=3)
    return xs, means


def _log_softmax(a: np.ndarray, axis: int) -> np.ndarray:
    shifted = a - a.max(axis=axis, keepdims=True)   # subtracting the max keeps exp() from overflowing
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def loss_matrix_walkthrough(image_features, text_features=None, logit_scale: float = 1.0,
                            texts: Sequence[str] | None = None) -> Figure:
    """The CLIP loss in three panels for a batch of N pairs (pair i = image i and text i, the diagonal):

    1. logits = logit_scale * image_features @ text_features.T (or pass the logits alone as the first argument);
    2. softmax along each row: image i's distribution over texts; the image->text loss is the mean of
       -log(diagonal);
    3. softmax along each column: text j's distribution over images; the text->image loss likewise.
    The CLIP loss is the mean of the two; the panel titles give all three numbers.
    """
    if text_features is None:
        logits = _array(image_features).astype(float)
    else:
        logits = logit_scale * _array(image_features).astype(float) @ _array(text_features).astype(float).T
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"loss_matrix_walkthrough expects N x N logits (N pairs), got shape {logits.shape}")
    n = logits.shape[0]
    rows, cols = np.exp(_log_softmax(logits, axis=1)), np.exp(_log_softmax(logits, axis=0))
    loss_i2t = float(-np.diag(_log_softmax(logits, axis=1)).mean())   # cross-entropy, targets = the diagonal
    loss_t2i = float(-np.diag(_log_softmax(logits, axis=0)).mean())
    fig = Figure(figsize=(9.8, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = [(logits, "logits = scale · img @ txt.T", None),
              (rows, f"softmax over texts (rows)\nimage→text loss = {loss_i2t:.3f}", (0, 1)),
              (cols, f"softmax over images (columns)\ntext→image loss = {loss_t2i:.3f}", (0, 1))]
    for ax, (m, name, limits) in zip(axes, panels):
        im = ax.imshow(m, cmap="magma", vmin=limits[0] if limits else None, vmax=limits[1] if limits else None)
        for i in range(n):
            ax.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="tab:green", linewidth=2))
        if n <= 6:                                   # larger: the colours say it; numbers would overprint
            mid = (m.min() + m.max()) / 2
            for y in range(n):
                for x in range(n):
                    ax.text(x, y, f"{m[y, x]:.2f}", ha="center", va="center", fontsize=MIN_FONT_PT,
                            color="black" if m[y, x] > mid else "white")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("text")
        ax.set_ylabel("image")
        if texts is not None and n <= 12:
            ax.set_xticks(range(n), [textwrap.shorten(str(t), 18) for t in texts], rotation=60, fontsize=MIN_FONT_PT,
                          ha="right")
        fig.colorbar(im, ax=ax, shrink=0.7)
    fig.suptitle(f"CLIP loss = (image→text + text→image) / 2 = {(loss_i2t + loss_t2i) / 2:.3f}  "
                 f"(green boxes: the matching pairs)")
    return fig
