"""Meta pairs (four packaged sources, aliases, your own file) and the in-context prompt."""
import random
import re

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


def test_laclip_prompt_has_the_release_layout():
    """The layout of the release's llama_rewrite.py: instruction, blank line, three indented pairs separated by
    blank lines, the caption; the release reads the rewrite from line 8 of prompt + continuation, after '=>'."""
    from laclip_lite.rewrite.llm import parse_rewrite
    from laclip_lite.rewrite.prompt import LACLIP_FORMAT, prompt_format

    pairs = [MetaPair(f"in {i}", f"out {i}") for i in range(16)]
    prompt = build_prompt("a red car\n", pairs, k=3, seed=0, fmt=prompt_format("laclip"))
    lines = prompt.split("\n")
    assert len(lines) == 9 and lines[0] == "write image captions differently,"
    assert lines[1] == lines[3] == lines[5] == lines[7] == ""
    assert all(re.fullmatch(r" {12}in \d+ => out \d+", line) for line in lines[2:7:2])
    assert lines[8] == " " * 12 + "a red car =>"
    continuation = " A shiny red car waits at the curb.\n\n            next => pair"
    release = (prompt + continuation).split("\n")[8].strip().split("=>")[1].strip()
    assert parse_rewrite(continuation, "a red car", pairs, LACLIP_FORMAT.instruction) == (release, None)
    with pytest.raises(ConfigError, match="prompt_format='llama'.*kit, laclip"):
        prompt_format("llama")


def test_meta_pairs_from_tsv(tmp_path):
    tsv = tmp_path / "mine.tsv"
    tsv.write_text("input\toutput\ndog pic\tA dog sits on the grass.\n\nA cat.\tA kitten.\tA small cat.\n")
    pairs = load_meta_pairs(f"mine={tsv}")
    assert pairs[0] == MetaPair("dog pic", "A dog sits on the grass.")
    assert {pairs[1].source, pairs[1].target} <= {"A cat.", "A kitten.", "A small cat."} and len(pairs) == 2
    assert load_groups(f"mine={tsv}") == [["A cat.", "A kitten.", "A small cat."]]
    (tmp_path / "bad.tsv").write_text("dog pic\tA dog.\njust one field\n")
    with pytest.raises(DataError, match=r"bad.tsv:2: expected 'input<TAB>output'"):
        load_meta_pairs(f"x={tmp_path / 'bad.tsv'}")


def test_release_meta_pairs_read_from_a_local_checkout(tmp_path):
    """The release keeps its pairs as Python lists in rewrite/utils.py: parsed (never run) from a checkout."""
    from laclip_lite.cli import build_parser
    from laclip_lite.commands.rewrite import rewrite_config

    checkout = tmp_path / "LaCLIP"
    (checkout / "rewrite").mkdir(parents=True)
    (checkout / "rewrite" / "utils.py").write_text(
        "raise SystemExit('this file must never run')\n"
        "coco_caption_list = [\n['A dog runs.', 'A dog running on grass.', 'Dog outside.'],\n]\n"
        "human_source_caption_list = ['happy dog time', 'cat pic']\n"
        "human_target_caption_list = ['A happy dog plays in a sunny garden with its owner.', 'A cat.']\n")
    pairs = load_meta_pairs(f"human={checkout}")
    assert pairs == [MetaPair("happy dog time", "A happy dog plays in a sunny garden with its owner."),
                     MetaPair("cat pic", "A cat.")]
    (coco,) = load_meta_pairs(f"coco={checkout / 'rewrite' / 'utils.py'}")
    assert {coco.source, coco.target} <= {"A dog runs.", "A dog running on grass.", "Dog outside."}
    with pytest.raises(DataError, match="chatgpt_source_caption_list"):
        load_meta_pairs(f"chatgpt={checkout}")
    with pytest.raises(DataError, match="not a LaCLIP checkout"):
        load_meta_pairs(f"human={tmp_path}")
    args = build_parser().parse_args(["rewrite", "--rewriter", "llm", "--model", "m", "--sources", "human,coco",
                                      "--meta-pairs-dir", str(checkout), "--out", str(tmp_path / "o")])
    assert rewrite_config(args).sources == [f"human={checkout}", f"coco={checkout}"]
