"""File data as CC3M really looks: the one CSV rule, unreadable samples replaced and counted, one augmentation
per sample, and data.augment honoured on file data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from laclip_lite.config import build_config
from laclip_lite.data import laclip_csv
from laclip_lite.data.dirty import DIRTY, N, dirty_captions, export_dirty_laclip
from laclip_lite.data.readers import LaclipCsvSource, discover_rewrite_files
from laclip_lite.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LACLIP_LITE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def dirty(tmp_path_factory):
    return export_dirty_laclip(tmp_path_factory.mktemp("dirty"))


def test_dirty_set_reads_every_caption_and_counts_each_unreadable_sample(dirty):
    src = LaclipCsvSource(dirty, rewrite_files=discover_rewrite_files(dirty))
    assert len(src) == N and src.variants == ["chatgpt", "bard", "mscoco", "human"]
    _, expected = dirty_captions()
    assert list(src.captions())[:6] == expected[:6]
    with pytest.warns(UserWarning, match="4 skipped"):
        recs = list(src)
    assert len(recs) == N - 4 and dict(src.stats.skipped) == DIRTY
    assert recs[1].caption == 'a red circle, isolated on white, "vintage" style'      # quoted commas + quotes
    assert recs[4].caption == "blue star, small, on a grid"                           # unquoted extra commas
    assert recs[3].caption == "circle" and recs[0].rewrites["bard"] == "triangle"
    assert "line 20" in src.stats.summary()                                           # bad row, by its line


def test_committed_dirty_sample_is_what_the_generator_writes(dirty):
    committed = ROOT / "data_samples" / "laclip_dirty"
    names = sorted(p.relative_to(dirty.parent) for p in dirty.parent.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file())
    for name in names:
        assert (committed / name).read_bytes() == (dirty.parent / name).read_bytes(), name


def test_one_csv_rule_for_training_and_rewriting(tmp_path):
    from laclip_lite.rewrite.inputs import read_captions

    path = tmp_path / "x.csv"
    path.write_bytes(b'image,caption\r\na.jpg,"x, ""y"""\r\nb.jpg,red, blue car\r\nc.jpg,5" screen\r\n'
                     b'd.jpg,"multi\nline"\r\n\r\n')
    want = ['x, "y"', "red, blue car", '5" screen', "multi line"]
    assert read_captions(path) == want
    assert list(LaclipCsvSource(path).captions()) == want
    path.write_bytes(b'a.jpg,ok\nb.jpg,"never closed\nc.jpg,x\n')
    with pytest.raises(DataError, match=r"x\.csv:2: a quoted field"):
        laclip_csv.row_index(path)
    # a row training skips (no caption; a .gif) keeps its line, empty, and is counted: rewriting never stops
    from laclip_lite.rewrite.inputs import read_input
    path.write_bytes(b"a.jpg,ok\nb.jpg\nc.gif,an animation\nd.jpg,fine\n")
    read = read_input(path)
    assert read.texts == ["ok", "", "", "fine"] and read.skipped == {"bad_row": 2}
    assert "2 sample(s) training skips, kept as empty lines" in read.note()


def _same_image_csv(folder: Path, n: int) -> Path:
    from laclip_lite.data.dirty import jpeg_bytes
    from laclip_lite.data.shapeworld import ShapeWorld

    (folder / "one.jpg").write_bytes(jpeg_bytes(ShapeWorld(seed=0, image_size=32).split("train", 1).images[0]))
    path = folder / "same.csv"
    path.write_text("".join(f"one.jpg,caption number {i}\n" for i in range(n)))
    return path


def test_each_sample_gets_its_own_augmentation_in_any_worker(tmp_path):
    """Every row shows the same picture: with 2 DataLoader workers every sample's crop differs (the old shared
    random.Random gave both workers the same crops), and workers=0 gives the very same tensors."""
    from laclip_lite.train import build_train_data

    csv_path = _same_image_csv(tmp_path, 32)
    over = [f"data.source={csv_path}", "train.batch_size=8", "data.crop_scale=[0.3,1.0]"]
    pairs = build_train_data(build_config("test", over + ["data.num_workers=2"])).pairs
    two = [pairs.batch(0), pairs.batch(1)]              # the DataLoader's worker 0 makes batch 0, worker 1 batch 1
    zero = build_train_data(build_config("test", over + ["data.num_workers=0"])).pairs
    assert pairs.augmented and all(torch.equal(b.images, zero.batch(s).images) for s, b in enumerate(two))
    flat = torch.cat([b.images for b in two]).flatten(1).float()
    assert (torch.cdist(flat, flat) + torch.eye(16) * 1e9).min() > 0      # no two crops alike, in or across workers


def test_clip_reads_only_the_original_caption(dirty):
    from laclip_lite.train import build_train_data

    data = build_train_data(build_config("test", [f"data.source={dirty}", "train.policy=clip", "train.batch_size=8"]))
    assert data.variants == [] and data.pairs.dataset.source.rewrite_files == {}
    assert data.info["texts"] == "the original caption only"
    mt = build_train_data(build_config("test", [f"data.source={dirty}", "train.policy=mt", "train.batch_size=8"]))
    assert mt.variants == ["chatgpt", "bard", "mscoco", "human"] and "all 5" in mt.info["texts"]


def test_augment_without_rewrite_files_runs_the_cache_or_stops_before_training(tmp_path):
    from laclip_lite.train import build_train_data

    csv_path = _same_image_csv(tmp_path, 16)
    over = [f"data.source={csv_path}", "train.policy=laclip", "data.augment=eda", "train.batch_size=8"]
    # EDA finds little to change in three-word captions: 10 of 16 eda2 rewrites equal their caption
    with pytest.raises(DataError, match=r"identical to their caption: eda2 10/16 \(62%\).*data.max_identical=0.5"):
        build_train_data(build_config("test", over))
    eda = build_train_data(build_config("test", over + ["data.max_identical=0.7"]))
    assert eda.variants == ["eda1", "eda2", "eda3", "eda4"] and "rewrites" in eda.info["rewrites_from"]
    assert eda.info["identical_to_caption"]["eda2"] == {"n": 16, "identical": 10, "share": 0.625}
    with pytest.raises(DataError, match="data.augment=llm .*no llm rewrites found.*chatgpt.txt.*laclip-lite rewrite"):
        build_train_data(build_config("test", [f"data.source={csv_path}", "train.policy=laclip",
                                               "data.augment=llm", "train.batch_size=8"]))


def test_training_on_the_dirty_set_reports_what_it_replaced(tmp_path, dirty, capsys):
    from laclip_lite.train import train

    final = train(build_config("test", [f"data.source={dirty}", "train.policy=laclip", "train.batch_size=8",
                                        "train.steps=6"]), tmp_path / "run", progress=False, evaluate_at_end=False)
    info = json.loads((tmp_path / "run" / "data_info.json").read_text())
    saved = json.loads((tmp_path / "run" / "final_metrics.json").read_text())
    # 6 steps x 8 = 48 reads = two passes over the 24 rows: each unreadable row is hit twice and replaced each
    # time (a replacement draw that lands on another unreadable row is counted too, and drawn again)
    replaced = info["samples_replaced"]
    assert info["samples_read"] == 48 and set(replaced) == set(DIRTY)
    assert all(replaced[k] >= 2 * v for k, v in DIRTY.items()) and sum(replaced.values()) < 16
    assert final["data"] == saved["data"] and saved["data"]["samples_replaced"] == replaced
    assert info["rewrites_fallen_back"] >= 2                  # row 0's one-word bard rewrite, read twice
    assert f"{sum(replaced.values())} replaced by a readable sample" in capsys.readouterr().err
