"""Back-translation: translate a caption to a pivot language and back (a baseline in LaCLIP's ablation).

Any pair of translation models transformers can load (`AutoModelForSeq2SeqLM`), from folders or hub names,
e.g. `Helsinki-NLP/opus-mt-en-de` and `Helsinki-NLP/opus-mt-de-en` (MarianMT). Two ways to get M different
rewrites per caption:

* ``mode="sample"`` (default): each variant samples its own pivot translation (temperature, top-p), which is
  translated back with beam search. Different pivots give different wordings.
* ``mode="beam"``: the forward pass returns the M best beams as the M pivots; each is translated back with
  beam search. Deterministic, less diverse.

Both directions run batched (`batch_size` sentences per generate call) with padding handled by the tokenizer
(encoder-decoder models pad on the right; the attention mask hides it). A back-translation that comes back
empty or without letters falls back to the original caption and is counted.
"""
from __future__ import annotations

import re
from collections import Counter

import torch

from laclip_lite.errors import ConfigError
from laclip_lite.rewrite.base import Rewriter, RewriteResult, seed_for
from laclip_lite.rewrite.models import check_model_name, load_error
from laclip_lite.utils import resolve_device


class BackTranslator(Rewriter):
    """`rewriter="backtranslate"`: variants bt1..btM."""

    name = "backtranslate"

    def __init__(self, forward: str, backward: str, num_variants: int = 4, mode: str = "sample",
                 temperature: float = 0.9, top_p: float = 0.95, num_beams: int = 4, max_new_tokens: int = 77,
                 batch_size: int = 32, device: str = "auto", trust_remote_code: bool = False):
        if mode not in ("sample", "beam"):
            raise ConfigError(f"back-translation mode must be 'sample' or 'beam', got {mode!r}")
        self.forward_name, self.backward_name, self.mode = forward, backward, mode
        self.num_variants, self.temperature, self.top_p = num_variants, temperature, top_p
        self.num_beams, self.max_new_tokens, self.batch_size = num_beams, max_new_tokens, batch_size
        self.device_name, self.trust_remote_code = device, trust_remote_code
        self.variants = [f"bt{i}" for i in range(1, num_variants + 1)]
        self._models = None
        self.calls = 0   # generate() calls

    def settings(self) -> dict:
        return {**super().settings(), "forward": self.forward_name, "backward": self.backward_name,
                "mode": self.mode, "temperature": self.temperature, "top_p": self.top_p, "num_beams": self.num_beams}

    def load(self):
        if self._models is None:
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            device = resolve_device(self.device_name)
            models = []

            for name in (self.forward_name, self.backward_name):
                check_model_name(name)
                try:
                    tok = AutoTokenizer.from_pretrained(name, trust_remote_code=self.trust_remote_code)
                    model = AutoModelForSeq2SeqLM.from_pretrained(name, trust_remote_code=self.trust_remote_code)
                except OSError as e:
                    raise load_error(name, "translation model", e) from None
                models.append((model.to(device).eval(), tok))
            self._models = models
        return self._models

    def translate(self, texts: list[str], direction: int, seed: int = 0, sample: bool = False,
                  num_return: int = 1) -> list[str]:
        """Translate with the forward (0) or backward (1) model, batched -> len(texts) * num_return outputs."""
        model, tok = self.load()[direction]
        out = []
        for i in range(0, len(texts), self.batch_size):
            chunk = texts[i:i + self.batch_size]
            enc = tok(chunk, return_tensors="pt", padding=True, truncation=True).to(model.device)
            if sample:
                extra = {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}
            else:
                extra = {"do_sample": False, "num_beams": max(self.num_beams, num_return)}
            torch.manual_seed(seed_for(seed, direction, *chunk))
            with torch.inference_mode():
                ids = model.generate(**enc, max_new_tokens=self.max_new_tokens, num_return_sequences=num_return,
                                     **extra)
            self.calls += 1
            out += tok.batch_decode(ids, skip_special_tokens=True)
        return out

    def rewrite_batch(self, captions: list[str], seed: int = 0) -> RewriteResult:
        m, n = self.num_variants, len(captions)
        if self.mode == "sample":
            pivots = self.translate([c for _ in range(m) for c in captions], 0, seed, sample=True)  # variant-major
        else:
            beams = self.translate(captions, 0, seed, num_return=m)                                 # caption-major
            pivots = [beams[j * m + i] for i in range(m) for j in range(n)]
        back = self.translate(pivots, 1, seed)
        texts, fallbacks = {}, {}
        for i, v in enumerate(self.variants):
            out, reasons = [], Counter()
            for j, c in enumerate(captions):
                text = " ".join(back[i * n + j].split())
                why = "empty" if not text else ("no_letters" if not re.search(r"[^\W\d_]", text) else None)
                out.append(c if why else text)
                if why:
                    reasons[why] += 1
            texts[v], fallbacks[v] = out, dict(reasons)
        return RewriteResult(texts, fallbacks)

    def rewrite_variant(self, captions: list[str], variant: str, seed: int) -> tuple[list[str], Counter]:
        self.check_variant(variant)
        result = self.rewrite_batch(captions, seed)
        return result.texts[variant], Counter(result.fallbacks[variant])
