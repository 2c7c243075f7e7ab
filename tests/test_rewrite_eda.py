"""EDA: each operation, the num_aug recipe, offline synonyms, kept digits/punctuation, determinism."""
import random
from collections import Counter

from laclip_lite.rewrite.eda import (
    EDARewriter,
    eda,
    random_deletion,
    random_insertion,
    random_swap,
    synonym_replacement,
    synonyms,
)

WORDS = "Cute puppy sleeping in a wicker basket, stock photo 4k".split()


def test_random_swap_permutes_words():
    out = random_swap(WORDS, 2, random.Random(0))
    assert Counter(out) == Counter(WORDS) and out != WORDS
    assert random_swap(["one"], 3, random.Random(0)) == ["one"]


def test_random_deletion():
    rng = random.Random(0)
    outs = [random_deletion(WORDS, 0.3, rng) for _ in range(50)]
    assert all(set(o) <= set(WORDS) and o for o in outs) and any(len(o) < len(WORDS) for o in outs)
    assert random_deletion(WORDS, 1.0, rng) in [[w] for w in WORDS]       # one word always survives
    assert random_deletion(["solo"], 1.0, rng) == ["solo"]


def test_synonym_replacement_uses_the_offline_lexicon_and_keeps_punctuation():
    assert "disc" in synonyms("circle") and "crimson" in synonyms("red") and "picture" in synonyms("photo")
    out = synonym_replacement("a red circle, photo".split(), 3, random.Random(0))
    assert out[0] == "a" and out[-2].endswith(",")                      # comma stays on its word
    assert " ".join(out) != "a red circle, photo"
    assert synonym_replacement("the of and".split(), 2, random.Random(0)) == ["the", "of", "and"]  # stop words


def test_random_insertion_adds_synonyms():
    out = random_insertion("small red circle".split(), 2, random.Random(0))
    assert len(out) >= 5 and set("small red circle".split()) <= set(out)


def test_eda_recipe_keeps_digits_and_is_deterministic():
    augs = eda(" ".join(WORDS), num_aug=4, rng=random.Random(1))
    assert len(augs) == 4 and all("4k" in a or len(a.split()) < len(WORDS) for a in augs)
    assert augs == eda(" ".join(WORDS), num_aug=4, rng=random.Random(1))
    assert len(eda("x y z", num_aug=9, rng=random.Random(0))) == 9


def test_rewriter_variants():
    rw = EDARewriter(num_variants=3)
    caps = ["small red circle on the left, 2024", "a dog on a beach", ""]
    result = rw.rewrite_batch(caps, seed=0)
    assert list(result.texts) == ["eda1", "eda2", "eda3"]
    assert result.texts["eda2"] == rw.rewrite(caps, "eda2", seed=0)          # batch == per variant
    assert result.fallbacks["eda1"] == {"empty_caption": 1}
    assert len({result.texts[v][0] for v in rw.variants}) > 1
