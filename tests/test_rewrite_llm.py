"""The LLM path end to end on a tiny random Llama loaded by path, output parsing, and kill -9 + resume."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from laclip_lite.config import RewriteConfig
from laclip_lite.rewrite.job import load_rewrites, rewrite_captions
from laclip_lite.rewrite.llm import LLMRewriter, parse_rewrite
from laclip_lite.rewrite.meta import MetaPair

CAPTIONS = ["cute puppy in a basket stock photo", "red car parked outside", "IMG_2041 beach sunset",
            "a bowl of soup", "man riding a bike in the city at night, editorial", "cat"]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    from tests.tiny_models import build_tiny_causal_lm
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny_llama"))


# --- parsing --------------------------------------------------------------------------------------------
EXAMPLES = [MetaPair("old man reading newspaper", "An elderly man relaxes with his newspaper.")]


@pytest.mark.parametrize("continuation, expected", [
    (" A fluffy puppy naps in a basket.\ncat => A cat", ("A fluffy puppy naps in a basket.", None)),
    (' "A puppy in a wicker basket."', ("A puppy in a wicker basket.", None)),
    ("=> A puppy sleeps", ("A puppy sleeps", None)),
    (" A puppy sleeps => dog photo => A dog", ("A puppy sleeps", None)),
    ("   \n A puppy", (None, "empty")),
    (" 123 456 !!!", (None, "no_letters")),
    (" " + "word " * 60, (None, "too_long")),
    (" dog dog dog dog dog dog dog dog dog", (None, "repetitive")),
    (" Rewrite the image caption in a different way, keeping its meaning.", (None, "repeats_prompt")),
    (" An elderly man relaxes with his newspaper.", (None, "copies_example")),
])
def test_parse_rewrite(continuation, expected):
    instruction = "Rewrite the image caption in a different way, keeping its meaning."
    assert parse_rewrite(continuation, "cute puppy in a basket", EXAMPLES, instruction) == expected


# --- generation -----------------------------------------------------------------------------------------
def test_llm_rewriter_full_path(tiny_lm):
    rw = LLMRewriter(str(tiny_lm), max_new_tokens=12, batch_size=4)
    result = rw.rewrite_batch(CAPTIONS, seed=0)
    assert list(result.texts) == ["chatgpt", "bard", "mscoco", "human"]
    for variant, texts in result.texts.items():
        assert len(texts) == len(CAPTIONS)
        fell_back = sum(t == c for t, c in zip(texts, CAPTIONS))
        assert sum(result.fallbacks[variant].values()) <= fell_back   # every fallback is counted
        assert all("\n" not in t and t.strip() for t in texts)
    assert rw.calls == 6   # 24 prompts in chunks of 4
    again = LLMRewriter(str(tiny_lm), max_new_tokens=12, batch_size=4).rewrite_batch(CAPTIONS, seed=0)
    assert again.texts == result.texts                     # deterministic for a seed
    other = rw.rewrite_batch(CAPTIONS, seed=1)
    assert other.texts != result.texts


def test_prompt_holds_k_pairs_and_the_caption(tiny_lm):
    rw = LLMRewriter(str(tiny_lm), k_shot=2)
    prompt = rw.prompt("red car parked outside", "bard", seed=0)
    lines = prompt.split("\n")
    assert len(lines) == 4 and lines[-1] == "red car parked outside =>"
    assert all(" => " in line for line in lines[1:3])


def test_unparseable_outputs_fall_back_and_are_counted(tiny_lm):
    rw = LLMRewriter(str(tiny_lm), max_new_tokens=8, batch_size=8)
    rw.generate = lambda prompts, seed=0: [" \n"] * len(prompts)       # a model that writes nothing
    texts, reasons = rw.rewrite_variant(CAPTIONS, "human", 0)
    assert texts == CAPTIONS and reasons == {"empty": len(CAPTIONS)}


def test_greedy_batched_with_left_padding_equals_one_at_a_time(tiny_lm):
    rw = LLMRewriter(str(tiny_lm), temperature=0.0, max_new_tokens=10, batch_size=8)
    prompts = [rw.prompt(c, "chatgpt") for c in CAPTIONS]
    _, tok, _ = rw.load()
    lengths = {len(tok(p).input_ids) for p in prompts}
    assert len(lengths) > 1                                            # padding really happens
    batched = rw.generate(prompts)
    single = [rw.generate([p])[0] for p in prompts]
    assert batched == single


def test_job_with_llm_counts_calls(tiny_lm, tmp_path):
    cfg = RewriteConfig(rewriter="llm", model=str(tiny_lm), batch_size=3, max_new_tokens=8, sources=["coco", "human"])
    out = rewrite_captions(CAPTIONS, tmp_path, cfg, progress=False)
    assert list(out) == ["mscoco", "human"] and all(len(v) == len(CAPTIONS) for v in out.values())
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["generation_calls"] == 2 and set(report["fallbacks"]) == {"mscoco", "human"}


@pytest.mark.slow
def test_kill_and_resume(tiny_lm, tmp_path):
    """SIGKILL the CLI after some batches are cached; the rerun generates only the rest and the result equals an
    uninterrupted run (nothing lost, duplicated or misaligned)."""
    captions = [f"{c} number {i}" for i in range(10) for c in CAPTIONS]       # 60 captions, 30 batches of 2
    src = tmp_path / "captions.txt"
    src.write_text("\n".join(captions) + "\n")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "laclip_lite.cli", "rewrite", "--input", str(src), "--out", str(out),
            "--rewriter", "llm", "--model", str(tiny_lm), "--batch-size", "2", "--max-new-tokens", "24",
            "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if len(list(out.glob("cache/*/batch-*.json"))) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the job finished before it could be killed; make it slower"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("cache/*/batch-*.json")}
    assert 3 <= len(finished) < 30 and not (out / "report.json").exists()

    assert subprocess.run(args, capture_output=True, env=env, check=False).returncode == 0
    report = json.loads((out / "report.json").read_text())
    assert report["batches_reused"] == len(finished)
    assert report["generation_calls"] == 30 - len(finished)
    assert all(p.stat().st_mtime_ns == finished[p.name] for p in out.glob("cache/*/batch-*.json") if p.name in finished)

    reference = rewrite_captions(captions, tmp_path / "ref", RewriteConfig(
        rewriter="llm", model=str(tiny_lm), batch_size=2, max_new_tokens=24), progress=False)
    assert load_rewrites(out) == reference


def test_greedy_decode_matches_transformers_generate(tiny_lm):
    """Our decode loop (rows leave the batch when they stop) against `model.generate`, one prompt at a time."""
    rw = LLMRewriter(str(tiny_lm), temperature=0.0, max_new_tokens=20, batch_size=8)
    model, tok, stop_ids = rw.load()
    prompts = [rw.prompt(c, v) for c in CAPTIONS for v in ("chatgpt", "human")]
    ours = rw.generate(prompts)
    new_tokens = []
    for prompt, text in zip(prompts, ours):
        enc = tok([prompt], return_tensors="pt")
        ref = model.generate(input_ids=enc.input_ids, attention_mask=enc.attention_mask, do_sample=False,
                             max_new_tokens=20, eos_token_id=stop_ids.tolist(),
                             pad_token_id=tok.pad_token_id)
        assert text == tok.decode(ref[0, enc.input_ids.shape[1]:], skip_special_tokens=True)
        new_tokens.append(ref.shape[1] - enc.input_ids.shape[1])
    assert min(new_tokens[:8]) < 20 == max(new_tokens[:8])     # rows left the first batch while others ran on


def test_nucleus_sampling_draws_from_the_smallest_set_reaching_top_p():
    rw = LLMRewriter("unused-model", temperature=1.0, top_p=0.7)
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log().expand(20000, 4)
    draws = torch.bincount(rw._sample(logits, torch.Generator().manual_seed(0)), minlength=4) / 20000
    # nucleus {0, 1} (0.5 < 0.7 <= 0.8), renormalised: 0.625 / 0.375
    assert draws[2] == draws[3] == 0 and abs(draws[0] - 0.625) < 0.015 and abs(draws[1] - 0.375) < 0.015
    cold = LLMRewriter("unused-model", temperature=0.0)
    assert cold._sample(logits[:3], None).tolist() == [0, 0, 0]


@pytest.mark.parametrize("arch", ["gpt2", "bloom"])
def test_decode_loop_on_other_architectures(tiny_lm, tmp_path, arch):
    """Learned positions (GPT-2) and ALiBi without position_ids (BLOOM): left-padded batches still equal
    `model.generate` one prompt at a time."""
    from transformers import AutoTokenizer, BloomConfig, BloomForCausalLM, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    ids = {"vocab_size": len(tok), "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
    torch.manual_seed(0)
    model = (GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=512, **ids)) if arch == "gpt2"
             else BloomForCausalLM(BloomConfig(hidden_size=32, n_layer=2, n_head=2, pad_token_id=tok.pad_token_id,
                                               **ids)))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    rw = LLMRewriter(str(tmp_path), temperature=0.0, max_new_tokens=15, batch_size=8)
    model, tok, stop_ids = rw.load()
    prompts = [rw.prompt(c, "chatgpt") for c in CAPTIONS]
    for prompt, text in zip(prompts, rw.generate(prompts)):
        enc = tok([prompt], return_tensors="pt")
        ref = model.generate(input_ids=enc.input_ids, attention_mask=enc.attention_mask, do_sample=False,
                             max_new_tokens=15, eos_token_id=stop_ids.tolist(),
                             pad_token_id=tok.pad_token_id)
        assert text == tok.decode(ref[0, enc.input_ids.shape[1]:], skip_special_tokens=True)


def test_missing_model_folder_is_one_line_naming_the_path(tmp_path, monkeypatch, capsys):
    from laclip_lite.cli import main
    from laclip_lite.errors import DataError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "caps.txt").write_text("a red car\n")
    no_config = "model folder empty has no config.json (expected a folder written by save_pretrained)"
    for name, message in [("models/llama-7b", f"model folder not found: {tmp_path / 'models' / 'llama-7b'}"),
                          (str(tmp_path / "nope"), f"model folder not found: {tmp_path / 'nope'}"),
                          ("empty", no_config)]:
        with pytest.raises(DataError) as e:
            LLMRewriter(name).load()
        assert str(e.value) == message
        assert main(["rewrite", "--input", "caps.txt", "--out", "o", "--rewriter", "llm", "--model", name]) == 2
        err = capsys.readouterr().err.strip()
        assert err.endswith(message) and "\n" not in err and "repo" not in err.lower()
    with pytest.raises(DataError, match=r"^cannot load causal LM 'no-such-model': no folder .*no-such-model and not "
                                        r"a Hugging Face model in the local cache") as e:
        LLMRewriter("no-such-model").load()                                  # a hub-id-shaped name, not cached
    assert "\n" not in str(e.value)


def test_laclip_prompt_format_through_the_job(tiny_lm, tmp_path):
    """--prompt-format laclip reaches the model (the release's layout) and is part of the cache key."""
    cfg = RewriteConfig(rewriter="llm", model=str(tiny_lm), batch_size=6, max_new_tokens=8, sources=["human"],
                        prompt_format="laclip")
    seen = []
    from laclip_lite.rewrite.job import build_rewriter
    rw = build_rewriter(cfg)
    generate = rw.generate
    rw.generate = lambda prompts, seed=0: seen.extend(prompts) or generate(prompts, seed)
    out = rewrite_captions(CAPTIONS, tmp_path / "laclip", cfg, progress=False, rewriter=rw)
    assert len(out["human"]) == len(CAPTIONS) and len(seen) == len(CAPTIONS)
    assert all(p.startswith("write image captions differently,\n\n            ") for p in seen)
    assert seen[0].endswith("\n\n            " + CAPTIONS[0] + " =>")
    laclip_fp = json.loads((tmp_path / "laclip" / "report.json").read_text())["fingerprint"]
    cfg.prompt_format = "kit"
    rewrite_captions(CAPTIONS, tmp_path / "kit", cfg, progress=False)
    assert json.loads((tmp_path / "kit" / "report.json").read_text())["fingerprint"] != laclip_fp


def test_decode_loop_prints_no_deprecation_warning(tiny_lm, caplog):
    """The cache is passed by the name this transformers takes (no FutureWarning about past_key_values, nor
    transformers' logged "... are deprecated" line)."""
    import logging
    import warnings

    rw = LLMRewriter(str(tiny_lm), temperature=0.0, max_new_tokens=6, batch_size=4)
    rw.load()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        rw.generate([rw.prompt(c, "human") for c in CAPTIONS])
    assert not [r for r in caplog.records if "deprecat" in r.getMessage().lower()], caplog.text
    assert not [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))], \
        [str(w.message) for w in caught]
