"""Value mistakes in a lesson's parameters stop the first cell, before any work, naming the parameter and the
allowed values (the kernel-free path of `lessonNN.start`)."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from laclip_lite.config import build_config
from laclip_lite.course import lesson01, lesson02, lesson03, lesson04
from laclip_lite.course import params as P
from laclip_lite.course.common import held_out_metrics

START = {"01_clip_basics": lesson01.start, "02_text_rewriting": lesson02.start, "03_laclip_training": lesson03.start,
         "04_ablations": lesson04.start}


def _start(name, tmp_path, **values):
    ns = {**P.defaults(name), "preset": "test", "out_dir": str(tmp_path / "out"), **values}
    ns["In"] = ["", P.parameters_cell(name), "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in values.items())]
    return START[name](ns)


@pytest.mark.parametrize("name, values, message", [
    ("04_ablations", {"metric": "color_shap_top1"},
     "metric: 'color_shap_top1' is not a metric the runs report (did you mean color_shape_top1?); allowed: "),
    ("01_clip_basics", {"templates": "defualt"}, "templates: 'defualt' is neither a template set ("),
    ("02_text_rewriting", {"k_shot": -1}, "k_shot: rewrite.k_shot must be >= 0, got -1"),    # the config's check
    ("01_clip_basics", {"n_show": 0}, "n_show: 0 is out of range: allowed values are 2 to 32"),
    ("02_text_rewriting", {"n_captions": 0}, "n_captions: 0 is out of range: allowed values are 1 or more"),
    ("02_text_rewriting", {"sources": ["chatgpt", "bart"]}, "sources: 'bart' is not among the allowed values: "
                                                           "chatgpt, bard, mscoco, human"),
    ("03_laclip_training", {"policies": ["clip", "lacilp"]}, "policies: 'lacilp' is not a text policy: allowed "),
    ("03_laclip_training", {"steps": 0}, "steps: train.steps must be >= 1, got 0"),
    ("02_text_rewriting", {"batch_size": 0}, "batch_size: rewrite.batch_size must be >= 1, got 0"),
    ("03_laclip_training", {"steps": "ten"}, "steps: train.steps expects an int, got 'ten' (or None: the preset's "
                                             "value)"),
    ("03_laclip_training", {"overrides": ["model.vision=vgg"]}, "overrides: model.vision='vgg' is not one of: vit, "
                                                                 "resnet"),
    ("04_ablations", {"batch_size": 2000}, "batch_size: train.batch_size=2000 is larger than the data "
                                           "(data.train_size=1500)"),
    ("04_ablations", {"preset": "tinny"}, "preset: unknown preset 'tinny' (known: "),
])
def test_value_mistakes_stop_the_first_cell_naming_the_parameter(name, values, message, tmp_path):
    with pytest.raises(P.ParameterError) as info:
        _start(name, tmp_path, **values)
    print(f"{name} {values}: {info.value}")
    assert message in str(info.value)
    assert not (tmp_path / "out").exists()                    # stopped before any work


def test_metric_allowed_values_are_what_a_shapeworld_run_reports(tmp_path):
    allowed = held_out_metrics(build_config("test"))
    assert held_out_metrics(build_config("test", {"data.source": "data.csv"})) == []    # file data: none of its own
    assert {"color_shape_top1", "color_shape_top1@heldout", "t2i_R@1", "final_loss"} <= set(allowed)
    for metric in ("color_shape_top1@heldout", "t2i_R@5", "final_loss"):
        assert _start("04_ablations", tmp_path / metric.replace("@", "_"), metric=metric).params["metric"] == metric
    data = str(Path(__file__).resolve().parents[1] / "data_samples")        # file data: scored on eval_datasets
    assert _start("04_ablations", tmp_path / "files", data=data, metric="imagenet/top1").params["metric"] == \
        "imagenet/top1"


def test_a_correct_value_passes(tmp_path):
    assert _start("02_text_rewriting", tmp_path, k_shot=0, sources=["human"]).params["k_shot"] == 0
    assert _start("01_clip_basics", tmp_path / "b", templates="heldout", n_show=2).params["n_show"] == 2


def test_config_keys_take_what_the_config_takes_and_the_config_sees_them(tmp_path):
    """A config-key parameter is coerced as `--set` coerces its key (1e3 and "500" are ints), None leaves the
    preset's value, and the config the lesson builds holds the values; overrides may make room for a value the
    preset alone refuses (batch 2000 on a world of 5000 images)."""
    lesson = _start("04_ablations", tmp_path, steps=1e3, seed="7", batch_size=2000,
                    overrides={"data.train_size": 5000})
    assert (lesson.params["steps"], lesson.params["seed"]) == (1000, 7) and type(lesson.params["steps"]) is int
    cfg = lesson.config()
    assert (cfg.train.steps, cfg.train.seed, cfg.train.batch_size, cfg.data.train_size) == (1000, 7, 2000, 5000)
    assert _start("03_laclip_training", tmp_path / "b", steps=None).config().train.steps == \
        build_config("test").train.steps
    assert P.check_values("03_laclip_training", {"steps": "500", "eval_datasets": "a,b"}) == \
        {"steps": 500, "eval_datasets": ["a", "b"]}


@pytest.mark.parametrize("name", sorted(P.NOTEBOOKS))
def test_parameters_cell_is_generated_and_fits_the_notebook_width(name):
    """The committed cell is `params.parameters_cell` (one source of truth), and its comments wrap at CELL_WIDTH,
    so JupyterLab shows every help text without scrolling (only an assignment longer than the width itself may
    push its comment past it)."""
    nb = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / f"{name}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert cell.source == P.parameters_cell(name), "run `make strip`: it writes the cell from params.py"
    for line in cell.source.splitlines():
        code = line.split("  # ")[0]
        assert len(line) <= P.CELL_WIDTH or len(code) > P.CELL_WIDTH - 40, line
