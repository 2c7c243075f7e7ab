"""Rewriting speed on CPU: batched vs one-at-a-time LLM generation, and the rule-based rewriters.

    python benchmarks/rewrite_speed.py [--captions 64] [--batch-size 32] [--max-new-tokens 77] [--threads 1]
    python benchmarks/rewrite_speed.py --model 95m --batched-only --captions 32   # the ~95M random Llama on CPU

The LLM is a tiny *random* Llama (hidden 64, 2 layers; `tests/tiny_models.py`) loaded by path through the
real `LLMRewriter` path: the same captions, prompts (3 meta pairs) and max_new_tokens, once in batches of
`--batch-size` (left-padded, KV cache, finished rows leave the batch) and once one prompt at a time. With a
tiny model the per-step framework overhead is what batching amortises; with a 7B model on a GPU the gain comes
from filling the matmuls instead. The random model writes its newline late (mean ~34 tokens, some rows 77).
Measured numbers and their analysis: docs/rewriting.md, "Speed". `--model 95m` builds the ~95M-parameter random
Llama of `benchmarks/gpu_check.py` (hidden 768, 16 layers, 12 heads) instead; rows give rewrites/s and generated
tokens/s (each row's stop token included), as the rewrite job's report.json does.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def web_captions() -> list[str]:
    return [line for line in (ROOT / "data_samples" / "web_captions.txt").read_text().splitlines() if line.strip()]


MODELS = {"tiny": {}, "95m": {"hidden_size": 768, "layers": 16, "heads": 12}}   # build_tiny_causal_lm's sizes


def llm_speed(n: int, batch_size: int, max_new_tokens: int, model: dict | None = None,
              device: str = "auto", with_vllm: bool = False, one_at_a_time: bool = True) -> dict:
    """The same `n` web captions rewritten (one source, k = 3 prompts) in batches of `batch_size` and one at a
    time by a random Llama built from a config (`model`: build_tiny_causal_lm's sizes; default the tiny one)
    and loaded by path. -> {"params", "device", "batched": {...}, "one_at_a_time": {...}, "speedup"}, and
    "vllm" (the same captions through `backend="vllm"`, or why not) when `with_vllm`."""
    from laclip_lite.rewrite.llm import LLMRewriter
    from tests.tiny_models import build_tiny_causal_lm

    captions = (web_captions() * (n // 100 + 1))[:n]
    out: dict = {"captions": n, "max_new_tokens": max_new_tokens}
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_causal_lm(Path(tmp) / "random-llama", **(model or {}))
        for name, bs in (("batched", batch_size), ("one_at_a_time", 1))[:2 if one_at_a_time else 1]:
            rw = LLMRewriter(str(path), batch_size=bs, max_new_tokens=max_new_tokens, device=device, backend="hf")
            lm = rw.load()[0]
            rw.generate([rw.prompt(captions[0], "chatgpt")])     # warm-up
            _sync(lm.device)
            tokens = rw.generated_tokens
            start = time.perf_counter()
            rw.rewrite_variant(captions, "chatgpt", seed=0)
            _sync(lm.device)
            seconds = time.perf_counter() - start
            out.update(params=sum(p.numel() for p in lm.parameters()), device=str(lm.device))
            out[name] = {"batch_size": bs, "seconds": seconds, "rewrites_per_s": n / seconds,
                         "tokens_per_s": (rw.generated_tokens - tokens) / seconds}
        if with_vllm:
            out["vllm"] = _vllm_speed(path, captions, max_new_tokens)
    if one_at_a_time:
        out["speedup"] = out["one_at_a_time"]["seconds"] / out["batched"]["seconds"]
    return out


def _vllm_speed(path: Path, captions: list[str], max_new_tokens: int) -> dict:
    import importlib.util

    import torch

    if importlib.util.find_spec("vllm") is None or not torch.cuda.is_available():
        return {"ran": False, "why": "vllm not installed" if importlib.util.find_spec("vllm") is None else "no CUDA"}
    from laclip_lite.rewrite.llm import LLMRewriter

    rw = LLMRewriter(str(path), max_new_tokens=max_new_tokens, backend="vllm")
    start = time.perf_counter()
    rw.generate([rw.prompt(captions[0], "chatgpt")])           # engine start-up + warm-up
    startup = time.perf_counter() - start
    start = time.perf_counter()
    rw.rewrite_variant(captions, "chatgpt", seed=0)
    seconds = time.perf_counter() - start
    return {"ran": True, "startup_seconds": startup, "seconds": seconds, "rewrites_per_s": len(captions) / seconds}


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def llm_rows(n: int, batch_size: int, max_new_tokens: int, model: str = "tiny",
             one_at_a_time: bool = True) -> list[tuple[str, float, float, float]]:
    r = llm_speed(n, batch_size, max_new_tokens, MODELS[model], device="cpu", one_at_a_time=one_at_a_time)
    what = f"{r['params'] / 1e6:.1f}M random Llama" if model != "tiny" else "tiny LLM"
    return [(f"{what}, batch {r[k]['batch_size']} ({n} captions, {max_new_tokens} new tokens)", r[k]["seconds"],
             r[k]["rewrites_per_s"], r[k]["tokens_per_s"]) for k in ("batched", "one_at_a_time") if k in r]


def rule_rows() -> list[tuple[str, float, float]]:
    from laclip_lite.data.shapeworld import ShapeWorld
    from laclip_lite.rewrite.eda import EDARewriter
    from laclip_lite.rewrite.shapes import ShapeWorldRewriter

    rows = []
    caps = web_captions() * 10
    start = time.perf_counter()
    EDARewriter(num_variants=4).rewrite_batch(caps, seed=0)
    seconds = time.perf_counter() - start
    rows.append((f"EDA ({len(caps)} web captions x 4 variants)", seconds, 4 * len(caps) / seconds, None))
    caps = ShapeWorld(seed=0, image_size=8).split("train", 2000).captions
    start = time.perf_counter()
    ShapeWorldRewriter().rewrite_batch(caps, seed=0)
    seconds = time.perf_counter() - start
    rows.append((f"ShapeWorld stand-in ({len(caps)} captions x 4 styles)", seconds, 4 * len(caps) / seconds, None))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captions", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=77)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 avoids contention on shared cores)")
    ap.add_argument("--model", choices=list(MODELS), default="tiny", help="the random Llama's size")
    ap.add_argument("--batched-only", action="store_true", help="skip one-at-a-time generation and the rule rows")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    llm = llm_rows(args.captions, args.batch_size, args.max_new_tokens, args.model, not args.batched_only)
    rows = llm + ([] if args.batched_only else rule_rows())
    from laclip_lite.utils import markdown_table

    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU")
    table = [{"what": name, "seconds": f"{seconds:.2f}", "rewrites/s": f"{rate:.2f}",
              "tokens/s": f"{tokens:.0f}" if tokens else "-"} for name, seconds, rate, tokens in rows]
    print(markdown_table(table, ["what", "seconds", "rewrites/s", "tokens/s"],
                         right=["seconds", "rewrites/s", "tokens/s"]), end="")
    if len(llm) == 2:
        print(f"batched / one-at-a-time speed-up: {llm[1][1] / llm[0][1]:.1f}x")


if __name__ == "__main__":
    main()
