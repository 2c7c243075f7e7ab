"""Evaluation sets on files: layouts read back exactly, metrics equal to the in-memory ones, bad input named."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from laclip_lite import evaluate as ev
from laclip_lite import metrics as mt
from laclip_lite import runs
from laclip_lite.config import ConfigError
from laclip_lite.data import eval_layouts as el
from laclip_lite.data.export import export_clip_benchmark, export_imagefolder, export_laclip
from laclip_lite.errors import DataError
from laclip_lite.templates import get_templates


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An untrained `test`-preset model with its tokenizer, saved as a run folder, and its ShapeWorld splits."""
    from laclip_lite.config import build_config
    from laclip_lite.data.dataset import shapeworld_split
    from laclip_lite.data.tokenizer import build_tokenizer
    from laclip_lite.models.clip import build_model

    cfg = build_config("test", {"data.train_size": 60, "data.test_size": 40, "train.device": "cpu"})
    train, test = shapeworld_split(cfg, "train"), shapeworld_split(cfg, "test")
    tok = build_tokenizer(cfg.data, cfg.model, list(train.captions))
    cfg.model.vocab_size, cfg.model.pad_id = tok.vocab_size, tok.pad_id
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    run = tmp_path_factory.mktemp("evalrun")
    cfg.save(run / "config.yaml")
    tok.save(run)
    torch.save({"model": model.state_dict()}, run / "checkpoint.pt")
    root = tmp_path_factory.mktemp("layouts")
    return {"cfg": cfg, "model": model, "tok": tok, "train": train, "test": test, "run": run, "root": root}


def _score(model, tok, spec, **options) -> dict:
    """One evaluation set on files through the one evaluation call; its metrics without the set's prefix."""
    s = ev.FileSet(spec)
    return ev.metrics_of(ev.evaluate(model, tok, [s], **options), s)


def _zero_shot_in_memory(w, task="color_shape"):
    from laclip_lite.data.vocab import classnames

    feats = mt.encode_images(w["model"], w["test"].images)
    classifier = mt.zero_shot_classifier(w["model"], w["tok"], classnames(task), get_templates(None))
    logits = feats @ classifier
    labels = w["test"].labels[task]
    return {**mt.topk_accuracy(logits, labels), "mean_per_class_recall": mt.mean_per_class_recall(logits, labels)}


def test_exported_layouts_score_exactly_as_the_in_memory_split(world):
    want = _zero_shot_in_memory(world)
    folder = export_imagefolder(world["test"], world["root"] / "if", "color_shape")
    export_clip_benchmark(world["test"], world["root"] / "cb", "color_shape", samples_per_shard=16)
    assert folder == world["root"] / "if" / "test" and (world["root"] / "if" / "test" / "red_circle").is_dir()
    assert (world["root"] / "cb" / "test" / "nshards.txt").read_text().strip() == "3"
    assert el.detect_layout(world["root"] / "if") == "imagefolder"
    assert el.detect_layout(world["root"] / "cb") == "clip_benchmark"
    got = {name: _score(world["model"], world["tok"], str(world["root"] / name), progress=False)
           for name in ("if", "cb")}
    for name, scores in got.items():
        assert scores["n_images"] == 40 and scores["skipped"] == 0
        for metric in ("top1", "top5", "mean_per_class_recall"):
            assert scores[metric] == want[metric], (name, metric)
    assert got["if"] == got["cb"]


def test_mean_per_class_recall_by_hand():
    logits = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])            # class 0: 2/2 right, class 1: 1/2 right
    assert mt.mean_per_class_recall(logits, labels) == pytest.approx(75.0)
    assert mt.topk_accuracy(logits, labels)["top1"] == pytest.approx(75.0)
    unbalanced = torch.tensor([0, 1, 1, 1])        # class 0: 1/1 right, class 1: 1/3 right
    assert mt.mean_per_class_recall(logits, unbalanced) == pytest.approx(100 * (1 + 1 / 3) / 2)
    assert mt.topk_accuracy(logits, unbalanced)["top1"] == pytest.approx(50.0)


def test_retrieval_from_webdataset_captions_csv_and_karpathy_json(world):
    w, root = world, world["root"]
    feats = mt.encode_images(w["model"], w["test"].images)
    want = mt.retrieval(feats, mt.encode_texts(w["model"], w["tok"], w["test"].captions))
    export_clip_benchmark(w["test"], root / "cbr", "retrieval", samples_per_shard=25)
    csv_path = export_laclip(w["test"], root / "csv")
    images = [{"filename": f"{i:06d}.png", "filepath": "images", "split": "test",
               "sentences": [{"raw": c}]} for i, c in enumerate(w["test"].captions)]
    (root / "csv" / "karpathy.json").write_text(json.dumps({"images": images, "dataset": "shapes"}))
    for path in (root / "cbr", csv_path, root / "csv" / "karpathy.json"):
        got = _score(w["model"], w["tok"], str(path), progress=False)
        assert got["n_images"] == got["n_texts"] == 40
        for k in (1, 5, 10):
            assert got[f"image_to_text_R@{k}"] == pytest.approx(want[f"i2t_R@{k}"], abs=1e-9), path
            assert got[f"text_to_image_R@{k}"] == pytest.approx(want[f"t2i_R@{k}"], abs=1e-9), path


def test_captions_csv_groups_an_image_repeated_once_per_caption(world, tmp_path):
    csv_path = export_laclip(world["test"], tmp_path)
    rows = csv_path.read_text().splitlines()
    extra = [f"{r.split(',', 1)[0]},another caption {i}" for i, r in enumerate(rows[:5])]
    csv_path.write_text("\n".join(rows + extra) + "\n")
    got = _score(world["model"], world["tok"], str(csv_path), progress=False)
    assert got["n_images"] == 40 and got["n_texts"] == 45


def test_linear_probe_and_fewshot_on_an_imagefolder_with_a_train_split(world):
    w, root = world, world["root"] / "probe"
    export_imagefolder(w["train"], root, "color")
    export_imagefolder(w["test"], root, "color")
    from laclip_lite.data.vocab import classnames
    names = classnames("color")
    folder_label = {name: j for j, name in enumerate(sorted(names))}     # ImageFolder: sorted folder order

    def in_folder_order(split):     # class folders in sorted order, files by name inside each
        labels = [folder_label[names[int(v)]] for v in split.labels["color"]]
        order = sorted(range(len(labels)), key=lambda i: (labels[i], i))
        return mt.encode_images(w["model"], split.images[order]), torch.tensor(labels)[order]

    (tr, y_tr), (te, y_te) = in_folder_order(w["train"]), in_folder_order(w["test"])
    got = _score(w["model"], w["tok"], {"path": str(root), "task": "linear_probe"}, progress=False)
    want = mt.linear_probe(tr, y_tr, te, y_te)
    assert got["top1"] == pytest.approx(want["top1"]) and got["C"] == want["C"] and got["n_train"] == 60
    got = _score(w["model"], w["tok"], {"path": str(root), "task": "fewshot", "k": 2}, progress=False)
    want = mt.few_shot(tr, y_tr, te, y_te, k=2)
    assert got["top1"] == pytest.approx(want["top1"]) and got["k"] == 2


def test_unreadable_images_are_skipped_and_counted(world, tmp_path):
    root = tmp_path / "flat"
    export_imagefolder(world["test"], tmp_path / "tmp", "shape")
    shutil.copytree(tmp_path / "tmp" / "test", root)
    first = sorted(p for p in root.iterdir() if any(p.iterdir()))[0]
    (first / "broken.jpg").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="1 unreadable image"):
        got = _score(world["model"], world["tok"], str(root), progress=False, num_workers=2)
    assert got["skipped"] == 1 and got["n_images"] == 40



def test_unreadable_webdataset_samples_are_counted_by_reason_in_the_training_readers_counter(world, tmp_path):
    """Evaluation counts skips with the format layer's ReadStats, by the reasons training uses."""
    import io
    import tarfile

    from laclip_lite.data.formats import ReadStats

    export_clip_benchmark(world["test"], tmp_path / "cb", "shape", samples_per_shard=20)
    shard = tmp_path / "cb" / "test" / "0.tar"
    with tarfile.open(shard, "a") as tar:
        for name, data in (("bad.png", b"not an image"), ("bad.cls", b"0"), ("nolabel.png", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    stats = ReadStats("eval")
    ds = el.open_eval_set(str(tmp_path / "cb"))
    assert sum(len(t) for _, t in el.batches(ds, "test", 32, batch_size=16, progress=False, stats=stats)) == 40
    assert stats.read == 40 and dict(stats.skipped) == {"corrupt_image": 1, "missing_label": 1}
    assert stats.examples["missing_label"] == [f"{shard}:nolabel"] and stats.count == 2
    with pytest.warns(UserWarning, match=r"2 unreadable image\(s\) skipped: 1 corrupt_image \(e\.g\. .*bad\.png\)"):
        assert _score(world["model"], world["tok"], str(tmp_path / "cb"), progress=False)["skipped"] == 2


def test_batches_start_the_data_loader_once_with_or_without_a_progress_bar(world, tmp_path, monkeypatch):
    """tqdm.auto's bar calls iter() on its iterable: given the DataLoader, it would start a second set of workers."""
    starts = []
    real_iter = torch.utils.data.DataLoader.__iter__
    monkeypatch.setattr(torch.utils.data.DataLoader, "__iter__", lambda self: starts.append(1) or real_iter(self))
    export_imagefolder(world["test"], tmp_path, "shape")
    ds = el.open_eval_set(str(tmp_path))
    for progress in (False, True):
        starts.clear()
        assert sum(len(t) for _, t in el.batches(ds, "test", 32, batch_size=16, progress=progress)) == 40
        assert starts == [1], progress

def test_classnames_files_and_their_errors(world, tmp_path):
    root = tmp_path / "if"
    export_imagefolder(world["test"], root, "shape")
    folders = sorted(p.name for p in (root / "test").iterdir())
    (tmp_path / "names.txt").write_text("".join(f"the {f}\n" for f in folders))
    ds = el.open_eval_set({"path": str(root), "classnames": str(tmp_path / "names.txt")})
    assert ds.classnames == [f"the {f}" for f in folders]
    (tmp_path / "labels.json").write_text(json.dumps({f: f.upper() for f in reversed(folders)}))
    ds = el.open_eval_set({"path": str(root), "classnames": str(tmp_path / "labels.json")})
    assert ds.classnames == [f.upper() for f in folders]
    (tmp_path / "short.txt").write_text("one\ntwo\n")
    with pytest.raises(DataError, match=rf"short.txt: 2 class names but the dataset has {len(folders)} classes"):
        el.open_eval_set({"path": str(root), "classnames": str(tmp_path / "short.txt")})


def test_bad_input_gets_one_line_naming_the_path(world, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    looked = r"empty: matches no evaluation layout \(looked for: CLIP_benchmark.*ImageFolder.*CSV.*Karpathy"
    with pytest.raises(DataError, match=looked):
        el.open_eval_set(str(tmp_path / "empty"))
    with pytest.raises(DataError, match="evaluation dataset not found"):
        el.open_eval_set(str(tmp_path / "nowhere"))
    root = tmp_path / "flat"
    export_imagefolder(world["test"], tmp_path, "shape")
    (tmp_path / "test").rename(root)
    with pytest.raises(DataError, match=r"flat: no 'train' split \(splits found: test\)"):
        el.open_eval_set({"path": str(root), "task": "linear_probe"})
    (tmp_path / "bad_templates.txt").write_text("a photo of a {}.\na photo without a slot\n")
    with pytest.raises(DataError, match=r"bad_templates.txt:2: template"):
        el.open_eval_set({"path": str(root), "templates": str(tmp_path / "bad_templates.txt")})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['pth'\]"):
        el.parse_spec({"pth": "x"})
    with pytest.raises(ConfigError, match="task 'zero' of x is not one of"):
        el.parse_spec({"path": "x", "task": "zero"})
    with pytest.raises(DataError, match="task 'retrieval' needs a retrieval dataset"):
        el.open_eval_set({"path": str(root), "task": "retrieval"})


def test_webdataset_folder_errors_name_the_file(world, tmp_path):
    export_clip_benchmark(world["test"], tmp_path / "cb", "shape", samples_per_shard=20)
    (tmp_path / "cb" / "test" / "nshards.txt").write_text("3\n")
    with pytest.raises(DataError, match=r"nshards.txt says 3 shards but .* lacks \['2.tar'\]"):
        el.open_eval_set(str(tmp_path / "cb"))
    (tmp_path / "cb" / "test" / "nshards.txt").write_text("2\n")
    (tmp_path / "cb" / "classnames.txt").write_text("circle\n")
    with pytest.raises(ValueError, match="only 1 class names"):
        _score(world["model"], world["tok"], str(tmp_path / "cb"), progress=False)
    (tmp_path / "cb" / "classnames.txt").unlink()
    with pytest.raises(FileNotFoundError, match="no classnames.txt"):
        el.open_eval_set(str(tmp_path / "cb"))


def test_clip_benchmark_templates_with_c_placeholders(tmp_path):
    from laclip_lite.templates import load_templates

    (tmp_path / "t.txt").write_text("a photo of a {c}.\nart of the {c}.\n")
    assert load_templates(tmp_path / "t.txt") == ["a photo of a {}.", "art of the {}."]


def test_run_folder_missing_files_are_named(world, tmp_path):
    for missing in ("config.yaml", "tokenizer_meta.json", "tokenizer.json", "checkpoint.pt"):
        run = tmp_path / missing.replace(".", "_")
        shutil.copytree(world["run"], run)
        (run / missing).unlink()
        with pytest.raises(FileNotFoundError, match=f"has no {missing}"):
            runs.load_run(run, device="cpu")


def test_eval_datasets_config_entries():
    from laclip_lite.config import build_config

    cfg = build_config("test", ["eval.datasets=[data/a, {path: data/b.json, task: retrieval, name: coco}]"])
    specs = el.parse_specs(cfg.eval.datasets)
    assert [s.label for s in specs] == ["a", "coco"] and specs[1].task == "retrieval"
    assert build_config("test", ["eval.datasets=x/val,y/val2"]).eval.datasets == ["x/val", "y/val2"]
    with pytest.raises(ConfigError, match="several entries are named"):
        build_config("test", ["eval.datasets=[x/val, y/val]"])
    with pytest.raises(ConfigError, match=r"eval.datasets\[0\]: unknown key"):
        build_config("test", ["eval.datasets=[{path: a, tsk: zeroshot}]"])


def test_committed_eval_samples_are_the_exporters_output(tmp_path):
    """data_samples/eval/* open in their layouts and equal what make_samples.sh writes (byte for byte)."""
    from pathlib import Path

    from laclip_lite.data.shapeworld import ShapeWorld

    samples = Path(__file__).resolve().parents[1] / "data_samples" / "eval"
    expect = {"imagefolder": ("imagefolder", 6), "clip_benchmark": ("clip_benchmark", 6),
              "clip_benchmark_retrieval": ("clip_benchmark", None), "drawn_shapes": ("imagefolder", 6),
              "drawn_color_shapes": ("imagefolder", 48)}
    for name, (layout, classes) in expect.items():
        ds = el.open_eval_set(str(samples / name))
        assert ds.layout == layout and (classes is None or len(ds.classnames) == classes), name
    world = ShapeWorld(seed=0, image_size=32)
    for split in ("train", "test"):
        export_imagefolder(world.split(split, 48), tmp_path / "if", "shape")
        export_clip_benchmark(world.split(split, 48), tmp_path / "cb", "shape", samples_per_shard=24)
    for fresh, committed in ((tmp_path / "if", samples / "imagefolder"), (tmp_path / "cb", samples / "clip_benchmark")):
        files = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file())
        assert all((fresh / f).read_bytes() == (committed / f).read_bytes() for f in files)


def _tarfile_reading(path):
    """(name, bytes) of the regular files of a tar as Python's `tarfile` reads them: the reference."""
    import tarfile

    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]


def test_tar_reader_equals_tarfile_on_exported_gnu_pax_and_gzip_shards(world, tmp_path):
    import gzip
    import io
    import tarfile

    from laclip_lite.data.tar_shards import tar_members, tar_samples

    export_clip_benchmark(world["test"], tmp_path / "cb", "shape", samples_per_shard=16)
    shards = sorted((tmp_path / "cb" / "test").glob("*.tar"))
    long_dir = "d" * 120 + "/" + "e" * 30                        # > 100 chars: ustar prefix, GNU 'L', pax path
    members = [("a/000001.png", b"\x89PNG" * 300), (f"{long_dir}/000002.cls", b"3"),
               (f"{long_dir}/{'k' * 110}.txt", "caption é".encode()), ("b/000003.png", b""),
               ("ü/000004.txt", b"x" * 512)]
    for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        path = tmp_path / f"fmt{fmt}.tar"
        with tarfile.open(path, "w", format=fmt) as tar:
            directory = tarfile.TarInfo("a")
            directory.type = tarfile.DIRTYPE
            tar.addfile(directory)
            for name, data in members:
                if fmt == tarfile.USTAR_FORMAT and len(name.rsplit("/", 1)[1]) > 100:
                    continue                                     # ustar cannot hold a base name this long
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            link = tarfile.TarInfo("a/000001.jpg")
            link.type, link.linkname = tarfile.SYMTYPE, "000001.png"
            tar.addfile(link)
        shards.append(path)
    (tmp_path / "z.tar").write_bytes(gzip.compress(shards[-1].read_bytes()))   # not ustar at byte 0: tarfile reads
    shards.append(tmp_path / "z.tar")
    for shard in shards:
        assert list(tar_members(str(shard))) == _tarfile_reading(shard), shard
    pax = dict(tar_samples(str(tmp_path / f"fmt{tarfile.PAX_FORMAT}.tar")))
    assert pax[f"{long_dir}/000002"] == {"cls": b"3"} and pax[f"{long_dir}/{'k' * 110}"]["txt"] == members[2][1]
    assert b"././@LongLink" in shards[-3].read_bytes() and b" path=" in shards[-2].read_bytes()   # 'L' and 'x'
    assert [k for k, _ in tar_samples(str(shards[0]))] == [f"s{i:07d}" for i in range(16)]


def test_truncated_or_corrupt_tar_shards_raise_naming_the_shard(world, tmp_path):
    from laclip_lite.data.tar_shards import tar_members

    export_clip_benchmark(world["test"], tmp_path / "cb", "shape", samples_per_shard=40)
    whole = (tmp_path / "cb" / "test" / "0.tar").read_bytes()
    header_at = 1024 + -(-len(whole[1024:]) // 2 // 512) * 512   # some header after the first member
    while whole[header_at + 257:header_at + 262] != b"ustar":
        header_at += 512
    end = len(whole.rstrip(b"\0"))
    end += -end % 512                                            # the end of the last member's padding
    cuts = {"mid-data": header_at - 300, "mid-header": header_at + 100, "no end-of-archive": header_at,
            "after the last member": end}
    for what, cut in cuts.items():
        (tmp_path / "cb" / "test" / "0.tar").write_bytes(whole[:cut])
        with pytest.raises(DataError, match=r"0\.tar: truncated tar shard"):
            list(tar_members(str(tmp_path / "cb" / "test" / "0.tar")))
            pytest.fail(f"a shard cut {what} read without an error")
        with pytest.raises(DataError, match=r"0\.tar: truncated tar shard"):
            _score(world["model"], world["tok"], str(tmp_path / "cb"), progress=False)
    corrupt = bytearray(whole)
    corrupt[header_at + 3] ^= 1                                   # one flipped bit in a member's name
    (tmp_path / "cb" / "test" / "0.tar").write_bytes(bytes(corrupt))
    with pytest.raises(DataError, match=rf"0\.tar: corrupt tar header at byte {header_at}"):
        list(tar_members(str(tmp_path / "cb" / "test" / "0.tar")))
    (tmp_path / "cb" / "test" / "0.tar").write_bytes(b"")
    with pytest.raises(DataError, match=r"0\.tar: unreadable tar shard"):
        list(tar_members(str(tmp_path / "cb" / "test" / "0.tar")))
