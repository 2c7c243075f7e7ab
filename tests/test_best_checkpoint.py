"""train.best_metric keeps checkpoint_best.pt at the best validation step; clip_benchmark:<dataset> templates come
from the installed clip-benchmark package (faked here: the package is not a dependency)."""
import json
import sys

import pytest
import torch

from laclip_lite.config import ConfigError, build_config
from laclip_lite.errors import DataError
from laclip_lite.templates import get_templates
from laclip_lite.train import BEST_CHECKPOINT, CHECKPOINT, train


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LACLIP_LITE_CACHE", str(tmp_path / "cache"))


def test_best_checkpoint_is_the_best_validation_step(tmp_path):
    metric = "val/color_top1"
    run = tmp_path / "run"
    final = train(build_config("test", ["train.steps=8", "train.eval_every=2", "train.log_every=2",
                                        "train.lr=1e-2", f"train.best_metric={metric}"]), run, progress=False,
                  evaluate_at_end=False)
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    scores = [(r[metric], -r["step"]) for r in rows]
    best_value, neg_step = max(scores)                                 # the first step with the best score
    best = torch.load(run / BEST_CHECKPOINT, weights_only=True)
    assert best["step"] == -neg_step and best["best"] == {"metric": metric, "value": best_value, "step": -neg_step}
    assert final["best"]["step"] == -neg_step
    last = torch.load(run / CHECKPOINT, weights_only=True)
    assert last["step"] == 8 and last["best"] == best["best"]           # a resumed run keeps comparing to it


def test_best_metric_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="needs train.eval_every > 0"):
        build_config("test", ["train.best_metric=val/color_top1"])
    with pytest.raises(ConfigError, match="never on the test split"):
        build_config("test", ["train.best_metric=test/color_top1", "train.eval_every=2"])
    with pytest.raises(ConfigError, match="val/colour_top1 is not among the validation metrics: .*val/color_top1"):
        train(build_config("test", ["train.best_metric=val/colour_top1", "train.eval_every=2"]), tmp_path / "r",
              progress=False, evaluate_at_end=False)


def _fake_clip_benchmark(root, table: dict):
    pkg = root / "clip_benchmark"
    (pkg / "datasets").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('the kit must not import clip_benchmark')\n")
    (pkg / "datasets" / "en_zeroshot_classification_templates.json").write_text(json.dumps(table))


def test_clip_benchmark_templates_by_dataset_name(tmp_path, monkeypatch):
    _fake_clip_benchmark(tmp_path, {"toyset": ["a picture of a {c}.", "my {c}!"], "other": ["{c}"]})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "clip_benchmark", raising=False)
    assert get_templates("clip_benchmark:toyset") == ["a picture of a {}.", "my {}!"]
    assert get_templates("clip_benchmark:vtab/toyset") == get_templates("clip_benchmark:wds/toyset")
    with pytest.raises(DataError, match="no templates for dataset 'imagenet1k' .*other, toyset"):
        get_templates("clip_benchmark:imagenet1k")


def test_clip_benchmark_templates_without_the_package(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "clip_benchmark" else real(n, *a))
    with pytest.raises(FileNotFoundError, match="clip-benchmark package is not installed"):
        get_templates("clip_benchmark:imagenet1k")
