"""Evaluation math against naive loops and hand computations; templates; run folders end to end."""
from __future__ import annotations

import json
import re
import shutil
import zlib

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from laclip_lite import evaluate as ev
from laclip_lite import metrics as mt
from laclip_lite import runs
from laclip_lite.errors import DataError
from laclip_lite.templates import fill, get_templates, load_templates, template_sets

# ---------------------------------------------------------------------------------------------------------
# A tiny stand-in encoder pair (evaluation math only; the real models are used end to end below)

class FakeCLIP(nn.Module):
    """Linear image tower on raw pixels; bag-of-words text tower with dropout (so eval mode matters)."""

    def __init__(self, dim: int = 8, vocab: int = 97, image_size: int = 4):
        super().__init__()
        self.image = nn.Linear(3 * image_size * image_size, dim)
        self.words = nn.Embedding(vocab, dim, padding_idx=0)
        self.drop = nn.Dropout(0.5)

    def encode_image(self, images):
        return F.normalize(self.image(self.drop(images.flatten(1))), dim=-1)

    def encode_text(self, tokens):
        return F.normalize(self.drop(self.words(tokens).sum(1)), dim=-1)


class FakeTokenizer:
    def __init__(self, vocab: int = 97, length: int = 12):
        self.vocab, self.length = vocab, length

    def __call__(self, texts):
        out = torch.zeros(len(texts), self.length, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [1 + zlib.crc32(w.encode()) % (self.vocab - 1) for w in text.lower().split()][: self.length]
            out[i, : len(ids)] = torch.tensor(ids)
        return out


CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


@pytest.fixture
def fake():
    torch.manual_seed(0)
    return FakeCLIP(), FakeTokenizer()


def _naive_classifier(model, tok, classnames, templates):
    """CLIP's notebook loop: per class, encode each filled template, normalise, average, normalise."""
    model.eval()
    cols = []
    with torch.no_grad():
        for name in classnames:
            embs = []
            for t in templates:
                e = model.encode_text(tok([t.replace("{}", name)]))[0]
                embs.append(e / e.norm())
            mean = torch.stack(embs).mean(0)
            cols.append(mean / mean.norm())
    return torch.stack(cols, dim=1)


# ---------------------------------------------------------------------------------------------------------
# Features and zero-shot

def test_encode_images_normalises_uint8_and_restores_train_mode(fake):
    model, _ = fake
    images = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    model.train()
    feats = mt.encode_images(model, images, batch_size=2)
    assert model.training and not feats.requires_grad and feats.shape == (5, 8)
    model.eval()
    with torch.no_grad():
        expected = model.encode_image((images.float() / 255 - CLIP_MEAN) / CLIP_STD)
    torch.testing.assert_close(feats, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(5))


def test_zero_shot_classifier_equals_naive_loop(fake):
    model, tok = fake
    classnames = ["red circle", "blue square", "green star"]
    templates = get_templates("default")
    model.train()
    w = mt.zero_shot_classifier(model, tok, classnames, templates)
    assert w.shape == (8, 3) and model.training
    torch.testing.assert_close(w, _naive_classifier(model, tok, classnames, templates), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(w.norm(dim=0), torch.ones(3))


def test_topk_accuracy_by_hand():
    logits = torch.tensor([[0.9, 0.1, 0.0, 0.3, 0.2, 0.4],
                           [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
                           [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]])
    labels = torch.tensor([0, 0, 5])   # row 0 right at top-1; row 1's label ranks 6th; row 2's ranks 6th
    assert mt.topk_accuracy(logits, labels) == pytest.approx({"top1": 100 / 3, "top5": 100 / 3})
    labels = torch.tensor([3, 1, 4])   # ranks 3, 5, 5
    assert mt.topk_accuracy(logits, labels) == pytest.approx({"top1": 0.0, "top5": 100.0})
    # fewer classes than k: every label is within the top k
    assert mt.topk_accuracy(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))["top5"] == 100.0
    # all logits equal (a collapsed model): chance, whatever the labels, not the share of class 0
    flat = mt.topk_accuracy(torch.zeros(10, 8), torch.zeros(10, dtype=torch.long))
    assert flat == pytest.approx({"top1": 100 / 8, "top5": 100 * 5 / 8})
    with pytest.raises(ValueError, match="NaN"):
        mt.topk_accuracy(torch.full((2, 3), float("nan")), torch.tensor([0, 1]))


def test_zero_shot_matches_manual_topk(fake):
    model, tok = fake
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (40, 3, 4, 4), dtype=torch.uint8, generator=g)
    classnames = [f"class{i} thing" for i in range(7)]
    labels = torch.randint(0, 7, (40,), generator=g)
    templates = ["a photo of a {}.", "a drawing of the {}."]
    got = mt.zero_shot(model, tok, images, labels, classnames, templates, batch_size=16)

    w = _naive_classifier(model, tok, classnames, templates)
    with torch.no_grad():
        feats = model.encode_image((images.float() / 255 - CLIP_MEAN) / CLIP_STD)
    scores = (feats @ w).tolist()
    top1 = top5 = 0
    for row, y in zip(scores, labels.tolist()):
        ranked = sorted(range(7), key=lambda c: -row[c])
        top1 += ranked[0] == y
        top5 += y in ranked[:5]
    assert got == pytest.approx({"top1": 100 * top1 / 40, "top5": 100 * top5 / 40})


def test_zero_shot_tasks_uses_each_tasks_labels(fake):
    from laclip_lite.data.vocab import classnames

    model, tok = fake
    g = torch.Generator().manual_seed(2)

    class Split:
        images = torch.randint(0, 256, (30, 3, 4, 4), dtype=torch.uint8, generator=g)
        labels = {"shape": torch.randint(0, 6, (30,), generator=g), "size": torch.randint(0, 3, (30,), generator=g)}

    got = ev.zero_shot_tasks(model, tok, Split, ["shape", "size"], "bare")
    for task in ("shape", "size"):
        direct = mt.zero_shot(model, tok, Split.images, Split.labels[task], classnames(task), ["{}"])
        assert got[task] == pytest.approx(direct)
    assert got["size"]["top5"] == 100.0          # 3 classes
    with pytest.raises(ValueError, match="unknown zero-shot task"):
        ev.resolve_tasks("texture")
    assert ev.resolve_tasks("all") == ["shape", "color", "color_shape", "size", "background"]


# ---------------------------------------------------------------------------------------------------------
# Retrieval

def _naive_recall(sim, text_to_image, ks=(1, 5, 10)):
    n_img, n_txt = len(sim), len(sim[0])
    out = {}
    for k in ks:
        i2t = sum(any(text_to_image[j] == i for j in sorted(range(n_txt), key=lambda j: -sim[i][j])[:k])
                  for i in range(n_img))
        t2i = sum(text_to_image[j] in sorted(range(n_img), key=lambda i: -sim[i][j])[:k] for j in range(n_txt))
        out[f"i2t_R@{k}"], out[f"t2i_R@{k}"] = 100 * i2t / n_img, 100 * t2i / n_txt
    return out


def test_retrieval_matches_naive_loop_one_caption_each():
    g = torch.Generator().manual_seed(3)
    img = F.normalize(torch.randn(30, 6, generator=g), dim=-1)
    txt = F.normalize(torch.randn(30, 6, generator=g), dim=-1)
    txt = F.normalize(txt + 0.8 * img, dim=-1)   # some signal, so recalls are neither 0 nor 100
    got = mt.retrieval(img, txt)
    want = _naive_recall((img @ txt.T).tolist(), list(range(30)))
    assert got == pytest.approx(want)
    assert 0 < got["i2t_R@1"] < 100


def test_retrieval_matches_naive_loop_several_captions_per_image():
    g = torch.Generator().manual_seed(4)
    text_to_image = torch.cat([torch.arange(12), torch.randint(0, 12, (20,), generator=g)])
    img = F.normalize(torch.randn(12, 6, generator=g), dim=-1)
    txt = F.normalize(torch.randn(32, 6, generator=g) + img[text_to_image], dim=-1)
    got = mt.retrieval(img, txt, text_to_image)
    assert got == pytest.approx(_naive_recall((img @ txt.T).tolist(), text_to_image.tolist()))


def test_retrieval_perfect_and_constant_features():
    feats = F.normalize(torch.randn(20, 16), dim=-1)
    assert set(mt.retrieval(feats, feats.clone()).values()) == {100.0}
    same = F.normalize(torch.ones(20, 4), dim=-1)   # a collapsed model: every score ties -> chance, K/N
    got = mt.retrieval(same, same)
    assert got["i2t_R@1"] == pytest.approx(100 / 20) and got["t2i_R@10"] == pytest.approx(100 * 10 / 20)
    with pytest.raises(ValueError, match="text_to_image"):
        mt.retrieval(feats, feats[:5])
    with pytest.raises(ValueError, match="NaN"):
        mt.retrieval(feats, torch.full_like(feats, float("nan")))


# ---------------------------------------------------------------------------------------------------------
# Linear probe and few-shot

def _clusters(n_per_class, noise_seed, spread=0.3, classes=4, dim=16):
    """Gaussian clusters around 4 fixed centres; train and test sets differ by `noise_seed` only."""
    centres = np.random.default_rng(0).normal(size=(classes, dim)) * 3
    y = np.repeat(np.arange(classes), n_per_class)
    return centres[y] + spread * np.random.default_rng(noise_seed).normal(size=(len(y), dim)), y


def test_linear_probe_separable_and_random_labels():
    x_tr, y_tr = _clusters(40, noise_seed=1)
    x_te, y_te = _clusters(25, noise_seed=2)
    got = mt.linear_probe(torch.tensor(x_tr), torch.tensor(y_tr), x_te, y_te)
    assert got["top1"] >= 99.0 and got["C"] in (0.01, 0.1, 1.0, 10.0, 100.0)
    rng = np.random.default_rng(1)
    noise = mt.linear_probe(rng.normal(size=(200, 16)), rng.integers(0, 4, 200),
                            rng.normal(size=(400, 16)), rng.integers(0, 4, 400))
    assert noise["top1"] < 40.0   # chance is 25: nothing leaks from the test labels


def test_linear_probe_picks_c_on_a_validation_slice_of_train():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = _clusters(15, noise_seed=7, spread=6.0)           # noisy: the regularisation strength matters
    x_te, y_te = _clusters(15, noise_seed=8, spread=6.0)
    grid = (0.001, 0.01, 1.0, 100.0)
    order = np.random.default_rng(3).permutation(len(x))
    val, fit = order[:12], order[12:]                        # 20% of 60 held out
    accs = []
    for c in grid:
        scaler = StandardScaler().fit(x[fit])
        clf = LogisticRegression(C=c, max_iter=1000).fit(scaler.transform(x[fit]), y[fit])
        accs.append(clf.score(scaler.transform(x[val]), y[val]))
    best = grid[int(np.argmax(accs))]                        # first (smallest C) among equals
    got = mt.linear_probe(x, y, x_te, y_te, grid=grid, seed=3)
    assert got["C"] == best
    assert got == pytest.approx(mt.linear_probe(x, y, x_te, y_te, C=best))


def test_few_shot_is_deterministic_and_matches_class_means():
    x_tr, y_tr = _clusters(30, noise_seed=3, spread=4.0)   # overlapping classes: the draws matter
    x_te, y_te = _clusters(30, noise_seed=4, spread=4.0)
    a = mt.few_shot(x_tr, y_tr, x_te, y_te, k=2, seed=7, episodes=4)
    assert a == mt.few_shot(x_tr, y_tr, x_te, y_te, k=2, seed=7, episodes=4)
    assert {a["top1"]} != {mt.few_shot(x_tr, y_tr, x_te, y_te, k=2, seed=s, episodes=4)["top1"] for s in (8, 9)}
    assert a["k"] == 2 and a["episodes"] == 4 and a["std"] > 0

    # k >= class size uses every training example: nearest class mean computed by hand
    def unit(m):
        return m / np.linalg.norm(m, axis=-1, keepdims=True)

    means = unit(np.stack([unit(x_tr[y_tr == c]).mean(0) for c in range(4)]))
    want = 100 * np.mean((unit(x_te) @ means.T).argmax(1) == y_te)
    full = mt.few_shot(x_tr, y_tr, x_te, y_te, k=100, episodes=2)
    assert full["top1"] == pytest.approx(want) and full["std"] == 0

    sep_tr, sep_y = _clusters(10, noise_seed=5)
    sep_te, sep_yte = _clusters(10, noise_seed=6)
    assert mt.few_shot(sep_tr, sep_y, sep_te, sep_yte, k=1, method="logreg", episodes=2)["top1"] >= 95


# ---------------------------------------------------------------------------------------------------------
# Templates

def test_template_sets_ship_and_load():
    sets = template_sets()
    for name in ("default", "photo", "art", "spoken", "heldout", "bare"):
        assert name in sets
        assert all("{}" in t for t in get_templates(name))
    assert 6 <= len(get_templates("default")) <= 10
    assert get_templates(None) == get_templates("default")
    assert fill("a photo of a {}.", "red circle") == "a photo of a red circle."
    assert not set(get_templates("heldout")) & {t for s in sets if s != "heldout" for t in get_templates(s)}


def test_templates_avoid_the_shapeworld_lexicon():
    """No template may name an attribute value: it would lean towards one class of a task."""
    from laclip_lite.data import vocab

    phrases = [w for table in (vocab.SHAPES, vocab.SIZES, vocab.POSITIONS, vocab.BACKGROUNDS) for ws in table.values()
               for w in ws] + [w for _, ws in vocab.COLORS.values() for w in ws]
    for name in template_sets():
        for t in get_templates(name):
            hits = [p for p in phrases if re.search(rf"\b{re.escape(p)}\b", t.lower())]
            assert not hits, f"template {t!r} ({name}) uses lexicon words {hits}"


def test_template_file_errors_name_file_and_line(tmp_path):
    good = tmp_path / "mine.txt"
    good.write_text("# my set\n\na sketch of a {}.\n   \nthe {}, up close.\n")
    assert load_templates(good) == ["a sketch of a {}.", "the {}, up close."]
    assert get_templates(str(good)) == load_templates(good)
    bad = tmp_path / "bad.txt"
    bad.write_text("# comment\na photo of a {}.\na photo of nothing.\n")
    with pytest.raises(DataError, match=rf"{re.escape(str(bad))}:3: .*no '{{}}'"):
        load_templates(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n")
    with pytest.raises(DataError, match="no templates"):
        load_templates(empty)
    with pytest.raises(FileNotFoundError, match="neither a named set"):
        get_templates("no-such-set")
    with pytest.raises(DataError):
        get_templates(["a photo", "a {}"])


# ---------------------------------------------------------------------------------------------------------
# Run folders

def test_load_run_missing_paths_say_which(tmp_path):
    with pytest.raises(FileNotFoundError, match="run folder not found"):
        runs.load_run(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        runs.load_run(tmp_path)
    (tmp_path / "config.yaml").write_text("{}\n")
    with pytest.raises(FileNotFoundError, match="checkpoint.pt"):
        runs.load_run(tmp_path)


@pytest.fixture(scope="module")
def handmade_run(tmp_path_factory):
    """A run folder written by hand from the real tokenizer, model and ShapeWorld (untrained weights)."""
    from laclip_lite.config import build_config
    from laclip_lite.data.dataset import shapeworld_split
    from laclip_lite.data.tokenizer import build_tokenizer
    from laclip_lite.models.clip import build_model

    cfg = build_config("test", {"data.train_size": 64, "data.test_size": 40})
    tok = build_tokenizer(cfg.data, cfg.model, list(shapeworld_split(cfg, "train").captions))
    cfg.model.vocab_size, cfg.model.pad_id = tok.vocab_size, tok.pad_id
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    run = tmp_path_factory.mktemp("handmade") / "run"
    run.mkdir()
    cfg.save(run / "config.yaml")
    tok.save(run)
    torch.save({"model": model.state_dict(), "step": 0}, run / "checkpoint.pt")
    return run, model, tok, cfg


def test_load_run_restores_the_saved_weights(handmade_run, tmp_path):
    run, model, tok, cfg = handmade_run
    loaded, loaded_tok, loaded_cfg = runs.load_run(run, device="cpu")
    assert loaded_cfg.to_dict() == cfg.to_dict() and not loaded.training
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert torch.equal(loaded_tok(["a red circle"]), tok(["a red circle"]))

    # weights saved from a torch.compile'd model carry an "_orig_mod." prefix
    other = tmp_path / "compiled"
    shutil.copytree(run, other)
    torch.save({"model": {f"_orig_mod.{k}": v for k, v in model.state_dict().items()}}, other / "checkpoint.pt")
    assert torch.equal(runs.load_run(other, "cpu")[0].logit_scale, model.logit_scale)
    torch.save({"model": {"nonsense": torch.zeros(1)}}, other / "checkpoint.pt")
    with pytest.raises(DataError, match="weights do not fit"):
        runs.load_run(other, "cpu")


def test_shapeworld_set_on_a_handmade_run(handmade_run):
    from laclip_lite.data.dataset import shapeworld_split

    run, model, tok, cfg = handmade_run
    loaded, loaded_tok, loaded_cfg = runs.load_run(run, device="cpu")
    test = shapeworld_split(loaded_cfg, "test")
    s = ev.ShapeWorldSet(test, prefix="test/", tasks=["shape", "size"], template_sets=["photo"], top5=True,
                         probe_train=shapeworld_split(loaded_cfg, "train"), few_shot=1)
    out = ev.evaluate(loaded, loaded_tok, [s])
    assert len(test.images) == 40 and ev.metrics_of(out, s) == {k.removeprefix("test/"): v for k, v in out.items()}
    direct = ev.zero_shot_tasks(model, tok, test, ["shape", "size"], "photo")
    for task in ("shape", "size"):
        assert {m: out[f"test/{task}_{m}@photo"] for m in ("top1", "top5")} == pytest.approx(direct[task])
    feats = mt.encode_images(model, test.images)
    want = mt.retrieval(feats, mt.encode_texts(model, tok, test.captions))
    assert {k: out[f"test/{k}"] for k in want} == pytest.approx(want)
    assert {k.split("_few_shot_")[0] for k in out if "_few_shot_" in k} == {"test/shape", "test/size"}
    assert not any("linear_probe" in k for k in out)
    with pytest.raises(ValueError, match="two evaluation sets write"):
        ev.evaluate(loaded, loaded_tok, [s, s])
    with pytest.raises(ValueError, match="need probe_train"):
        ev.ShapeWorldSet(test, linear_probe=True)
    with pytest.raises(ValueError, match="unknown zero-shot task"):
        ev.ShapeWorldSet(test, tasks=["texture"])


def test_eval_sets_are_the_sources_held_out_split_and_every_eval_dataset(handmade_run):
    """One function makes the trainer's and experiments' evaluation sets; the keys are those runs have always
    written (metrics.jsonl's val/ rows, result.json's columns)."""
    import copy
    from pathlib import Path

    from laclip_lite.config import build_config
    from laclip_lite.experiments import TEMPLATE_SETS, run_sets

    run, model, tok, cfg = handmade_run
    tasks = ("shape", "color", "color_shape")

    def keys(sets):
        return list(ev.evaluate(model, tok, sets))

    for split in ("val", "test"):                                        # the trainer's, every eval and at the end
        assert keys(ev.eval_sets(cfg, split, tasks=tasks, retrieval_ks=(1,))) == \
            [f"{split}/{t}_top1" for t in tasks] + [f"{split}/i2t_R@1", f"{split}/t2i_R@1"]
    tables = [f"{t}_top1{'' if s == 'default' else '@' + s}" for s in TEMPLATE_SETS for t in tasks]
    recall = [f"{side}_R@{k}" for k in (1, 5, 10) for side in ("i2t", "t2i")]
    assert keys(run_sets(cfg)) == tables + recall + [f"val/{t}_top1" for t in tasks] + \
        [f"{t}_top1@synonyms" for t in tasks]                           # run_experiment's result.json columns
    assert keys(ev.eval_sets(cfg, "test", tasks=["size", "shape"], retrieval_ks=(), synonyms=True)) == \
        ["test/shape_top1@synonyms"]                                    # only the tasks that have synonyms
    assert ev.eval_sets(cfg, "test", tasks=["size"], synonyms=True) == []
    no_val = copy.deepcopy(cfg)
    no_val.data.val_size = 0
    assert ev.eval_sets(no_val, "val") == [] and len(ev.eval_sets(no_val, "test")) == 1
    samples = Path(__file__).resolve().parents[1] / "data_samples"
    files = build_config("test", {"data.source": str(samples / "laclip" / "train.csv"),
                                  "eval.datasets": [str(samples / "eval" / "imagefolder")]})
    for split in ("val", "test"):                                        # file data: its eval.datasets only
        sets = ev.eval_sets(files, split)
        assert [type(s) for s in sets] == [ev.FileSet] and sets[0].prefix == "imagefolder/"
        assert ev.eval_sets(files, split, datasets=False) == []
    with pytest.raises(ValueError, match="unknown zero-shot task"):
        ev.eval_sets(cfg, "test", tasks=["texture"])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from laclip_lite.config import build_config
    from laclip_lite.train import train

    run = tmp_path_factory.mktemp("evalrun") / "run"
    cfg = build_config("test", {"train.steps": 2, "data.test_size": 48, "train.device": "cpu"})
    final = train(cfg, run, progress=False)
    return run, final


@pytest.mark.slow
def test_eval_cli_end_to_end(trained_run, capsys):
    from laclip_lite.cli import main

    run, final = trained_run
    model, tok, cfg = runs.load_run(run, device="cpu")
    assert not model.training and cfg.model.vocab_size == tok.vocab_size

    assert main(["eval", "--checkpoint", str(run), "--task", "all", "--linear-probe", "--few-shot", "2",
                 "--device", "cpu", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_images"] == 48 and out["templates"] == "default" and out["num_templates"] == 8
    tasks = {"shape", "color", "color_shape", "size", "background"}
    zero_shot = {k for k in out if k.rsplit("_top", 1)[0].removeprefix("test/") in tasks}
    assert zero_shot == {f"test/{t}_top{k}" for t in tasks for k in (1, 5)}
    for t in tasks:
        assert 0 <= out[f"test/{t}_top1"] <= out[f"test/{t}_top5"] <= 100
    assert {k for k in out if "_R@" in k} == {f"test/{d}_R@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)}
    assert {k for k in out if "_linear_probe_" in k} == {f"test/{t}_linear_probe_{m}" for t in tasks
                                                          for m in ("top1", "C")}
    assert {k for k in out if "_few_shot_" in k} == {f"test/{t}_few_shot_{m}" for t in tasks
                                                      for m in ("top1", "std", "k", "episodes")}
    # the reloaded checkpoint scores what the trainer's in-memory model scored at the end of training
    for task in ("shape", "color", "color_shape"):
        assert round(out[f"test/{task}_top1"], 2) == pytest.approx(final[f"test/{task}_top1"])
    assert round(out["test/i2t_R@1"], 2) == pytest.approx(final["test/i2t_R@1"])


@pytest.mark.slow
def test_eval_cli_prints_one_json_object(trained_run, capsys, tmp_path):
    from laclip_lite.cli import main

    run, _ = trained_run
    assert main(["eval", "--checkpoint", str(run / "checkpoint.pt"), "--task", "shape", "--no-retrieval",
                 "--templates", "heldout", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"run", "split", "n_images", "templates", "num_templates", "test/shape_top1@heldout",
                        "test/shape_top5@heldout"}
    assert out["templates"] == "heldout"
    bad = tmp_path / "bad.txt"
    bad.write_text("no slot here\n")
    assert main(["eval", "--checkpoint", str(run), "--templates", str(bad)]) == 2
    assert f"{bad}:1" in capsys.readouterr().err
