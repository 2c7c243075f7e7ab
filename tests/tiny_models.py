"""Test fixtures: tiny *random* models saved to a folder like a downloaded checkpoint.

They make no sense - their weights are random - but they load through exactly the code path of a real model
(`from_pretrained(folder)`), so tests and the speed benchmark run the whole LLM / back-translation pipeline on a
CPU in seconds. (The transformers test suite does the same: vocab ~100, hidden 32, two layers.) Tests import
`tests.tiny_models` (pytest puts the repository root on the path); the rewrite benchmark does the same.

* `build_tiny_causal_lm(folder)`  - a `LlamaForCausalLM` + a byte-level BPE tokenizer trained on `corpus`;
* `build_tiny_marian(folder)`     - a `MarianMTModel` + a `MarianTokenizer` over SentencePiece models trained on
                                    `corpus` (what a Helsinki-NLP opus-mt folder holds, in miniature);
* `build_tiny_bert(folder)`       - a `BertModel` (vocab 99, hidden 32, 2 layers) for the HF text tower.
"""
from __future__ import annotations

import json
from pathlib import Path


def default_corpus() -> list[str]:
    """Meta-pair texts and the sample web captions: enough text to train a few hundred BPE merges."""
    from laclip_lite.constants import SOURCES
    from laclip_lite.rewrite.meta import load_meta_pairs

    texts = [t for s in SOURCES for p in load_meta_pairs(s) for t in (p.source, p.target)]
    sample = Path(__file__).resolve().parents[1] / "data_samples" / "web_captions.txt"
    if sample.exists():
        texts += [line for line in sample.read_text(encoding="utf-8").splitlines() if line.strip()]
    return texts


def build_tiny_causal_lm(folder: str | Path, corpus: list[str] | None = None, vocab_size: int = 512,
                         hidden_size: int = 64, layers: int = 2, heads: int = 4, seed: int = 0) -> Path:
    """A random Llama (hidden 64, 2 layers) + trained BPE tokenizer, saved to `folder`. -> folder."""
    import torch
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        trainers,
    )
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    corpus = corpus or default_corpus()
    # Metaspace BPE (SentencePiece-style "▁word" pieces) over the corpus characters: a random model then emits
    # word pieces, not raw bytes. "\n" is its own token so the first-line stopping rule can fire.
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    bpe.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                  show_progress=False)
    bpe.train_from_iterator(corpus + [f"{a} => {b}" for a, b in zip(corpus[::2], corpus[1::2])], trainer)
    bpe.add_tokens([AddedToken("\n", normalized=False)])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>")
    tok.save_pretrained(folder)
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, vocab_size=len(tok),
                      max_position_embeddings=1024, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


def build_tiny_marian(folder: str | Path, corpus: list[str] | None = None, vocab_size: int = 200,
                      d_model: int = 32, seed: int = 0) -> Path:
    """A random MarianMT (d_model 32, one layer each side) + MarianTokenizer, saved to `folder`. -> folder."""
    import io

    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    corpus = corpus or default_corpus()
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=buf, vocab_size=vocab_size,
                                   model_type="unigram", character_coverage=1.0, bos_id=-1, eos_id=-1,
                                   unk_id=0, hard_vocab_limit=False, minloglevel=2)
    for name in ("source.spm", "target.spm"):
        (folder / name).write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    pieces = ["</s>", "<unk>", "<pad>"] + [sp.id_to_piece(i) for i in range(sp.get_piece_size())
                                           if sp.id_to_piece(i) not in ("<unk>",)]
    (folder / "vocab.json").write_text(json.dumps({p: i for i, p in enumerate(pieces)}))
    tok = MarianTokenizer(str(folder / "source.spm"), str(folder / "target.spm"), str(folder / "vocab.json"))
    tok.save_pretrained(folder)
    torch.manual_seed(seed)
    cfg = MarianConfig(vocab_size=len(pieces), d_model=d_model, encoder_layers=1, decoder_layers=1,
                       encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=2 * d_model,
                       decoder_ffn_dim=2 * d_model, max_position_embeddings=128, pad_token_id=tok.pad_token_id,
                       eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id,
                       forced_eos_token_id=tok.eos_token_id)
    MarianMTModel(cfg).save_pretrained(folder)
    return folder


def build_tiny_bert(folder: str | Path, seed: int = 0) -> Path:
    """A random BERT (vocab 99, hidden 32, 2 layers, intermediate 37), saved to `folder` (no tokenizer). -> folder."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=37)).save_pretrained(folder)
    return Path(folder)
