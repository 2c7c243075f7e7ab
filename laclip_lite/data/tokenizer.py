"""Text -> fixed-length token ids, the way CLIP does it: [SOT] words... [EOT] [PAD]...

Three kinds, one interface (`Tokenizer.__call__(texts) -> LongTensor [N, context_length]`):

* **BPE** (the offline default): a byte-pair-encoding vocabulary trained with Hugging Face `tokenizers` on the
  training captions (lower-cased, CLIP-style `</w>` word-end marks), cached on disk by a hash of the corpus.
* **Any Hugging Face tokenizer** by local path (or hub name when online): a CLIP tokenizer, MiniLM's WordPiece...

Guarantees the text tower relies on: right padding with `pad_id`; the end-of-text token is always the last
non-pad token, also when a caption is truncated; `pad_id != eot_id` (tokenizers that pad with their EOS, like
CLIP's and GPT-2's, get a dedicated extra pad id at `vocab_size - 1`).
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Iterable

import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

from laclip_lite.data.clip_bpe import ClipBPE, find_bpe_file
from laclip_lite.errors import DataError
from laclip_lite.utils import atomic_write_text, cache_dir, resolve_hf_path, stable_hash

SPECIALS = ["[PAD]", "[SOT]", "[EOT]", "[UNK]"]  # ids 0..3 in every trained BPE vocabulary
FILE_NAME = "tokenizer.json"                    # what a run folder keeps
CLIP_FILE_NAME = "clip_bpe.txt.gz"              # ... for data.tokenizer=clip


class Tokenizer:
    """Callable text -> ids with CLIP's conventions. Build one with `build_tokenizer` or `load_tokenizer`."""

    def __init__(self, backend, context_length: int, kind: str, source: str = ""):
        self.backend = backend          # tokenizers.Tokenizer (bpe) or a transformers tokenizer (hf)
        self.context_length = context_length
        self.kind = kind                # "bpe", "clip" or "hf"
        self.source = source            # where it came from (path or hub name), for config.yaml
        if kind == "bpe":
            self.pad_id, self.sot_id, self.eot_id = 0, 1, 2
            self.vocab_size = backend.get_vocab_size()
        elif kind == "clip":            # CLIP pads with id 0 ("!"): our towers need a pad id of its own
            self.sot_id, self.eot_id = backend.sot_id, backend.eot_id
            self.pad_id, self.vocab_size = backend.vocab_size, backend.vocab_size + 1
        else:
            tok = backend
            self.sot_id = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
            self.eot_id = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
            if self.eot_id is None:
                raise ValueError(f"tokenizer {source!r} has neither an EOS nor a SEP token to end captions with")
            self.vocab_size = len(tok)
            if tok.pad_token_id is not None and tok.pad_token_id != self.eot_id:
                self.pad_id = tok.pad_token_id
            else:                        # pads with its EOS (CLIP, GPT-2): add a dedicated pad id
                self.pad_id = self.vocab_size
                self.vocab_size += 1

    def encode(self, text: str) -> list[int]:
        """Word-piece ids of one text, without special tokens."""
        if self.kind == "bpe":
            return self.backend.encode(text, add_special_tokens=False).ids
        if self.kind == "clip":
            return self.backend.encode(text)
        return self.backend(text, add_special_tokens=False)["input_ids"]

    def __call__(self, texts: str | list[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        if self.kind == "bpe":
            pieces = [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]
        elif self.kind == "clip":
            pieces = [self.backend.encode(t) for t in texts]
        else:
            pieces = self.backend(list(texts), add_special_tokens=False)["input_ids"]
        out = torch.full((len(pieces), self.context_length), self.pad_id, dtype=torch.long)
        room = self.context_length - (2 if self.sot_id is not None else 1)
        for i, ids in enumerate(pieces):
            row = ([self.sot_id] if self.sot_id is not None else []) + list(ids[:room]) + [self.eot_id]
            out[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        return out

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        ids = [int(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)]
        ids = [i for i in ids if i not in (self.pad_id, self.sot_id, self.eot_id)]
        return self.backend.decode(ids)

    def save(self, run_dir: str | Path) -> None:
        """Keep a copy in a run folder so `load_tokenizer(run_dir)` rebuilds exactly this tokenizer."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        if self.kind == "bpe":
            atomic_write_text(run_dir / FILE_NAME, self.backend.to_str())
        elif self.kind == "clip":       # a copy of the merges: the run folder loads without the package
            shutil.copyfile(self.backend.path, run_dir / CLIP_FILE_NAME)
        else:
            target = run_dir / "hf_tokenizer"
            if target.exists():
                shutil.rmtree(target)
            self.backend.save_pretrained(target)
        atomic_write_text(run_dir / "tokenizer_meta.json",
                          json.dumps({"kind": self.kind, "source": self.source, "context_length": self.context_length}))


def train_bpe(corpus: Iterable[str], vocab_size: int):
    """Train a lower-cased BPE with CLIP-style word-end marks on `corpus`."""
    tok = HFTokenizer(models.BPE(unk_token="[UNK]", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, end_of_word_suffix="</w>",
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    return _canonical_ids(tok)


def _canonical_ids(tok):
    """Renumber a trained BPE vocabulary deterministically.

    `tokenizers` learns the same merges every time, but numbers the initial alphabet in hash-set order, which
    changes from run to run; the same corpus must give the same ids (a seed reproduces a run). Order: the
    special tokens, then the alphabet sorted, then each merge's result in merge order.
    """
    data = json.loads(tok.to_str())
    vocab, merges = data["model"]["vocab"], data["model"]["merges"]
    merged = ["".join(m.split(" ") if isinstance(m, str) else m) for m in merges]
    alphabet = sorted(set(vocab) - set(SPECIALS) - set(merged))
    order = SPECIALS + alphabet + list(dict.fromkeys(m for m in merged if m not in SPECIALS))
    data["model"]["vocab"] = {token: i for i, token in enumerate(order)}
    for entry in data.get("added_tokens", []):
        entry["id"] = data["model"]["vocab"][entry["content"]]
    return HFTokenizer.from_str(json.dumps(data))


def bpe_tokenizer(corpus: list[str], vocab_size: int, context_length: int) -> Tokenizer:
    """A BPE trained on `corpus`, cached on disk by a hash of (corpus, vocab size)."""
    key = stable_hash(vocab_size, len(corpus), corpus)
    path = cache_dir() / "tokenizers" / f"bpe-{vocab_size}-{key}.json"
    backend = None
    if path.exists():
        try:
            backend = HFTokenizer.from_file(str(path))
        except Exception as e:          # a truncated / corrupt cache file (tokenizers raises plain Exception)
            print(f"laclip-lite: tokenizer cache {path} is unreadable ({str(e).splitlines()[0][:80]}); "
                  "rebuilding it", file=sys.stderr)
    if backend is None:
        backend = train_bpe(corpus, vocab_size)
        atomic_write_text(path, backend.to_str())
    return Tokenizer(backend, context_length, "bpe", source=str(path))


def hf_tokenizer(name_or_path: str, context_length: int) -> Tokenizer:
    """Any Hugging Face tokenizer by local path (offline) or hub name (online). 'minilm' = the packaged MiniLM."""
    from transformers import AutoTokenizer

    path = resolve_hf_path(name_or_path)
    try:
        backend = AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise FileNotFoundError(f"could not load a Hugging Face tokenizer from {name_or_path!r}: {e}") from None
    return Tokenizer(backend, context_length, "hf", source=name_or_path)


def clip_tokenizer(bpe_path: str, context_length: int) -> Tokenizer:
    """CLIP's 49,408-token BPE from an installed package's merges file or `bpe_path` (`data.clip_bpe`)."""

    path = find_bpe_file(bpe_path)
    return Tokenizer(ClipBPE(path), context_length, "clip", source=str(path))


def build_tokenizer(data_cfg, model_cfg, corpus: list[str] | None = None) -> Tokenizer:
    """The tokenizer a run uses: the HF text tower's own tokenizer, a named HF tokenizer, or a BPE on `corpus`."""
    if model_cfg.text == "hf":
        return hf_tokenizer(model_cfg.text_model, model_cfg.context_length)
    if data_cfg.tokenizer == "clip":
        return clip_tokenizer(data_cfg.clip_bpe_path, model_cfg.context_length)
    if data_cfg.tokenizer != "bpe":
        return hf_tokenizer(data_cfg.tokenizer, model_cfg.context_length)
    if not corpus:
        raise DataError(f"data.source={data_cfg.source!r}: no readable captions to train the BPE tokenizer on "
                        "(is every file / shard of it empty or corrupt?)")
    return bpe_tokenizer(corpus, data_cfg.bpe_vocab_size, model_cfg.context_length)


def load_tokenizer(run_dir: str | Path, context_length: int | None = None) -> Tokenizer:
    """Rebuild the tokenizer a run saved with `Tokenizer.save`."""
    run_dir = Path(run_dir)
    meta_path = run_dir / "tokenizer_meta.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"no tokenizer saved in {run_dir} (expected {meta_path.name})")
    try:
        meta = json.loads(meta_path.read_text())
        ctx = context_length or meta["context_length"]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{meta_path} is corrupt ({type(e).__name__}: {e}); copy it again from the run") from None
    if meta["kind"] == "bpe":
        try:
            backend = HFTokenizer.from_file(str(run_dir / FILE_NAME))
        except Exception as e:          # tokenizers raises plain Exception for a truncated file
            raise DataError(f"{run_dir / FILE_NAME} is corrupt ({str(e).splitlines()[0][:80]}); copy it again "
                            "from the run") from None
        return Tokenizer(backend, ctx, "bpe", source=meta["source"])
    if meta["kind"] == "clip":
        return Tokenizer(ClipBPE(run_dir / CLIP_FILE_NAME), ctx, "clip", source=meta["source"])
    from transformers import AutoTokenizer
    return Tokenizer(AutoTokenizer.from_pretrained(run_dir / "hf_tokenizer"), ctx, "hf", source=meta["source"])
