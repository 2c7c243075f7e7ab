"""Sweeps: run a notebook once per grid point with papermill, resume, shard, and gather one table.

    laclip-lite sweep notebooks/03_laclip_training.ipynb --grid grid.yaml --out runs/sweep [--jobs 2] [--shard 0/4]

A grid file is YAML. Every top-level key except `fixed` and `points` is an axis: a list of values, crossed
with every other axis (the cartesian product, in file order). `fixed` holds parameters every point gets;
`points` is an optional list of parameter dicts crossed with the axes (each may carry a `name`):

    fixed: {preset: tiny, steps: 300}
    seed: [0, 1, 2]
    points:
      - {name: clip, policies: clip}
      - {name: rewrites-2, policies: laclip, overrides: [data.num_rewrites=2]}

Each point runs in its own folder, `OUT/<point>/`: `notebook.ipynb` (the executed notebook: the record),
`metrics.json` (written by the notebook's last cell), `params.json`, and `done.json` once it finished. A point
with `done.json` is skipped on a rerun (resume); a point whose notebook fails gets `error.txt` (the error and
its traceback) and the sweep goes on. At the end every point's metrics are gathered into `OUT/sweep.csv` and
`OUT/sweep.md`, also points other machines finished into the same folder.

`--shard i/n` runs the points whose index in the grid is i modulo n: the n shards cover the grid exactly once.
Parameter names (and types, for notebooks with declared parameters) are checked before the first point runs.

The course side of running many trainings: a notebook per point. Trainings from the library (one config per
run) go through `experiments.run_configs`; the paper's ablations are defined once in `ablations.py`, and
`ablation_sweep_yaml` writes that grid as a sweep of notebook 03 (notebook 04 prints it).
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from laclip_lite.ablations import AblationPoint
from laclip_lite.config import ConfigError, parse_key_value, read_yaml
from laclip_lite.course.params import NOTEBOOKS, ParameterError, check_values, defaults
from laclip_lite.experiments import summarise, summary_markdown
from laclip_lite.folder_lock import holds_folder
from laclip_lite.utils import atomic_write_text, markdown_table, parallel_map, parse_shard, stable_hash, threads_per_job

DONE, ERROR, METRICS, PARAMS, NOTEBOOK = "done.json", "error.txt", "metrics.json", "params.json", "notebook.ipynb"


# =========================================================================================================
# Grids
# =========================================================================================================
@dataclass
class Point:
    name: str                          # folder name under the sweep's output
    params: dict                       # papermill parameters (fixed + axes + point), without out_dir
    axes: dict = field(default_factory=dict)   # the values that vary (axes and point fields): the table's columns


def load_grid(path: str | Path) -> tuple[dict, dict, list[dict]]:
    """A grid YAML -> (fixed, axes, points). Raises ConfigError naming the file and the bad key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grid file not found: {path}")
    return parse_grid(read_yaml(path) or {}, str(path))


def parse_grid(data: dict, where: str = "grid") -> tuple[dict, dict, list[dict]]:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a grid must be a mapping of parameter -> list of values")
    fixed = data.get("fixed") or {}
    points = data.get("points") or []
    if not isinstance(fixed, dict):
        raise ConfigError(f"{where}: 'fixed' must be a mapping of parameter -> value")
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise ConfigError(f"{where}: 'points' must be a list of mappings (parameter -> value)")
    axes = {}
    for key, values in data.items():
        if key in ("fixed", "points"):
            continue
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: axis {key!r} must be a non-empty list of values "
                              f"(put a single value under 'fixed:'), got {values!r}")
        axes[key] = values
    for key in ("out_dir",):
        if key in fixed or key in axes or any(key in p for p in points):
            raise ConfigError(f"{where}: {key!r} is set by the sweep (one folder per point); remove it")
    clash = set(fixed) & (set(axes) | {k for p in points for k in p})
    if clash:
        raise ConfigError(f"{where}: {sorted(clash)} both fixed and varied")
    return fixed, axes, points


def _slug(value: Any) -> str:
    if isinstance(value, dict):
        value = "_".join(f"{k.split('.')[-1]}-{_slug(v)}" for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        value = "_".join(_slug(v) for v in value)
    text = re.sub(r"[^A-Za-z0-9._+-]+", "-", str(value).split("/")[-1] if "/" in str(value) else str(value))
    return text.strip("-") or "x"


def expand(fixed: dict, axes: dict, points: list[dict] | None = None) -> list[Point]:
    """The cartesian product of the axes (in file order), crossed with `points`; names are unique."""
    out, seen = [], set()
    for point in points or [{}]:
        point = dict(point)
        label = point.pop("name", None)
        for combo in itertools.product(*axes.values()) if axes else [()]:
            varying = {**point, **dict(zip(axes, combo))}
            params = {**fixed, **varying}
            parts = ([_slug(label)] if label else [f"{k}-{_slug(v)}" for k, v in point.items()]) + \
                    [f"{k}-{_slug(v)}" for k, v in zip(axes, combo)]
            name = "__".join(parts) or "default"
            if len(name) > 80 or name in seen:
                name = f"{name[:60]}-{stable_hash(params, length=8)}"
            seen.add(name)
            out.append(Point(name, params, {**({"name": label} if label else {}), **varying}))
    return out


def shard(points: list[Point], index: int, count: int) -> list[Point]:
    """Points whose position in the grid is `index` modulo `count` (deterministic; shards are disjoint and
    together cover the grid)."""
    return [p for k, p in enumerate(points) if k % count == index]


# =========================================================================================================
# Running a sweep
# =========================================================================================================
@dataclass
class SweepResult:
    out_dir: Path
    ran: list[str]          # points executed by this call
    skipped: list[str]      # points already finished
    failed: dict            # point -> first line of its error
    table: list[dict]       # every finished point in the folder (all shards)


def notebook_parameters(notebook: str | Path) -> dict:
    """The notebook's declared parameters {name: default} (laclip_lite.course.params), or the names papermill finds
    in its `parameters` cell for any other notebook."""
    stem = Path(notebook).stem
    if stem in NOTEBOOKS:
        return defaults(stem)
    import papermill as pm
    return {name: info.get("default") for name, info in pm.inspect_notebook(str(notebook)).items()}


def check_grid(notebook: str | Path, points: list[Point]) -> dict[str, str]:
    """Before any point runs: an unknown parameter name anywhere stops the sweep (a typo in the grid); for the
    kit's notebooks, a bad value (its type, its allowed values, the config it makes) fails just its point ->
    {point name: message}."""
    stem = Path(notebook).stem
    known = notebook_parameters(notebook)
    for p in points:
        unknown = [k for k in p.params if k not in known]
        if unknown:
            raise ParameterError(f"grid point {p.name}: {unknown} not parameters of {Path(notebook).name} "
                                 f"(its parameters: {', '.join(known)})")
    bad = {}
    if stem in NOTEBOOKS:
        for p in points:
            try:
                check_values(stem, p.params)
            except ParameterError as e:
                bad[p.name] = f"ParameterError: {e}"
    return bad


def _execute(job: tuple) -> tuple[str, str | None, float]:
    """Run one point with papermill (in a worker process when --jobs > 1) -> (name, error or None, seconds)."""
    notebook, folder, params, kernel, threads, cwd = job
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
    import papermill as pm

    folder = Path(folder)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(notebook), str(folder / NOTEBOOK), parameters={**params, "out_dir": str(folder)},
                            kernel_name=kernel, progress_bar=False, cwd=cwd)
        if not (folder / METRICS).exists():
            raise RuntimeError(f"the notebook finished but wrote no {METRICS} in {folder} (does its last cell "
                               "call lessons.finish?)")
    except Exception as e:                                     # a failed point is recorded, never fatal
        if hasattr(e, "ename"):                                # papermill: the error inside the notebook
            text = f"{e.ename}: {e.evalue} (notebook cell [{e.exec_count}])"
        else:
            text = f"{type(e).__name__}: {e}"
        atomic_write_text(folder / ERROR, _one_line(text) + "\n\n" + traceback.format_exc())
        return str(folder.name), _one_line(text), time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    atomic_write_text(folder / DONE, json.dumps({"seconds": round(seconds, 1),
                                                 "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}))
    return str(folder.name), None, seconds


def _one_line(text: str, limit: int = 300) -> str:
    """An error as one line (the first line of error.txt and the table's status)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


@holds_folder("out_dir", shard_arg="shard_spec")
def run_sweep(notebook: str | Path, grid: str | Path | dict, out_dir: str | Path, jobs: int = 1,
              shard_spec: str | None = None, kernel: str | None = None, progress: bool = True,
              gpus=()) -> SweepResult:
    """Run every point of `grid` (a YAML path or a parsed dict) in this shard; skip finished points; record
    failures; aggregate the whole folder. See the module docstring for the layout. `gpus`: each of the `jobs`
    workers (and so each notebook's kernel) sees one of them as its CUDA_VISIBLE_DEVICES."""
    notebook, out_dir = Path(notebook), Path(out_dir)
    if not notebook.is_file():
        raise ConfigError(f"notebook not found: {notebook}")
    fixed, axes, pts = load_grid(grid) if not isinstance(grid, dict) else parse_grid(grid)
    points = expand(fixed, axes, pts)
    invalid = check_grid(notebook, points)
    index, count = parse_shard(shard_spec)
    mine = shard(points, index, count)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "grid.json", json.dumps({"notebook": str(notebook), "fixed": fixed, "axes": axes,
                                                         "points": pts}, indent=1, default=str))
    todo, skipped = [], []
    for p in mine:
        folder = out_dir / p.name
        saved = folder / PARAMS
        if (folder / DONE).exists():
            old = json.loads(saved.read_text()) if saved.exists() else None
            if old is not None and old != json.loads(json.dumps(p.params, default=str)):
                raise ConfigError(f"{folder} holds a finished run with other parameters ({old}); the grid "
                                  f"changed under the same point name: use another --out, or delete {folder}")
            skipped.append(p.name)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for stale in (ERROR, METRICS):                         # left by an earlier, unfinished attempt
            (folder / stale).unlink(missing_ok=True)
        atomic_write_text(saved, json.dumps(p.params, indent=1, default=str))
        if p.name in invalid:                                  # a wrong type: fails without starting a kernel
            atomic_write_text(folder / ERROR, _one_line(invalid[p.name]) + "\n\n" + invalid[p.name] + "\n")
            continue
        todo.append(p)
    jobs = max(1, min(jobs, len(todo) or 1))
    threads = threads_per_job(jobs)
    work = [(str(notebook.resolve()), str((out_dir / p.name).resolve()), p.params, kernel, threads, os.getcwd())
            for p in todo]
    failed = {name: _one_line(msg) for name, msg in invalid.items() if name in {p.name for p in mine}}
    ran = []
    if progress:
        print(f"sweep: {len(points)} points, shard {index}/{count}: {len(mine)} here, {len(skipped)} already "
              f"finished, {len(todo)} to run", flush=True)
    for name, error, seconds in parallel_map(_execute, work, jobs, gpus=gpus):
        ran.append(name)
        if error:
            failed[name] = error
        if progress:
            print(f"sweep: {name}: {'FAILED: ' + error if error else 'done'} ({seconds:.0f} s)", flush=True)
    table = aggregate(out_dir, points)
    return SweepResult(out_dir, ran, skipped, failed, table)


# =========================================================================================================
# Aggregation
# =========================================================================================================
def flat_metrics(metrics: dict) -> dict:
    """A notebook's metrics.json -> its numeric metrics (the table's columns; text values are left out).
    Nested mappings become `outer/inner` columns (e.g. {"imagenet": {"top1": ..}} -> "imagenet/top1")."""
    out = {}

    def walk(prefix: str, values: dict) -> None:
        for k, v in values.items():
            if isinstance(v, dict):
                walk(f"{prefix}{k}/", v)
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                out[f"{prefix}{k}"] = v

    walk("", metrics.get("metrics") or {})
    return out


def aggregate(out_dir: str | Path, points: list[Point] | None = None) -> list[dict]:
    """Gather every point folder's metrics into `sweep.csv` and `sweep.md`; -> the rows.

    A row per point: its varying parameters, `status` (done / failed / pending), then its metrics. Without
    `points` (e.g. `--aggregate` alone), the points are read back from each folder's params.json.
    """
    out_dir = Path(out_dir)
    if points is None:
        points = []
        for saved in sorted(out_dir.glob(f"*/{PARAMS}")):
            points.append(Point(saved.parent.name, json.loads(saved.read_text()), {}))
        if points:
            varying = [k for k in points[0].params if len({json.dumps(p.params.get(k), default=str)
                                                            for p in points}) > 1]
            for p in points:
                p.axes = {k: p.params.get(k) for k in varying}
    rows = []
    for p in points:
        folder = out_dir / p.name
        row = {"point": p.name, **{k: _cell(v) for k, v in p.axes.items()}}
        if (folder / DONE).exists() and (folder / METRICS).exists():
            row["status"] = "done"
            row.update(flat_metrics(json.loads((folder / METRICS).read_text())))
        elif (folder / ERROR).exists():
            row["status"] = "failed: " + _one_line((folder / ERROR).read_text().split("\n", 1)[0], 160)
        else:
            row["status"] = "pending"
        rows.append(row)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    atomic_write_text(out_dir / "sweep.csv", _csv_text(rows, keys))    # shards may aggregate at the same time
    text = sweep_markdown(rows)
    over_seeds = seed_summary(rows, list(dict.fromkeys(k for p in points for k in p.axes)))
    if over_seeds:
        metrics = [k for k in over_seeds[0] if k not in ("setting", "seeds") and not k.endswith("_std")]
        atomic_write_text(out_dir / "sweep_seeds.csv", _csv_text(over_seeds, list(over_seeds[0])))
        text += ("\n\nOver the seed axis (mean ± std of the finished points; every column in sweep_seeds.csv):\n\n"
                 + summary_markdown(over_seeds, metrics[:8], group="setting"))
    atomic_write_text(out_dir / "sweep.md", text)
    return rows


def _csv_text(rows: list[dict], keys: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def seed_summary(rows: list[dict], axes: list[str]) -> list[dict]:
    """A grid with a `seed` axis (among `axes`, the grid's varying parameters): one row per setting of the other
    axes, each metric's mean and std over its finished seeds (`experiments.summarise`); [] without a seed axis
    or finished points."""
    done = [r for r in rows if r.get("status") == "done"]
    if not done or "seed" not in axes or len({r.get("seed") for r in done}) < 2:
        return []
    axes = [k for k in axes if k != "seed"]
    runs = [{"setting": ", ".join(f"{k}={r.get(k)}" for k in axes) or "all",
             **{k: v for k, v in r.items() if k not in ("point", "status", *axes)}} for r in done]
    return summarise(runs, group="setting")


def _cell(v: Any) -> Any:
    return v if isinstance(v, (int, float, str)) or v is None else json.dumps(v, default=str)


def sweep_markdown(rows: list[dict], max_metrics: int = 8) -> str:
    """The table a person reads: point, varying parameters, status, and the first `max_metrics` metrics
    (headline metrics first; every column is in sweep.csv)."""
    if not rows:
        return "No points.\n"
    done = sum(r["status"] == "done" for r in rows)
    meta = [k for k in rows[0] if k != "status"] + ["status"]
    metrics = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in meta]
    preferred = [m for m in metrics if any(h in m for h in ("color_shape_top1", "R@1")) or m.endswith("/top1")]
    shown = list(dict.fromkeys(preferred + metrics))[:max_metrics]
    head = f"{done} of {len(rows)} points done" + (f"; {len(metrics) - len(shown)} more metric columns in "
                                                     f"sweep.csv" if len(metrics) > len(shown) else "") + ".\n\n"
    return head + markdown_table(rows, meta + shown)


# =========================================================================================================
# The paper's ablations (`ablations.py`) as a sweep of notebook 03 (notebook 04 prints it)
# =========================================================================================================
def ablation_sweep_yaml(points: list[AblationPoint], params: dict, seeds: list[int]) -> str:
    """The ablation grid as a sweep grid of notebook 03 (one `points` entry per distinct point)."""
    fixed = {k: params[k] for k in ("preset", "steps", "batch_size", "device", "data") if params.get(k) is not None}
    base = params.get("overrides") or {}
    base = dict(base) if isinstance(base, dict) else dict(parse_key_value(item) for item in base)
    entries, seen = [], set()
    for pt in points:
        entry = {"name": f"{pt.ablation}-{_slug(pt.value)}-{pt.arm.split(':')[0]}", "policies": pt.arm}
        merged = {**base, **pt.overrides}                     # the notebook's overrides, then the point's
        if merged:
            entry["overrides"] = [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                                  for k, v in merged.items()]
        key = json.dumps({k: v for k, v in entry.items() if k != "name"}, sort_keys=True)
        if key not in seen:
            seen.add(key)
            entries.append(entry)
    text = yaml.safe_dump({"fixed": fixed, "seed": list(seeds), "points": entries}, sort_keys=False)
    return "# laclip-lite sweep notebooks/03_laclip_training.ipynb --grid THIS_FILE --out runs/ablations\n" + text
