"""Caption rewriting for LaCLIP: an LLM with in-context meta pairs, EDA, back-translation, and a world-aware
stand-in for ShapeWorld; one interface (`Rewriter`), one cached/resumable/shardable job, one quality report.

    from laclip_lite.rewrite import rewrite_captions, load_rewrites, build_rewriter
    rewrites = rewrite_captions(captions, "rewrites/", RewriteConfig(rewriter="shapes"))

Modules: `meta` (meta pairs), `prompt` (in-context prompt: the kit's layout and the LaCLIP release's), `llm`,
`eda`, `backtranslate`, `shapes` (the stand-in), `job` (cache), `quality` (report), `inputs` (caption readers),
`device` (which GPU a rewrite process uses), `models` (model folder or cached hub name; one-line errors).
(The tiny random test models live in `tests/tiny_models.py`.)
The model libraries (transformers, vllm) load only when a model is used.
"""
from laclip_lite.rewrite.base import Rewriter, RewriteResult
from laclip_lite.rewrite.job import build_rewriter, load_rewrites, merge, rewrite_captions, run_shard
from laclip_lite.rewrite.meta import load_meta_pairs

__all__ = ["RewriteResult", "Rewriter", "build_rewriter", "load_meta_pairs", "load_rewrites", "merge",
           "rewrite_captions", "run_shard"]
