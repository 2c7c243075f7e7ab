"""Progress from trainings in worker processes: a status line in the kernel per interval, with steps, loss, ETA."""
from __future__ import annotations

import json
import time

from laclip_lite.course.heartbeat import Heartbeat, heartbeat


def _log(d, step, loss):
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": step, "loss": loss}) + "\n")


def test_heartbeat_line_reports_steps_loss_done_and_eta(tmp_path):
    a, b, c = tmp_path / "clip-s0", tmp_path / "laclip-s0", tmp_path / "mt-s0"
    _log(c, 100, 1.0)                                    # finished before we started watching
    (c / "result.json").write_text("{}")
    beat = Heartbeat({"clip-s0": (a, 100), "laclip-s0": (b, 100), "mt-s0": (c, 100)})
    assert beat.line() == "[0:00] training 3 runs: mt-s0 done · 33%"
    assert beat.line() is None                           # nothing moved: no line
    _log(a, 50, 2.345)
    with open(a / "metrics.jsonl", "a") as f:
        f.write('{"step": 7')                            # a row being written is skipped
    beat.started -= 10                                   # 10 s in, 50 of the 200 remaining steps made
    line = beat.line()
    assert "clip-s0 50/100 (loss 2.35)" in line and "mt-s0 done" in line and "50%" in line
    assert "laclip-s0" not in line                       # not started: not listed
    assert line.endswith("ETA 0:30")                     # 10 s per 50 steps, 150 to go


def test_heartbeat_prints_at_most_once_per_interval_while_a_run_moves(tmp_path):
    d = tmp_path / "run"
    lines = []
    with heartbeat({"run": (d, 40)}, every_s=0.2, say=lines.append):
        for step in range(10, 50, 10):
            _log(d, step, 3.0 - step / 100)
            time.sleep(0.25)
    assert 3 <= len(lines) <= 6, lines
    assert "run 10/40 (loss 2.90)" in lines[0] and lines[-1].startswith("[") and "run done" in lines[-1]
    assert all("ETA" in ln for ln in lines[1:-1])
