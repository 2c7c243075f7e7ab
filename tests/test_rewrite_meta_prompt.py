"""Meta pairs (four packaged sources, aliases, your own file) and the in-context prompt."""
import random

import pytest

from laclip_lite.config import ConfigError
from laclip_lite.errors import DataError
from laclip_lite.rewrite.meta import (
    SOURCES,
    MetaPair,
    canonical_sources,
    load_groups,
    load_meta_pairs,
)
from laclip_lite.rewrite.prompt import PromptFormat, build_prompt


def test_each_source_has_16_pairs_in_its_own_style():
    pairs = {s: load_meta_pairs(s) for s in SOURCES}
    assert all(len(p) == 16 for p in pairs.values())
    assert all(len(p.target.split()) < 30 for p in pairs["chatgpt"])
    mean = {s: sum(len(p.target.split()) for p in pairs[s]) / 16 for s in SOURCES}
    assert mean["bard"] > mean["chatgpt"] > mean["human"]
    groups = load_groups("mscoco")
    assert all(len(g) >= 2 for g in groups)
    assert all(any({p.source, p.target} <= set(g) for g in groups) for p in pairs["mscoco"])  # a pair from one group


def test_aliases_custom_files_and_errors(tmp_path):
    assert canonical_sources(["coco", "human"]) == ["mscoco", "human"]
    with pytest.raises(ConfigError, match="unknown meta-pair source 'gpt'"):
        canonical_sources(["gpt"])
    with pytest.raises(ConfigError, match="given twice"):
        canonical_sources(["coco", "mscoco"])
    mine = tmp_path / "mine.jsonl"
    mine.write_text('{"input": "dog pic", "output": "A dog."}\n\n{"captions": ["A cat.", "A kitten."]}\n')
    assert canonical_sources([f"chatgpt={mine}"]) == ["chatgpt"]
    pairs = load_meta_pairs(f"chatgpt={mine}")
    assert pairs[0] == MetaPair("dog pic", "A dog.") and {pairs[1].source, pairs[1].target} == {"A cat.", "A kitten."}
    (tmp_path / "bad.jsonl").write_text('{"input": "x"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1"):
        load_meta_pairs(f"x={tmp_path / 'bad.jsonl'}")


def test_build_prompt():
    pairs = [MetaPair(f"in {i}", f"out {i}") for i in range(16)]
    prompt = build_prompt("a red car", pairs, k=3, seed=0)
    lines = prompt.split("\n")
    assert lines[0].startswith("Rewrite") and lines[-1] == "a red car =>" and len(lines) == 5
    assert all(line.startswith("in ") and " => out " in line for line in lines[1:4])
    assert prompt == build_prompt("a red car", pairs, k=3, seed=0)            # seeded per caption
    assert len({build_prompt(f"car {i}", pairs, k=3).split("\n", 1)[1].rsplit("\n", 1)[0] for i in range(10)}) > 5
    custom = PromptFormat(instruction="", pair="Q: {source}\nA: {target}", query="Q: {caption}\nA:")
    assert build_prompt("x", pairs, k=1, rng=random.Random(0), fmt=custom).endswith("Q: x\nA:")
