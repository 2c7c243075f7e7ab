"""The one interface every rewriter shares, so the rewrite job treats an LLM, EDA, back-translation and the
ShapeWorld stand-in the same way.

A rewriter turns a batch of captions into one rewrite per *variant*. Variants are the columns of the LaCLIP
release: one per meta-pair source for in-context rewriters (`chatgpt`, `bard`, `mscoco`, `human`), or numbered
copies for EDA / back-translation (`eda1..edaM`, `bt1..btM`).

A rewrite that cannot be used (empty, degenerate, unparseable) falls back to the original caption. Fallbacks
are never silent: every rewriter reports how many captions fell back and why, so the job can write the counts
into `report.json` and the quality table.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from laclip_lite.errors import ConfigError


@dataclass
class RewriteResult:
    texts: dict[str, list[str]]                                        # variant -> rewrites, aligned with the input
    fallbacks: dict[str, dict[str, int]] = field(default_factory=dict)  # variant -> reason -> captions that fell back


class Rewriter:
    """Base class. Subclasses set `name`, `variants` and implement `rewrite_variant`."""

    name: str = "base"
    variants: list[str]          # set by each subclass in __init__

    def rewrite_variant(self, captions: list[str], variant: str, seed: int) -> tuple[list[str], Counter]:
        """Rewrite `captions` for one variant -> (rewrites aligned with captions, Counter of fallback reasons)."""
        raise NotImplementedError(f"{type(self).__name__} must implement rewrite_variant")

    def rewrite(self, captions: list[str], variant: str, seed: int = 0) -> list[str]:
        """The simple call: rewrites of `captions` for `variant`, deterministic for `seed`."""
        self.check_variant(variant)
        return self.rewrite_variant(list(captions), variant, seed)[0]

    def rewrite_batch(self, captions: list[str], seed: int = 0) -> RewriteResult:
        """Every variant of one batch: what the job calls once per cached batch (one "generation call")."""
        texts, fallbacks = {}, {}
        for variant in self.variants:
            out, reasons = self.rewrite_variant(list(captions), variant, seed)
            texts[variant] = out
            fallbacks[variant] = dict(reasons)
        return RewriteResult(texts, fallbacks)

    def settings(self) -> dict:
        """Everything that changes the output; part of the cache fingerprint."""
        return {"name": self.name, "variants": list(self.variants)}

    def check_variant(self, variant: str) -> None:
        if variant not in self.variants:
            raise ConfigError(f"{self.name} rewriter has no variant {variant!r} (it has: {', '.join(self.variants)})")


def seed_for(*parts) -> int:
    """A 63-bit seed from any strings/ints, stable across processes (unlike Python's salted `hash`)."""
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(str(p).encode())
        h.update(b"\x1f")
    return int.from_bytes(h.digest(), "little") >> 1


def one_line(text: str) -> str:
    """Rewrites are stored one per line (the LaCLIP layout), so newlines and tabs become spaces."""
    return " ".join(text.split())
