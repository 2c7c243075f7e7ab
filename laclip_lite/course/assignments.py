"""Course assignments from one source notebook, released and autograded by nbgrader.

An instructor writes one **source notebook** per assignment (in `laclip_lite/course/assignments/`, shipped with
the package) with the solutions in it, in nbgrader's format:

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

The kit adds three things around nbgrader: `validate_source` names a broken source cell in one line before nbgrader
runs; `grade` runs nbgrader's autograde in a temporary course folder and reports per exercise (with each failed
check's message, whose "Likely cause" comes from `course/checks.py`); and `RestartingExecute`, nbgrader's Execute
with one change: a cell that hangs past the time limit (even ignoring interrupts) or kills its kernel gets a fresh
kernel, the cells that had run cleanly are run again, and grading goes on (nbgrader alone would stop the notebook).
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import sys
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import ensure_async, run_sync
from nbgrader.api import Gradebook
from nbgrader.converters import Autograde, GenerateAssignment
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions, Execute, LockCells
from traitlets.config import Config

from laclip_lite.config import ConfigError
from laclip_lite.errors import DataError

SOURCE_DIR = Path(__file__).resolve().parent / "assignments"   # package data: works from any install
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
ASSIGNMENT, STUDENT = "laclip", "student"                      # names inside the temporary nbgrader course
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
# Release: the student version, by nbgrader's own preprocessors


def release_notebook(source_nb, name: str = "notebook"):
    """The student version of a source notebook (a new object; the source is not changed).

    nbgrader's generate_assignment steps: lock cells (graded cells `deletable: false`, locked ones
    `editable: false`), solutions -> `raise NotImplementedError()` / `YOUR ANSWER HERE`, hidden tests removed,
    outputs cleared. nbgrader metadata stays: the grader matches cells by grade_id.
    """
    validate_source(source_nb, name)
    nb, resources = copy.deepcopy(source_nb), {}
    for step in (LockCells(), ClearSolutions(), ClearOutput(), ClearHiddenTests()):
        nb, resources = step.preprocess(nb, resources)
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
        nbformat.write(release_notebook(read_notebook(path), path.name), out / path.name)
        written.append(out / path.name)
    return written


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


# ---------------------------------------------------------------------------------------------------------
# Autograde: nbgrader's, with a kernel that survives hangs and crashes


class RestartingExecute(Execute):
    """nbgrader's Execute; a cell that times out or kills the kernel costs only that cell.

    nbgrader interrupts a cell at the time limit, so a loop that ignores KeyboardInterrupt stalls every later cell,
    and a dead kernel stops the notebook. Here either gets a fresh kernel; the cells that had run cleanly are run
    again (so imports and definitions are back); the cell gets a TimeoutError / DeadKernelError output.
    """

    interrupt_on_timeout = False           # a timeout raises CellTimeoutError, handled below

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        if not hasattr(self, "_clean"):
            self._clean = []
        if cell.cell_type != "code" or not cell.source.strip():
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        try:
            await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        except (CellTimeoutError, DeadKernelError) as e:
            timed_out = isinstance(e, CellTimeoutError)
            ename = "TimeoutError" if timed_out else "DeadKernelError"
            msg = (f"cell ran longer than {self.timeout} s and was stopped (the kernel was restarted)" if timed_out
                   else "the kernel died while running this cell (it was restarted)")
            cell.outputs = list(cell.get("outputs", [])) + [
                nbformat.v4.new_output("error", ename=ename, evalue=msg, traceback=[f"{ename}: {msg}"])]
            await self._restart_and_replay()
            return cell
        if not any(o.output_type == "error" for o in cell.get("outputs", [])):
            self._clean.append(cell_index)
        return cell

    async def _restart_and_replay(self) -> None:
        """A fresh kernel that has run the clean cells again; a replayed cell that hangs again is dropped."""
        while True:
            await ensure_async(self.km.restart_kernel(now=True))
            self.kc.stop_channels()                    # a new client: no message of the old kernel is waited for
            self.kc = self.km.client()
            await ensure_async(self.kc.start_channels())
            await ensure_async(self.kc.wait_for_ready(timeout=self.startup_timeout))
            for i in list(self._clean):
                try:
                    await super().async_execute_cell(copy.deepcopy(self.nb.cells[i]), i)
                except (CellTimeoutError, DeadKernelError):
                    self._clean.remove(i)
                    break
            else:
                return

    execute_cell = run_sync(async_execute_cell)     # nbclient binds the sync name to its own coroutine


def _course(root: Path, source_path: Path, timeout: float) -> Config:
    """A temporary nbgrader course holding one source notebook; the config that grades it."""
    (root / "source" / ASSIGNMENT).mkdir(parents=True)
    shutil.copy(source_path, root / "source" / ASSIGNMENT / source_path.name)
    c = Config()
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.course_id = c.CourseDirectory.assignment_id = ASSIGNMENT
    c.CourseDirectory.student_id = STUDENT
    c.Execute.timeout = c.RestartingExecute.timeout = int(-(-timeout // 1))     # nbclient counts whole seconds
    steps = Autograde.class_traits()["autograde_preprocessors"].default()
    c.Autograde.autograde_preprocessors = [RestartingExecute if s is Execute else s for s in steps]
    c.OverwriteCells.add_missing_cells = True                 # a deleted test cell is put back and run
    c.ClearMetadataPreprocessor.preserve_cell_metadata_mask = [("nbgrader",)]   # the report reads grade_ids
    return c


def _run(app_class, config: Config, what: str) -> None:
    app = app_class(coursedir=CourseDirectory(config=config), config=config)
    app.force = True
    bin_dir = str(Path(sys.executable).parent)          # nbgrader's gradebook runs `alembic` from PATH
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = bin_dir + os.pathsep + path
    try:
        app.start()
    finally:
        os.environ["PATH"] = path
    if getattr(app, "_errors", None):
        raise DataError(f"nbgrader {what} failed: {app._errors}")


# ---------------------------------------------------------------------------------------------------------
# The report
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
    """Grade one submitted notebook with nbgrader's autograde; `executed_path` keeps the graded run.

    nbgrader puts the instructor's test cells back (edited or deleted ones, hidden tests included), drops the
    grade of a cell the source doesn't know, runs the notebook, and scores each test cell; an unchanged written
    answer scores 0, a changed one waits for a person.
    """
    if not timeout > 0:
        raise ConfigError(f"the per-cell timeout must be a positive number of seconds, got {timeout!r}")
    submission = read_notebook(submission_path)
    source_path = Path(source) if source else find_source(submission, source_dir)
    src = read_notebook(source_path)
    validate_source(src, source_path.name)
    with tempfile.TemporaryDirectory(prefix="laclip_grade_") as tmp:
        root = Path(tmp)
        config = _course(root, source_path, timeout)
        _run(GenerateAssignment, config, "generate_assignment")
        submitted = root / "submitted" / STUDENT / ASSIGNMENT
        submitted.mkdir(parents=True)
        nbformat.write(_prepared_submission(submission, src), submitted / source_path.name)
        _run(Autograde, config, "autograde")
        ran = read_notebook(root / "autograded" / STUDENT / ASSIGNMENT / source_path.name)
        with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
            grades = {g.name: (g.score, g.max_score, g.needs_manual_grade, g.cell_type)
                      for g in gb.find_submission_notebook(source_path.stem, ASSIGNMENT, STUDENT).grades}
    if executed_path:
        nbformat.write(ran, executed_path)

    errors = {nbgrader_meta(c).get("grade_id"): _error_of(c) for c in ran.cells if c.cell_type == "code"}
    exercises: dict[str, list[CellGrade]] = defaultdict(list)
    for src_cell in src.cells:                                 # in the source's order
        gid = nbgrader_meta(src_cell).get("grade_id")
        if gid not in grades:
            continue
        score, points, manual, cell_type = grades[gid]
        if cell_type == "markdown":
            cell = (CellGrade(gid, "manual", points, None, "needs manual grading") if manual
                    else CellGrade(gid, "manual", points, float(score), "unanswered"))
        else:
            ename, error = errors.get(gid, ("", ""))
            status = "passed" if score == points else {"TimeoutError": "timeout", "DeadKernelError": "died"}.get(
                ename, "failed")
            cell = CellGrade(gid, "auto", points, float(score), status, error)
        exercises[exercise_of(gid)].append(cell)
    return GradeReport(str(submission_path), str(source_path), dict(exercises), flag_cells(submission, src))


def _prepared_submission(submission, source):
    """The submission as nbgrader should see it: two gaps in nbgrader closed before it runs.

    A made-up graded cell (a grade_id the source lacks) loses its nbgrader metadata: nbgrader would drop only the
    grade_id and then reject the whole notebook as corrupt (CheckCellMetadata). A deleted read-only cell (the
    imports a hidden test needs) is put back after the cell before it in the source: nbgrader's add_missing_cells
    restores only graded and task cells.
    """
    known, nb = grade_ids(source), copy.deepcopy(submission)
    for cell in nb.cells:
        if nbgrader_meta(cell) and nbgrader_meta(cell).get("grade_id") not in known:
            cell.metadata.pop("nbgrader")
    for n, src_cell in enumerate(source.cells):
        if cell_role(src_cell) != "readonly" or nbgrader_meta(src_cell)["grade_id"] in grade_ids(nb):
            continue
        ids = [nbgrader_meta(c).get("grade_id") for c in nb.cells]
        before = [nbgrader_meta(c).get("grade_id") for c in source.cells[:n] if nbgrader_meta(c).get("grade_id") in ids]
        nb.cells.insert(ids.index(before[-1]) + 1 if before else 0, copy.deepcopy(src_cell))
    return nb


def _error_of(cell) -> tuple[str, str]:
    """(exception name, "Name: message") of a cell's error output; empty when it ran cleanly."""
    for out in cell.get("outputs", []):
        if out.output_type == "error":
            return out.ename, f"{out.ename}: {out.evalue}".strip()
    return "", ""


def report_json(report: GradeReport) -> str:
    return json.dumps(report.to_dict(), indent=2)
