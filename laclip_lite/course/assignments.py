"""Course assignments from one source notebook: a student release, and an autograder.

An instructor writes one **source notebook** per assignment (in `laclip_lite/course/assignments/`, shipped with
the package) with the solutions
in it, using nbgrader's conventions, so the same files also work with nbgrader itself:

* a cell's role is its `metadata["nbgrader"]` (schema 3):
  - solution cell    `{"solution": true,  "grade": false, "locked": false, "grade_id": ...}` (student code)
  - test cell        `{"solution": false, "grade": true,  "locked": true,  "grade_id": ..., "points": N}`
  - written answer   `{"solution": true,  "grade": true,  "locked": false, "grade_id": ..., "points": N}`
    (a markdown cell: graded by a person)
  - read-only cell   `{"solution": false, "grade": false, "locked": true,  "grade_id": ...}`
* inside a solution cell, `### BEGIN SOLUTION` ... `### END SOLUTION` marks what the student writes;
  inside a test cell, `### BEGIN HIDDEN TESTS` ... `### END HIDDEN TESTS` marks checks the student never sees.
* a grade_id is `<exercise>-<part>` (e.g. `clip_loss-tests`): the part before the first `-` names the exercise
  the cell's points count towards.

`release_notebook` makes the student version (solutions -> `raise NotImplementedError()` / `YOUR ANSWER HERE`,
hidden tests removed, outputs cleared). `grade` runs a submission with the instructor's locked cells put back
(matched by grade_id, so editing or deleting a check cell changes nothing), one cell at a time in a Jupyter
kernel with a per-cell time limit: a failing cell costs only its own points, a hanging cell is stopped, the
kernel is replaced and the cells that had run cleanly are run again before grading goes on.
"""
from __future__ import annotations

import copy
import json
import math
import re
import subprocess
import tempfile
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from laclip_lite.config import ConfigError
from laclip_lite.errors import DataError

SOURCE_DIR = Path(__file__).resolve().parent / "assignments"   # package data: works from any install
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
CODE_STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
TEXT_STUB = "YOUR ANSWER HERE"
# Student code that reaches for the grading machinery; the grader flags it for a person to look at.
SUSPICIOUS = re.compile(r"course\.checks|\bchecks\s*\.\s*\w+\s*=(?!=)|setattr\(\s*checks|__code__|sys\.modules|"
                        r"CheckFailed|reference_disabled")
GRADE_ID = re.compile(r"^[A-Za-z0-9_]+(-[A-Za-z0-9_-]+)?$")   # nbgrader allows letters, digits, _ and -


# ---------------------------------------------------------------------------------------------------------
# Cell roles


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def cell_role(cell) -> str:
    """"solution" | "tests" | "written" | "readonly" | "plain" (no nbgrader role).

    "written" is nbgrader's manually graded answer (solution and grade both true): a person scores it.
    """
    m = nbgrader_meta(cell)
    if m.get("solution") and m.get("grade"):
        return "written"
    if m.get("solution"):
        return "solution"
    if m.get("grade"):
        return "tests"
    if m.get("locked"):
        return "readonly"
    return "plain"


def exercise_of(grade_id: str) -> str:
    """`clip_loss-tests` -> `clip_loss`: the exercise a cell's points count towards."""
    return grade_id.split("-", 1)[0]


def read_notebook(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"notebook not found: {path}")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as e:  # nbformat raises several kinds (JSON, validation)
        raise DataError(f"{path}: not a readable notebook ({type(e).__name__}: {e})") from e


def _lines(source: str) -> list[str]:
    return source.split("\n")


def _check_markers(lines: list[str], begin: str, end: str, where: str) -> None:
    depth = 0
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if s.startswith(begin):
            if depth:
                raise DataError(f"{where}, line {n}: '{begin}' inside another '{begin}'")
            depth = 1
        elif s.startswith(end):
            if not depth:
                raise DataError(f"{where}, line {n}: '{end}' without '{begin}'")
            depth = 0
    if depth:
        raise DataError(f"{where}: '{begin}' is never closed by '{end}'")


def validate_source(nb, name: str = "notebook") -> None:
    """Raise DataError naming the cell when a source notebook breaks the conventions above."""
    seen = set()
    for i, cell in enumerate(nb.cells):
        where = f"{name}, cell {i}"
        m, role = nbgrader_meta(cell), cell_role(cell)
        text = cell.source
        if role != "plain":
            gid = m.get("grade_id")
            if not gid or not GRADE_ID.match(gid):
                raise DataError(f"{where}: nbgrader cell needs a grade_id of letters, digits, '_' and '-' "
                                f"(got {gid!r})")
            if gid in seen:
                raise DataError(f"{where}: grade_id {gid!r} is used twice")
            seen.add(gid)
        if role in ("tests", "written") and not float(m.get("points", 0)) > 0:
            raise DataError(f"{where}: graded cell {m.get('grade_id')!r} needs points > 0")
        if role == "tests" and (cell.cell_type != "code" or not m.get("locked")):
            raise DataError(f"{where}: test cell {m.get('grade_id')!r} must be a locked code cell")
        if BEGIN_SOLUTION in text and role not in ("solution", "written"):
            raise DataError(f"{where}: '{BEGIN_SOLUTION}' in a cell not marked as a solution cell")
        if BEGIN_HIDDEN in text and role != "tests":
            raise DataError(f"{where}: '{BEGIN_HIDDEN}' in a cell not marked as a test cell")
        _check_markers(_lines(text), BEGIN_SOLUTION, END_SOLUTION, where)
        _check_markers(_lines(text), BEGIN_HIDDEN, END_HIDDEN, where)
    if nb.metadata.get("kernelspec", {}).get("name") is None:
        raise DataError(f"{name}: metadata.kernelspec.name is missing (the grader starts that kernel)")


# ---------------------------------------------------------------------------------------------------------
# Release: the student version


def _replace_regions(lines: list[str], begin: str, end: str, stub: list[str] | None) -> list[str]:
    """Replace every begin..end region (markers included) by `stub` at the begin marker's indentation."""
    out, inside = [], False
    for line in lines:
        s = line.strip()
        if s.startswith(begin):
            inside = True
            if stub is not None:
                indent = line[: len(line) - len(line.lstrip())]
                out.extend(indent + x for x in stub)
        elif s.startswith(end):
            inside = False
        elif not inside:
            out.append(line)
    return out


def strip_solution(cell) -> str:
    """The student's starting text of a solution / written-answer cell."""
    lines = _lines(cell.source)
    has_region = any(line.strip().startswith(BEGIN_SOLUTION) for line in lines)
    if cell.cell_type == "code":
        return "\n".join(_replace_regions(lines, BEGIN_SOLUTION, END_SOLUTION, CODE_STUB) if has_region else CODE_STUB)
    return "\n".join(_replace_regions(lines, BEGIN_SOLUTION, END_SOLUTION, [TEXT_STUB]) if has_region else [TEXT_STUB])


def strip_hidden(source: str) -> str:
    return "\n".join(_replace_regions(_lines(source), BEGIN_HIDDEN, END_HIDDEN, None)).rstrip("\n")


def unhide(source: str) -> str:
    """A test cell as the grader runs it: hidden tests kept, their marker lines dropped."""
    return "\n".join(line for line in _lines(source) if line.strip() not in (BEGIN_HIDDEN, END_HIDDEN))


def clear_outputs(nb) -> None:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.get("metadata", {}).pop("execution", None)


def release_notebook(source_nb, name: str = "notebook"):
    """The student version of a source notebook (a new object; the source is not changed).

    nbgrader metadata stays (nbgrader and our grader both need the grade_ids); like nbgrader's release, graded
    cells get `deletable: false` and locked cells `editable: false`, which JupyterLab enforces in its UI.
    """
    validate_source(source_nb, name)
    nb = copy.deepcopy(source_nb)
    for cell in nb.cells:
        role = cell_role(cell)
        if role in ("solution", "written"):
            cell.source = strip_solution(cell)
        elif role == "tests":
            cell.source = strip_hidden(cell.source)
        if role != "plain":                       # as nbgrader releases them: JupyterLab then protects the cells
            cell.metadata["deletable"] = False
            if role in ("tests", "readonly"):
                cell.metadata["editable"] = False
    clear_outputs(nb)
    return nb


def source_notebooks(source_dir: str | Path | None = None) -> list[Path]:
    d = Path(source_dir) if source_dir else SOURCE_DIR
    if not d.is_dir():
        raise FileNotFoundError(f"assignment source folder not found: {d}")
    paths = sorted(p for p in d.glob("*.ipynb") if not p.name.startswith("."))
    if not paths:
        raise FileNotFoundError(f"no source notebooks (*.ipynb) in {d}")
    return paths


def write_release(out_dir: str | Path, source_dir: str | Path | None = None) -> list[Path]:
    """Write the student version of every source notebook to out_dir (same file names)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in source_notebooks(source_dir):
        nb = release_notebook(read_notebook(path), path.name)
        nbformat.write(nb, out / path.name)
        written.append(out / path.name)
    return written


# ---------------------------------------------------------------------------------------------------------
# Putting the instructor's cells back


def grade_ids(nb) -> set[str]:
    return {nbgrader_meta(c)["grade_id"] for c in nb.cells if nbgrader_meta(c).get("grade_id")}


def find_source(submission, source_dir: str | Path | None = None) -> Path:
    """The source notebook a submission was released from: the one sharing the most grade_ids with it."""
    ids = grade_ids(submission)
    scored = [(len(ids & grade_ids(read_notebook(p))), p) for p in source_notebooks(source_dir)]
    best, path = max(scored, key=lambda t: t[0])
    if best == 0:
        names = ", ".join(p.name for _, p in scored)
        raise DataError(f"the submission shares no nbgrader grade_id with any source notebook ({names}); "
                        "pass the source notebook with --source")
    return path


def assemble(submission, source):
    """The notebook the grader runs: the student's cells, with every locked cell of the source put back.

    Locked cells (tests, read-only) are taken from the source by grade_id, hidden tests included; one the
    student deleted is re-inserted after the cell that precedes it in the source. Solution and plain cells
    stay the student's. nbgrader metadata on a student cell that the source doesn't know is dropped, so a
    made-up cell can't claim points; a duplicated grade_id keeps only its first cell's metadata.
    """
    src_cells = {nbgrader_meta(c)["grade_id"]: c for c in source.cells if nbgrader_meta(c).get("grade_id")}
    nb = copy.deepcopy(submission)
    nb.metadata = copy.deepcopy(source.metadata)          # kernel from the instructor, not the student
    cells, seen = [], set()
    for cell in nb.cells:
        gid = nbgrader_meta(cell).get("grade_id")
        if gid in src_cells and gid not in seen:
            seen.add(gid)
            src = src_cells[gid]
            if cell_role(src) in ("tests", "readonly"):
                cell = copy.deepcopy(src)
                cell.source = unhide(src.source)
            else:
                cell.metadata["nbgrader"] = copy.deepcopy(nbgrader_meta(src))   # points come from the source
        elif gid is not None:
            cell.metadata.pop("nbgrader", None)
        cells.append(cell)
    order = [nbgrader_meta(c).get("grade_id") for c in source.cells]
    for n, gid in enumerate(order):
        if gid is None or gid in seen or cell_role(src_cells[gid]) not in ("tests", "readonly"):
            continue
        present = [g for g in order[:n] if g in seen]
        pos = 0
        if present:
            pos = 1 + next(i for i, c in enumerate(cells) if nbgrader_meta(c).get("grade_id") == present[-1])
        cell = copy.deepcopy(src_cells[gid])
        cell.source = unhide(cell.source)
        cells.insert(pos, cell)
        seen.add(gid)
    nb.cells = cells
    clear_outputs(nb)
    return nb


# ---------------------------------------------------------------------------------------------------------
# Running cells one at a time, surviving errors, hangs and dead kernels


@dataclass
class CellRun:
    status: str            # "ok" | "error" | "timeout" | "died" | "skipped"
    error: str = ""        # "ExceptionName: message" for a failed cell


def _error_text(cell) -> str:
    for out in cell.get("outputs", []):
        if out.output_type == "error":
            return f"{out.ename}: {out.evalue}".strip()
    return ""


def _run_one(client, cell, index: int, timeout: float) -> CellRun:
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    try:
        client.execute_cell(cell, index)
    except CellTimeoutError:
        msg = f"cell ran longer than {timeout:g} s and was stopped (the kernel was restarted)"
        cell.outputs = list(cell.get("outputs", [])) + [
            nbformat.v4.new_output("error", ename="TimeoutError", evalue=msg, traceback=[f"TimeoutError: {msg}"])]
        return CellRun("timeout", f"TimeoutError: {msg}")
    except DeadKernelError:
        msg = "the kernel died while running this cell (it was restarted)"
        cell.outputs = [nbformat.v4.new_output("error", ename="DeadKernelError", evalue=msg, traceback=[msg])]
        return CellRun("died", f"DeadKernelError: {msg}")
    err = _error_text(cell)
    return CellRun("error", err) if err else CellRun("ok")


def execute_cells(nb, timeout: float = 60.0, kernel_name: str | None = None, cwd: str | None = None,
                  startup_timeout: float = 120.0) -> dict[int, CellRun]:
    """Run every code cell of `nb` in order (outputs are written into nb); return index -> CellRun.

    Errors don't stop the run. A cell that runs longer than `timeout` seconds, or kills its kernel, gets a
    fresh kernel for the cells after it: first the cells that had run cleanly are run again (so imports and
    definitions are back), then the run goes on. Each restart either finishes a cell or drops a replayed cell
    that hung again, so the run always ends.
    """
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient import NotebookClient

    if not timeout > 0:
        raise ConfigError(f"the per-cell timeout must be a positive number of seconds, got {timeout!r}")
    timeout = math.ceil(timeout)                              # nbclient counts whole seconds
    kernel_name = kernel_name or nb.metadata.get("kernelspec", {}).get("name", "python3")
    todo = deque(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip())
    results: dict[int, CellRun] = {}
    clean: list[int] = []
    with tempfile.TemporaryDirectory(prefix="laclip_grade_") as tmp:
        while todo:
            client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, allow_errors=True,
                                    shutdown_kernel="immediate", startup_timeout=startup_timeout,
                                    resources={"metadata": {"path": cwd or tmp}})
            try:
                ctx = client.setup_kernel(stderr=subprocess.DEVNULL)   # the kernel's own log, not cell output
                ctx.__enter__()
            except NoSuchKernel as e:
                raise DataError(f"no Jupyter kernel named {kernel_name!r}: install one with "
                                f"`python -m ipykernel install --user --name {kernel_name}`") from e
            try:
                if not _replay(client, nb, clean, timeout):
                    continue                                   # a replayed cell hung: new kernel, shorter replay
                while todo:
                    i = todo.popleft()
                    results[i] = _run_one(client, nb.cells[i], i, timeout)
                    if results[i].status == "ok":
                        clean.append(i)
                    elif results[i].status in ("timeout", "died"):
                        break                                  # this kernel is stuck or gone
            finally:
                ctx.__exit__(None, None, None)
    return results


def _replay(client, nb, clean: list[int], timeout: float) -> bool:
    """Re-run the cleanly-run cells on copies (recorded outputs stay). False (and the cell dropped) on a hang."""
    for i in list(clean):
        run = _run_one(client, copy.deepcopy(nb.cells[i]), i, timeout)
        if run.status in ("timeout", "died"):
            clean.remove(i)
            return False
    return True


# ---------------------------------------------------------------------------------------------------------
# Grading


@dataclass
class CellGrade:
    grade_id: str
    kind: str              # "auto" (a test cell) | "manual" (a written answer)
    points: float
    score: float | None    # None: waits for a person
    status: str            # passed | failed | timeout | died | missing | unanswered | needs manual grading
    error: str = ""


@dataclass
class GradeReport:
    submission: str
    source: str
    exercises: dict[str, list[CellGrade]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)   # student cells a person should read (see SUSPICIOUS)

    def exercise_scores(self) -> dict[str, dict]:
        out = {}
        for name, cells in self.exercises.items():
            auto = [c for c in cells if c.kind == "auto"]
            manual = [c for c in cells if c.kind == "manual"]
            out[name] = {"score": sum(c.score or 0 for c in cells), "max": sum(c.points for c in cells),
                         "auto_max": sum(c.points for c in auto),
                         "pending_manual": sum(c.points for c in manual if c.score is None)}
        return out

    @property
    def score(self) -> float:
        return sum(e["score"] for e in self.exercise_scores().values())

    @property
    def max_score(self) -> float:
        return sum(e["max"] for e in self.exercise_scores().values())

    @property
    def pending_manual(self) -> float:
        return sum(e["pending_manual"] for e in self.exercise_scores().values())

    def to_dict(self) -> dict:
        return {"submission": self.submission, "source": self.source,
                "exercises": {name: {**s, "cells": [asdict(c) for c in self.exercises[name]]}
                              for name, s in self.exercise_scores().items()},
                "total": {"score": self.score, "max": self.max_score, "pending_manual": self.pending_manual},
                "flags": list(self.flags)}

    def format(self) -> str:
        rows = [f"{self.submission}  (source: {self.source})"]
        for name, s in self.exercise_scores().items():
            note = f"  (+{s['pending_manual']:g} to grade by hand)" if s["pending_manual"] else ""
            rows.append(f"  {name:<24} {s['score']:>5g} / {s['max']:<5g}{note}")
            for c in self.exercises[name]:
                if c.status != "passed":
                    error = c.error.replace("\n", "\n        ")
                    rows.append(f"      {c.grade_id}: {c.status}" + (f" - {error}" if error else ""))
        note = f"  ({self.pending_manual:g} points wait for manual grading)" if self.pending_manual else ""
        rows.append(f"  {'TOTAL':<24} {self.score:>5g} / {self.max_score:<5g}{note}")
        rows += [f"  review by hand: {flag}" for flag in self.flags]
        return "\n".join(rows)


def _written_grade(cell, src_cell, points: float, gid: str) -> CellGrade:
    text = cell.source.strip() if cell is not None else ""
    released = strip_solution(src_cell).strip()
    if not text or text == released or text == TEXT_STUB:
        return CellGrade(gid, "manual", points, 0.0, "unanswered")
    return CellGrade(gid, "manual", points, None, "needs manual grading")


def flag_cells(submission, source) -> list[str]:
    """Student cells whose code touches the grading machinery (patching checks, swapping code objects...).

    Code in the kernel can change anything in the kernel, checks included; no in-kernel grader can prevent
    that (nbgrader can't either). These flags point a person at the cells to read; they change no score.
    """
    locked = {nbgrader_meta(c)["grade_id"] for c in source.cells if cell_role(c) in ("tests", "readonly")}
    flags = []
    for i, cell in enumerate(submission.cells):
        if cell.cell_type != "code" or nbgrader_meta(cell).get("grade_id") in locked:
            continue
        hits = sorted(set(SUSPICIOUS.findall(cell.source)))
        if hits:
            flags.append(f"cell {i} of the submission mentions {', '.join(repr(h) for h in hits)}")
    return flags


def grade(submission_path: str | Path, source: str | Path | None = None, source_dir: str | Path | None = None,
          timeout: float = 60.0, executed_path: str | Path | None = None) -> GradeReport:
    """Grade one submitted notebook; see the module docstring. `executed_path` keeps the graded run."""
    submission = read_notebook(submission_path)
    source_path = Path(source) if source else find_source(submission, source_dir)
    src = read_notebook(source_path)
    validate_source(src, source_path.name)
    nb = assemble(submission, src)
    runs = execute_cells(nb, timeout=timeout)
    if executed_path:
        nbformat.write(nb, executed_path)

    by_id = {nbgrader_meta(c).get("grade_id"): (i, c) for i, c in enumerate(nb.cells)}
    report = GradeReport(str(submission_path), str(source_path), flags=flag_cells(submission, src))
    exercises: dict[str, list[CellGrade]] = defaultdict(list)
    for src_cell in src.cells:
        role, m = cell_role(src_cell), nbgrader_meta(src_cell)
        if role not in ("tests", "written"):
            continue
        gid, points = m["grade_id"], float(m["points"])
        index, cell = by_id.get(gid, (None, None))
        if role == "written":
            exercises[exercise_of(gid)].append(_written_grade(cell, src_cell, points, gid))
            continue
        run = runs.get(index, CellRun("skipped"))
        passed = run.status == "ok"
        status = "passed" if passed else {"error": "failed"}.get(run.status, run.status)
        exercises[exercise_of(gid)].append(CellGrade(gid, "auto", points, points if passed else 0.0, status, run.error))
    report.exercises = dict(exercises)
    return report


def report_json(report: GradeReport) -> str:
    return json.dumps(report.to_dict(), indent=2)
