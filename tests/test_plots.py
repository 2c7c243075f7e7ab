"""Every figure builds on small random inputs, draws headless, and shows the numbers it claims to show."""
from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from laclip_lite import plots


def _draws(fig) -> Figure:
    assert isinstance(fig, Figure)
    fig.savefig(io.BytesIO(), format="png", dpi=40)   # renders every artist with the Agg canvas
    return fig


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]


@pytest.fixture
def images():
    return torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)


def test_show_images(images):
    fig = _draws(plots.show_images(images, ["a red circle stock photo"] * 6, n=4, title="four"))
    assert len([ax for ax in fig.axes if ax.images]) == 4
    _draws(plots.show_images(images.permute(0, 2, 3, 1).float() / 255))   # HWC floats in 0..1
    with pytest.raises(ValueError, match="no images"):
        plots.show_images(images[:0])


def test_similarity_heatmap(images):
    sim = F.normalize(torch.randn(4, 16), dim=-1) @ F.normalize(torch.randn(6, 16), dim=-1).T
    fig = _draws(plots.similarity_heatmap(sim, images, [f"caption {i}" for i in range(4)]))
    assert f"{sim[2, 5]:.2f}" in _texts(fig)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [f"caption {i}" for i in range(4)]
    _draws(plots.similarity_heatmap(sim.numpy()))                           # no images, no texts
    with pytest.raises(ValueError, match="5 images for 6 columns"):
        plots.similarity_heatmap(sim, images[:5])


def test_zero_shot_topk_and_topk_images(images):
    classes = [f"class {i}" for i in range(7)]
    probs = torch.randn(6, 7).softmax(-1)
    fig = _draws(plots.zero_shot_topk(probs[0], classes, images[0], k=5, label=2))
    shown = [t.get_text() for t in fig.axes[-1].get_yticklabels()]
    assert shown == [classes[i] for i in probs[0].argsort(descending=True)[:5]]
    _draws(plots.zero_shot_topk(probs[1].numpy(), classes))
    fig = _draws(plots.topk_images(images, probs, classes, k=3, n=3, labels=[0, 1, 2]))
    assert len([ax for ax in fig.axes if ax.images]) == 3


def test_learning_curves_from_rows_files_and_dicts(tmp_path):
    rows = [{"step": s, "loss": 4 / s, "lr": 1e-3} for s in range(1, 6)] + [{"step": 5, "val/color_top1": 40.0}]
    fig = _draws(plots.learning_curves(rows, keys=("loss", "val/color_top1")))
    assert [ax.get_title() for ax in fig.axes] == ["loss", "val/color_top1"]
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [4 / s for s in range(1, 6)])
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    fig = _draws(plots.learning_curves({"a": tmp_path, "b": rows[:3]}, keys="loss"))
    assert [line.get_label() for line in fig.axes[0].lines] == ["a", "b"]
    with pytest.raises(ValueError, match="no row has"):
        plots.learning_curves(rows, keys=("accuracy",))


def test_bar_with_errors_mean_and_std():
    table = [{"policy": "clip", "seed": s, "zero_shot": {"color_shape": {"top1": v}}}
             for s, v in enumerate([20.0, 24.0, 28.0])]
    table += [{"policy": "laclip", "seed": 0, "zero_shot": {"color_shape": {"top1": 40.0}}}]
    fig = _draws(plots.bar_with_errors(table, "zero_shot/color_shape/top1"))
    bars = fig.axes[0].patches
    assert [b.get_height() for b in bars] == pytest.approx([24.0, 40.0])
    bar_container = next(c for c in fig.axes[0].containers if hasattr(c, "errorbar"))
    segments = bar_container.errorbar.lines[2][0].get_segments()   # one vertical error segment per bar
    assert [s[1][1] - s[0][1] for s in segments] == pytest.approx([2 * np.std([20, 24, 28], ddof=1), 0.0])
    flat = [{"policy": r["policy"], "top1": r["zero_shot"]["color_shape"]["top1"]} for r in table]
    _draws(plots.bar_with_errors(flat, "top1"))
    with pytest.raises(ValueError, match="no row has the metric"):
        plots.bar_with_errors(flat, "top5")


def test_loss_matrix_walkthrough_reports_the_clip_loss():
    img, txt = F.normalize(torch.randn(5, 8), dim=-1), F.normalize(torch.randn(5, 8), dim=-1)
    scale = 10.0
    fig = _draws(plots.loss_matrix_walkthrough(img, txt, logit_scale=scale, texts=[f"t{i}" for i in range(5)]))
    logits = scale * img @ txt.T
    labels = torch.arange(5)
    want = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    shown = float(re.search(r"= ([0-9.]+)  ", fig._suptitle.get_text()).group(1))
    assert shown == pytest.approx(want.item(), abs=1e-3)
    _draws(plots.loss_matrix_walkthrough(logits))                     # logits alone
    with pytest.raises(ValueError, match="N x N"):
        plots.loss_matrix_walkthrough(torch.randn(3, 4))


def test_mean_std_bars_and_the_ablation_panels():
    from laclip_lite.ablations import ablation_figure

    fig = Figure()
    xs, means = plots.mean_std_bars(fig.add_subplot(), [[1.0, 3.0], [5.0]])
    assert list(xs) == [0, 1] and list(means) == [2.0, 5.0]
    errors = [c for c in fig.axes[0].containers if hasattr(c, "has_yerr") and c.has_yerr]
    segments = errors[0].lines[2][0].get_segments()               # one vertical error segment per bar
    assert [round(float(s[1][1] - s[0][1]), 3) for s in segments] == [round(2 * 2 ** 0.5, 3), 0.0]  # 2 x std
    rows = [{"ablation": "augment", "label": lab, "m": v} for lab, v in (("none", 20.0), ("eda", 30.0), ("eda", 34.0))]
    rows += [{"ablation": "source", "label": "chatgpt", "m": 40.0}]
    fig = _draws(ablation_figure(rows, "m"))
    assert {"augment", "source", "20.0", "32.0", "40.0"} <= set(_texts(fig))


def test_smallest_text_counts_the_shrinking_of_a_wide_figure():
    from matplotlib.figure import Figure

    from laclip_lite.plots import DISPLAY_PX, smallest_text_pt

    fig = Figure(figsize=(5, 3), dpi=100)
    ax = fig.add_subplot()
    ax.set_title("title", fontsize=12)
    ax.text(0.5, 0.5, "label", fontsize=9)
    ax.tick_params(labelsize=10)
    assert smallest_text_pt(fig) == 9                              # 500 px: shown as saved
    ax.text(0.1, 0.1, "tiny", fontsize=7)
    assert smallest_text_pt(fig) == 7                              # a small label fails the 9 pt floor
    assert smallest_text_pt(fig, width_px=2 * DISPLAY_PX) == 3.5   # shown at half size in the notebook
