"""Assignments: student release, autograder (restored checks, hangs, dead kernels), the real notebooks.

The grader machinery is tested on a tiny torch-free notebook made here (a kernel start is ~1 s); the real
assignment notebooks are graded once each as the instructor's source, the student release, and a few doctored
submissions (each a few seconds: they import torch).
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

from laclip_lite.course import assignments as A
from laclip_lite.course import checks as C
from laclip_lite.errors import DataError

# ---------------------------------------------------------------------------------------------------------
# A tiny source notebook


def _meta(kind: str, gid: str, points: float = 0) -> dict:
    m = {"grade": kind in ("tests", "written"), "solution": kind in ("solution", "written"),
         "locked": kind in ("tests", "readonly"), "grade_id": gid, "schema_version": 3}
    if points:
        m["points"] = points
    return {"nbgrader": m}


def _code(src: str, kind: str | None = None, gid: str = "", points: float = 0):
    return nbformat.v4.new_code_cell(src, metadata=_meta(kind, gid, points) if kind else {})


def _md(src: str, kind: str | None = None, gid: str = "", points: float = 0):
    return nbformat.v4.new_markdown_cell(src, metadata=_meta(kind, gid, points) if kind else {})


def _notebook(cells):
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def tiny_source():
    return _notebook([
        _md("# Tiny assignment"),
        _code("import math", "readonly", "setup"),
        _code("def double(x):\n    \"\"\"2x.\"\"\"\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
              "solution", "double-solution"),
        _code("assert double(2) == 4, 'double(2) should be 4'\n### BEGIN HIDDEN TESTS\nassert double(-3) == -6\n"
              "### END HIDDEN TESTS", "tests", "double-tests", 2),
        _code("def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION",
              "solution", "square-solution"),
        _code("assert square(3) == 9\n### BEGIN HIDDEN TESTS\nassert square(-2) == 4\n"
              "assert math.isclose(square(0.5), 0.25)\n### END HIDDEN TESTS", "tests", "square-tests", 3),
        _md("Why?\n\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION", "written", "square-why", 1),
    ])


def _cell(nb, gid):
    return next(c for c in nb.cells if A.nbgrader_meta(c).get("grade_id") == gid)


@pytest.fixture
def tiny(tmp_path):
    src = tmp_path / "source" / "tiny.ipynb"
    src.parent.mkdir()
    nbformat.write(tiny_source(), src)
    return src


def _submit(tmp_path, nb, name="submission.ipynb") -> Path:
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


# ---------------------------------------------------------------------------------------------------------
# Release


def test_release_strips_solutions_and_hidden_tests():
    rel = A.release_notebook(tiny_source())
    assert _cell(rel, "double-solution").source == (
        'def double(x):\n    """2x."""\n    # YOUR CODE HERE\n    raise NotImplementedError()')
    tests = _cell(rel, "square-tests").source
    assert tests == "assert square(3) == 9" and "HIDDEN" not in tests
    assert _cell(rel, "square-why").source == "Why?\n\nYOUR ANSWER HERE"
    assert _cell(rel, "setup").source == "import math"
    assert A.nbgrader_meta(_cell(rel, "square-tests"))["points"] == 3          # metadata kept for nbgrader
    assert "return 2 * x" in _cell(tiny_source(), "double-solution").source  # the source is not changed


def test_release_clears_outputs():
    src = tiny_source()
    src.cells[1].outputs = [nbformat.v4.new_output("stream", text="hi")]
    src.cells[1].execution_count = 3
    rel = A.release_notebook(src)
    assert rel.cells[1].outputs == [] and rel.cells[1].execution_count is None


@pytest.mark.parametrize("mutate, message", [
    (lambda nb: nb.cells[4].metadata.clear(), "not marked as a solution cell"),
    (lambda nb: A.nbgrader_meta(nb.cells[5]).update(grade_id="double-tests"), "used twice"),
    (lambda nb: A.nbgrader_meta(nb.cells[5]).pop("points"), "needs points"),
    (lambda nb: setattr(nb.cells[2], "source", "### BEGIN SOLUTION\nx = 1"), "never closed"),
    (lambda nb: A.nbgrader_meta(nb.cells[3]).update(grade_id="bad id!"), "grade_id"),
])
def test_bad_source_is_named(mutate, message):
    nb = tiny_source()
    mutate(nb)
    with pytest.raises(DataError, match=message):
        A.release_notebook(nb, "tiny.ipynb")


# ---------------------------------------------------------------------------------------------------------
# Grading the tiny notebook


def _scores(report):
    return {name: s["score"] for name, s in report.exercise_scores().items()}


@pytest.mark.slow
def test_source_scores_full_and_release_scores_zero(tiny, tmp_path):
    full = A.grade(tiny, source=tiny)
    assert _scores(full) == {"double": 2, "square": 3}
    assert full.pending_manual == 1 and full.max_score == 6
    rel = A.grade(_submit(tmp_path, A.release_notebook(A.read_notebook(tiny))), source=tiny)
    assert _scores(rel) == {"double": 0, "square": 0} and rel.pending_manual == 0
    why = rel.exercises["square"][-1]
    assert why.status == "unanswered" and why.score == 0
    assert "NotImplementedError" in rel.exercises["double"][0].error


@pytest.mark.slow
def test_tampered_and_deleted_checks_are_restored(tiny, tmp_path):
    sub = A.release_notebook(A.read_notebook(tiny))
    _cell(sub, "double-solution").source = "def double(x):\n    return x + 1"       # right on 2, wrong on -3
    _cell(sub, "double-tests").source = "pass  # the student 'fixed' the check"
    _cell(sub, "square-solution").source = "def square(x):\n    return x * x"
    sub.cells.remove(_cell(sub, "square-tests"))
    sub.cells.remove(_cell(sub, "setup"))                                         # square's hidden test needs math
    forged = _code("pass", "tests", "bonus-tests", 100)                           # a made-up graded cell
    sub.cells.append(forged)
    sub.cells.append(_code("import laclip_lite.course.checks as c\nc.check_clip_loss = print"))
    report = A.grade(_submit(tmp_path, sub), source=tiny)
    assert _scores(report) == {"double": 0, "square": 3}
    assert report.max_score == 6
    assert len(report.flags) == 1 and "'course.checks'" in report.flags[0]   # for a person to read


@pytest.mark.slow
def test_infinite_loop_is_stopped_and_grading_goes_on(tiny, tmp_path):
    sub = A.read_notebook(tiny)
    _cell(sub, "double-solution").source = (
        "def double(x):\n    while True:\n        try:\n            pass\n        except KeyboardInterrupt:\n"
        "            pass  # ignores interrupts: only a new kernel stops it")
    report = A.grade(_submit(tmp_path, sub), source=tiny, timeout=3)
    assert _scores(report) == {"double": 0, "square": 3}                     # square ran in the new kernel
    assert report.exercises["double"][0].status == "timeout"


@pytest.mark.slow
def test_dead_kernel_costs_only_its_exercise(tiny, tmp_path):
    sub = A.read_notebook(tiny)
    _cell(sub, "double-solution").source = "import os\ndef double(x):\n    os._exit(1)"
    report = A.grade(_submit(tmp_path, sub), source=tiny)
    assert _scores(report) == {"double": 0, "square": 3}
    assert report.exercises["double"][0].status == "died"


def test_find_source_matches_by_grade_ids(tiny, tmp_path):
    other = _notebook([_code("x = 1", "readonly", "other-setup")])
    nbformat.write(other, tiny.parent / "other.ipynb")
    sub = A.release_notebook(A.read_notebook(tiny))
    assert A.find_source(sub, tiny.parent) == tiny
    with pytest.raises(DataError, match="shares no nbgrader grade_id"):
        A.find_source(_notebook([_code("x = 1")]), tiny.parent)


@pytest.mark.slow
def test_cli_release_and_grade_json(tiny, tmp_path, capsys):
    from laclip_lite.cli import main

    assert main(["assignments", "--out", str(tmp_path / "release"), "--source", str(tiny.parent)]) == 0
    released = tmp_path / "release" / "tiny.ipynb"
    assert "raise NotImplementedError()" in released.read_text()
    capsys.readouterr()
    executed = tmp_path / "graded.ipynb"
    assert main(["grade", str(released), "--json", "--source-dir", str(tiny.parent), "--executed", str(executed)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total"] == {"score": 0, "max": 6, "pending_manual": 0}
    ran = A.read_notebook(executed)                       # the graded run, hidden tests and errors included
    assert "assert double(-3) == -6" in _cell(ran, "double-tests").source
    assert _cell(ran, "double-tests").outputs[0].ename == "NotImplementedError"
    assert main(["grade", str(tmp_path / "missing.ipynb")]) == 2


# ---------------------------------------------------------------------------------------------------------
# The check helpers: the right answer passes, each classic mistake is named


def _clip(img, txt, s):
    logits = s * img @ txt.T
    y = torch.arange(len(img))
    return (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y)) / 2


def _mt(img, txt, s):
    return torch.stack([_clip(img, txt[:, k], s) for k in range(txt.shape[1])]).mean()


def _zs(encode, classnames, templates, norm_each=True, norm_mean=True):
    cols = []
    for name in classnames:
        e = encode([t.replace("{}", name) for t in templates])
        e = F.normalize(e, dim=-1) if norm_each else e
        cols.append(F.normalize(e.mean(0), dim=-1) if norm_mean else e.mean(0))
    return torch.stack(cols, 1)


def _prompt(caption, pairs, k, rng, strip=True):
    chosen = rng.sample(pairs, min(k, len(pairs)))
    return "\n".join([C.PROMPT_INSTRUCTION] + [f"{p.source} => {p.target}" for p in chosen]
                     + [f"{caption.strip() if strip else caption} =>"])


def _swap(words, n, rng, distinct=True):
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(n):
        i, j = rng.sample(range(len(out)), 2) if distinct else (rng.randrange(len(out)), rng.randrange(len(out)))
        out[i], out[j] = out[j], out[i]
    return out


def test_checks_pass_correct_solutions():
    C.check_clip_loss(_clip, hidden=True)
    C.check_multi_text_loss(_mt, hidden=True)
    C.check_zero_shot_classifier(_zs, hidden=True)
    C.check_prompt_builder(_prompt, hidden=True)
    C.check_random_swap(_swap, hidden=True)


@pytest.mark.parametrize("check, wrong, message", [
    (C.check_clip_loss, lambda i, t, s: F.cross_entropy(s * i @ t.T, torch.arange(len(i))),
     "only the image->text half"),
    (C.check_clip_loss, lambda i, t, s: _clip(i, t, torch.tensor(1.0)), "logit scale is missing"),
    (C.check_clip_loss, lambda i, t, s: _clip(i, t, s.exp()), "exp() applied"),
    (C.check_clip_loss, lambda i, t, s: 2 * _clip(i, t, s), "SUM of the two halves"),
    (C.check_clip_loss, lambda i, t, s: _clip(i, t, s).item(), "did you call .item()"),
    (C.check_clip_loss, lambda i, t, s: 1.1 * _clip(i, t, s), "Hint: build logits"),
    (C.check_multi_text_loss, lambda i, t, s: _clip(i, t[:, 0], s), "only the first text"),
    (C.check_multi_text_loss, lambda i, t, s: _clip(i, F.normalize(t.mean(1), dim=-1), s), "EMBEDDINGS were averaged"),
    (C.check_multi_text_loss, lambda i, t, s: _clip(i.repeat_interleave(t.shape[1], 0), t.reshape(-1, t.shape[-1]), s),
     "one big batch"),
    (C.check_zero_shot_classifier, lambda e, c, t: _zs(e, c, t).T, "transpose it"),
    (C.check_zero_shot_classifier, lambda e, c, t: _zs(e, c, t, norm_each=False), "BEFORE averaging"),
    (C.check_zero_shot_classifier, lambda e, c, t: _zs(e, c, t, norm_mean=False), "normalised again"),
    (C.check_zero_shot_classifier, lambda e, c, t: _zs(e, c, t[:1]), "only the first template"),
    (C.check_prompt_builder, lambda c, p, k, r: _prompt(c, p, k, r, strip=False), "should be 'blue square =>'"),
    (C.check_prompt_builder, lambda c, p, k, r: _prompt(c, p[:k], k, random.Random(0)), "not taken in order"),
    (C.check_prompt_builder, lambda c, p, k, r: _prompt(c, p, k, random.Random()), "not the `random` module"),
    (C.check_random_swap, lambda w, n, r: _swap(w, n, r, distinct=False), "DIFFERENT positions"),
    (C.check_random_swap, lambda w, n, r: r.sample(w, len(w)), "shuffle the whole sentence"),
    (C.check_random_swap, lambda w, n, r: _swap(w, 1, r), "swap n times"),
])
def test_checks_name_the_mistake(check, wrong, message):
    with pytest.raises(C.CheckFailed, match=re.escape(message)):
        check(wrong)


def test_hidden_checks_switch_the_reference_off():
    from laclip_lite.losses import clip_loss as reference

    with pytest.raises(C.CheckFailed, match="the library's own function"):
        C.check_clip_loss(reference, hidden=True)
    with pytest.raises(C.CheckFailed, match="switched off"):
        C.check_clip_loss(lambda i, t, s: reference(i, t, s), hidden=True)
    C.check_clip_loss(lambda i, t, s: reference(i, t, s))      # visible checks allow it; hidden ones don't
    assert float(reference(*C._paired(4, 8, torch.Generator().manual_seed(0)), torch.tensor(5.0))) > 0  # restored


def test_sweep_answers():
    rows = C.temperature_sweep()
    assert len(rows) == len(C.SWEEP_SCALES) * len(C.SWEEP_BATCHES)
    at_256 = [r for r in rows if r["batch"] == 256]
    best = min(at_256, key=lambda r: r["loss"])["logit_scale"]
    r1 = {r["batch"]: r["R@1"] for r in rows}
    assert len({r["R@1"] for r in at_256}) == 1 and r1[16] > r1[256]   # R@1 does not depend on the scale
    C.check_sweep_answers(best, r1[16] - r1[256], hidden=True)
    with pytest.raises(C.CheckFailed, match="fill in"):
        C.check_sweep_answers(None, 1.0)
    with pytest.raises(C.CheckFailed, match="not one of the swept scales"):
        C.check_sweep_answers(7.0, 1.0)
    wrong = next(s for s in C.SWEEP_SCALES if s != best)
    C.check_sweep_answers(wrong, 1.0)                                   # well-formed: the visible check passes
    with pytest.raises(C.CheckFailed, match="lowest loss"):
        C.check_sweep_answers(wrong, r1[16] - r1[256], hidden=True)
    with pytest.raises(C.CheckFailed, match="R@1 at batch 16 minus"):
        C.check_sweep_answers(best, (r1[16] - r1[256]) / 100, hidden=True)


# ---------------------------------------------------------------------------------------------------------
# The real assignment notebooks

NOTEBOOKS = A.source_notebooks()
EXERCISES = {"assignment1_contrastive.ipynb": {"clip_loss", "zero_shot", "multi_text", "sweep"},
             "assignment2_rewrites.ipynb": {"prompt", "random_swap"}}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_source_notebooks_are_committed_clean(path):
    raw = json.loads(path.read_text())
    assert raw["metadata"]["kernelspec"]["name"] == "python3"
    assert raw["metadata"]["language_info"]["name"] == "python"
    nb = A.read_notebook(path)
    nbformat.validate(nb)
    A.validate_source(nb, path.name)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: outputs committed"
        m = A.nbgrader_meta(cell)
        if m.get("grade") and cell.cell_type == "code":
            assert m["locked"] and not m["solution"] and m["schema_version"] == 3 and m["points"] > 0
    graded = {A.exercise_of(A.nbgrader_meta(c)["grade_id"]) for c in nb.cells if A.nbgrader_meta(c).get("grade")}
    assert graded == EXERCISES[path.name]


def _auto_scores(report):
    return {name: (s["score"], s["auto_max"]) for name, s in report.exercise_scores().items()}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_solution_scores_full_marks_and_release_scores_zero(path, tmp_path):
    full = A.grade(path)
    assert all(score == top for score, top in _auto_scores(full).values()), full.format()
    assert full.score == full.max_score - full.pending_manual
    released = A.write_release(tmp_path / "release")
    report = A.grade(next(p for p in released if p.name == path.name))
    assert report.score == 0 and report.pending_manual == 0, report.format()
    assert report.max_score == full.max_score


def _one_correct(solution_id: str):
    """A1's student version with one exercise solved (the instructor's solution pasted in)."""
    src = A.read_notebook(SOURCE_A1)
    sub = A.release_notebook(src)
    _cell(sub, solution_id).source = _cell(src, solution_id).source
    return sub


SOURCE_A1 = A.SOURCE_DIR / "assignment1_contrastive.ipynb"


@pytest.mark.slow
def test_one_correct_exercise_and_tampered_checks(tmp_path):
    honest = A.grade(_submit(tmp_path, _one_correct("clip_loss-solution"), "honest.ipynb"))
    scores = {name: s["score"] for name, s in honest.exercise_scores().items()}
    assert scores == {"clip_loss": 3, "zero_shot": 0, "multi_text": 0, "sweep": 0}, honest.format()

    tampered = _one_correct("clip_loss-solution")
    _cell(tampered, "zero_shot-tests").source = "print('all good')"             # an edited check
    tampered.cells.remove(_cell(tampered, "multi_text-tests"))                  # a deleted check
    _cell(tampered, "sweep-tests").metadata["nbgrader"]["points"] = 50          # edited points
    _cell(tampered, "clip_loss-tests").source = "pass"                          # even its own check
    report = A.grade(_submit(tmp_path, tampered, "tampered.ipynb"))
    assert {n: s["score"] for n, s in report.exercise_scores().items()} == scores, report.format()
    assert report.score == honest.score == 3 and report.max_score == honest.max_score


@pytest.mark.slow
def test_infinite_loop_submission_is_stopped(tmp_path):
    src = A.read_notebook(A.SOURCE_DIR / "assignment2_rewrites.ipynb")
    sub = A.release_notebook(src)
    _cell(sub, "prompt-solution").source = "def build_prompt(caption, pairs, k, rng):\n    while True:\n        pass"
    _cell(sub, "random_swap-solution").source = _cell(src, "random_swap-solution").source
    sub.cells = [c for c in sub.cells if "build_prompt(" not in c.source or A.cell_role(c) != "plain"]  # one hang only
    report = A.grade(_submit(tmp_path, sub), timeout=15)
    # the hanging check was stopped, a new kernel re-ran the setup, and random_swap was still graded
    assert {n: s["score"] for n, s in report.exercise_scores().items()} == {"prompt": 0, "random_swap": 2}
    assert report.exercises["prompt"][0].status == "timeout"


# ---------------------------------------------------------------------------------------------------------
# nbgrader itself (optional: skipped where nbgrader is not installed)


@pytest.mark.slow
def test_nbgrader_generate_assignment_accepts_the_sources(tmp_path):
    pytest.importorskip("nbgrader")
    course = tmp_path / "course"
    (course / "source" / "laclip").mkdir(parents=True)
    for path in NOTEBOOKS:
        shutil.copy(path, course / "source" / "laclip" / path.name)
    (course / "nbgrader_config.py").write_text('c = get_config()\nc.CourseDirectory.course_id = "laclip"\n')
    bin_dir = str(Path(sys.executable).parent)                 # nbgrader runs `alembic` from PATH
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    done = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", "laclip", "--force"],
                          cwd=course, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for path in NOTEBOOKS:
        theirs = nbformat.read(course / "release" / "laclip" / path.name, as_version=4)
        ours = A.release_notebook(A.read_notebook(path))
        assert [c.source for c in theirs.cells] == [c.source for c in ours.cells]
        assert A.grade_ids(theirs) == A.grade_ids(ours)          # so `laclip-lite grade` takes nbgrader's release
