"""Paired comparisons over replicates: t-intervals, paired contrasts, equivalence (TOST) and the words for them.

The one home of the kit's statistics (`compare`, `ablate` and docs/results use it). A replicate is a
(world, seed) pair: `data.world_seed` draws a new world (images, captions, rewrites, val and test splits),
`train.seed` a new training run on it. Two arms are compared by the per-pair difference of a metric:

    d_i = a[metric](world_i, seed_i) - b[metric](world_i, seed_i)

with a t-interval over the pairs (n - 1 degrees of freedom). The interval conditions on what the pairs share:
over seeds of one world it says nothing about other worlds; over several worlds it treats every (world, seed)
pair as one replicate (worlds and seeds pooled, not a two-level model). Words follow the interval:
"A > B" / "A < B" when it excludes 0, otherwise "not distinguishable with N pairs"; "level" only when the
two one-sided tests (TOST) put the difference inside ±margin at the stated alpha.
"""
from __future__ import annotations

import csv
import math
import statistics

from laclip_lite.config import ConfigError
from laclip_lite.utils import markdown_table

LEVEL = 0.95             # the two-sided level of every interval
MARGIN = 2.0             # points of accuracy: the equivalence margin of a "level" claim (stated with it)


def t_interval(values: list[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): a t-interval over the values (n - 1 degrees of freedom); nan bounds for n < 2."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return mean, math.nan, math.nan
    from scipy.stats import t

    half = t.ppf(0.5 + level / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return mean, float(mean - half), float(mean + half)


def tost_p(values: list[float], margin: float = MARGIN) -> float:
    """The p-value of the two one-sided t-tests that the mean difference lies inside (-margin, +margin): the
    larger of the two one-sided p-values (nan for n < 2; 0 or 1 when every difference is equal)."""
    n = len(values)
    if n < 2:
        return math.nan
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    if sd == 0:
        return 0.0 if abs(mean) < margin else 1.0
    from scipy.stats import t

    se = sd / math.sqrt(n)
    p_low = t.sf((mean + margin) / se, n - 1)         # H0: mean <= -margin
    p_high = t.cdf((mean - margin) / se, n - 1)       # H0: mean >= +margin
    return float(max(p_low, p_high))


def pair_key(row: dict) -> tuple[int, int]:
    """The replicate of a result row: (world, seed); a row without `world` ran on world 0 (the default
    `data.world_seed`, as every result before worlds were an axis)."""
    return int(row.get("world", 0) or 0), int(row["seed"])


def paired_differences(a_rows: list[dict], b_rows: list[dict], metric: str) -> dict[tuple, float]:
    """{(world, seed): a - b} over the replicates both sides have a value for (the others are left out)."""
    b = {pair_key(r): r[metric] for r in b_rows if _number(r.get(metric))}
    return {k: float(r[metric]) - float(b[k]) for r in a_rows
            if _number(r.get(metric)) and (k := pair_key(r)) in b}


def contrast(diffs: list[float], margin: float = MARGIN, level: float = LEVEL) -> dict:
    """The summary of paired differences: n, mean, lo, hi (t-interval), tost_p (equivalence within ±margin)."""
    mean, lo, hi = t_interval(diffs, level)
    return {"n": len(diffs), "mean": mean, "lo": lo, "hi": hi, "margin": margin, "tost_p": tost_p(diffs, margin)}


def verdict(c: dict, a: str = "A", b: str = "B", alpha: float = 1 - LEVEL) -> str:
    """The sentence an interval allows: "A > B", "A < B", "A and B level within ±m (TOST p = ...)" or
    "not distinguishable with N pairs"."""
    n = c["n"]
    if n < 2 or math.isnan(c["lo"]):
        return f"{n} pair: no interval"
    if c["lo"] > 0:
        return f"{a} > {b}"
    if c["hi"] < 0:
        return f"{a} < {b}"
    if c.get("tost_p", math.nan) < alpha:
        return f"level within ±{c['margin']:g} (TOST p = {c['tost_p']:.3f})"
    return f"not distinguishable with {n} pairs"


def interval_text(c: dict) -> str:
    """"+5.5 [-1.2, +12.1]" (the mean alone for one pair)."""
    if math.isnan(c["lo"]):
        return f"{c['mean']:+.1f}"
    return f"{c['mean']:+.1f} [{c['lo']:+.1f}, {c['hi']:+.1f}]"


def contrast_rows(groups: dict[str, list[dict]], plan: list[tuple[str, str, str]], metrics: list[str],
                  margin: float = MARGIN, **extra) -> list[dict]:
    """One row per planned contrast (a, b, label) of result-row groups: `contrast` (label), `pairs`, and per
    metric `<m>` (mean of a - b over shared (world, seed) pairs), `<m>_lo`, `<m>_hi`, `<m>_tost_p`,
    `<m>_verdict`; `extra` keys (e.g. ablation, world) are copied into every row. A contrast whose groups are
    missing is left out."""
    out = []
    for a, b, name in plan:
        if a not in groups or b not in groups:
            continue
        row = {**extra, "contrast": name, "pairs": 0}
        for m in metrics:
            diffs = list(paired_differences(groups[a], groups[b], m).values())
            if not diffs:
                continue
            c = contrast(diffs, margin)
            row["pairs"] = max(row["pairs"], c["n"])
            row.update({m: c["mean"], f"{m}_lo": c["lo"], f"{m}_hi": c["hi"], f"{m}_tost_p": c["tost_p"],
                        f"{m}_verdict": verdict(c, *name.split(" − ", 1)) if " − " in name else verdict(c)})
        out.append(row)
    return out


def difference_rows(a_rows: list[dict], b_rows: list[dict], metrics: list[str]) -> list[dict]:
    """Per-pair rows of a - b ({world, seed, metric: difference}): a gap as a group of its own, so a contrast of
    two gaps (LaCLIP - CLIP at one setting against another) is one more paired difference."""
    keys = {}
    for m in metrics:
        for k, d in paired_differences(a_rows, b_rows, m).items():
            keys.setdefault(k, {"world": k[0], "seed": k[1]})[m] = d
    return list(keys.values())


def cell(row: dict, m: str) -> str:
    """A contrast row's metric as "+5.5 [-1.2, +12.1]" ("-" where absent)."""
    if m not in row:
        return "-"
    return interval_text({"mean": row[m], "lo": row[f"{m}_lo"], "hi": row[f"{m}_hi"]})


def contrast_markdown(rows: list[dict], metrics: list[str], keys: tuple[str, ...] = (), words: str = "") -> str:
    """The contrast rows as a table: `keys` columns, the contrast, pairs, one interval per metric, and what the
    interval of `words` (default: the first metric) allows one to say."""

    words = words or metrics[0]
    cells = [{**{k: str(r.get(k, "")) for k in keys}, "contrast": r["contrast"], "pairs": str(r["pairs"]),
              **{m: cell(r, m) for m in metrics}, "reads as": r.get(f"{words}_verdict", "-")} for r in rows]
    cols = [*keys, "contrast", "pairs", *metrics, "reads as"]
    return markdown_table(cells, cols, right=["pairs", *metrics], cell=str)


VALIDATION = "val/"      # the prefix of validation-split metrics (experiments.run_experiment scores both splits)


def choose(rows: list[dict], metric: str, group: str = "setting") -> tuple[str, dict[str, float]]:
    """The group whose mean `metric` is highest -> (its name, {group: mean} of everything looked at).

    Choices use the validation split only: a `metric` that is not `val/...` (a test-split score, held-out
    templates included) is refused, so test numbers stay report-only."""

    if not metric.startswith(VALIDATION):
        raise ConfigError(f"choose: {metric!r} is not a validation-split metric; choices use val/<metric> "
                          "(test-split scores are report-only)")
    means = {}
    for name in dict.fromkeys(r[group] for r in rows):
        vals = [float(r[metric]) for r in rows if r[group] == name and _number(r.get(metric))]
        if vals:
            means[name] = statistics.fmean(vals)
    if not means:
        raise ConfigError(f"choose: no row has {metric!r} (runs scored before validation scoring was added "
                          "have test-split scores only: rerun them)")
    return max(means, key=means.get), means


TEXT_COLUMNS = ("ablation", "setting", "policy", "run", "note")


def read_rows(path) -> list[dict]:
    """A results CSV (`ablations.csv`, `runs.csv`) back as result rows: numbers as floats, `seed` / `world` as
    ints, names as text, so committed per-seed results can be recomputed without their runs."""

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        row = {}
        for k, v in r.items():
            if k in ("seed", "world") and v not in ("", None):
                row[k] = int(float(v))
            elif k in TEXT_COLUMNS or k.endswith("/run") or v in ("", None):
                row[k] = v
            else:
                try:
                    row[k] = float(v)
                except ValueError:
                    row[k] = v
        out.append(row)
    return out


def _number(v) -> bool:
    if isinstance(v, (int, float)):
        return not math.isnan(v)
    try:
        return not math.isnan(float(v))
    except (TypeError, ValueError):
        return False


__all__ = ["LEVEL", "MARGIN", "VALIDATION", "cell", "choose", "contrast", "contrast_markdown", "contrast_rows",
           "difference_rows", "interval_text", "pair_key", "paired_differences", "read_rows", "t_interval", "tost_p",
           "verdict"]
