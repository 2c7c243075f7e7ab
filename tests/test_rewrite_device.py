"""Which device each rewrite process takes (`rewrite.device`, `--device`): the choice logic with CUDA faked."""
import pytest
import torch

from laclip_lite.config import ConfigError
from laclip_lite.rewrite.device import rewrite_device


@pytest.fixture
def gpus(monkeypatch):
    """gpus(n): pretend n CUDA devices are visible (0 = no CUDA); LOCAL_RANK / CUDA_VISIBLE_DEVICES cleared."""
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def fake(n: int):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    return fake


def test_auto_without_cuda_is_cpu_and_explicit_cuda_fails(gpus):
    gpus(0)
    assert rewrite_device("auto")[0] == "cpu" and rewrite_device("auto", (3, 4))[0] == "cpu"
    assert rewrite_device("cpu") == ("cpu", "asked for")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        rewrite_device("cuda:0")


def test_auto_spreads_shards_over_visible_gpus(gpus):
    gpus(4)
    assert [rewrite_device("auto", (i, 8))[0] for i in range(8)] == [f"cuda:{i % 4}" for i in range(8)]
    assert rewrite_device("auto")[0] == "cuda:0"                  # no shard, no LOCAL_RANK
    assert rewrite_device("cuda:2", (0, 4))[0] == "cuda:2"        # explicit wins over the shard
    with pytest.raises(ConfigError, match=r"only GPUs 0\.\.3 are visible"):
        rewrite_device("cuda:4")


def test_local_rank_picks_the_gpu(gpus, monkeypatch):
    gpus(4)
    monkeypatch.setenv("LOCAL_RANK", "2")
    device, why = rewrite_device("auto", (0, 4))                  # torchrun: LOCAL_RANK wins over the shard
    assert device == "cuda:2" and "LOCAL_RANK=2" in why
    monkeypatch.setenv("LOCAL_RANK", "5")
    with pytest.raises(ConfigError, match="LOCAL_RANK=5 names no visible GPU"):
        rewrite_device("auto")


def test_one_visible_gpu_is_used_whatever_local_rank_says(gpus, monkeypatch):
    """A launcher that sets CUDA_VISIBLE_DEVICES=<i> per process leaves torch one GPU, numbered 0."""
    gpus(1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setenv("LOCAL_RANK", "3")
    device, why = rewrite_device("auto", (3, 4))
    assert device == "cuda:0" and "CUDA_VISIBLE_DEVICES=3" in why


def test_bad_spec_fails_before_work(gpus):
    from laclip_lite.config import RewriteConfig
    from laclip_lite.rewrite.job import job_settings

    gpus(0)
    with pytest.raises(ConfigError, match="expected auto, cpu, mps, cuda or cuda:N"):
        job_settings(RewriteConfig(rewriter="llm", model="m", device="gpu1"))


def test_the_rewriter_gets_the_shards_device(gpus, monkeypatch):
    from laclip_lite.config import RewriteConfig
    from laclip_lite.rewrite.job import build_rewriter

    gpus(2)
    rw = build_rewriter(RewriteConfig(rewriter="llm", model="unused-model", sources=["human"]), shard=(3, 4))
    assert rw.device_name == "cuda:1"
