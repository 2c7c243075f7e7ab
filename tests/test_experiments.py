"""compare(): every (policy, seed) trained and evaluated, tables + chart written, finished runs skipped."""
import csv
import json

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
