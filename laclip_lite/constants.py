"""The names the kit agrees on, defined once: meta-pair sources, text policies, augment kinds, evaluation tasks.

Every other module imports these; a new source, policy or rewriter is added here and nowhere else.
"""
from __future__ import annotations

# LaCLIP's meta input->output pair sources (paper, Sec. 3): a chatbot, a second chatbot, two human captions of
# one MS-COCO image, human-written rewrites. Each caption gets one rewrite per source (M = 4), in this order.
SOURCES = ("chatgpt", "bard", "mscoco", "human")
SOURCE_ALIASES = {"coco": "mscoco"}     # another spelling accepted wherever a source is named

# How a training step draws the text of an image: CLIP (the original caption only), LaCLIP (uniform over the
# original and its rewrites, a fresh draw each time the image is seen), LaCLIP-MT (every text, multi-text loss).
POLICIES = ("clip", "laclip", "mt")

# The rewriters (rewrite.rewriter) and so the rewrite caches a training run can draw from (data.augment), in the
# paper's ablation order: EDA, back-translation, LLM rewrites, then the ShapeWorld stand-in for an LLM.
REWRITERS = ("eda", "backtranslate", "llm", "shapes")
AUGMENTS = ("none", *REWRITERS)

# The config preset `laclip-lite compare` and `laclip-lite ablate` start from unless told otherwise
# (config.PRESETS says what it holds and how it was chosen).
EXPERIMENT_PRESET = "tiny-2k"

# The ShapeWorld zero-shot tasks reported during and after training and in every comparison table
# (data/vocab.TASKS is the world's full list of labelled attributes).
EVAL_TASKS = ("shape", "color", "color_shape")


def canonical_source(name: str) -> str:
    """'coco' -> 'mscoco'; every other name unchanged."""
    return SOURCE_ALIASES.get(name, name)


DATASET_TASKS = ("zeroshot", "retrieval", "linear_probe", "fewshot")   # what an eval.datasets entry is scored on
EXPORT_FORMATS = ("hf", "wds", "laclip")                # `export` training-data layouts (data.export)
EXPORT_EVAL_FORMATS = ("imagefolder", "clip_benchmark")  # `export` evaluation-folder layouts
SPLITS = ("train", "val", "test")      # dataset splits: ShapeWorld's, and those of an evaluation folder
