"""The lesson notebooks: the committed .ipynb are the source, stripped, run headless, strict about parameters;
each lesson shows its concepts as code checked against the library, and has exercises with answers."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import pytest

from laclip_lite.course import params as P
from laclip_lite.course.strip import is_stripped

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NAMES = list(P.NOTEBOOKS)

# Tiny parameters: each notebook runs in well under a minute on a CPU.
TEST_PARAMETERS = {
    "01_clip_basics": {"preset": "test", "steps": 4, "n_show": 6},
    "02_text_rewriting": {"preset": "test", "n_captions": 24, "embed": False},
    "03_laclip_training": {"preset": "test", "policies": ["clip", "laclip"], "steps": 20},
    "04_ablations": {"preset": "test", "steps": 2, "overrides": [], "ablations": ["augment", "num_rewrites"],
                     "values": {"augment": ["none", "shapes"], "num_rewrites": [0, 1]}},
}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LACLIP_LITE_CACHE", str(tmp_path / "cache"))   # the kernels inherit it


def _read(name: str):
    return nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)


def _execute(name: str, out_dir: Path, parameters: dict):
    import papermill as pm
    return pm.execute_notebook(str(NB_DIR / f"{name}.ipynb"), str(out_dir / "notebook.ipynb"),
                               parameters={**parameters, "out_dir": str(out_dir)}, progress_bar=False,
                               kernel_name="python3")


# --- the committed files ------------------------------------------------------------------------------
MODULES = {name: f"lesson{name[:2]}" for name in NAMES}


@pytest.mark.parametrize("path", sorted(NB_DIR.glob("*.ipynb")) + sorted((ROOT / "laclip_lite" / "course" /
                                                                           "assignments").glob("*.ipynb")),
                         ids=lambda p: p.name)
def test_every_committed_notebook_is_stripped(path):
    assert is_stripped(path), f"{path.relative_to(ROOT)} has outputs or run-time metadata: run `make strip`"


def test_strip_removes_outputs_and_keeps_tags(tmp_path):
    from laclip_lite.course.strip import main, strip

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1 + 1", execution_count=3, outputs=[nbformat.v4.new_output(
        "execute_result", {"text/plain": "2"}, execution_count=3)])
    cell.metadata.update(tags=["exercise"], execution={"iopub.status.busy": "now"})
    nb.cells = [cell]
    nb.metadata["kernelspec"] = {"name": "other", "display_name": "Other", "language": "python"}
    nb.metadata["widgets"] = {"state": {}}
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    assert not is_stripped(path) and main(["--check", str(path)]) == 1
    assert main([str(path)]) == 0 and is_stripped(path)
    clean = nbformat.read(path, as_version=4)
    assert clean.cells[0].outputs == [] and clean.cells[0].execution_count is None
    assert clean.cells[0].metadata == {"tags": ["exercise"]} and "widgets" not in clean.metadata
    assert clean.metadata["kernelspec"]["name"] == "python3" and strip(clean) == clean


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_clean_with_metadata_and_one_parameters_cell(name):
    nb = _read(name)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"] == {"name": "python3", "display_name": "Python 3", "language": "python"}
    assert nb.metadata["language_info"] == {"name": "python"}
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "outputs committed"
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    check_cell = nb.cells[tagged[0] + 1]
    assert f"from laclip_lite.course import {MODULES[name]}" in check_cell.source
    assert f"lesson = {MODULES[name]}.start(globals())" in check_cell.source
    assert nb.cells[0].cell_type == "markdown" and "What you will learn" in nb.cells[0].source
    assert f"{MODULES[name]}.finish(lesson)" in code[-1].source


def _calls_into(module: str, source: str) -> list[str]:
    """Names of `module.<f>` called in a cell."""
    return [n.func.attr for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name) and n.func.value.id == module]


# Concept cells: the computation a lesson teaches, written out in the notebook and asserted against the library.
CONCEPTS = {
    "01_clip_basics": ["text_features @ image_features.T", "s * image_features @ text_features.T",
                       "F.cross_entropy(logits.T, labels)", "math.log(N)", "zero_shot_classifier(",
                       "(beaten_by < k)", "loss.backward()", "optimizer.step()", "model.logit_scale.clamp_(",
                       "trainer.train_step()"],
    "02_text_rewriting": ["rng.sample(examples", "build_prompt(", "random_deletion("],
    "03_laclip_training": ["torch.randint(0, K, (B,), generator=g)", "draw_text_index(", "multi_text_loss("],
    "04_ablations": ["pd.read_csv(", ".groupby(", ".plot.bar("],
}


@pytest.mark.parametrize("name", NAMES)
def test_lessons_write_the_concepts_out_and_check_them(name):
    nb = _read(name)
    module = MODULES[name]
    import importlib
    lib = importlib.import_module(f"laclip_lite.course.{module}")
    code = [c for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]
    concept = [c for c in code if not _is_plumbing(c.source, module)]
    text = "\n".join(c.source for c in concept)
    for piece in CONCEPTS[name]:
        assert piece in text, f"{name}: no concept cell computes {piece!r}"
    checked = [c for c in concept if "assert" in c.source and "exercise" not in c.metadata.get("tags", [])]
    assert len(checked) >= 2, f"{name}: concept cells must check themselves against the library"
    for c in concept:
        lines = [ln for ln in c.source.splitlines() if ln.strip()]
        assert len(lines) <= 16, f"{name}: a concept cell should be short enough to read:\n{c.source}"
    for c in code:
        for fn in _calls_into(module, c.source):
            assert callable(getattr(lib, fn, None)), f"{name}: {module}.{fn} does not exist"


@pytest.mark.parametrize("name", NAMES)
def test_no_private_helper_or_rng_plumbing_in_a_notebook_cell(name):
    """Cells read like the paper: public calls only (no `lessonNN._helper`), and no seed arithmetic a student
    would have to copy to match the library (`seed_for(`, `step_generator(`, `stream=`)."""
    import re
    for cell in _read(name).cells:
        if cell.cell_type != "code":
            continue
        private = re.findall(r"\blesson\d\d\._\w+", cell.source)
        assert not private, f"{name}: a cell calls a private helper {private}:\n{cell.source}"
        for plumbing in ("seed_for(", "step_generator(", "stream="):
            assert plumbing not in cell.source, f"{name}: RNG plumbing {plumbing!r} in a cell:\n{cell.source}"


def test_the_private_helper_check_can_fail():
    import re
    assert re.findall(r"\blesson\d\d\._\w+", "x = lesson04._ablation_runs(lesson, [pt])[0]") == \
        ["lesson04._ablation_runs"]


def _is_plumbing(source: str, module: str) -> bool:
    """A cell that is a single call into the lesson module (data, training, figures)."""
    body = ast.parse(source).body
    return len(body) == 1 and bool(_calls_into(module, source)) and len(source.splitlines()) <= 3


@pytest.mark.parametrize("name", NAMES)
def test_every_lesson_has_exercises_with_hints_and_answers(name):
    nb = _read(name)
    tagged = [i for i, c in enumerate(nb.cells) if "exercise" in c.metadata.get("tags", [])]
    headings = [i for i in tagged if nb.cells[i].cell_type == "markdown"]
    assert len(headings) >= 2, f"{name}: at least two exercises"
    for i in headings:
        assert nb.cells[i].source.lstrip("# ").startswith("Exercise"), nb.cells[i].source[:60]
        after = nb.cells[i + 1:]
        answer = next(c for c in after if "answer" in c.metadata.get("tags", []))
        assert "<details>" in answer.source and "Answer" in answer.source
        code = next(c for c in after if c.cell_type == "code")
        assert "exercise" in code.metadata.get("tags", []), f"{name}: each exercise has a code cell to run"


@pytest.mark.parametrize("name", NAMES)
def test_papermill_reads_every_declared_parameter(name):
    import papermill as pm
    found = pm.inspect_notebook(str(NB_DIR / f"{name}.ipynb"))
    assert list(found) == list(P.NOTEBOOKS[name])
    for pname, info in found.items():
        assert ast.literal_eval(info["default"]) == P.NOTEBOOKS[name][pname].default
        assert info["inferred_type_name"] == P.annotation(P.NOTEBOOKS[name][pname])   # --help-notebook types


# --- running them ------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_headless_with_tiny_parameters(name, tmp_path):
    nb = _execute(name, tmp_path, TEST_PARAMETERS[name])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["notebook"] == name and metrics["parameters"]["preset"] == "test"
    assert metrics["parameters"]["interactive"] is False
    assert metrics["metrics"], "no numbers recorded"
    figures = [item["figure"] for item in metrics["report"] if "figure" in item]
    assert figures and all((tmp_path / f).is_file() for f in figures)
    small = {i["figure"]: i["smallest_text_pt"] for i in metrics["report"] if "figure" in i
             and i["smallest_text_pt"] < 9}
    assert not small, f"text under 9 pt as JupyterLab shows these figures: {small}"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(shown) >= len(figures)          # every saved figure is also in the executed notebook
    m = metrics["metrics"]
    if name == "02_text_rewriting":
        assert m["rewriter"] == "shapes" and m["second_run_generation_calls"] == 0
        assert m["first_run_generation_calls"] >= 1
        text = "".join(o.get("data", {}).get("text/markdown", "") for c in nb.cells if c.cell_type == "code"
                       for o in c.outputs)
        assert "not from an LLM" in text and "Back-translation skipped" in text
    if name == "03_laclip_training":
        assert {"clip/color_shape_top1", "laclip/color_shape_top1"} <= set(m)
    if name == "04_ablations":
        runs = {p.name for p in (tmp_path / "runs").iterdir()}
        assert len(runs) == 3                  # none == 0 rewrites and shapes == 4 rewrites share runs
        assert (tmp_path / "ablations.md").exists() and (tmp_path / "ablations_sweep.yaml").exists()


def _first_code_after_parameters(nb):
    """(index, cell) of the first code cell after papermill's injected parameters (papermill may put a
    markdown note about the error in between)."""
    start = next(i for i, c in enumerate(nb.cells) if "injected-parameters" in c.metadata.get("tags", []))
    return next((i, c) for i, c in enumerate(nb.cells) if i > start and c.cell_type == "code")


@pytest.mark.parametrize("bad, message", [
    ({"stpes": 3}, "stpes: unknown parameter (did you mean steps"),
    ({"steps": "ten"}, "steps: train.steps expects an int, got 'ten' (or None: the preset's value)"),
    ({"templates": "defualt"}, "templates: 'defualt' is neither a template set (allowed: "),   # values too
    ({"n_show": 0}, "n_show: 0 is out of range: allowed values are 2 to 32"),
])
def test_bad_parameter_stops_in_the_first_cell_after_the_parameters(tmp_path, bad, message):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError) as info:
        _execute("01_clip_basics", tmp_path, bad)
    assert info.value.ename == "ParameterError" and message in info.value.evalue
    nb = nbformat.read(tmp_path / "notebook.ipynb", as_version=4)
    index, cell = _first_code_after_parameters(nb)
    assert "lesson01.start(" in cell.source
    assert [o.ename for o in cell.outputs if o.output_type == "error"] == ["ParameterError"]
    later = [c for c in nb.cells[index + 1:] if c.cell_type == "code"]
    assert later and all(c.execution_count is None for c in later)     # nothing else ran


# --- the parameter check without a kernel ------------------------------------------------------------
def _namespace(name, injected: dict | None = None, edited: str = "") -> dict:
    ns = P.defaults(name)
    ns["In"] = ["", P.parameters_cell(name) + edited]
    if injected:
        ns["In"].append("# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in injected.items()))
        ns.update(injected)
    return ns


def test_check_coerces_papermill_values_and_writes_them_back():
    ns = _namespace("03_laclip_training", {"seeds": "0,1", "steps": 5.0,
                                           "overrides": "train.lr=1e-3 model.vision=resnet", "policies": "clip,laclip"})
    values = P.check_parameters("03_laclip_training", ns)
    assert values["seeds"] == [0, 1] and values["steps"] == 5 and isinstance(ns["steps"], int)
    assert values["overrides"] == ["train.lr=1e-3", "model.vision=resnet"]
    assert ns["policies"] == ["clip", "laclip"]


def test_check_reports_every_problem_at_once():
    ns = _namespace("01_clip_basics", {"stpes": 3, "interactive": "yes", "task": "colour"})
    with pytest.raises(P.ParameterError) as info:
        P.check_parameters("01_clip_basics", ns)
    text = str(info.value)
    assert "stpes: unknown parameter (did you mean steps" in text
    assert "interactive: expects a bool" in text and "task: 'colour' is not one of" in text


def test_check_catches_a_typo_typed_into_the_parameters_cell():
    ns = _namespace("01_clip_basics", edited="\nn_shwo = 4")
    ns["n_shwo"] = 4
    with pytest.raises(P.ParameterError, match="n_shwo: unknown parameter"):
        P.check_parameters("01_clip_basics", ns)
    del ns["n_shwo"]                                        # a re-run cell replaces the old source in In
    ns["In"].append(P.parameters_cell("01_clip_basics"))
    assert P.check_parameters("01_clip_basics", ns)["n_show"] == 8


def test_check_without_ipython_history_uses_the_namespace():
    ns = {**P.defaults("02_text_rewriting"), "llm_modle": "x"}
    with pytest.raises(P.ParameterError, match="llm_modle"):
        P.check_parameters("02_text_rewriting", ns)
    ns = P.defaults("02_text_rewriting")
    del ns["k_shot"]
    with pytest.raises(P.ParameterError, match="k_shot: not defined"):
        P.check_parameters("02_text_rewriting", ns)


def test_start_checks_meaning_as_well_as_types(tmp_path):
    from laclip_lite.course import lesson01, lesson03

    ns = {**P.defaults("03_laclip_training"), "out_dir": str(tmp_path), "preset": "nope"}
    with pytest.raises(P.ParameterError, match="unknown preset 'nope'"):
        lesson03.start(ns)
    ns.update(preset="test", overrides=["train.stesp=3"])
    with pytest.raises(P.ConfigError, match="train.stesp"):
        lesson03.start(ns)
    ns.update(overrides=[], data=str(tmp_path / "missing.csv"))
    with pytest.raises(P.ParameterError, match="neither 'shapeworld' nor an existing path"):
        lesson03.start(ns)
    ns = {**P.defaults("01_clip_basics"), "out_dir": str(tmp_path), "data": str(ROOT / "data_samples")}
    with pytest.raises(P.ParameterError, match="notebook 01 teaches on ShapeWorld"):
        lesson01.start(ns)


# --- the interactive views ---------------------------------------------------------------------------
def test_explorer_gives_widgets_when_interactive_and_figures_when_not(tmp_path):
    import ipywidgets as W

    from laclip_lite.course import lesson01 as lessons

    ns = {**P.defaults("01_clip_basics"), "preset": "test", "steps": 2, "out_dir": str(tmp_path), "n_show": 4}
    lesson = lessons.start(ns)
    world = lessons.show_world(lesson, n=4)
    run = lessons.train_clip(lesson, world)
    assert lessons.explorer(lesson, run, world) is None
    assert (tmp_path / "figures" / "explorer_text_to_images.png").exists()
    lesson.params["interactive"] = True
    ui = lessons.explorer(lesson, run, world)
    assert isinstance(ui, W.VBox)
    text = next(w for w in ui.children if isinstance(w, W.Text))
    slider = next(w for w in ui.children if isinstance(w, W.IntSlider))
    text.value, slider.value = "a blue square", 3          # the handlers redraw without error
    assert slider.max == len(world.test) - 1
    again = lessons.train_clip(lesson, world)              # a finished run with the same settings is reused
    assert again.dir == run.dir and again.final == run.final
    assert {"checkpoint.pt", "config.yaml"} <= {p.name for p in run.dir.iterdir()}   # laclip-lite eval --checkpoint


def test_rewrite_explorer_widget_and_static_view(tmp_path):
    import ipywidgets as W

    from laclip_lite.course import lesson02

    ns = {**P.defaults("02_text_rewriting"), "preset": "test", "n_captions": 6, "embed": False,
          "out_dir": str(tmp_path)}
    lesson = lesson02.start(ns)
    rewrites = lesson02.rewrite_with_llm(lesson, lesson02.load_captions(lesson))
    assert lesson02.rewrite_explorer(lesson, rewrites) is None
    shown = lesson.report[-1]["markdown"]
    assert "The prompt the LLM receives" in shown and "stand-in (not an LLM)" in shown and "EDA 1" in shown
    found = lesson02.explore_one(lesson, "a small red circle", rewrites)
    assert set(found["rewrites"]) == set(ns["sources"]) and len(found["eda"]) == len(ns["sources"])
    assert found["prompt"].endswith("a small red circle =>")
    lesson.params["interactive"] = True
    ui = lesson02.rewrite_explorer(lesson, rewrites)
    box = next(w for w in ui.children if isinstance(w, W.Text))
    box.value = "a big blue star on black"                  # the handler redraws without error


def test_zero_shot_chart_baseline_for_combined_tasks():
    from laclip_lite.course.lesson01 import single_attribute_baseline
    from laclip_lite.data.vocab import classnames

    value, name = single_attribute_baseline("color_shape")
    assert value == pytest.approx(100 / len(classnames("shape"))) and name.startswith("color only")
    assert single_attribute_baseline("shape") == (pytest.approx(100 / len(classnames("shape"))), "chance")


# --- the demo report ---------------------------------------------------------------------------------
def test_report_gathers_key_tables_and_figures(tmp_path):
    from laclip_lite.course import report

    (tmp_path / "01_clip_basics" / "figures").mkdir(parents=True)
    (tmp_path / "01_clip_basics" / "figures" / "a.png").write_bytes(b"png")
    (tmp_path / "01_clip_basics" / "metrics.json").write_text(json.dumps({"report": [
        {"title": "Shown", "markdown": "| a | b |\n|---|---|\n| 1 | 2 |", "key": True},
        {"title": "Hidden", "markdown": "not key", "key": False},
        {"title": "Fig", "figure": "figures/a.png", "key": True}]}))
    (tmp_path / "timings.json").write_text(json.dumps({
        "01_clip_basics": {"notebook": "01_clip_basics", "status": "done", "seconds": 12.0},
        "02_text_rewriting": {"notebook": "02_text_rewriting", "status": "failed", "seconds": 3.0,
                              "error": "ParameterError: bad"}}))
    text = report.write_report(tmp_path).read_text()
    assert "| 1 | 2 |" in text and "not key" not in text
    assert "![Fig](01_clip_basics/figures/a.png)" in text
    assert "| 02_text_rewriting | failed: ParameterError: bad | 3 s |" in text
    assert "| 03_laclip_training | not run |" in text and "Total: 15 s" in text


@pytest.mark.slow
def test_demo_runs_notebooks_and_passes_each_only_its_own_parameters(tmp_path):
    from laclip_lite.course import report

    # `steps` is not a parameter of notebook 02: the demo must not pass it there (it would stop the notebook).
    path = report.run_demo(tmp_path, ["02_text_rewriting"], {"preset": "test", "steps": 2, "n_captions": 12,
                                                              "embed": False}, progress=False)
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert timings["02_text_rewriting"]["status"] == "done"
    text = path.read_text()
    assert "## 02 · Text rewriting" in text and "![Diversity vs faithfulness](02_text_rewriting/figures/" in text
    assert (tmp_path / "02_text_rewriting" / "notebook.ipynb").exists()


@pytest.mark.slow
def test_rewriting_lesson_with_a_real_llm_and_back_translation(tmp_path):
    """The branches a CPU demo never takes: `llm_model` and `bt_models` set (tiny random models, offline)."""
    from laclip_lite.course import lesson02 as lessons
    from tests.tiny_models import build_tiny_causal_lm, build_tiny_marian

    lm = build_tiny_causal_lm(tmp_path / "lm")
    mt = build_tiny_marian(tmp_path / "mt")
    ns = {**P.defaults("02_text_rewriting"), "preset": "test", "n_captions": 6, "embed": False,
          "out_dir": str(tmp_path / "out"), "llm_model": str(lm), "bt_models": f"{mt},{mt}",
          "sources": ["chatgpt", "human"]}
    lesson = lessons.start(ns)
    captions = lessons.load_captions(lesson)
    rewrites = lessons.rewrite_with_llm(lesson, captions)
    assert rewrites["rewriter"] == "llm" and set(rewrites["texts"]) == {"chatgpt", "human"}
    assert rewrites["report"]["generation_calls"] >= 1
    baselines = lessons.eda_and_backtranslation(lesson, captions, rewrites)
    assert set(baselines) == {"eda", "backtranslate"} and len(baselines["backtranslate"]["texts"]["bt1"]) == 6
    rows = lessons.quality_lesson(lesson, captions, rewrites, baselines)
    assert {"llm:chatgpt", "eda:eda1", "backtranslate:bt2"} <= set(rows)
    assert lessons.cache_lesson(lesson, captions, rewrites)["generation_calls"] == 0
    said = " ".join(item.get("markdown", "") for item in lesson.report)
    assert f"Rewriting with the LLM **{lm}**" in said and "Back-translation through" in said


@pytest.mark.slow
def test_training_lesson_on_a_real_dataset_file(tmp_path):
    """Notebook 03 end to end on the LaCLIP CSV layout (images + caption + rewrite files), as on a GPU box, without
    an evaluation set: it trains, compares the final loss, says so, and writes metrics.json (no crash)."""
    csv_path = ROOT / "data_samples" / "laclip" / "train.csv"
    nb = _execute("03_laclip_training", tmp_path, {"preset": "test", "data": str(csv_path), "jobs": 1, "steps": 4,
                                                    "policies": ["clip", "laclip"]})
    metrics = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert {"clip/final_loss", "laclip/final_loss"} <= set(metrics)
    text = "".join(o.get("data", {}).get("text/markdown", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)
    assert "No `eval_datasets` given" in text and "final training loss" in text
    info = json.loads((tmp_path / "compare" / "laclip-s0" / "data_info.json").read_text())
    assert info["texts_per_image"] == 5 and info["source"] == str(csv_path)


@pytest.mark.slow
def test_training_lesson_on_a_real_dataset_file_scored_on_an_imagefolder(tmp_path):
    """Notebook 03 end to end on the LaCLIP CSV sample with an ImageFolder evaluation set (`eval_datasets`): each
    arm is scored on it, the table and bars come from those scores, and metrics.json holds them."""
    from laclip_lite.cli import main

    folder = tmp_path / "imagefolder"
    assert main(["export", "--format", "imagefolder", "--task", "shape", "--split", "test", "--n", "24",
                 "--out", str(folder)]) == 0
    csv_path = ROOT / "data_samples" / "laclip" / "train.csv"
    out = tmp_path / "run"
    out.mkdir()
    nb = _execute("03_laclip_training", out, {"preset": "test", "data": str(csv_path), "jobs": 1, "steps": 4,
                                               "policies": ["clip", "laclip"], "eval_datasets": [str(folder)]})
    result = json.loads((out / "metrics.json").read_text())
    scores = {k: v for k, v in result["metrics"].items() if k.endswith("/top1")}
    assert set(scores) == {"clip/imagefolder/top1", "laclip/imagefolder/top1"}, result["metrics"]
    assert all(0 <= v <= 100 for v in scores.values())
    assert result["parameters"]["eval_datasets"] == [str(folder)]
    figures = [item["figure"] for item in result["report"] if "figure" in item]
    assert "figures/results.png" in figures and (out / "figures" / "results.png").is_file()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors


def test_lesson03_step_slider_and_lesson04_chooser_widgets(tmp_path):
    """The widgets of 03 (a step slider over the arms' learning curves) and 04 (choose ablation and metric), on
    hand-made run logs and a runs table: static figures headless, widgets whose handlers redraw when interactive."""
    import ipywidgets as W
    import pandas as pd

    from laclip_lite.course import common, lesson03, lesson04

    dirs = {}
    for arm, slope in (("clip", 0.02), ("laclip", 0.01)):
        d = tmp_path / f"{arm}-s0"
        d.mkdir()
        (d / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 4 - slope * s}) + "\n"
                                                 for s in range(0, 101, 10)))
        dirs[f"{arm}-s0"] = d
    comparison = lesson03.Comparison(tmp_path, [], [], dirs)
    lesson = common.Lesson("03_laclip_training", {**P.defaults("03_laclip_training"), "interactive": False},
                           tmp_path / "out")
    assert lesson03.curve_explorer(lesson, comparison) is None
    assert (tmp_path / "out" / "figures" / "curves_midway.png").is_file()
    lesson.params["interactive"] = True
    ui = lesson03.curve_explorer(lesson, comparison)
    slider = next(w for w in ui.children if isinstance(w, W.IntSlider))
    assert slider.max == 100
    slider.value = 40

    frame = pd.DataFrame([{"ablation": "augment", "label": lab, "seed": 0, "color_shape_top1": v, "final_loss": 1.0}
                          for lab, v in (("none", 20.0), ("shapes", 35.0))])
    lesson4 = common.Lesson("04_ablations", {**P.defaults("04_ablations"), "interactive": False}, tmp_path / "o4")
    assert lesson04.ablation_chooser(lesson4, frame) is None
    assert (tmp_path / "o4" / "figures" / "chooser_augment.png").is_file()
    lesson4.params["interactive"] = True
    ui = lesson04.ablation_chooser(lesson4, frame)
    pick_a, pick_m = ui.children[0].children
    assert set(pick_m.options) >= {"color_shape_top1", "final_loss"}
    pick_m.value = "final_loss"


@pytest.mark.slow
def test_ablation_lesson_on_a_real_dataset_file_without_an_eval_set(tmp_path):
    """Notebook 04 on the LaCLIP CSV sample, no evaluation set: the tables and figures fall back to the final loss
    (said in the notebook), never a crash."""
    csv_path = ROOT / "data_samples" / "laclip" / "train.csv"
    nb = _execute("04_ablations", tmp_path, {"preset": "test", "steps": 2, "jobs": 1, "data": str(csv_path),
                                             "overrides": [], "ablations": ["num_rewrites"],
                                             "values": {"num_rewrites": [0, 4]}})
    metrics = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert set(metrics) == {"num_rewrites/0/final_loss", "num_rewrites/4/final_loss"}
    text = "".join(o.get("data", {}).get("text/markdown", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)
    assert "No run has `color_shape_top1`" in text and (tmp_path / "figures" / "ablations.png").is_file()
