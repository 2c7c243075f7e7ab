"""The two test tiers (tests/conftest.py): `--fast` leaves out slow tests, and a test not marked slow that starts a
process fails, even when it catches the error; `git` is let through."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

INNER = '''
import subprocess, sys
import pytest

def test_spawns_unmarked():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

def test_spawns_and_swallows_the_error():
    try:
        subprocess.run([sys.executable, "-c", "pass"])
    except Exception:
        pass

def test_calls_git():
    subprocess.run(["git", "--version"], capture_output=True)

def test_pure():
    assert 1 + 1 == 2

@pytest.mark.slow
def test_spawns_marked():
    subprocess.run([sys.executable, "-c", "pass"], check=True)
'''


@pytest.mark.slow     # its inner slow test starts a process
def test_guard_fails_unmarked_spawners_and_fast_leaves_slow_out(pytester):
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(test_inner=INNER)
    full = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    full.assert_outcomes(passed=3, failed=2)
    assert "test_spawns_unmarked starts a process (subprocess) but is not marked slow" in full.stdout.str()
    failed = {r.nodeid.split("::")[-1] for r in full.reprec.getreports("pytest_runtest_logreport") if r.failed}
    assert failed == {"test_spawns_unmarked", "test_spawns_and_swallows_the_error"}
    fast = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--fast")
    fast.assert_outcomes(passed=2, failed=2, deselected=1)
