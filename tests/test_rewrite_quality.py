"""Quality metrics: diversity, faithfulness (MiniLM cosine, ShapeWorld attribute survival) and the table."""
import pytest

from laclip_lite.rewrite.quality import (
    distinct_n,
    jaccard,
    quality_report,
    sentence_bleu,
    shape_attribute_scores,
)


def test_diversity_metrics():
    assert distinct_n(["a b a b"], 1) == 0.5 and distinct_n(["a b a b"], 2) == 2 / 3
    assert sentence_bleu("a red circle on white", "a red circle on white") == pytest.approx(1.0)
    assert sentence_bleu("a crimson disc sits left", "a red circle on white") < 0.3   # add-one smoothed
    assert jaccard("A red circle", "red circle!") == pytest.approx(2 / 3)


def test_attribute_survival_reads_the_text():
    caps = ["small red circle on the left", "blue star on a black background"]
    same = shape_attribute_scores(caps, ["A tiny crimson disc off to the left.", "A cobalt star on a dark canvas."])
    assert same == {"kept": 1.0, "invented": 0.0}
    worse = shape_attribute_scores(caps, ["A red circle.", "A blue star at the top on a black background."])
    assert worse["kept"] == pytest.approx(5 / 7) and worse["invented"] == 0.5
    assert shape_attribute_scores(["a dog on a beach"], ["a puppy"]) is None   # not ShapeWorld captions


def test_report_rows_and_markdown():
    caps = ["a dog running on the beach", "a bowl of soup", "red car parked outside"]
    rewrites = {"copy": list(caps),
                "para": ["a puppy races along the shore", "soup served in a bowl", "a parked red car"]}
    q = quality_report(caps, rewrites, fallbacks={"copy": {"total": 2, "empty": 2}}, embed=False)
    assert q["rows"]["copy"]["identical"] == 1.0 and q["rows"]["para"]["identical"] == 0.0
    assert q["rows"]["copy"]["bleu"] > q["rows"]["para"]["bleu"]
    assert q["rows"]["copy"]["fallbacks"] == 2 and q["rows"]["para"]["fallbacks"] == 0
    assert q["markdown"].splitlines()[0].startswith("| variant | n | distinct-1")
    assert len(q["markdown"].splitlines()) == 2 + 3


def test_minilm_cosine_ranks_paraphrases_above_unrelated_text():
    caps = ["a dog running on the beach", "a bowl of hot soup"]
    q = quality_report(caps, {"para": ["a puppy races along the shore", "soup served in a bowl"],
                              "unrelated": ["stock market chart", "a snowy mountain peak"]})
    assert q["rows"]["para"]["cosine"] > 0.5 > q["rows"]["unrelated"]["cosine"]
