"""ShapeWorld: determinism, shapes/dtypes, disjoint splits, labels, and captions that only state true facts."""
from __future__ import annotations

import re
from collections import Counter

import pytest
import torch

from laclip_lite.data import vocab
from laclip_lite.data.shapeworld import TEMPLATES, ShapeWorld


@pytest.fixture(scope="module")
def train():
    return ShapeWorld(seed=0, image_size=32).split("train", 960)


# -- a text-only parser built from the lexicon (what a rewriter may use) -------------------------------------
def _lexicon(table: dict) -> list[tuple[re.Pattern, str]]:
    pairs = [(phrase, value) for value, words in table.items() for phrase in words]
    pairs.sort(key=lambda p: -len(p[0]))     # longest first: "star shape" before "star"
    return [(re.compile(r"(?<!\w)" + re.escape(p) + r"(?!\w)"), v) for p, v in pairs]


LEX = {
    "shape": _lexicon(vocab.SHAPES),
    "color": _lexicon({c: words for c, (_, words) in vocab.COLORS.items()}),
    "size": _lexicon(vocab.SIZES),
    "position": _lexicon(vocab.POSITIONS),
    "background": _lexicon({b: vocab.BACKGROUNDS[b] + vocab.BACKGROUND_IDIOMS.get(b, []) for b in vocab.BACKGROUNDS}),
}
CONNECTOR = re.compile(r"\b(" + "|".join(vocab.SECOND_CONNECTORS) + r")\b")


def facts(text: str, kind: str) -> set[str]:
    """Attribute values of one kind stated in `text` (each matched span is consumed once)."""
    found = set()
    for pattern, value in LEX[kind]:
        if pattern.search(text):
            found.add(value)
            text = pattern.sub(" ", text)
    return found


def parse(caption: str) -> tuple[str, str]:
    """(main part, second-object part) of a lower-cased caption."""
    text = caption.lower()
    m = CONNECTOR.search(text)
    return (text, "") if m is None else (text[:m.start()], text[m.end():])


# -- images, labels, determinism ----------------------------------------------------------------------------
def test_sizes_dtypes_and_labels(train):
    assert train.images.shape == (960, 3, 32, 32) and train.images.dtype == torch.uint8
    assert len(train.captions) == len(train.scenes) == len(train) == 960
    assert set(train.labels) == set(vocab.TASKS)
    for task, labels in train.labels.items():
        names = vocab.classnames(task)
        assert labels.dtype == torch.long and labels.shape == (960,)
        assert 0 <= int(labels.min()) and int(labels.max()) < len(names)
    for i in (0, 17, 500):
        s = train.scenes[i]
        assert vocab.classnames("color_shape")[train.labels["color_shape"][i]] == f"{s['color']} {s['shape']}"
        assert vocab.classnames("background")[train.labels["background"][i]] == s["background"]
        assert vocab.classnames("size")[train.labels["size"][i]] == s["size"]


def test_balanced_classes(train):
    # colour x shape combinations come in shuffled blocks of 48: exactly 20 of each in 960 images
    assert set(Counter(train.labels["color_shape"].tolist()).values()) == {20}
    assert set(Counter(train.labels["size"].tolist()).values()) == {320}
    seconds = sum(s["second"] is not None for s in train.scenes) / len(train)
    assert 0.22 < seconds < 0.38


def test_main_object_is_drawn_in_its_colour(train):
    for s, img in zip(train.scenes[:200], train.images[:200]):
        x, y = (int(c * 32) for c in s["center"])
        pixel = img[:, min(y, 31), min(x, 31)].float()
        assert (pixel - torch.tensor(s["rgb"])).abs().max() < 30, (s, pixel)
        if s["second"] is not None:
            assert s["second"]["radius"] < s["radius"]
            assert s["second"]["shape"] != s["shape"] and s["second"]["color"] != s["color"]


def test_deterministic_prefix_stable_and_disjoint():
    world = ShapeWorld(seed=3, image_size=32)
    a, b = world.split("val", 120), ShapeWorld(seed=3, image_size=32).split("val", 120)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    head = world.split("val", 50)
    assert torch.equal(head.images, a.images[:50]) and head.captions == a.captions[:50]
    other_seed = ShapeWorld(seed=4, image_size=32).split("val", 120)
    assert not torch.equal(other_seed.images, a.images)
    keys = {name: {bytes(img.numpy()) for img in world.split(name, 200).images} for name in ("train", "val", "test")}
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]


def test_scale_free_geometry():
    small = ShapeWorld(seed=0, image_size=32).split("test", 600)   # generation speed: benchmarks/world_speed.py
    big = ShapeWorld(seed=0, image_size=64).split("test", 8)
    assert big.images.shape == (8, 3, 64, 64) and big.captions == small.captions[:8]
    down = big.images.float().view(8, 3, 32, 2, 32, 2).mean((3, 5))   # same scene, twice the resolution
    assert (down - small.images[:8].float()).abs().mean() < 12
    assert ShapeWorld(seed=0, image_size=32).split("train", 0).images.shape == (0, 3, 32, 32)


# -- captions -----------------------------------------------------------------------------------------------
def test_captions_state_only_true_facts(train):
    for caption, s in zip(train.captions, train.scenes):
        main, second = parse(caption)
        assert facts(main, "shape") <= {s["shape"]}, caption
        assert facts(main, "color") <= {s["color"]}, caption
        assert facts(main, "size") <= {s["size"]}, caption
        assert facts(main, "position") <= {s["position"]}, caption
        assert facts(caption.lower(), "background") <= {s["background"]}, caption
        if s["second"] is None:
            assert not second, caption
        if second:
            assert facts(second, "shape") <= {s["second"]["shape"]}, caption
            assert facts(second, "color") <= {s["second"]["color"]}, caption
            assert facts(second, "size") <= {"small"}, caption
            assert not facts(second, "position"), caption     # positions are only said of the main object
            assert facts(second, "shape") or facts(second, "color"), caption
        # what the generator says it stated is really there
        stated = s["stated"]
        assert (s["shape"] in facts(main, "shape")) == stated["shape"], caption
        assert (s["color"] in facts(main, "color")) == stated["color"], caption
        assert bool(second) == stated["second"], caption


def test_caption_statistics_look_like_web_alt_text(train):
    n = len(train)
    stated = [s["stated"] for s in train.scenes]
    no_shape = sum(not st["shape"] for st in stated) / n
    no_color = sum(not st["color"] for st in stated) / n
    assert 0.08 < no_shape < 0.24 and 0.08 < no_color < 0.24
    assert sum(st["shape"] or st["color"] for st in stated) / n > 0.95
    assert 0.2 < sum(st["background"] for st in stated) / n < 0.6
    with_second = [st for st, s in zip(stated, train.scenes) if s["second"] is not None]
    assert 0.3 < sum(st["second"] for st in with_second) / len(with_second) < 0.8
    # plain words most often, synonyms sometimes
    words = Counter(w for c in train.captions for w in re.findall(r"[a-z]+", c.lower()))
    for color, (_, syns) in vocab.COLORS.items():
        assert words[syns[0]] > max(words[w] for w in syns[1:] if " " not in w and "-" not in w), color
    assert sum(words[w] for _, (_, syns) in vocab.COLORS.items() for w in syns[1:]) > 50
    # stock-photo filler is common
    assert sum(any(t in c.lower() for t in vocab.STOCK_TOKENS) for c in train.captions) / n > 0.4


def test_caption_diversity(train):
    patterns = Counter(s["caption_pattern"] for s in train.scenes)
    assert len(TEMPLATES) >= 20 and len(patterns) == len(TEMPLATES)
    assert max(patterns.values()) < 3 * len(train) / len(TEMPLATES)
    assert len(set(train.captions)) > 0.8 * len(train)
    # skeletons: the caption with every attribute word blanked out -> many different sentence shapes
    def skeleton(c: str) -> str:
        c = c.lower()
        for kind in LEX:
            for pattern, _ in LEX[kind]:
                c = pattern.sub(kind.upper(), c)
        return c
    assert len({skeleton(c) for c in train.captions}) > 150
    assert any(c[:1].isupper() for c in train.captions)          # some Title Case alt-text
    assert all(c == c.strip() and "  " not in c and c for c in train.captions)


def test_split_is_rendered_once_per_process_and_each_caller_gets_its_own_copy(monkeypatch):
    from laclip_lite.config import build_config
    from laclip_lite.data import dataset

    rendered = []
    real = ShapeWorld.split
    monkeypatch.setattr(ShapeWorld, "split", lambda self, name, n: rendered.append((name, n)) or real(self, name, n))
    monkeypatch.setattr(dataset, "_RENDERED", {})
    cfg = build_config("test", {"data.world_seed": 7})
    first = dataset.shapeworld_split(cfg, "train")
    first.images.zero_()                      # a caller that edits its split in place ...
    first.captions[0] = "edited"
    first.scenes[0]["shape"] = "edited"
    again = dataset.shapeworld_split(cfg, "train")
    assert rendered == [("train", cfg.data.train_size)], "the second call must come from the cache"
    fresh = ShapeWorld(seed=7, image_size=cfg.model.image_size).split("train", cfg.data.train_size)
    assert torch.equal(again.images, fresh.images), "... must not change what the next caller sees"
    assert again.captions == fresh.captions and again.scenes[0]["shape"] == fresh.scenes[0]["shape"]
    assert all(torch.equal(again.labels[k], fresh.labels[k]) for k in fresh.labels)

    monkeypatch.setattr(dataset, "_RENDERED_BYTES", again.images.nbytes)   # room for one split: the oldest goes
    dataset.shapeworld_split(cfg, "test")
    assert list(dataset._RENDERED) == [(7, cfg.model.image_size, "test", cfg.data.test_size)]
