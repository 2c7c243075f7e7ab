"""The rewrite job: outputs, cache reuse, resuming, sharding, inputs and CLI errors (fast rewriters only)."""
import csv
import json

import pytest

from laclip_lite.cli import main
from laclip_lite.config import ConfigError, RewriteConfig
from laclip_lite.errors import DataError
from laclip_lite.rewrite.inputs import read_captions
from laclip_lite.rewrite.job import (
    load_rewrites,
    merge,
    rewrite_captions,
    run_shard,
)
from laclip_lite.utils import parse_shard

CAPTIONS = [f"{size} {color} circle on the left, white background stock photo"
            for size in ("small", "big", "tiny") for color in ("red", "blue", "green", "pink")] + \
           ["a star", "abstract modern design 2024", "orange heart icon next to a small cyan square"]


def test_outputs_are_line_aligned_and_loadable(tmp_path):
    rewrites = rewrite_captions(CAPTIONS, tmp_path, RewriteConfig(batch_size=4), progress=False)
    assert list(rewrites) == ["chatgpt", "bard", "mscoco", "human"]
    for variant, texts in rewrites.items():
        lines = (tmp_path / f"{variant}.txt").read_text().splitlines()
        assert lines == texts and len(lines) == len(CAPTIONS)
    assert load_rewrites(tmp_path) == rewrites
    import datasets
    ds = datasets.load_from_disk(str(tmp_path / "dataset"))
    assert ds.column_names == ["caption", "chatgpt", "bard", "mscoco", "human"]
    assert ds["caption"] == CAPTIONS and ds["bard"] == rewrites["bard"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["generation_calls"] == report["n_batches"] == 4
    # the caption with no object word falls back to the original, counted in every variant
    assert all(report["fallbacks"][v] == {"total": 1, "no_object_found": 1} for v in rewrites)
    assert rewrites["human"][CAPTIONS.index("abstract modern design 2024")] == "abstract modern design 2024"


def test_second_run_makes_no_generation_calls(tmp_path):
    cfg = RewriteConfig(rewriter="eda", batch_size=4)
    first = rewrite_captions(CAPTIONS, tmp_path, cfg, progress=False)
    second = rewrite_captions(CAPTIONS, tmp_path, cfg, progress=False)
    report = json.loads((tmp_path / "report.json").read_text())
    assert second == first
    assert report["generation_calls"] == 0 and report["batches_reused"] == report["n_batches"]
    assert [r["generation_calls"] for r in report["runs"]] == [4, 0]
    # other settings -> another fingerprint -> generated again (never a stale cache)
    rewrite_captions(CAPTIONS, tmp_path, RewriteConfig(rewriter="eda", batch_size=4, seed=1), progress=False)
    assert json.loads((tmp_path / "report.json").read_text())["generation_calls"] == 4


def test_resume_generates_only_missing_batches(tmp_path):
    cfg = RewriteConfig(rewriter="eda", batch_size=3)
    full = rewrite_captions(CAPTIONS, tmp_path / "a", cfg, progress=False)
    # a crashed run: some batches finished, one temp file half-written, no outputs yet
    run_shard(CAPTIONS, tmp_path / "b", cfg, 0, 2, progress=False)
    cache = next((tmp_path / "b" / "cache").iterdir())
    (cache / ".batch-000001.json.tmp").write_text('{"start": 3, "texts": {"eda1": ["trunc')
    done = {p.name: p.stat().st_mtime_ns for p in cache.glob("batch-*.json")}
    resumed = rewrite_captions(CAPTIONS, tmp_path / "b", cfg, progress=False)
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert resumed == full
    assert report["n_batches"] == 5 and report["batches_reused"] == len(done) == 3
    assert report["generation_calls"] == 5 - 3
    assert all((cache / name).stat().st_mtime_ns == t for name, t in done.items())


def test_shards_merge_to_the_unsharded_output(tmp_path):
    cfg = RewriteConfig(rewriter="shapes", batch_size=2)
    single = rewrite_captions(CAPTIONS, tmp_path / "single", cfg, progress=False)
    for i in range(3):
        run_shard(CAPTIONS, tmp_path / "sharded", cfg, i, 3, progress=False)
        if i == 1:
            with pytest.raises(DataError, match="batches not finished.*shard"):
                merge(tmp_path / "sharded")
    assert merge(tmp_path / "sharded") == single
    assert load_rewrites(tmp_path / "sharded") == single


def test_shard_auto_reads_torchrun_env(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert parse_shard("auto") == (3, 4)
    monkeypatch.delenv("RANK")
    with pytest.raises(ConfigError, match="--shard auto reads RANK and WORLD_SIZE"):
        parse_shard("auto")


def test_parse_shard():
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1-4", "-1/2", "0/0"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def test_input_readers(tmp_path):
    (tmp_path / "c.txt").write_text("a red circle\n\nblue star\n")
    assert read_captions(tmp_path / "c.txt") == ["a red circle", "", "blue star"]
    with open(tmp_path / "c.csv", "w", newline="") as f:
        csv.writer(f).writerows([["img/0.jpg", "a red circle, isolated"], ["img/1.jpg", "blue star"]])
    assert read_captions(tmp_path / "c.csv") == ["a red circle, isolated", "blue star"]
    (tmp_path / "c.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n')
    assert read_captions(tmp_path / "c.jsonl", column="text") == ["a", "b"]
    with pytest.raises(DataError, match=r"c.jsonl:1: no string field 'caption'"):
        read_captions(tmp_path / "c.jsonl")
    import datasets
    datasets.Dataset.from_dict({"caption": ["x", "y"], "n": [1, 2]}).save_to_disk(str(tmp_path / "hf"))
    assert read_captions(tmp_path / "hf") == ["x", "y"]
    with pytest.raises(DataError, match="no column 'text'"):
        read_captions(tmp_path / "hf", column="text")
    # training's HF reader, captions only: a row without caption keeps its line; a DatasetDict's one split
    one = datasets.DatasetDict({"validation": datasets.Dataset.from_dict({"caption": ["x", None, "z"]})})
    one.save_to_disk(str(tmp_path / "hf_dict"))
    assert read_captions(tmp_path / "hf_dict") == ["x", "", "z"]
    one["train"] = one["validation"]
    one.save_to_disk(str(tmp_path / "hf_two"))
    with pytest.raises(DataError, match=r"holds splits \['validation', 'train'\]"):
        read_captions(tmp_path / "hf_two")


def test_cli_runs_and_reports(tmp_path, capsys):
    src = tmp_path / "caps.txt"
    src.write_text("\n".join(CAPTIONS) + "\n")
    assert main(["rewrite", "--input", str(src), "--out", str(tmp_path / "o"), "--rewriter", "eda",
                 "--num-variants", "2", "--batch-size", "8", "--no-progress"]) == 0
    assert load_rewrites(tmp_path / "o").keys() == {"eda1", "eda2"}
    assert "generation calls this run: 2" in capsys.readouterr().out
    for i in range(2):
        assert main(["rewrite", "--input", str(src), "--out", str(tmp_path / "s"), "--shard", f"{i}/2",
                     "--batch-size", "4", "--no-progress"]) == 0
    assert main(["rewrite", "--merge", str(tmp_path / "s"), "--no-progress"]) == 0
    assert load_rewrites(tmp_path / "s") == rewrite_captions(CAPTIONS, tmp_path / "ref",
                                                             RewriteConfig(batch_size=4), progress=False)


@pytest.mark.parametrize("argv, message", [
    (["--sources", "chatgpt,gpt5"], "unknown meta-pair source 'gpt5'"),
    (["--shard", "3/2"], "--shard 3/2"),
    (["--input", "nowhere.txt"], "--input not found: nowhere.txt"),
    (["--rewriter", "llm"], "rewrite.rewriter=llm needs rewrite.model"),
    (["--rewriter", "llm", "--model", "./no-such-llama"], "model folder not found: "),
    (["--rewriter", "backtranslate", "--model", "m/en-de,/no/such/de-en"], "model folder not found: /no/such/de-en"),
    (["--rewriter", "llm", "--model", "org/name", "--device", "gpu"], "expected auto, cpu, mps, cuda or cuda:N"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch, argv, message):
    src = tmp_path / "caps.txt"
    src.write_text("a red circle\n")
    args = ["rewrite", "--input", str(src), "--out", str(tmp_path / "o"), *argv]
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("laclip-lite rewrite: error:")
