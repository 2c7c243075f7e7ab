"""The ablation grid: every paper ablation and control, CLIP baselines shared, paired t-intervals, one CSV."""
from __future__ import annotations

import csv
import math

import pytest

from laclip_lite import ablations
from laclip_lite.ablations import ABLATIONS
from laclip_lite.config import ConfigError
from laclip_lite.constants import EXPERIMENT_PRESET


def test_full_grid_has_the_five_ablations_and_the_controls():
    points, skipped = ablations.full_grid(controls="all")
    names = {p.ablation for p in points}
    assert names == set(ABLATIONS) | set(ablations.CONTROLS)
    by = {(p.ablation, ablations.label(p)): p for p in points}
    assert by[("source", "all")].overrides == {} and by[("source", "bard")].overrides == {
        "data.sources": ["bard"], "data.num_rewrites": 1}
    assert by[("leak", "shapes-leak-free")].overrides == {"rewrite.leak_free": True}
    assert by[("faithfulness", "25%")].overrides == {"rewrite.error_rate": 0.25}
    assert by[("data_size", "30000 / clip")].overrides == {"data.train_size": 30000}
    assert {(a, v) for a, v, _ in skipped} == {("augment", "llm"), ("augment", "backtranslate")}
    points, skipped = ablations.full_grid(bt_models="f,b", ablations=["augment"])
    assert ("augment", "backtranslate") in {(p.ablation, p.value) for p in points}
    with pytest.raises(ConfigError, match="unknown"):
        ablations.full_grid(controls=["nope"])


def test_every_point_is_judged_against_clip_with_the_same_model_and_data():
    points, _ = ablations.full_grid(controls="all")
    by = {(p.ablation, ablations.label(p)): p for p in points}

    def run(point, seed=0):
        return ablations.run_folder(ablations.point_config(point, seed, "test"))

    base = run(ablations.baseline_of(by[("augment", "eda")]))
    # one CLIP run serves augment=none, num_rewrites=0, every source, ViT/scratch and the leak / faithfulness controls
    for key in [("augment", "none"), ("num_rewrites", "0"), ("num_rewrites", "2"), ("source", "human"),
                ("leak", "shapes-leak-free"), ("faithfulness", "50%"), ("backbone", "vit / laclip")]:
        assert run(ablations.baseline_of(by[key])) == base, key
    assert run(by[("augment", "none")]) == run(by[("backbone", "vit / clip")]) == base
    assert run(by[("source", "chatgpt")]) == run(by[("num_rewrites", "1")]) != run(by[("source", "bard")])
    assert run(by[("source", "all")]) == run(by[("augment", "shapes")]) == run(by[("text_tower", "scratch / laclip")])
    resnet = ablations.baseline_of(by[("backbone", "resnet / laclip")])
    assert run(resnet) == run(by[("backbone", "resnet / clip")]) != base
    assert run(ablations.baseline_of(by[("data_size", "1000 / laclip")]), 1) == run(by[("data_size", "1000 / clip")], 1)
    distinct = {run(p) for p in points if p.ablation in ABLATIONS} | \
        {run(ablations.baseline_of(p)) for p in points if p.ablation in ABLATIONS}
    assert len(distinct) == 15      # clip, eda, shapes, M=2,3, M=1 (chatgpt), bard, mscoco, human, resnet x2, MiniLM x4


def test_contrast_plan_names_the_differences_the_claims_need():
    plan = ablations.contrast_plan("num_rewrites", ["0", "1", "2", "3", "4"])
    assert [p[2] for p in plan] == ["1 − 0", "2 − 1", "3 − 2", "4 − 3", "4 − 1"]
    assert ablations.contrast_plan("source", ["chatgpt", "bard", "all"]) == [
        ("chatgpt", "all", "chatgpt − all"), ("bard", "all", "bard − all")]
    assert [p[2] for p in ablations.contrast_plan("augment", ["none", "eda", "shapes"])] == ["eda − none",
                                                                                           "shapes − eda"]
    gaps = ablations.contrast_plan("data_size", ["1000 / clip", "1000 / laclip", "3000 / clip", "3000 / laclip"])
    assert gaps == [("gap 3000", "gap 1000", "gap 3000 − gap 1000")]


def test_contrasts_recomputed_from_the_committed_csv_match_the_review():
    """The committed tiny-2k ablations: the differences the issue's review recomputed by hand."""
    from pathlib import Path

    rows = ablations.read_rows(Path(__file__).resolve().parents[1] / "docs/results/ablations/ablations.csv")
    found = {(r["ablation"], r["contrast"]): r for r in ablations.contrasts(rows)}
    m = "color_shape_top1"
    eda = found["augment", "shapes − eda"]
    assert (round(eda[m], 1), round(eda[m + "_lo"], 1), round(eda[m + "_hi"], 1)) == (5.5, -1.2, 12.1)
    assert round(eda[m + "@heldout"], 1) == 2.8 and eda["pairs"] == 3
    assert eda[m + "_verdict"] == "not distinguishable with 3 pairs"
    assert round(found["num_rewrites", "4 − 1"][m], 1) == 5.0
    assert round(found["faithfulness", "50% − 0%"][m], 1) == -5.4
    assert found["augment", "eda − none"][m + "_verdict"] == "eda > none"


def test_contrasts_pair_by_world_and_seed_and_report_each_world_and_pooled():
    m = "color_shape_top1"
    rows = [{"ablation": "augment", "setting": s, "world": w, "seed": seed, m: v + 10 * w}
            for w in (0, 1) for seed in (0, 1, 2) for s, v in (("none", seed), ("shapes", seed + 5 + 0.1 * seed))]
    found = ablations.contrasts(rows, metrics=[m])
    assert [(r["world"], r["pairs"]) for r in found] == [("0", 3), ("1", 3), ("pooled", 6)]
    assert all(abs(r[m] - 5.1) < 1e-9 and r[m + "_verdict"] == "shapes > none" for r in found)
    cfg = ablations.point_config(ablations.full_grid(ablations=["augment"])[0][0], 0, "test", world=2)
    assert cfg.data.world_seed == 2 and ablations.run_folder(cfg).endswith("-w2-s0")
    assert "-w" not in ablations.run_folder(ablations.point_config(ablations.full_grid(ablations=["augment"])[0][0],
                                                                    0, "test"))


def test_t_interval_over_seeds():
    mean, lo, hi = ablations.t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)              # t(0.975, df=2) * sd (1) / sqrt(n)
    assert mean == 2.0 and lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)
    assert math.isnan(ablations.t_interval([5.0])[1])


def test_summary_pairs_each_seed_with_its_baseline():
    m, h = "color_shape_top1", "color_shape_top1@heldout"
    rows = [{"ablation": "augment", "setting": s, "seed": seed, m: v, h: v - 1, f"baseline/{m}": b,
             f"baseline/{h}": b - 1} for s, seed, v, b in [("none", 0, 20, 20), ("none", 1, 30, 30),
                                                          ("shapes", 0, 31, 20), ("shapes", 1, 39, 30)]]
    summary = ablations.summarise(rows, [m, h])
    none, shapes = summary
    assert f"{m}_diff" not in none and none[m] == 25
    assert shapes[f"{m}_diff"] == 10 and shapes[f"{m}_lo"] < 10 < shapes[f"{m}_hi"]   # diffs 11 and 9
    table = ablations.markdown(summary, m)
    assert "| augment | shapes | 2 | 35.0 ± 5.7 | +10.0 [" in table


def test_ablate_end_to_end_writes_one_csv_table_and_figures(tmp_path):
    out = tmp_path / "abl"
    summary = ablations.ablate([0, 1], out, ablations=[], controls=["leak"], preset="test", jobs=1, progress=False)
    assert [s["setting"] for s in summary] == ["none", "shapes", "shapes-leak-free"]
    with open(out / "ablations.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and list(rows[0])[:4] == ["ablation", "setting", "world", "seed"]
    assert "color_shape_top1@heldout" in rows[0]
    assert len(list((out / "runs").iterdir())) == 6               # CLIP ran once per seed, shared
    text = (out / "ablations.md").read_text()
    assert "95% t-interval" in text and "wall time" in text and "The 6 distinct runs trained for" in text
    assert "| leak | shapes-leak-free | 2 |" in text
    assert "| shape_top1 | Δ vs CLIP [95% CI]" in text and "| color_top1 | Δ vs CLIP [95% CI]" in text
    assert "| stand-in rewrites, leak-free |" in text and "| 0.0 |" in text      # the leak table
    assert (out / "ablations.png").exists() and (out / "ablations_heldout.png").exists()
    assert "shapes-leak-free − shapes" in (out / "contrasts.md").read_text() and "contrasts" in text
    assert "shapes-leak-free − shapes" in (out / "contrasts.csv").read_text()
    again = ablations.ablate([0, 1], out, ablations=[], controls=["leak"], preset="test", jobs=1, progress=False)
    assert again == summary                                       # the finished runs were reused


def test_cli_lists_the_grid_and_compare_defaults_to_auto_jobs(capsys):
    from laclip_lite.cli import build_parser, main
    from laclip_lite.experiments import auto_jobs

    assert main(["ablate", "--out", "unused", "--list", "--ablations", "source", "--controls", "leak"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 + 3 and lines[4].startswith("source\tall\tlaclip:shapes")
    args = build_parser().parse_args(["compare", "--out", "x"])
    assert args.preset == EXPERIMENT_PRESET and args.jobs == 0       # 0: auto_jobs
    assert 1 <= auto_jobs("cpu") and auto_jobs("cpu", runs=1) == 1


def test_skip_leaves_grid_values_out_and_rejects_unknown_ones():
    points, skipped = ablations.full_grid(ablations=["text_tower"], skip=["text_tower=minilm-unlocked"])
    assert {p.value for p in points} == {"scratch", "minilm-locked"}
    assert ("text_tower", "minilm-unlocked", "--skip") in skipped
    with pytest.raises(ConfigError, match="text_tower=nope"):
        ablations.full_grid(ablations=["text_tower"], skip=["text_tower=nope"])


def test_new_controls_policy_standin_subsets_and_the_data_epochs_grid():
    points, _ = ablations.full_grid(ablations=[], controls=["policy", "standin", "rewrite_subsets", "data_epochs"])
    by = {(p.ablation, ablations.label(p)): p for p in points}
    assert by[("policy", "mt")].arm == "mt:shapes" and by[("standin", "partial")].overrides == {
        "rewrite.standin": "partial"}
    assert sum(p.ablation == "rewrite_subsets" and p.arm != "clip" for p in points) == 15     # 4 + 6 + 4 + 1
    assert by[("data_epochs", "3000x35 / laclip")].overrides == {"data.train_size": 3000, "train.epochs": 35,
                                                                  "train.best_metric": "val/color_shape_top1"}
    cfg = ablations.point_config(by[("data_epochs", "3000x35 / clip")], 0, "tiny-2k")
    assert cfg.train.eval_every == (3000 // 256) * 35 // 10          # 10 validations to choose the best step
    base = ablations.point_config(ablations.baseline_of(by[("data_epochs", "3000x35 / laclip")]), 0, "tiny-2k")
    assert ablations.run_folder(cfg) == ablations.run_folder(base) and cfg.train.epochs == 35
    full = ablations.point_config(by[("standin", "full")], 0, "test")
    assert ablations.run_folder(full) == ablations.run_folder(ablations.point_config(by[("policy", "laclip")], 0,
                                                                                     "test"))
    assert ablations.contrast_plan("standin", ["none", "full", "denoise"]) == [
        ("denoise", "full", "denoise − full"), ("full", "none", "full − none")]
    plan = ablations.grid_plan(["1000x10 / laclip", "3000x10 / laclip", "1000x35 / laclip", "3000x35 / laclip"])
    assert [p[2] for p in plan] == ["gap 1000x35 − gap 1000x10", "gap 3000x10 − gap 1000x10",
                                    "gap 3000x35 − gap 1000x35", "gap 3000x35 − gap 3000x10"]


def test_rewrite_subsets_average_over_every_subset_of_a_size():
    m = "color_shape_top1"
    rows = [{"ablation": "rewrite_subsets", "setting": "none", "seed": s, m: 10.0} for s in (0, 1, 2)]
    for s in (0, 1, 2):
        rows += [{"ablation": "rewrite_subsets", "setting": f"M=1 {src}", "seed": s, m: v + s}
                 for src, v in (("chatgpt", 20.0), ("bard", 30.0))]
        rows += [{"ablation": "rewrite_subsets", "setting": "M=2 chatgpt+bard", "seed": s, m: 26.0 + s}]
    groups = ablations.subset_means(rows, [m])
    assert list(groups) == ["M=0", "M=1 (mean of 2 subsets)", "M=2 (mean of 1 subsets)"]
    assert [r[m] for r in groups["M=1 (mean of 2 subsets)"]] == [25.0, 26.0, 27.0]
    found = {r["contrast"]: r for r in ablations.contrasts(rows, metrics=[m])}
    assert found["M=1 (mean of 2 subsets) − M=0"][m] == 16.0          # (25, 26, 27) - 10
    assert found["M=2 (mean of 1 subsets) − M=1 (mean of 2 subsets)"][m] == 1.0


def test_phase_figure_draws_one_panel_per_metric():
    summary = [{"ablation": "data_epochs", "setting": f"{n}x{e} / laclip", "seeds": 3,
                **{f"{m}_{k}": v for m in ("color_shape_top1", "shape_top1") for k, v in
                   (("diff", 1.0), ("lo", -1.0), ("hi", 3.0))}} for n in (1000, 3000) for e in (10, 35)]
    fig = ablations.phase_figure(summary)
    assert len(fig.axes) == 4                                 # two panels, each with its colour bar
    assert "paper" in fig._suptitle.get_text()


def test_standin_table_describes_every_mode():
    text = ablations.standin_table("test")
    for mode in ("full", "denoise", "structure", "random-lexicon", "partial"):
        assert f"| {mode} |" in text
    assert "| full | 100.0 |" in text and "| denoise | 100.0 |" in text and "| structure | 100.0 |" in text


def test_ablate_and_notebook_04_share_their_runs(tmp_path):
    """One run-folder naming (`ablations.run_folder`): a run notebook 04 trained is reused by `ablate` into the
    same folder, and one `ablate` trained is reused by the notebook; nothing trains twice."""
    from unittest import mock

    from laclip_lite.course import common, lesson04
    from laclip_lite.course import params as P

    params = {**P.defaults("04_ablations"), "preset": "test", "steps": None, "overrides": {}, "jobs": 1,
              "ablations": ["augment"], "values": {"augment": ["none", "eda"]}}
    lesson = common.Lesson("04_ablations", params, tmp_path)
    lesson.progress = False
    points, _ = ablations.ablation_points(["augment"], {"augment": ["none", "eda"]})
    eda = [p for p in points if p.value == "eda"]
    with mock.patch("laclip_lite.course.common.display_markdown"):
        lesson04.run_ablations(lesson, eda)                               # the notebook trains LaCLIP-EDA
    runs = tmp_path / "runs"
    (eda_run,) = runs.iterdir()
    stamp = (eda_run / "result.json").stat().st_mtime_ns
    rows = ablations.run_grid(points, [0], tmp_path, preset="test", overrides=lesson.overrides(), jobs=1,
                              progress=False)
    assert {r["run"] for r in rows} == {eda_run.name, rows[0]["run"]} and len(list(runs.iterdir())) == 2
    assert (eda_run / "result.json").stat().st_mtime_ns == stamp             # ablate reused the notebook's run
    clip_run = runs / rows[0]["run"]
    stamps = {d.name: (d / "result.json").stat().st_mtime_ns for d in runs.iterdir()}
    with mock.patch("laclip_lite.course.common.display_markdown"):
        again = lesson04.run_ablations(lesson, points)                   # the notebook reuses ablate's CLIP run
    assert {d.name: (d / "result.json").stat().st_mtime_ns for d in runs.iterdir()} == stamps
    assert lesson04.run_folder(lesson, points[0]) == clip_run
    assert [r["color_shape_top1"] for r in again] == [r["color_shape_top1"] for r in rows]
