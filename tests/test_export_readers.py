"""Exports of ShapeWorld (HF / webdataset / LaCLIP layout) read back by the readers; skips, alignment, sharding."""
from __future__ import annotations

import csv
import io
import json
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from laclip_lite.config import DataConfig
from laclip_lite.data import readers
from laclip_lite.data.export import export_hf, export_laclip, export_split, export_wds, png_bytes
from laclip_lite.data.readers import (
    HFDiskSource,
    IterableRecordDataset,
    LaclipCsvSource,
    RecordDataset,
    TarShardSource,
    open_source,
    replacement_index,
)
from laclip_lite.data.shapeworld import ShapeWorld
from laclip_lite.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_samples"


def to_tensor(img, step: int = 0, index: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


@pytest.fixture(scope="module")
def split():
    s = ShapeWorld(seed=1, image_size=32).split("val", 12)
    captions = list(s.captions)
    captions[0] = 'a red star, "quoted", with commas'   # the CSV must quote this one
    return SimpleNamespace(name="train", images=s.images, captions=captions, labels=s.labels)


@pytest.fixture(scope="module")
def rewrites(split):
    return {"chatgpt": [f"chatgpt says {i}, with a comma" for i in range(12)],
            "bard": [f"bard says {i}" for i in range(12)]}


def check_records(records, split, rewrites):
    records = sorted(records, key=lambda r: r.key)
    assert len(records) == len(split.captions)
    for i, rec in enumerate(records):
        assert rec.caption == split.captions[i]
        assert rec.rewrites == {v: t[i] for v, t in rewrites.items()}
        assert rec.image.mode == "RGB"
        assert torch.equal(to_tensor(rec.image), split.images[i])     # PNG is lossless


# -- round trips --------------------------------------------------------------------------------------------
def test_hf_round_trip(tmp_path, split, rewrites):
    import datasets

    export_hf(split, tmp_path / "hf", rewrites)
    src = open_source(DataConfig(source=str(tmp_path / "hf")))
    assert isinstance(src, HFDiskSource) and src.variants == ["chatgpt", "bard"] and len(src) == 12
    check_records(list(src), split, rewrites)
    assert list(src.captions()) == split.captions
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    assert ds.features["color_shape"].names[ds[3]["color_shape"]].endswith(ds.features["shape"].names[ds[3]["shape"]])
    assert ds[5]["size"] == int(split.labels["size"][5])


def test_wds_round_trip(tmp_path, split, rewrites):
    paths = export_wds(split, tmp_path / "wds", rewrites, samples_per_shard=5)
    assert [p.name for p in paths] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    with tarfile.open(paths[0]) as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile("000001.json").read())
    assert names[:3] == ["000000.png", "000000.txt", "000000.json"] and len(names) == 15
    assert meta["rewrites"] == {"chatgpt": rewrites["chatgpt"][1], "bard": rewrites["bard"][1]}
    wds = tmp_path / "wds"
    for source in (wds, str(wds / "*.tar"), str(wds / "shard-{000000..000002}.tar")):
        src = open_source(DataConfig(source=str(source)))
        assert isinstance(src, TarShardSource) and len(src.shards) == 3 and src.variants == ["chatgpt", "bard"]
        check_records(list(src), split, rewrites)
    # deterministic bytes: the same split written twice gives identical shards
    again = export_wds(split, tmp_path / "wds2", rewrites, samples_per_shard=5)
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(paths, again))


def test_laclip_round_trip(tmp_path, split, rewrites):
    csv_path = export_laclip(split, tmp_path / "laclip", rewrites)
    assert csv_path.name == "train.csv"
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["images/000000.png", split.captions[0]]            # no header
    assert csv_path.read_text().splitlines()[0] == 'images/000000.png,"a red star, ""quoted"", with commas"'
    assert (tmp_path / "laclip" / "chatgpt.txt").read_text().splitlines() == rewrites["chatgpt"]
    src = open_source(DataConfig(source=str(tmp_path / "laclip")))        # a folder holding train.csv
    assert isinstance(src, LaclipCsvSource) and src.variants == ["chatgpt", "bard"] and len(src) == 12
    check_records(list(src), split, rewrites)
    assert list(src.captions()) == split.captions
    assert src.stats.read == 12 and not src.stats.skipped


def test_export_split_and_cli(tmp_path, capsys, monkeypatch):
    from laclip_lite.cli import main

    assert main(["export", "--format", "wds", "--out", str(tmp_path / "w"), "--n", "6", "--shards", "3"]) == 0
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == [f"shard-00000{i}.tar" for i in range(3)]
    # --rewriter when the rewrite job cannot be imported: export anyway, and say so
    monkeypatch.setitem(sys.modules, "laclip_lite.rewrite.job", None)
    assert main(["export", "--format", "laclip", "--out", str(tmp_path / "l"), "--n", "4", "--rewriter", "shapes"]) == 0
    assert "exporting without rewrites" in capsys.readouterr().err
    assert not list((tmp_path / "l").glob("*.txt"))
    assert len((tmp_path / "l" / "train.csv").read_text().splitlines()) == 4
    assert main(["export", "--format", "hf", "--out", str(tmp_path / "h"), "--n", "0"]) == 2


def test_rewrites_must_align_with_captions(tmp_path, split):
    with pytest.raises(DataError, match="has 3 texts but the split has 12"):
        export_split(split, tmp_path, ["laclip"], {"chatgpt": ["a", "b", "c"]})


# -- the committed samples ----------------------------------------------------------------------------------
def test_committed_data_samples_read_back():
    expected = ShapeWorld(seed=0, image_size=32).split("train", 48)
    by_format = {}
    for fmt in ("hf", "wds", "laclip"):
        src = open_source(DataConfig(source=str(SAMPLES / fmt)))
        recs = sorted(src, key=lambda r: Path(r.key).stem)
        assert len(recs) == 48 and not src.stats.skipped, fmt
        assert [r.caption for r in recs] == expected.captions, fmt
        assert torch.equal(to_tensor(recs[7].image), expected.images[7]), fmt
        by_format[fmt] = recs
    assert len(list((SAMPLES / "wds").glob("shard-*.tar"))) == 2
    assert [r.rewrites for r in by_format["hf"]] == [r.rewrites for r in by_format["wds"]] == \
           [r.rewrites for r in by_format["laclip"]]


# -- skipped samples ----------------------------------------------------------------------------------------
def _add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_corrupt_png_in_shard_is_skipped_and_counted(tmp_path, split):
    path = tmp_path / "shard-000000.tar"
    with tarfile.open(path, "w") as tar:
        for i in range(4):
            data = png_bytes(split.images[i])
            _add(tar, f"{i:06d}.png", data[:40] + b"\x00garbage" if i == 2 else data)   # truncated, corrupt
            _add(tar, f"{i:06d}.txt", split.captions[i].encode())
        _add(tar, "000004.txt", b"a caption without an image")
    src = TarShardSource(path)
    with pytest.warns(UserWarning, match="1 corrupt_image"):
        keys = [r.key for r in src]
    assert keys == ["000000", "000001", "000003"]
    assert src.stats.read == 3 and src.stats.skipped == {"corrupt_image": 1, "missing_image": 1}
    assert "000002" in src.stats.summary()



def test_truncated_shard_keeps_its_earlier_samples_and_counts_the_rest_corrupt(tmp_path, split):
    paths = export_wds(split, tmp_path / "wds", samples_per_shard=5)
    whole = paths[0].read_bytes()
    paths[0].write_bytes(whole[:len(whole) // 2 + 100])          # cut inside a member's bytes
    src = TarShardSource(str(tmp_path / "wds" / "*.tar"))
    with pytest.warns(UserWarning, match="1 corrupt_shard"):
        keys = [r.key for r in src]
    first, rest = [k for k in keys if int(k) < 5], [k for k in keys if int(k) >= 5]
    assert 0 < len(first) < 5 and len(rest) == len(split.captions) - 5
    assert "shard-000000.tar: truncated tar shard" in src.stats.summary()

def test_corrupt_and_missing_images_in_csv_layout(tmp_path, split, rewrites):
    export_laclip(split, tmp_path, rewrites)
    (tmp_path / "images" / "000003.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    (tmp_path / "images" / "000005.png").unlink()
    src = open_source(DataConfig(source=str(tmp_path / "train.csv")))
    with pytest.warns(UserWarning, match="skipped"):
        keys = [r.key for r in src]
    assert len(keys) == 10 and "images/000003.png" not in keys and "images/000005.png" not in keys
    assert src.stats.skipped == {"corrupt_image": 1, "missing_image": 1}
    ds = RecordDataset(src, to_tensor, seed=7)
    image, texts, skips = ds[4]
    assert image.shape == (3, 32, 32) and texts == [split.captions[4], rewrites["chatgpt"][4], rewrites["bard"][4]]
    assert skips == []
    # an unreadable sample is replaced by a readable one drawn from (seed, index): the same every time
    image, texts, skips = ds[3]
    assert skips == ["corrupt_image"]
    j = replacement_index(7, 3, 0, len(src))
    j = j if j not in (3, 5) else replacement_index(7, 3, 1, len(src))
    assert texts[0] == split.captions[j] and ds[3][1] == texts
    assert ds[5][2][0] == "missing_image"


def test_misaligned_rewrite_file_fails_at_open(tmp_path, split, rewrites):
    export_laclip(split, tmp_path, rewrites)
    bad = tmp_path / "bard.txt"
    bad.write_text("".join(t + "\n" for t in rewrites["bard"][:-1]))
    with pytest.raises(DataError) as err:
        open_source(DataConfig(source=str(tmp_path)))
    msg = str(err.value)
    assert "11 lines" in msg and "12 rows" in msg and str(bad) in msg and str(tmp_path / "train.csv") in msg


def test_csv_header_blank_lines_and_quoted_newlines(tmp_path, split):
    (tmp_path / "a.png").write_bytes(png_bytes(split.images[0]))
    (tmp_path / "b.png").write_bytes(png_bytes(split.images[1]))
    (tmp_path / "data.csv").write_text('filepath,title\na.png,"two\nlines, one caption"\nb.png,plain\n\n')
    (tmp_path / "eda1.txt").write_text("first\nsecond")          # no trailing newline: still 2 lines
    src = LaclipCsvSource(tmp_path / "data.csv", rewrite_files=readers.discover_rewrite_files(tmp_path / "data.csv"))
    assert len(src) == 2 and src.variants == ["eda1"]
    recs = list(src)
    assert [r.caption for r in recs] == ["two lines, one caption", "plain"]   # captions are one line
    assert [r.rewrites["eda1"] for r in recs] == ["first", "second"]
    assert list(src.captions()) == ["two lines, one caption", "plain"]


def test_open_source_errors(tmp_path):
    with pytest.raises(DataError, match="not found: .*nowhere"):
        open_source(DataConfig(source=str(tmp_path / "nowhere.csv")))
    with pytest.raises(DataError, match="no shards match"):
        open_source(DataConfig(source=str(tmp_path / "*.tar")))
    with pytest.raises(DataError, match="rendered in memory"):
        open_source(DataConfig())
    (tmp_path / "x.bin").write_bytes(b"")
    with pytest.raises(DataError, match="cannot tell the format"):
        open_source(DataConfig(source=str(tmp_path / "x.bin")))


# -- sharding across ranks and DataLoader workers -----------------------------------------------------------
@pytest.fixture(scope="module")
def eight_shards(tmp_path_factory):
    s = ShapeWorld(seed=2, image_size=16).split("train", 40)
    return export_wds(s, tmp_path_factory.mktemp("shards"), samples_per_shard=5)


def test_ranks_times_workers_cover_every_sample_once(eight_shards, monkeypatch):
    seen = []
    for rank in range(2):
        for worker in range(2):
            monkeypatch.setattr(torch.utils.data, "get_worker_info",
                                lambda w=worker: SimpleNamespace(num_workers=2, id=w))
            keys = [r.key for r in TarShardSource(eight_shards, rank=rank, world_size=2)]
            assert len(keys) == 10
            seen += keys
    assert sorted(seen) == [f"{i:06d}" for i in range(40)]


def test_real_dataloader_workers(eight_shards):
    from torch.utils.data import DataLoader

    keys = []
    for rank in range(2):
        ds = IterableRecordDataset(TarShardSource(eight_shards, rank=rank, world_size=2), to_tensor)
        collate = lambda items: (torch.stack([i for i, _, _ in items]), [t for _, t, _ in items])  # noqa: E731
        for images, texts in DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate):
            assert images.shape[1:] == (3, 16, 16)
            keys += [t[0] for t in texts]
    assert sorted(keys) == sorted(ShapeWorld(seed=2, image_size=16).split("train", 40).captions)
