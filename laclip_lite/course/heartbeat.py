"""Progress from trainings that run in worker processes, as a heartbeat line in the notebook.

`experiments.run_configs` (compare, ablate, notebook 04) trains in worker processes whose progress bars cannot
reach the kernel, and headless (papermill) a bar would be saved at 0% anyway. Each run appends a row to its
`metrics.jsonl` every `train.log_every` steps, so a thread in the kernel reads those files and prints one line
at most every `every_s` seconds, only when some run moved:

    [2:30] training 3 runs: clip-s0 300/500 (loss 2.41) · laclip-s0 240/500 (loss 2.95) · mt-s0 done · 62% · ETA 1:40

A few dozen lines for a ten-minute grid: readable in JupyterLab, short in papermill's log.
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _last_row(path: Path) -> dict:
    """The last complete JSON row of a metrics.jsonl ({} when there is none yet)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            return json.loads(line)
        except ValueError:
            continue                              # a row being written
    return {}


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


class Heartbeat:
    """Reads the runs' metrics files and says where they are; `line()` is one status line (None: nothing new)."""

    def __init__(self, runs: dict[str, tuple[Path, int]], done_marker: str = "result.json"):
        self.runs = {name: (Path(d), int(steps)) for name, (d, steps) in runs.items()}
        self.done_marker = done_marker
        self.started = time.perf_counter()
        self.initial = self._steps()              # steps already made (reused or resumed runs)
        self.last: dict | None = None

    def _steps(self) -> dict[str, int]:
        out = {}
        for name, (d, total) in self.runs.items():
            out[name] = total if (d / self.done_marker).exists() else min(total, int(_last_row(d / "metrics.jsonl")
                                                                                      .get("step", 0)))
        return out

    def line(self) -> str | None:
        steps = self._steps()
        if steps == self.last:
            return None
        self.last = steps
        total = sum(t for _, t in self.runs.values())
        done = sum(steps.values())
        elapsed = time.perf_counter() - self.started
        made = done - sum(self.initial.values())
        parts = []
        for name, (d, t) in self.runs.items():
            if steps[name] >= t:
                parts.append(f"{name} done")
            elif steps[name] > 0:
                loss = _last_row(d / "metrics.jsonl").get("loss")
                parts.append(f"{name} {steps[name]}/{t}" + (f" (loss {loss:.2f})" if loss is not None else ""))
        eta = f" · ETA {_clock(elapsed * (total - done) / made)}" if 0 < made and done < total else ""
        shown = " · ".join(parts) or "starting"
        return (f"[{_clock(elapsed)}] training {len(self.runs)} run{'s' * (len(self.runs) > 1)}: {shown} · "
                f"{100 * done / max(1, total):.0f}%{eta}")


@contextmanager
def heartbeat(runs: dict[str, tuple[Path, int]], every_s: float = 30.0, done_marker: str = "result.json",
              say=print) -> Iterator[Heartbeat]:
    """While the block runs, `say` a status line of `runs` ({name: (run folder, steps)}) at most every `every_s`
    seconds, when a run moved; one last line when the block ends."""
    beat = Heartbeat(runs, done_marker)
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            text = beat.line()
            if text:
                say(text)

    thread = threading.Thread(target=loop, name="laclip-heartbeat", daemon=True)
    thread.start()
    try:
        yield beat
    finally:
        stop.set()
        thread.join()
        text = beat.line()
        if text:
            say(text)
