"""Back-translation through two tiny random MarianMT models, each loaded by path with its MarianTokenizer."""
from pathlib import Path

import pytest

from laclip_lite.rewrite.backtranslate import BackTranslator

CAPTIONS = ["cute puppy in a basket stock photo", "red car parked outside", "a bowl of soup"]


@pytest.fixture(scope="module")
def marian_pair(tmp_path_factory) -> tuple[Path, Path]:
    from tests.tiny_models import build_tiny_marian
    root = tmp_path_factory.mktemp("marian")
    return build_tiny_marian(root / "en-de", seed=0), build_tiny_marian(root / "de-en", seed=1)


def test_marian_folders_load_like_opus_mt(marian_pair):
    from transformers import AutoTokenizer, MarianTokenizer
    assert isinstance(AutoTokenizer.from_pretrained(marian_pair[0]), MarianTokenizer)


def test_sampled_back_translation(marian_pair):
    bt = BackTranslator(str(marian_pair[0]), str(marian_pair[1]), num_variants=3, max_new_tokens=8, batch_size=4)
    result = bt.rewrite_batch(CAPTIONS, seed=0)
    assert list(result.texts) == ["bt1", "bt2", "bt3"]
    assert all(len(t) == len(CAPTIONS) and all(s.strip() for s in t) for t in result.texts.values())
    assert bt.calls == 3 + 3          # 9 forward + 9 backward sentences in chunks of 4
    # each variant samples its own pivot translation
    pivots = bt.translate(CAPTIONS * 3, 0, seed=0, sample=True)
    assert len({tuple(pivots[i * 3:(i + 1) * 3]) for i in range(3)}) > 1
    assert bt.rewrite_batch(CAPTIONS, seed=0).texts == result.texts      # deterministic


def test_beam_back_translation_uses_distinct_beams(marian_pair):
    bt = BackTranslator(str(marian_pair[0]), str(marian_pair[1]), num_variants=2, mode="beam", max_new_tokens=8)
    beams = bt.translate(CAPTIONS, 0, num_return=2)
    assert len(beams) == 6 and all(beams[2 * j] != beams[2 * j + 1] for j in range(3))
    texts = bt.rewrite(CAPTIONS, "bt2")
    assert len(texts) == 3


def test_bad_mode_is_a_config_error():
    from laclip_lite.config import ConfigError
    with pytest.raises(ConfigError, match="'sample' or 'beam'"):
        BackTranslator("a", "b", mode="greedy")
