"""Rewriting at scale: rewrites/s and tokens/s per shard and merged, plain progress lines without a bar, the
backend and vLLM's GPU memory share (vLLM faked: it is not installed here), --threads."""
import importlib.machinery
import json
import sys
import types
from pathlib import Path

import pytest

from laclip_lite.config import ConfigError, RewriteConfig
from laclip_lite.rewrite.job import build_rewriter, job_settings, merge, run_shard

CAPTIONS = ["cute puppy in a basket stock photo", "red car parked outside", "IMG_2041 beach sunset",
            "a bowl of soup", "man riding a bike in the city at night, editorial", "cat"]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    from tests.tiny_models import build_tiny_causal_lm
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny_llama"))


def test_rates_per_shard_and_merged(tiny_lm, tmp_path, capsys):
    cfg = RewriteConfig(rewriter="llm", model=str(tiny_lm), batch_size=2, max_new_tokens=6, sources=["human"],
                        backend="hf", threads=1, print_every_s=0)
    shards = [run_shard(CAPTIONS, tmp_path, cfg, i, 2, progress=False) for i in range(2)]
    err = capsys.readouterr().err
    assert "rewrite (llm): 1/2 batches of this run;" in err and "tokens/s" in err   # plain lines, no bar
    for shard in shards:
        assert shard["rewrites_per_s"] > 0 and shard["tokens_per_s"] > 0
        assert 0 < shard["tokens"] <= len(shard["batches_generated"]) * 2 * 6        # <= rows x max_new_tokens
    merge(tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    whole = report["all_batches"]
    assert whole["rewrites"] == len(CAPTIONS) and whole["tokens"] == sum(s["tokens"] for s in shards)
    assert whole["seconds"] == pytest.approx(sum(s["seconds"] for s in shards), abs=2e-3)
    assert whole["rewrites_per_s"] == pytest.approx(len(CAPTIONS) / whole["seconds"], rel=1e-2)
    assert report["rewrites_per_s"] is None                          # the merge itself generated nothing


def test_backend_and_vllm_memory_share_are_checked():
    with pytest.raises(ConfigError, match="rewrite.backend='tgi' is not one of"):
        job_settings(RewriteConfig(rewriter="llm", model="some/model", backend="tgi"))
    with pytest.raises(ConfigError, match="rewrite.vllm_gpu_memory must be in"):
        job_settings(RewriteConfig(rewriter="llm", model="some/model", vllm_gpu_memory=1.5))
    auto = job_settings(RewriteConfig(rewriter="llm", model="some/model"))
    assert "backend" not in auto                                     # existing caches stay valid
    assert job_settings(RewriteConfig(rewriter="llm", model="some/model", backend="hf"))["backend"] == "hf"


def test_vllm_backend_gets_the_memory_share_and_counts_tokens(tiny_lm, monkeypatch):
    seen = {}

    class Output:
        def __init__(self, text):
            self.text, self.token_ids = text, [1, 2, 3]

    class LLM:
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def generate(self, prompts, params, use_tqdm=False):
            return [types.SimpleNamespace(outputs=[Output(" A rewrite.")]) for _ in prompts]

    fake = types.ModuleType("vllm")
    fake.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    fake.LLM, fake.SamplingParams = LLM, lambda **kw: kw
    monkeypatch.setitem(sys.modules, "vllm", fake)
    cfg = RewriteConfig(rewriter="llm", model=str(tiny_lm), sources=["human"], backend="vllm", vllm_gpu_memory=0.4,
                        device="cpu")
    rewriter = build_rewriter(cfg)
    out = rewriter.generate(["p1", "p2"])
    assert out == [" A rewrite."] * 2 and seen["gpu_memory_utilization"] == 0.4
    assert rewriter.generated_tokens == 6


def test_cli_threads_and_backend_reach_the_config():
    from laclip_lite.cli import build_parser
    from laclip_lite.commands.rewrite import rewrite_config

    args = build_parser().parse_args(["rewrite", "--input", "x.txt", "--out", "o", "--rewriter", "llm", "--model",
                                      "some/model", "--threads", "3", "--backend", "hf", "--set",
                                      "vllm_gpu_memory=0.5"])
    r = rewrite_config(args)
    assert (r.threads, r.backend, r.vllm_gpu_memory) == (3, "hf", 0.5)
