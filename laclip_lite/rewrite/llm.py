"""LLM rewriting by in-context learning (LaCLIP): prompt a causal LM with meta pairs, keep its first line.

Any Hugging Face causal LM works, from a local folder or a hub name (LaCLIP used LLaMA-7B):

```python
rw = LLMRewriter("path/to/llama", sources=["chatgpt", "bard", "mscoco", "human"])
rw.rewrite(["cute puppy in a basket stock photo"], "chatgpt", seed=0)
```

Generation is batched: prompts are **left-padded** (a decoder-only model continues from the last position, so
padding must sit on the left where the attention mask hides it) and decoded with the KV cache, one token per
step for the rows still running: a row stops at its first newline (or EOS) and leaves the batch, so a long
row does not keep finished rows computing. Sampling as in LaCLIP's LLaMA loop: temperature 0.9, then top-p
0.95 (no top-k), at most 77 new tokens; `temperature=0` decodes greedily. dtype "auto" is bf16 on CUDA and
fp32 on CPU (bf16 matmuls are ~100x slower on CPU). `trust_remote_code` stays off unless asked. When `vllm`
is importable and CUDA is present, `backend="auto"` uses it instead (same prompts, same parsing).

**Parsing** (`parse_rewrite`): the first line of the continuation, stripped of quotes and "=>" prefixes. It is
rejected - and the original caption kept in its place, counted by reason - when it is empty, has no letters,
is far longer than a caption, repeats itself, repeats the prompt or copies a meta example.
"""
from __future__ import annotations

import importlib.util
import inspect
import re
from collections import Counter

import torch

from laclip_lite.constants import SOURCES
from laclip_lite.errors import ConfigError, DataError
from laclip_lite.rewrite.base import Rewriter, RewriteResult, seed_for
from laclip_lite.rewrite.meta import MetaPair, canonical_sources, load_meta_pairs
from laclip_lite.rewrite.models import check_model_name, load_error
from laclip_lite.rewrite.prompt import DEFAULT_FORMAT, PromptFormat, build_prompt
from laclip_lite.utils import resolve_device

FALLBACK_REASONS = ("empty", "no_letters", "too_long", "repetitive", "repeats_prompt", "copies_example")
_QUOTES = "\"'`“”‘’«»"
_PREFIX = re.compile(r"^(?:\s*(?:=>|->|=|:|-|\*|•)\s*)+")


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def parse_rewrite(continuation: str, caption: str, examples: list[MetaPair] = (), instruction: str = "",
                  max_words: int | None = None) -> tuple[str | None, str | None]:
    """The rewrite in an LM continuation -> (text, None), or (None, reason) when it must not be used.

    `max_words` defaults to max(40, 3 x the caption's words): LaCLIP rewrites are one caption-length sentence.
    """
    line = continuation.lstrip(" \t").split("\n", 1)[0]
    line = _PREFIX.sub("", line)
    if "=>" in line:                     # the LM went on to write the next "source => target" pair
        line = line.split("=>", 1)[0]
    line = line.strip().strip(_QUOTES).strip()
    line = _PREFIX.sub("", line).strip().strip(_QUOTES).strip()
    if not line:
        return None, "empty"
    if not re.search(r"[^\W\d_]", line):
        return None, "no_letters"
    words = line.split()
    if len(words) > (max_words or max(40, 3 * len(caption.split()))):
        return None, "too_long"
    if len(words) >= 8 and len({w.lower() for w in words}) / len(words) < 0.4:
        return None, "repetitive"
    norm = _norm(line)
    if instruction and _norm(instruction) and _norm(instruction) in norm:
        return None, "repeats_prompt"
    if any(norm in (_norm(p.source), _norm(p.target)) for p in examples):
        return None, "copies_example"
    return line, None


def forward_kwargs(model):
    """(positions, cache) -> the forward's keyword arguments beyond input_ids / attention_mask, named as the
    installed transformers names them: the KV cache is `cache` where the forward takes it (recent 5.x releases,
    which deprecate `past_key_values` for removal in 5.40), else `past_key_values`; `position_ids` (and logits
    of the last position only) where the model takes them; models without position_ids (ALiBi: BLOOM, MPT)
    place tokens by the mask."""

    params = inspect.signature(model.forward).parameters
    cache_name = "cache" if "cache" in params else "past_key_values"
    last_only = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    takes_positions = "position_ids" in params

    def kwargs(positions, cache):
        return {cache_name: cache, **last_only, **({"position_ids": positions} if takes_positions else {})}
    return kwargs


def new_cache(model):
    """An empty `DynamicCache` for `model`, made by us and passed in (not read back from the outputs, whose
    attribute was renamed with the argument); given the model's config where the constructor takes one, so
    sliding-window layers get their own cache layer type."""

    from transformers import DynamicCache

    if "config" in inspect.signature(DynamicCache.__init__).parameters:
        return DynamicCache(config=model.config)
    return DynamicCache()


def _auto_dtype(device: str):
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


class LLMRewriter(Rewriter):
    """In-context rewriting with a causal LM; one variant per meta-pair source."""

    name = "llm"

    def __init__(self, model: str, sources: list[str] | None = None, k_shot: int = 3, temperature: float = 0.9,
                 top_p: float = 0.95, max_new_tokens: int = 77, batch_size: int = 32, device: str = "auto",
                 dtype: str = "auto", trust_remote_code: bool = False, backend: str = "auto",
                 fmt: PromptFormat = DEFAULT_FORMAT, vllm_gpu_memory: float = 0.9):
        specs = list(sources or SOURCES)
        self.variants = canonical_sources(specs)
        self.pairs: dict[str, list[MetaPair]] = {v: load_meta_pairs(s) for v, s in zip(self.variants, specs)}
        self.model_name, self.k_shot, self.fmt = model, k_shot, fmt
        self.temperature, self.top_p, self.max_new_tokens = temperature, top_p, max_new_tokens
        self.batch_size, self.device_name, self.dtype_name = batch_size, device, dtype
        self.trust_remote_code, self.backend_name = trust_remote_code, backend
        self._hf = None       # (model, tokenizer, stop token ids: newline or EOS) once loaded
        self._vllm = None
        self.calls = 0        # generate() calls made (one per chunk of at most batch_size prompts)
        self.generated_tokens = 0   # tokens sampled so far (each row's stop token included): tokens/s in reports
        self.vllm_gpu_memory = vllm_gpu_memory   # vLLM's gpu_memory_utilization (its share of the GPU)

    # --- prompts and parsing ---------------------------------------------------------------------------
    def prompt(self, caption: str, variant: str, seed: int = 0) -> str:
        return build_prompt(caption, self.pairs[variant], k=self.k_shot, seed=seed_for(seed, variant), fmt=self.fmt)

    def rewrite_variant(self, captions: list[str], variant: str, seed: int) -> tuple[list[str], Counter]:
        self.check_variant(variant)
        return self._rewrite(captions, [variant], seed)[variant]

    def rewrite_batch(self, captions: list[str], seed: int = 0):
        per = self._rewrite(captions, self.variants, seed)
        return RewriteResult({v: per[v][0] for v in self.variants}, {v: dict(per[v][1]) for v in self.variants})

    def _rewrite(self, captions: list[str], variants: list[str], seed: int) -> dict[str, tuple[list[str], Counter]]:
        jobs = [(v, c) for v in variants for c in captions]
        prompts = [self.prompt(c, v, seed) for v, c in jobs]
        continuations = self.generate(prompts, seed)
        out = {v: ([], Counter()) for v in variants}
        for (v, c), cont in zip(jobs, continuations):
            text, why = parse_rewrite(cont, c, self.pairs[v], self.fmt.instruction)
            out[v][0].append(text if text is not None else c)
            if why:
                out[v][1][why] += 1
        return out

    # --- generation ------------------------------------------------------------------------------------
    def generate(self, prompts: list[str], seed: int = 0) -> list[str]:
        """Continuations of `prompts`, in chunks of `batch_size`; each chunk seeded from (seed, its prompts), so
        the same chunk gives the same sample wherever and whenever it runs."""
        if self._use_vllm():
            return self._vllm_generate(prompts, seed)
        out = []
        for i in range(0, len(prompts), self.batch_size):
            chunk = prompts[i:i + self.batch_size]
            out += self._hf_generate(chunk, seed_for(seed, *chunk))
        return out

    def load(self):
        """Load the model and tokenizer (done lazily on the first generation)."""
        if self._hf is not None:
            return self._hf
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = str(resolve_device(self.device_name))
        dtype = _auto_dtype(device) if self.dtype_name == "auto" else getattr(torch, self.dtype_name)
        check_model_name(self.model_name)
        try:
            tok = AutoTokenizer.from_pretrained(self.model_name, trust_remote_code=self.trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(self.model_name, dtype=dtype,
                                                         trust_remote_code=self.trust_remote_code)
        except OSError as e:
            raise load_error(self.model_name, "causal LM", e) from None
        tok.padding_side = "left"
        if tok.pad_token is None:
            if tok.eos_token is None:
                raise DataError(f"{self.model_name}: tokenizer has neither a pad nor an eos token")
            tok.pad_token = tok.eos_token
        model.to(device).eval()
        eos = model.generation_config.eos_token_id
        eos = [tok.eos_token_id] + (eos if isinstance(eos, list) else [eos])
        stop_ids = {i for i in range(len(tok)) if "\n" in tok.decode([i])} | {i for i in eos if i is not None}
        self._hf = (model, tok, torch.tensor(sorted(stop_ids), dtype=torch.long, device=device))
        return self._hf

    def _hf_generate(self, prompts: list[str], seed: int) -> list[str]:
        """Sample continuations of one chunk: one batched prefill, then one token per step for the rows still
        running. A row leaves the batch (and its KV cache) as soon as it writes a newline or EOS, so a few long
        rows do not keep every finished row computing to the token budget."""
        model, tok, stop_ids = self.load()
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=True).to(model.device)
        mask = enc["attention_mask"]
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)      # left padding: count real tokens only
        extras = forward_kwargs(model)
        cache = new_cache(model)                                   # filled in place by every forward
        gen = torch.Generator(model.device).manual_seed(seed)
        live = torch.arange(len(prompts), device=model.device)      # which prompt each batch row belongs to
        out: list[list[int]] = [[] for _ in prompts]
        with torch.inference_mode():
            res = model(input_ids=enc["input_ids"], attention_mask=mask, use_cache=True, **extras(positions, cache))
            for step in range(self.max_new_tokens):
                token = self._sample(res.logits[:, -1, :].float(), gen)
                for row, t in zip(live.tolist(), token.tolist()):
                    out[row].append(t)
                keep = torch.nonzero(~torch.isin(token, stop_ids)).squeeze(1)
                if step == self.max_new_tokens - 1 or keep.numel() == 0:
                    break
                if keep.numel() < live.numel():                       # drop finished rows from the batch
                    live, token, mask, positions = live[keep], token[keep], mask[keep], positions[keep]
                    cache.batch_select_indices(keep)
                mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=1)
                positions = positions[:, -1:] + 1
                res = model(input_ids=token[:, None], attention_mask=mask, use_cache=True, **extras(positions, cache))
        self.calls += 1
        self.generated_tokens += sum(len(row) for row in out)
        return tok.batch_decode(out, skip_special_tokens=True)

    def _sample(self, logits, gen):
        """Next token per row: greedy at temperature 0, else nucleus sampling as in LaCLIP (temperature, then
        the smallest set of tokens whose probability reaches top_p; no top-k)."""
        if self.temperature <= 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits / self.temperature, dim=-1)
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > self.top_p   # mass before this token already >= top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        choice = torch.multinomial(sorted_probs, 1, generator=gen)
        return order.gather(-1, choice).squeeze(1)

    # --- optional vLLM backend -------------------------------------------------------------------------
    def _use_vllm(self) -> bool:
        """vLLM when asked for, or (backend="auto") when it is installed and CUDA is present."""

        if self.backend_name == "hf":
            return False
        if importlib.util.find_spec("vllm") is None:
            if self.backend_name == "vllm":
                raise ConfigError("backend='vllm' but vllm is not installed (pip install vllm)")
            return False
        return self.backend_name == "vllm" or torch.cuda.is_available()

    def _vllm_generate(self, prompts: list[str], seed: int) -> list[str]:
        """vLLM schedules its own batches; the same sampling settings, stopping at the first newline."""
        from vllm import LLM, SamplingParams

        if self._vllm is None:
            check_model_name(self.model_name)
            self._vllm = LLM(model=self.model_name, trust_remote_code=self.trust_remote_code, dtype="auto",
                             seed=seed, gpu_memory_utilization=self.vllm_gpu_memory)
        params = SamplingParams(temperature=self.temperature, top_p=self.top_p if self.temperature > 0 else 1.0,
                                max_tokens=self.max_new_tokens, stop=["\n"], seed=seed)
        self.calls += 1
        results = self._vllm.generate(prompts, params, use_tqdm=False)
        self.generated_tokens += sum(len(r.outputs[0].token_ids) for r in results)
        return [r.outputs[0].text for r in results]
