"""CLIP's BPE on a hand-made merges file in the real file's format (the 49,408-token file is not installed here)."""
import gzip

import pytest

from laclip_lite.config import build_config
from laclip_lite.data import clip_bpe
from laclip_lite.data.clip_bpe import ClipBPE, byte_symbols, find_bpe_file
from laclip_lite.data.tokenizer import build_tokenizer, load_tokenizer

MERGES = ["c a", "ca t</w>", "d o", "do g</w>", "t h", "th e</w>"]


@pytest.fixture
def bpe_file(tmp_path):
    path = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write('"bpe_simple_vocab_16e6.txt#version: 0.2\n' + "\n".join(MERGES) + "\n")
    return path


def test_merges_vocabulary_and_ids(bpe_file):
    bpe = ClipBPE(bpe_file)
    assert bpe.vocab_size == 512 + len(MERGES) + 2 and (bpe.sot_id, bpe.eot_id) == (518, 519)
    assert bpe.encode("The CAT") == [512 + 5, 512 + 1]                    # lower-cased, merged by rank
    # no merge applies to "cow": one id per byte symbol, the last one with the word-end mark
    symbols = list(byte_symbols().values())
    assert bpe.encode("cow") == [symbols.index("c"), symbols.index("o"), 256 + symbols.index("w")]
    assert symbols.index("!") == 0 and len(set(symbols)) == 256
    assert bpe.encode("dog, &amp; cat!") == [512 + 3, 256 + symbols.index(","), 256 + symbols.index("&"),
                                             512 + 1, 256 + symbols.index("!")]
    assert bpe.decode(bpe.encode("the dog, é")) == "the dog , é"       # bytes of any text round-trip


def test_tokenizer_pads_with_its_own_id_and_round_trips_through_a_run_folder(bpe_file, tmp_path):
    cfg = build_config("test", ["data.tokenizer=clip", f"data.clip_bpe_path={bpe_file}"])
    tok = build_tokenizer(cfg.data, cfg.model)
    assert tok.kind == "clip" and tok.pad_id == 520 and tok.vocab_size == 521   # CLIP pads with 0 = "!"
    ids = tok(["the cat"])[0].tolist()
    assert ids[:4] == [518, 517, 513, 519] and set(ids[4:]) == {520}
    tok.save(tmp_path / "run")
    again = load_tokenizer(tmp_path / "run")
    assert again(["the cat", "a dog!"]).tolist() == tok(["the cat", "a dog!"]).tolist()


def test_missing_file_names_both_ways_and_never_downloads(monkeypatch, tmp_path):
    monkeypatch.setattr(clip_bpe.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install open_clip_torch.*openai-clip.*data.clip_bpe_path"):
        find_bpe_file("")
    with pytest.raises(FileNotFoundError, match="no such file"):
        find_bpe_file(str(tmp_path / "nope.txt.gz"))
