"""--gpus: each job of sweep / compare / ablate sees one GPU through CUDA_VISIBLE_DEVICES (checked on a CPU by
the environment each job sees)."""
import os
import subprocess
import sys
import time

import nbformat
import pytest
import yaml

from laclip_lite import utils
from laclip_lite.config import ConfigError


def _job_env(item: int) -> tuple[int, int, str]:
    time.sleep(0.3)                             # long enough that both workers take items
    return item, os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES", "")


def test_each_worker_keeps_one_gpu():
    seen = list(utils.parallel_map(_job_env, range(6), jobs=2, gpus=["0", "1"]))
    assert sorted(i for i, _, _ in seen) == list(range(6))
    by_worker = {}
    for _, pid, gpu in seen:
        by_worker.setdefault(pid, set()).add(gpu)
    assert all(len(gpus) == 1 for gpus in by_worker.values())          # a worker never changes its GPU
    assert {g for gpus in by_worker.values() for g in gpus} == {"0", "1"}
    one = list(utils.parallel_map(_job_env, [0], jobs=1, gpus=["3"]))  # one job: still its own process and GPU
    assert one[0][1] != os.getpid() and one[0][2] == "3"
    assert list(utils.parallel_map(_job_env, [0], jobs=1))[0][1] == os.getpid()


def test_parse_gpus():
    assert utils.parse_gpus("0,1, 3") == ["0", "1", "3"] and utils.parse_gpus("none") == []
    assert utils.parse_gpus("auto") == utils.visible_gpus()
    if not __import__("torch").cuda.is_available():
        assert utils.parse_gpus("auto") == []                            # a CPU: nothing to share out
    with pytest.raises(ConfigError, match="--gpus: cuda:0 is not a GPU index"):
        utils.parse_gpus("cuda:0")


def test_sweep_gpus_gives_each_notebook_its_own_device(tmp_path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('x = 1\nout_dir = ""')
    params.metadata["tags"] = ["parameters"]
    body = ('import json, os, pathlib, time\ntime.sleep(1)\n'
            '(pathlib.Path(out_dir) / "metrics.json").write_text(json.dumps({"metrics": '
            '{"x": x, "gpu": os.environ.get("CUDA_VISIBLE_DEVICES", "unset")}}))')
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "toy.ipynb")
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump({"x": [1, 2]}))
    out = subprocess.run([sys.executable, "-m", "laclip_lite.cli", "sweep", str(tmp_path / "toy.ipynb"), "--grid",
                          str(tmp_path / "grid.yaml"), "--out", str(tmp_path / "sweep"), "--gpus", "0,1",
                          "--jobs", "2"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    import json
    gpus = {p.parent.name: json.loads(p.read_text())["metrics"]["gpu"]
            for p in (tmp_path / "sweep").glob("*/metrics.json")}
    assert sorted(gpus.values()) == ["0", "1"], gpus


@pytest.mark.parametrize("command,target", [("compare", "laclip_lite.commands.compare.compare"),   # as the command
                                            ("ablate", "laclip_lite.commands.ablate.ablate")])      # names it
def test_compare_and_ablate_pass_the_gpus_on(monkeypatch, tmp_path, command, target):
    from laclip_lite.cli import main

    seen = {}
    module, name = target.rsplit(".", 1)
    monkeypatch.setattr(__import__(module, fromlist=[name]), name, lambda *a, **k: seen.update(k) or [])
    (tmp_path / "summary.md").write_text("")
    (tmp_path / "ablations.md").write_text("")
    assert main([command, "--out", str(tmp_path), "--gpus", "2,3"]) == 0
    assert seen["gpus"] == ["2", "3"]


def test_run_configs_hands_the_gpus_to_the_pool(monkeypatch, tmp_path):
    from laclip_lite import experiments
    from laclip_lite.config import build_config

    seen = {}

    def fake_map(fn, work, jobs, cost, gpus):
        seen.update(jobs=jobs, gpus=gpus)
        return [(job[0], {}) for job in work]

    monkeypatch.setattr(experiments.utils, "parallel_map", fake_map)
    experiments.run_configs({"a": build_config("test")}, tmp_path, jobs=1, progress=False, gpus=["5"])
    assert seen == {"jobs": 1, "gpus": ["5"]}
