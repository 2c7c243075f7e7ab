"""stats: t-intervals, paired contrasts by (world, seed), TOST equivalence, the words an interval allows, and
choices on the validation split only."""
import math

import pytest

from laclip_lite import stats
from laclip_lite.config import ConfigError


def test_t_interval_and_pairs_by_world_and_seed():
    mean, lo, hi = stats.t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and hi - 2 == pytest.approx(4.302652729911275 / math.sqrt(3))
    a = [{"world": 0, "seed": 0, "x": 5.0}, {"world": 1, "seed": 0, "x": 7.0}, {"seed": 1, "x": 9.0}]
    b = [{"world": 0, "seed": 0, "x": 1.0}, {"world": 1, "seed": 0, "x": 2.0}, {"world": 0, "seed": 1, "x": "3"}]
    assert stats.paired_differences(a, b, "x") == {(0, 0): 4.0, (1, 0): 5.0, (0, 1): 6.0}   # no world = world 0
    assert stats.paired_differences(a, b[:1], "x") == {(0, 0): 4.0}                         # unmatched left out


def test_verdict_follows_the_interval():
    up = stats.contrast([4.0, 5.0, 6.0])
    assert stats.verdict(up, "LaCLIP", "CLIP") == "LaCLIP > CLIP"
    assert stats.verdict(stats.contrast([-4.0, -5.0, -6.0]), "a", "b") == "a < b"
    wide = stats.contrast([-3.0, 5.0, 8.0])
    assert wide["lo"] < 0 < wide["hi"] and stats.verdict(wide) == "not distinguishable with 3 pairs"
    assert stats.interval_text(up) == "+5.0 [+2.5, +7.5]"


def test_tost_calls_level_only_inside_the_margin():
    tight = [0.1, -0.1, 0.2, 0.0, -0.2]
    assert stats.tost_p(tight, margin=1.0) < 0.05
    assert stats.verdict(stats.contrast(tight, margin=1.0)) == "level within ±1 (TOST p = 0.000)"
    assert stats.tost_p(tight, margin=0.1) > 0.05                          # a margin too small: not level
    noisy = [-6.0, 4.0, 1.0]
    assert stats.tost_p(noisy, margin=2.0) > 0.05
    assert stats.verdict(stats.contrast(noisy, margin=2.0)) == "not distinguishable with 3 pairs"
    assert math.isnan(stats.tost_p([1.0]))


def test_contrast_rows_and_gaps():
    a = [{"seed": s, "x": v} for s, v in enumerate([10.0, 12.0, 14.0])]
    b = [{"seed": s, "x": v} for s, v in enumerate([1.0, 2.0, 3.0])]
    (row,) = stats.contrast_rows({"a": a, "b": b}, [("a", "b", "a − b"), ("a", "zz", "a − zz")], ["x", "y"])
    assert row["contrast"] == "a − b" and row["pairs"] == 3 and row["x"] == 10.0 and "y" not in row
    assert row["x_verdict"] == "a > b"
    gap = stats.difference_rows(a, b, ["x"])
    assert [g["x"] for g in gap] == [9.0, 10.0, 11.0]
    assert "| a − b | 3 | +10.0 [" in stats.contrast_markdown([row], ["x"])


def test_choose_uses_the_validation_split_only():
    rows = [{"setting": "a", "val/x": 1.0, "x": 9.0}, {"setting": "b", "val/x": 2.0, "x": 1.0}]
    assert stats.choose(rows, "val/x") == ("b", {"a": 1.0, "b": 2.0})
    with pytest.raises(ConfigError, match="report-only"):
        stats.choose(rows, "x")
    with pytest.raises(ConfigError, match="no row has"):
        stats.choose(rows, "val/y")
