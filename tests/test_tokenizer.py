import torch

from laclip_lite.data.tokenizer import Tokenizer, bpe_tokenizer, hf_tokenizer, load_tokenizer

CORPUS = ["a red circle on a white background", "stock photo of a blue square", "green star, vector icon"] * 20


def test_bpe_shapes_specials_and_padding(tmp_path, monkeypatch):
    monkeypatch.setenv("LACLIP_LITE_CACHE", str(tmp_path))
    tok = bpe_tokenizer(CORPUS, 120, context_length=12)
    ids = tok(["a red circle", "blue square"])
    assert ids.shape == (2, 12) and ids.dtype == torch.long
    for row in ids:
        n = int((row != tok.pad_id).sum())
        assert row[0] == tok.sot_id and row[n - 1] == tok.eot_id and (row[n:] == tok.pad_id).all()
    assert tok.decode(ids[0]) == "a red circle"


def test_truncation_keeps_eot_last(tmp_path, monkeypatch):
    monkeypatch.setenv("LACLIP_LITE_CACHE", str(tmp_path))
    tok = bpe_tokenizer(CORPUS, 120, context_length=6)
    row = tok(["a red circle on a white background stock photo"])[0]
    assert (row != tok.pad_id).all() and row[-1] == tok.eot_id and row[0] == tok.sot_id


def test_bpe_cached_and_saved(tmp_path, monkeypatch):
    monkeypatch.setenv("LACLIP_LITE_CACHE", str(tmp_path / "cache"))
    tok = bpe_tokenizer(CORPUS, 120, context_length=10)
    assert len(list((tmp_path / "cache" / "tokenizers").glob("*.json"))) == 1
    tok.save(tmp_path / "run")
    again = load_tokenizer(tmp_path / "run")
    assert torch.equal(again(CORPUS[:3]), tok(CORPUS[:3])) and again.vocab_size == tok.vocab_size


def test_hf_tokenizer_by_path_with_eos_padding(tmp_path):
    """A GPT-2/CLIP-like tokenizer that pads with its EOS gets a dedicated pad id, so EOT stays findable."""
    from tokenizers import Tokenizer as HFTok
    from tokenizers import models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = HFTok(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["<unk>", "<|endoftext|>", "<|startoftext|>"]
    raw.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=80, special_tokens=specials))
    fast = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="<|endoftext|>",
                                   bos_token="<|startoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(tmp_path / "tok")
    tok = hf_tokenizer(str(tmp_path / "tok"), context_length=8)
    assert tok.pad_id != tok.eot_id and tok.pad_id == tok.vocab_size - 1
    row = tok(["a red circle"])[0]
    n = int((row != tok.pad_id).sum())
    assert row[n - 1] == tok.eot_id and row[0] == tok.sot_id


def test_minilm_tokenizer_offline():
    tok = hf_tokenizer("minilm", context_length=16)
    assert isinstance(tok, Tokenizer) and tok.pad_id == 0
    row = tok(["a red circle"])[0]
    n = int((row != tok.pad_id).sum())
    assert row[n - 1] == tok.eot_id  # [SEP]
