"""eval.datasets during and after training, on ShapeWorld and on file data; experiments and sweeps over such runs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from laclip_lite.config import build_config
from laclip_lite.utils import read_jsonl

SAMPLES = Path(__file__).resolve().parents[1] / "data_samples"


@pytest.fixture(scope="module")
def eval_folder(tmp_path_factory) -> str:
    """The ShapeWorld test split as an ImageFolder (shape task), to score runs on."""
    from laclip_lite.data.export import export_imagefolder
    from laclip_lite.data.shapeworld import ShapeWorld

    root = tmp_path_factory.mktemp("evalset") / "shapes_if"
    export_imagefolder(ShapeWorld(seed=3, image_size=32).split("test", 24), root, "shape")
    return str(root)


def test_shapeworld_run_logs_eval_datasets_every_eval_and_at_the_end(tmp_path, eval_folder):
    from laclip_lite.train import train

    cfg = build_config("test", {"train.steps": 4, "train.log_every": 2, "train.eval_every": 2, "train.device": "cpu",
                                "eval.datasets": [eval_folder]})
    final = train(cfg, tmp_path / "run", progress=False)
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [2, 4]
    for r in rows:
        assert 0 <= r["shapes_if/top1"] <= 100 and r["shapes_if/n_images"] == 24 and "val/color_shape_top1" in r
    saved = json.loads((tmp_path / "run" / "final_metrics.json").read_text())
    assert saved == final
    wanted = {"shapes_if/top1", "shapes_if/top5", "shapes_if/mean_per_class_recall", "test/color_shape_top1"}
    assert wanted <= set(final)


def test_a_bad_eval_dataset_fails_before_training(tmp_path):
    from laclip_lite.errors import DataError
    from laclip_lite.train import Trainer

    cfg = build_config("test", {"train.device": "cpu", "eval.datasets": [str(tmp_path / "missing")]})
    with pytest.raises(DataError, match="evaluation dataset not found"):
        Trainer(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_file_data_experiment_returns_eval_dataset_metrics_or_the_loss_with_a_note(tmp_path, eval_folder):
    from laclip_lite.experiments import NO_EVAL_NOTE, run_experiment

    base = {"data.source": str(SAMPLES / "laclip" / "train.csv"), "train.device": "cpu"}
    scored = run_experiment(build_config("test", {**base, "eval.datasets": [eval_folder]}), tmp_path / "a",
                            progress=False)
    assert 0 <= scored["shapes_if/top1"] <= 100 and scored["final_loss"] > 0 and "note" not in scored
    bare = run_experiment(build_config("test", base), tmp_path / "b", progress=False)
    assert bare["note"] == NO_EVAL_NOTE and bare["final_loss"] > 0
    assert not any("/" in k for k in bare)


def test_compare_on_file_data_with_eval_datasets_tables_their_scores(tmp_path, eval_folder):
    from laclip_lite.experiments import compare

    summary = compare("clip", "0", tmp_path / "cmp", preset="test", progress=False,
                      overrides={"data.source": str(SAMPLES / "laclip"), "train.steps": 2, "train.device": "cpu",
                                 "eval.datasets": [{"path": eval_folder, "name": "shapes"}]})
    assert 0 <= summary[0]["shapes/top1"] <= 100
    text = (tmp_path / "cmp" / "summary.md").read_text()
    assert text.startswith("Evaluation sets") and "shapes/top1" in text and (tmp_path / "cmp" / "compare.png").exists()


def test_eval_cli_scores_a_file_data_run_on_its_eval_datasets_and_a_suite(tmp_path, eval_folder, capsys):
    from laclip_lite.cli import main
    from laclip_lite.train import train

    cfg = build_config("test", {"data.source": str(SAMPLES / "laclip"), "train.device": "cpu",
                                "eval.datasets": [{"path": eval_folder, "name": "mine"}]})
    final = train(cfg, tmp_path / "run", progress=False)
    assert main(["eval", "--checkpoint", str(tmp_path / "run"), "--device", "cpu", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert round(printed["datasets"]["mine"]["top1"], 2) == final["mine/top1"]
    assert main(["eval", "--checkpoint", str(tmp_path / "run"), "--dataset", eval_folder, "--device", "cpu",
                 "--workers", "0", "--no-progress"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["top1"] == printed["datasets"]["mine"]["top1"] and one["name"] == "shapes_if"
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"- {{path: {eval_folder}, name: zs}}\n"
                     f"- {{path: {SAMPLES / 'laclip' / 'train.csv'}, name: captions}}\n")
    assert main(["eval", "--checkpoint", str(tmp_path / "run"), "--suite", str(suite), "--out", str(tmp_path / "s"),
                 "--device", "cpu", "--workers", "0", "--no-progress"]) == 0
    capsys.readouterr()
    table = (tmp_path / "s" / "suite.md").read_text()
    assert "| zs | zeroshot |" in table and "| captions | retrieval |" in table
    csv_text = (tmp_path / "s" / "suite.csv").read_text().splitlines()
    assert csv_text[0].startswith("dataset,task,path") and len(csv_text) == 3
    assert main(["eval", "--checkpoint", str(tmp_path / "run"), "--task", "zeroshot", "--device", "cpu"]) == 2
    assert "needs --dataset" in capsys.readouterr().err


SWEEP_BODY = '''
import json, pathlib
from laclip_lite.config import build_config
from laclip_lite.experiments import run_experiment
out = pathlib.Path(out_dir)
cfg = build_config("test", {"data.source": data, "train.device": "cpu", "eval.datasets": eval_datasets})
(out / "metrics.json").write_text(json.dumps({"metrics": run_experiment(cfg, out / "run", progress=False)}))
'''


def test_sweep_aggregate_over_file_data_runs(tmp_path, eval_folder, capsys):
    pytest.importorskip("papermill")
    import nbformat
    import yaml

    from laclip_lite.cli import main
    from laclip_lite.course import sweep

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell('data = ""\neval_datasets = []\nout_dir = ""')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(SWEEP_BODY)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "train.ipynb")
    grid = {"fixed": {"data": str(SAMPLES / "laclip" / "train.csv")},
            "points": [{"name": "scored", "eval_datasets": [eval_folder]}, {"name": "bare", "eval_datasets": []}]}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    result = sweep.run_sweep(tmp_path / "train.ipynb", tmp_path / "grid.yaml", tmp_path / "out")
    assert not result.failed, result.failed
    capsys.readouterr()
    assert main(["sweep", str(tmp_path / "train.ipynb"), "--grid", str(tmp_path / "grid.yaml"),
                 "--out", str(tmp_path / "out"), "--aggregate"]) == 0
    table = capsys.readouterr().out
    rows = {r["point"]: r for r in sweep.aggregate(tmp_path / "out")}
    assert rows["scored"]["status"] == rows["bare"]["status"] == "done"
    assert 0 <= rows["scored"]["shapes_if/top1"] <= 100 and "shapes_if/top1" not in rows["bare"]
    assert rows["bare"]["final_loss"] > 0
    header = next(line for line in table.splitlines() if line.startswith("| point"))
    assert "shapes_if/top1" in header                        # the headline column is shown
