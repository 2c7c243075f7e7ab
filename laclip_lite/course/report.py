"""The demo: run the four lesson notebooks headless with their CPU defaults and write one REPORT.md.

    python -m laclip_lite.course.report --out runs/demo          # what `make demo` runs (also `laclip-lite demo`)
    python -m laclip_lite.course.report --out runs/demo --report-only

Each notebook runs with papermill into `<out>/<notebook>/` (the executed `notebook.ipynb`, its
`metrics.json`, `figures/`, and its training runs). A notebook that fails is recorded and the others still
run. `REPORT.md` then gathers, from every notebook's `metrics.json`, the items its steps marked as key
(tables and figures), with the wall time of each notebook. Training runs that already finished in `<out>` are
reused, so a rerun is quick; delete `<out>` (or `make clean`) to start over.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import yaml

from laclip_lite.commands.arguments import demo_arguments
from laclip_lite.config import parse_key_value
from laclip_lite.course.common import project_root
from laclip_lite.course.params import NOTEBOOKS as DECLARED
from laclip_lite.course.params import check_values
from laclip_lite.errors import ConfigError
from laclip_lite.utils import atomic_write_text

NOTEBOOKS = ("01_clip_basics", "02_text_rewriting", "03_laclip_training", "04_ablations")
TITLES = {"01_clip_basics": "CLIP basics", "02_text_rewriting": "Text rewriting",
          "03_laclip_training": "CLIP vs LaCLIP vs LaCLIP-MT", "04_ablations": "Ablations"}


def notebook_dir() -> Path:
    folder = project_root() / "notebooks"
    if not (folder / f"{NOTEBOOKS[0]}.ipynb").exists():
        raise FileNotFoundError(f"the lesson notebooks are not in {folder}; run the demo from a checkout")
    return folder


def run_notebook(name: str, out: Path, parameters: dict | None = None, kernel: str | None = None) -> dict:
    """Execute one lesson notebook into `out/<name>/` -> {"notebook", "status", "seconds", "error"?}."""
    import papermill as pm

    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    entry = {"notebook": name, "status": "done"}
    try:
        pm.execute_notebook(str(notebook_dir() / f"{name}.ipynb"), str(folder / "notebook.ipynb"),
                            parameters={**(parameters or {}), "out_dir": str(folder.resolve())},
                            kernel_name=kernel, progress_bar=False)
    except Exception as e:                                   # recorded; the other notebooks still run
        entry.update(status="failed", error=f"{getattr(e, 'ename', type(e).__name__)}: "
                                            f"{getattr(e, 'evalue', str(e))}".strip())
    entry["seconds"] = round(time.perf_counter() - t0, 1)
    return entry


def run_demo(out: str | Path = "runs/demo", notebooks=NOTEBOOKS, parameters: dict | None = None,
             kernel: str | None = None, progress: bool = True) -> Path:
    """Run `notebooks` (default: all four, CPU defaults) into `out`, then write `out/REPORT.md`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings_path = out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    for name in notebooks:
        if name not in NOTEBOOKS:
            raise ValueError(f"unknown notebook {name!r} (known: {', '.join(NOTEBOOKS)})")
        if progress:
            print(f"demo: running {name} ...", flush=True)
        mine = {k: v for k, v in (parameters or {}).items() if k in DECLARED[name]}   # e.g. 02 has no steps
        entry = run_notebook(name, out, mine, kernel)
        timings[name] = entry
        atomic_write_text(timings_path, json.dumps(timings, indent=1))
        if progress:
            print(f"demo: {name} {entry['status']} in {entry['seconds']} s"
                  + (f": {entry['error'].splitlines()[0]}" if entry.get("error") else ""), flush=True)
    path = write_report(out)
    if progress:
        total = sum(t["seconds"] for t in timings.values())
        print(f"demo: wrote {path} (notebooks took {total:.0f} s in total)", flush=True)
    return path


def _environment() -> str:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    return f"{device}, torch {torch.__version__}, Python {platform.python_version()}"


def write_report(out: str | Path) -> Path:
    """Assemble `out/REPORT.md` from each notebook's metrics.json (key tables and figures) and timings.json."""
    out = Path(out)
    timings = json.loads((out / "timings.json").read_text()) if (out / "timings.json").exists() else {}
    lines = ["# laclip_lite demo report", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M')} on {_environment()}. Every notebook ran headless "
             "with papermill and its CPU defaults; the executed notebooks are the full record.", "",
             "| notebook | status | wall time | executed notebook |", "|---|---|---:|---|"]
    for name in NOTEBOOKS:
        t = timings.get(name)
        status = t["status"] if t else "not run"
        if t and t.get("error"):
            status += ": " + " ".join(t["error"].split())[:120]
        seconds = f"{t['seconds']:.0f} s" if t else "-"
        lines.append(f"| {name} | {status} | {seconds} | [{name}/notebook.ipynb]({name}/notebook.ipynb) |")
    total = sum(t["seconds"] for t in timings.values())
    lines += ["", f"Total: {total:.0f} s ({total / 60:.1f} min).", ""]
    for name in NOTEBOOKS:
        metrics_path = out / name / "metrics.json"
        lines += [f"## {name[:2]} · {TITLES[name]}", ""]
        if not metrics_path.exists():
            lines += ["_No metrics: the notebook did not finish (see the table above)._", ""]
            continue
        result = json.loads(metrics_path.read_text())
        for item in result.get("report", []):
            if not item.get("key"):
                continue
            if item.get("title"):
                lines += [f"### {item['title']}", ""]
            if "figure" in item:
                lines += [f"![{item.get('title', '')}]({name}/{item['figure']})", ""]
            else:
                lines += [item["markdown"].strip(), ""]
    path = out / "REPORT.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def _parse_parameters(items: list[str]) -> dict:
    out = {}
    for item in items:
        k, v = parse_key_value(item, "-p", "steps=200")
        try:
            out[k] = yaml.safe_load(v) if v else v
        except yaml.YAMLError:
            out[k] = v
    return out


def check_demo(names: list[str], parameters: dict) -> None:
    """Every notebook name known, every -p name declared by at least one of them, every value of its kind
    (ConfigError before any notebook starts)."""
    unknown = [n for n in names if n not in NOTEBOOKS]
    if unknown:
        raise ConfigError(f"--only: unknown notebook(s) {', '.join(unknown)} (known: {', '.join(NOTEBOOKS)})")
    known = sorted({k for n in names for k in DECLARED[n]})
    for key in parameters:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=2)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise ConfigError(f"-p {key}: no notebook run here has that parameter{hint}; known: {', '.join(known)}")
    for n in names:
        check_values(n, {k: v for k, v in parameters.items() if k in DECLARED[n]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m laclip_lite.course.report", description=__doc__.splitlines()[0])
    demo_arguments(parser)          # the arguments of `laclip-lite demo`, defined once in commands/arguments.py
    args = parser.parse_args(argv)
    return run(args)


def run(args) -> int:
    if args.report_only:
        print(write_report(args.out))
        return 0
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(NOTEBOOKS)
    parameters = _parse_parameters(args.parameters)
    check_demo(names, parameters)
    run_demo(args.out, names, parameters, args.kernel)
    timings = json.loads((Path(args.out) / "timings.json").read_text())
    return 1 if any(timings[n]["status"] != "done" for n in names) else 0


if __name__ == "__main__":
    sys.exit(main())
