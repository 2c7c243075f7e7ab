"""Sweeps: grids, shards, resume, failures, aggregation; and the ablation grid of notebook 04."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from laclip_lite import ablations
from laclip_lite.config import ConfigError
from laclip_lite.course import sweep
from laclip_lite.course.params import ParameterError
from laclip_lite.utils import parse_shard

# A notebook that does in a second what a lesson does in minutes: parameters, a counter of executions,
# a failure on request, and metrics.json in out_dir.
PARAMS = 'x = 1\nlabel = "a"\nfail = False\nout_dir = ""'
BODY = '''
import json, os, pathlib
out = pathlib.Path(out_dir)
with open(out.parent / "executions.txt", "a") as f:
    f.write(out.name + "\\n")
if fail:
    raise ValueError(f"point {out.name} was told to fail")
(out / "metrics.json").write_text(json.dumps({"metrics": {"score": x * 10, "half": x / 2, "label": label}}))
'''


@pytest.fixture
def toy(tmp_path) -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(PARAMS)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(BODY)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "toy.ipynb"
    nbformat.write(nb, path)
    return path


def _grid(tmp_path, data: dict) -> Path:
    import yaml
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _executions(out: Path) -> list[str]:
    path = out / "executions.txt"
    return path.read_text().split() if path.exists() else []


# --- grids --------------------------------------------------------------------------------------------
def test_expand_is_the_cartesian_product_in_file_order_with_fixed_values():
    fixed, axes, points = sweep.parse_grid({"fixed": {"label": "z"}, "x": [1, 2, 3], "fail": [False, True]})
    pts = sweep.expand(fixed, axes, points)
    assert [(p.params["x"], p.params["fail"]) for p in pts] == [(x, f) for x in (1, 2, 3) for f in (False, True)]
    assert all(p.params["label"] == "z" for p in pts)
    assert pts[0].name == "x-1__fail-False" and pts[0].axes == {"x": 1, "fail": False}
    assert len({p.name for p in pts}) == 6


def test_points_are_crossed_with_the_axes_and_named():
    fixed, axes, points = sweep.parse_grid({"seed": [0, 1], "points": [
        {"name": "clip", "policies": "clip"}, {"policies": "laclip", "overrides": ["data.num_rewrites=2"]}]})
    pts = sweep.expand(fixed, axes, points)
    assert [p.name for p in pts] == ["clip__seed-0", "clip__seed-1",
                                     "policies-laclip__overrides-data.num_rewrites-2__seed-0",
                                     "policies-laclip__overrides-data.num_rewrites-2__seed-1"]
    assert pts[2].params == {"policies": "laclip", "overrides": ["data.num_rewrites=2"], "seed": 0}


@pytest.mark.parametrize("data, message", [
    ({"x": 3}, "axis 'x' must be a non-empty list"),
    ({"x": []}, "axis 'x' must be a non-empty list"),
    ({"fixed": {"x": 1}, "x": [1, 2]}, "both fixed and varied"),
    ({"out_dir": ["a"]}, "'out_dir' is set by the sweep"),
    ({"points": {"x": 1}}, "'points' must be a list"),
])
def test_bad_grids_fail_with_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        sweep.parse_grid(data)


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_shards_cover_the_grid_exactly_once(count):
    pts = sweep.expand({}, {"a": list(range(4)), "b": ["u", "v", "w"]})
    shards = [sweep.shard(pts, i, count) for i in range(count)]
    names = [p.name for s in shards for p in s]
    assert sorted(names) == sorted(p.name for p in pts) and len(names) == len(set(names))
    assert [p.name for p in sweep.shard(pts, 0, count)] == [p.name for p in sweep.shard(pts, 0, count)]


@pytest.mark.parametrize("text", ["2/2", "1", "a/b", "-1/3"])
def test_bad_shard_spec(text):
    with pytest.raises(ConfigError, match="--shard"):
        parse_shard(text)


# --- running ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_failing_point_is_recorded_and_the_sweep_goes_on(toy, tmp_path):
    out = tmp_path / "out"
    grid = _grid(tmp_path, {"fixed": {"label": "b"}, "x": [1, 2], "fail": [False, True]})
    result = sweep.run_sweep(toy, grid, out, progress=False)
    assert sorted(result.failed) == ["x-1__fail-True", "x-2__fail-True"]
    assert "ValueError: point x-1__fail-True was told to fail" in result.failed["x-1__fail-True"]
    error = (out / "x-1__fail-True" / sweep.ERROR).read_text()
    assert error.startswith("ValueError: point x-1__fail-True was told to fail")
    assert not (out / "x-1__fail-True" / sweep.DONE).exists()
    for name in ("x-1__fail-False", "x-2__fail-False"):
        assert (out / name / sweep.DONE).exists() and (out / name / sweep.NOTEBOOK).exists()
    rows = {r["point"]: r for r in result.table}
    assert rows["x-2__fail-False"]["score"] == 20 and rows["x-2__fail-False"]["status"] == "done"
    assert rows["x-2__fail-True"]["status"].startswith("failed: ValueError")
    assert "label" not in rows["x-2__fail-False"]                    # only numbers become columns
    md = (out / "sweep.md").read_text()
    assert "2 of 4 points done" in md and "failed: ValueError" in md
    assert (out / "sweep.csv").read_text().splitlines()[0].startswith("point,x,fail,status")


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_without_redoing_finished_points(toy, tmp_path):
    out = tmp_path / "out"
    grid = _grid(tmp_path, {"x": [1, 2, 3]})
    first = sweep.run_sweep(toy, grid, out, shard_spec="0/2", progress=False)   # stops part-way: 2 of 3
    assert first.ran == ["x-1", "x-3"] and _executions(out) == ["x-1", "x-3"]
    stamp = (out / "x-1" / sweep.NOTEBOOK).stat().st_mtime_ns
    (out / "x-3" / sweep.DONE).unlink()                   # as if killed before the point was marked done
    second = sweep.run_sweep(toy, grid, out, progress=False)
    assert sorted(second.ran) == ["x-2", "x-3"] and second.skipped == ["x-1"]
    assert _executions(out) == ["x-1", "x-3", "x-2", "x-3"]
    assert (out / "x-1" / sweep.NOTEBOOK).stat().st_mtime_ns == stamp
    third = sweep.run_sweep(toy, grid, out, progress=False)
    assert third.ran == [] and len(_executions(out)) == 4
    assert [r["status"] for r in third.table] == ["done"] * 3


@pytest.mark.slow
def test_shards_on_separate_machines_run_each_point_once_and_aggregate_together(toy, tmp_path):
    out = tmp_path / "out"
    grid = _grid(tmp_path, {"x": [1, 2, 3, 4, 5]})
    for i in range(3):
        sweep.run_sweep(toy, grid, out, shard_spec=f"{i}/3", progress=False)
    assert sorted(_executions(out)) == [f"x-{i}" for i in range(1, 6)]
    rows = sweep.aggregate(out)                            # from the folders alone
    assert [r["score"] for r in rows] == [10, 20, 30, 40, 50]


@pytest.mark.slow
def test_parallel_jobs(toy, tmp_path):
    out = tmp_path / "out"
    result = sweep.run_sweep(toy, _grid(tmp_path, {"x": [1, 2]}), out, jobs=2, progress=False)
    assert sorted(result.ran) == ["x-1", "x-2"] and not result.failed


def test_a_changed_grid_under_the_same_name_is_refused(toy, tmp_path):
    out = tmp_path / "out"
    folder = out / "x-1"
    folder.mkdir(parents=True)
    (folder / sweep.PARAMS).write_text(json.dumps({"x": 1, "label": "old"}))
    (folder / sweep.DONE).write_text("{}")
    with pytest.raises(ConfigError, match="other parameters"):
        sweep.run_sweep(toy, {"fixed": {"label": "new"}, "x": [1]}, out, progress=False)


def test_unknown_parameter_names_stop_the_sweep_before_any_point_runs(toy, tmp_path):
    with pytest.raises(ParameterError, match=r"\['stpes'\] not parameters of toy.ipynb"):
        sweep.run_sweep(toy, {"stpes": [1, 2]}, tmp_path / "out", progress=False)
    assert not _executions(tmp_path / "out")


def test_a_wrong_type_fails_its_point_without_starting_a_kernel(tmp_path):
    nb = Path(__file__).resolve().parents[1] / "notebooks" / "03_laclip_training.ipynb"
    out = tmp_path / "out"
    result = sweep.run_sweep(nb, {"steps": ["ten"]}, out, progress=False)
    assert result.ran == [] and list(result.failed) == ["steps-ten"]
    assert "steps: train.steps expects an int, got 'ten'" in (out / "steps-ten" / sweep.ERROR).read_text()
    assert not (out / "steps-ten" / sweep.NOTEBOOK).exists()


def test_a_value_the_config_refuses_fails_its_point_and_a_good_one_passes():
    nb = Path(__file__).resolve().parents[1] / "notebooks" / "03_laclip_training.ipynb"
    points = sweep.expand(*sweep.parse_grid({"steps": [0, 5], "overrides": [["train.lr=1e-3"]]}))
    bad = sweep.check_grid(nb, points)
    assert list(bad) == [p.name for p in points if p.params["steps"] == 0]
    assert "steps: train.steps must be >= 1, got 0" in next(iter(bad.values()))


@pytest.mark.slow
def test_cli(toy, tmp_path, capsys):
    from laclip_lite.cli import main

    grid = _grid(tmp_path, {"x": [1, 2], "fail": [False]})
    assert main(["sweep", str(toy), "--grid", str(grid), "--out", str(tmp_path / "o"), "--list",
                 "--shard", "1/2"]) == 0
    assert capsys.readouterr().out.startswith("x-2__fail-False")
    assert main(["sweep", str(toy), "--grid", str(grid), "--out", str(tmp_path / "o")]) == 0
    assert "2 of 2 points done" in capsys.readouterr().out
    bad = _grid(tmp_path, {"x": [1], "fail": [True]})
    assert main(["sweep", str(toy), "--grid", str(bad), "--out", str(tmp_path / "b")]) == 1
    assert "FAILED x-1__fail-True" in capsys.readouterr().out


# --- the ablation grid (notebook 04) ------------------------------------------------------------------
def test_ablation_points_share_baselines_and_skip_what_needs_a_model():
    points, skipped = ablations.ablation_points(["augment", "num_rewrites"], {}, "laclip")
    by = {(p.ablation, p.value): p for p in points}
    assert by[("augment", "none")].arm == by[("num_rewrites", 0)].arm == "clip"
    assert by[("num_rewrites", 2)].overrides == {"data.num_rewrites": 2}
    assert {(a, v) for a, v, _ in skipped} == {("augment", "llm"), ("augment", "backtranslate")}
    points, skipped = ablations.ablation_points(["augment"], {"augment": ["backtranslate"]}, "mt", bt_models="f,b")
    assert not skipped and points[0].arm == "mt:backtranslate" and points[0].overrides == {"rewrite.model": "f,b"}


def test_ablations_cross_backbone_and_text_tower_with_both_policies():
    points, _ = ablations.ablation_points("all", {}, "laclip")
    tower = [p for p in points if p.ablation == "text_tower" and p.value == "minilm-locked"]
    assert [p.arm for p in tower] == ["clip", "laclip:shapes"]
    assert tower[0].overrides == {"model.text": "hf", "model.text_model": "minilm", "model.text_lock": True}
    assert [p.label for p in tower] == ["minilm-locked / clip", "minilm-locked / laclip"]
    assert {p.ablation for p in points} == set(ablations.ABLATIONS)


@pytest.mark.parametrize("args, message", [
    ((["nope"], {}), "ablations: unknown"),
    ((["augment"], {"sources": ["x"]}), "values: unknown ablation 'sources'"),
    ((["augment"], {"augment": ["gpt"]}), r"values\['augment'\]"),
])
def test_ablation_errors(args, message):
    with pytest.raises(ParameterError, match=message):
        ablations.ablation_points(*args)


def test_the_ablation_grid_as_a_sweep_of_notebook_03_is_valid():
    import yaml

    points, _ = ablations.ablation_points(["augment", "source"], {"augment": ["none", "eda"]}, "laclip")
    text = sweep.ablation_sweep_yaml(points, {"preset": "tiny", "steps": 300, "data": "shapeworld",
                                              "overrides": {"data.train_size": 1500}}, [0, 1])
    fixed, axes, pts = sweep.parse_grid(yaml.safe_load(text))
    expanded = sweep.expand(fixed, axes, pts)
    assert len(expanded) == 2 * 7 and fixed == {"preset": "tiny", "steps": 300, "data": "shapeworld"}
    nb = Path(__file__).resolve().parents[1] / "notebooks" / "03_laclip_training.ipynb"
    assert sweep.check_grid(nb, expanded) == {}
    assert expanded[-3].params["overrides"] == ["data.train_size=1500", "data.sources=human", "data.num_rewrites=1"]
    assert expanded[-1].params["overrides"] == ["data.train_size=1500"]          # source=all: all four, M = 4
    assert expanded[0].params == {"policies": "clip", "overrides": ["data.train_size=1500"], "preset": "tiny",
                                  "steps": 300, "data": "shapeworld", "seed": 0}


def test_a_seed_axis_gets_mean_and_std_columns(tmp_path):
    """aggregate() on finished point folders of a grid with a seed axis: sweep_seeds.csv and a section of
    sweep.md with each metric's mean ± std per setting of the other axes; no such table without a seed axis."""
    import csv

    scores = {(1, 0): 10.0, (1, 1): 14.0, (2, 0): 30.0, (2, 1): 20.0}
    for (x, seed), score in scores.items():
        folder = tmp_path / f"x-{x}__seed-{seed}"
        folder.mkdir()
        (folder / sweep.PARAMS).write_text(json.dumps({"x": x, "seed": seed}))
        (folder / sweep.DONE).write_text("{}")
        (folder / sweep.METRICS).write_text(json.dumps({"metrics": {"score": score}}))
    sweep.aggregate(tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "sweep_seeds.csv")))
    assert [(r["setting"], float(r["score"]), float(r["score_std"]), r["seeds"]) for r in rows] == [
        ("x=1", 12.0, 2.83, "2"), ("x=2", 25.0, 7.07, "2")]
    assert "Over the seed axis" in (tmp_path / "sweep.md").read_text() and "12.0 ± 2.8" in (
        tmp_path / "sweep.md").read_text()
    assert sweep.seed_summary([{"point": "a", "x": 1, "status": "done", "score": 1.0}], ["x"]) == []
