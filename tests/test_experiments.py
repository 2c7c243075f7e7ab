"""compare(): every (policy, seed) trained and evaluated, tables + chart written, finished runs skipped."""
import csv

import pytest

from laclip_lite.config import ConfigError
from laclip_lite.experiments import Arm, compare, summarise


def test_compare_writes_table_and_chart_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("LACLIP_LITE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cmp"
    summary = compare("clip,laclip,mt", "0,1", out, preset="test", template_sets=("default", "heldout"),
                      progress=False)
    assert [r["policy"] for r in summary] == ["clip", "laclip", "mt"] and all(r["seeds"] == 2 for r in summary)
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert {"policy", "color_shape_top1", "color_shape_top1_std", "color_shape_top1@heldout"} <= set(rows[0])
    assert (out / "compare.png").stat().st_size > 0 and "± " in (out / "summary.md").read_text()
    marker = out / "laclip-s1" / "result.json"
    before = marker.stat().st_mtime_ns
    compare("clip,laclip,mt", "0,1", out, preset="test", template_sets=("default", "heldout"), progress=False)
    assert marker.stat().st_mtime_ns == before            # finished runs are not redone


def test_arms_parse_and_bad_policies_fail_before_work():
    assert Arm.parse("laclip:eda") == Arm("laclip", "eda") and Arm.parse("clip", "eda") == Arm("clip", "none")
    assert Arm.parse("mt").name == "mt" and Arm.parse("mt:eda").name == "mt:eda"
    with pytest.raises(ConfigError, match="unknown policy"):
        Arm.parse("lacip")


def test_summarise_mean_and_sample_std():
    runs = [{"policy": "a", "seed": 0, "x": 1.0}, {"policy": "a", "seed": 1, "x": 3.0}]
    (row,) = summarise(runs)
    assert row["x"] == 2.0 and row["x_std"] == pytest.approx(1.414, abs=1e-2)


def test_compare_on_file_data_reports_loss_not_shapeworld_scores(tmp_path, monkeypatch):
    """A run on the LaCLIP-layout sample has no ShapeWorld test split: the table holds loss and time instead."""
    from pathlib import Path

    monkeypatch.setenv("LACLIP_LITE_CACHE", str(tmp_path / "cache"))
    samples = Path(__file__).resolve().parents[1] / "data_samples" / "laclip"
    summary = compare("clip,laclip", "0", tmp_path / "cmp", preset="test", progress=False, augment="llm",
                      overrides=[f"data.source={samples}", "train.steps=2", "train.batch_size=8"])
    assert all("final_loss" in r and not any("top1" in k for k in r) for r in summary)
    text = (tmp_path / "cmp" / "summary.md").read_text()
    assert "file data" in text and "final_loss" in text and (tmp_path / "cmp" / "compare.png").exists()


def test_markdown_table_shows_std_only_over_several_seeds():
    from laclip_lite.experiments import summary_markdown
    rows = [{"policy": "a", "seeds": 3, "x": 1.0, "x_std": 0.5}, {"policy": "b", "seeds": 1, "x": 2.0, "x_std": 0.0}]
    assert summary_markdown(rows, ["x", "y"]).splitlines()[2:] == ["| a | 1.0 ± 0.5 | - |", "| b | 2.0 | - |"]


def test_runs_start_dearest_first_and_results_keep_their_order():
    from laclip_lite.config import preset
    from laclip_lite.experiments import run_cost
    from laclip_lite.utils import parallel_map

    assert list(parallel_map(abs, [-1, -3, -2], jobs=2)) == [1, 3, 2]                # in order
    assert sorted(parallel_map(abs, [-1, -3, -2], jobs=2, cost=abs)) == [1, 2, 3]     # as they finish
    base = preset("tiny-scarce")
    mt, resnet, long = preset("tiny-scarce"), preset("tiny-scarce"), preset("tiny-scarce")
    mt.train.policy = "mt"
    resnet.model.vision, resnet.model.vision_width = "resnet", 16
    long.train.steps *= 2
    assert run_cost(base) < run_cost(mt) < run_cost(long)       # MT's 5 texts: ~1.7x; twice the steps: 2x
    assert run_cost(resnet) > 2 * run_cost(base)


def test_compare_over_worlds_pairs_by_world_and_seed_and_writes_contrasts(tmp_path, monkeypatch):
    monkeypatch.setenv("LACLIP_LITE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cmp"
    compare("clip,laclip", "0,1", out, preset="test", template_sets=("default", "heldout"), progress=False,
            worlds="0,1")
    assert (out / "laclip-s1").is_dir() and (out / "laclip-w1-s1").is_dir()        # world 0 keeps its old names
    runs = list(csv.DictReader(open(out / "runs.csv")))
    assert sorted((r["policy"], r["world"], r["seed"]) for r in runs)[:2] == [("clip", "0", "0"), ("clip", "0", "1")]
    assert "val/color_shape_top1" in runs[0]                                   # scored on validation too
    rows = list(csv.DictReader(open(out / "contrasts.csv")))
    assert [(r["world"], r["contrast"], r["pairs"]) for r in rows] == [
        ("0", "laclip − clip", "2"), ("1", "laclip − clip", "2"), ("pooled", "laclip − clip", "4")]
    text = (out / "summary.md").read_text()
    assert "Per world" in text and "clip (world 1)" in text and "| pooled | laclip − clip | 4 |" in text
    assert "mean ± std over 4 runs (2 worlds x 2 seeds)" in text             # not "over 4 seeds"


def test_run_experiment_under_torchrun_reads_the_run_folder_back(tmp_path, monkeypatch):
    """nproc_per_node=2: the training runs as 2 gloo processes under torchrun, the scores come from the run
    folder it wrote; the same run in one process trains to the same weights (the gathered loss is exact)."""
    import torch

    from laclip_lite.config import build_config
    from laclip_lite.experiments import run_experiment

    monkeypatch.setenv("LACLIP_LITE_CACHE", str(tmp_path / "cache"))
    cfg = build_config("test", ["train.device=cpu", "train.batch_size=8", "train.policy=mt", "data.augment=shapes"])
    two = run_experiment(cfg, tmp_path / "two", template_sets=("default",), progress=False, nproc_per_node=2)
    state = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert state["world_size"] == 2 and state["step"] == 4 and "color_shape_top1" in two
    assert (tmp_path / "two" / "torchrun.log").exists()
    one_cfg = build_config("test", ["train.device=cpu", "train.batch_size=16", "train.policy=mt",
                                    "data.augment=shapes"])
    one = run_experiment(one_cfg, tmp_path / "one", template_sets=("default",), progress=False)
    ref = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)["model"]
    assert max((ref[k] - v).abs().max().item() for k, v in state["model"].items()) < 1e-4
    assert one.keys() == two.keys()


def test_summarise_averages_metrics_only_whatever_the_first_run_holds():
    """runs.csv's plan.* columns are facts ('-' for a CLIP arm's identical share, a number for LaCLIP's): a summary
    whose first run is a LaCLIP one must neither average them nor trip over the CLIP rows' '-' (make demo did)."""
    from laclip_lite.experiments import summarise
    runs = [{"policy": "laclip", "seed": 0, "color_top1": 90.0, "plan.identical_max": 0.0},
            {"policy": "clip", "seed": 0, "color_top1": 70.0, "plan.identical_max": "-"},
            {"policy": "clip", "seed": 1, "color_top1": 72.0, "plan.identical_max": "-"}]
    rows = summarise(runs)
    assert [r["policy"] for r in rows] == ["laclip", "clip"] and rows[1]["color_top1"] == 71.0
    assert all("plan.identical_max" not in r for r in rows)


def test_a_run_with_best_metric_is_also_scored_at_its_best_validation_step(tmp_path, monkeypatch):
    """train.best_metric: `best/<key>` is the same evaluation at checkpoint_best.pt; its validation score equals
    the best validation row training logged (the step is chosen on val, the test split only reports it)."""
    import json

    from laclip_lite.config import build_config
    from laclip_lite.experiments import run_experiment

    monkeypatch.setenv("LACLIP_LITE_CACHE", str(tmp_path / "cache"))
    metric = "val/color_shape_top1"
    cfg = build_config("test", ["train.device=cpu", "train.steps=6", "train.eval_every=2", "train.log_every=2",
                                f"train.best_metric={metric}"])
    result = run_experiment(cfg, tmp_path / "run", template_sets=("default",), progress=False)
    logged = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    val = [(r[metric], r["step"]) for r in logged if metric in r]
    assert [s for _, s in val] == [2, 4, 6]
    best_value = max(v for v, _ in val)
    assert result[f"best/{metric}"] == pytest.approx(best_value, abs=0.01)
    assert result["best/step"] == min(s for v, s in val if v == best_value)      # the first step reaching it
    assert {"best/color_shape_top1", "best/shape_top1"} <= set(result)               # the test split, reported
    plain = run_experiment(build_config("test", ["train.device=cpu", "train.steps=6"]), tmp_path / "plain",
                           template_sets=("default",), progress=False)
    assert not any(k.startswith("best/") for k in plain)


def test_a_best_step_that_is_the_last_reuses_the_final_scores(tmp_path, monkeypatch):
    """One validation, at the last step: the best checkpoint holds the final weights, so `best/<key>` equals
    `<key>` and the run is evaluated once, not twice."""
    from laclip_lite import experiments
    from laclip_lite.config import build_config

    monkeypatch.setenv("LACLIP_LITE_CACHE", str(tmp_path / "cache"))
    calls = []
    real = experiments.evaluate
    monkeypatch.setattr(experiments, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = build_config("test", ["train.device=cpu", "train.steps=4", "train.eval_every=4",
                                "train.best_metric=val/color_shape_top1"])
    result = experiments.run_experiment(cfg, tmp_path / "run", template_sets=("default",), progress=False)
    assert result["best/step"] == 4 and len(calls) == 1
    scored = [k for k in result if not k.startswith("best/") and f"best/{k}" in result]
    assert "color_shape_top1" in scored and all(result[f"best/{k}"] == result[k] for k in scored)
