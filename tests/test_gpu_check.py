"""benchmarks/gpu_check.sh --dry-run: every part of the GPU check runs on the CPU at tiny sizes and writes one
JSON with the keys the GPU run fills and finite numbers (the GPU run itself needs a GPU; see benchmarks/README.md)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_writes_every_part(tmp_path):
    out = tmp_path / "check.json"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["dry_run"] is True and result["environment"]["device"] == "cpu"
    assert not [p for p in ("tests", "train_step", "data", "rewrite") if "error" in result[p]]

    tests = result["tests"]
    assert tests["returncode"] == 0 and tests["passed"] > 0 and tests["failed"] == tests["errors"] == 0
    step = result["train_step"]
    assert step["preset"] == "vit-b16" and step["params"] > 0 and step["gflop_per_sample"] > 0
    for mode in ("eager", "compiled"):
        assert step[mode]["samples_per_s"] > 0 and 0 < step[mode]["mfu_vs_measured_matmul"]
    assert step["compiled"]["backend"] and step["compile_speedup"] > 0
    data = result["data"]
    assert [r["workers"] for r in data["rows"]] == result["sizes"]["data"]["workers"] == [0, 2]
    assert all(r["images_per_s"] > 0 for r in data["rows"]) and data["kb_per_image"] > 0
    rw = result["rewrite"]
    assert rw["params"] > 0 and rw["batched"]["batch_size"] > 1 == rw["one_at_a_time"]["batch_size"]
    assert rw["batched"]["rewrites_per_s"] > 0 and rw["one_at_a_time"]["rewrites_per_s"] > 0 and rw["speedup"] > 0

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_check import finite_numbers
    assert finite_numbers(result)
    assert not finite_numbers({"a": [1.0, {"b": float("nan")}]})            # the check can fail
