"""Text towers: CLIP's causal Transformer (from scratch) and a pretrained Hugging Face encoder.

Both are built on the pre-LN `Transformer` of `transformer.py` (here with a causal mask).

Tokens are right-padded: `[sot, w1, w2, ..., eot, pad, pad, ...]`. Because attention is causal, a real token
never sees a pad (pads only come after it), so the hidden state at the EOT token -- the last non-pad
position, `(tokens != pad_id).sum(-1) - 1` -- summarises the caption and is independent of the padding. The
same argument lets us drop every column after the longest caption of the batch before running the
Transformer (`trim_padding`): outputs are unchanged and short captions cost less. And since only the EOT
output is read, the last block computes that one token (`Transformer.forward_pooled`).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from laclip_lite.models.transformer import Transformer
from laclip_lite.utils import resolve_hf_path


def eot_positions(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Index of the end-of-text token of each row = the last non-pad position (tokens are right-padded)."""
    return (tokens != pad_id).sum(-1) - 1


def trim_padding(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Drop trailing columns that are padding in every row ([..., L] -> [..., L']; at least one column is kept).

    Exact for our text towers: padding is on the right, a causal token never attends to later positions, and
    pooling reads the end-of-text token (or averages over real tokens), so the outputs are identical while
    short batches cost less. The trainer trims each batch before moving it to the device; the towers trim again.
    """
    used = (tokens != pad_id).reshape(-1, tokens.shape[-1]).any(0)
    length = int(used.nonzero().max()) + 1 if used.any() else 1
    return tokens[..., :length]


def _checked_trim(tokens: torch.Tensor, pad_id: int, where: str) -> torch.Tensor:
    """`trim_padding` for a tower's input: [N, L] only, and no all-pad row (it would have no EOT)."""
    if tokens.dim() != 2:
        raise ValueError(f"{where}: tokens must be [N, L] (flatten multi-text batches first), "
                         f"got {tuple(tokens.shape)}")
    empty = ~(tokens != pad_id).any(-1)
    if tokens.numel() and bool(empty.any()):
        row = int(empty.nonzero()[0])
        raise ValueError(f"{where}: row {row} of tokens is all padding (pad_id={pad_id}); every caption needs an EOT")
    return trim_padding(tokens, pad_id)


class TextTransformer(nn.Module):
    """CLIP's text encoder: token + position embeddings, causal Transformer, ln_final, EOT pooling, projection.

    tokens [N, L] (right-padded with pad_id) -> features [N, output_dim] (not normalised; CLIP does that).
    """

    def __init__(self, vocab_size: int, context_length: int, width: int, layers: int, heads: int,
                 output_dim: int, pad_id: int = 0, trim_padding: bool = True, act: str = "gelu"):
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"TextTransformer: vocab_size must be >= 1 (fill model.vocab_size from the tokenizer), "
                             f"got {vocab_size}")
        self.context_length, self.pad_id, self.trim_padding = context_length, pad_id, trim_padding
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.transformer = Transformer(width, layers, heads, causal=True, act=act)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, output_dim))
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        self.transformer.init_weights()
        nn.init.normal_(self.text_projection, std=self.transformer.width ** -0.5)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.transformer.grad_checkpointing = enable

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token + position embeddings [N, L', width] (L' = L, or the longest caption when trimming)."""
        if tokens.shape[1] > self.context_length:
            raise ValueError(f"TextTransformer: tokens have length {tokens.shape[1]} > context_length="
                             f"{self.context_length}")
        if self.trim_padding:
            tokens = _checked_trim(tokens, self.pad_id, "TextTransformer")
        return self.token_embedding(tokens) + self.positional_embedding[: tokens.shape[1]]

    def hidden_states(self, tokens: torch.Tensor) -> torch.Tensor:
        """Every position's output after ln_final, [N, L', width] (for inspection; forward pools first)."""
        return self.ln_final(self.transformer(self.embed(tokens)))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        eot = eot_positions(tokens, self.pad_id)                        # [N]
        # the EOT query sees positions <= EOT: the causal mask restricted to that one row
        key_mask = (torch.arange(x.shape[1], device=x.device) <= eot[:, None])[:, None, None, :]
        pooled = self.transformer.forward_pooled(x, eot, key_mask)     # [N, width]
        return self.ln_final(pooled) @ self.text_projection


class HFTextEncoder(nn.Module):
    """A pretrained Hugging Face encoder (BERT-like), mean-pooled over real tokens, then a linear projection.

    attention mask = tokens != pad_id; pooled = sum_t mask_t h_t / sum_t mask_t; features = pooled @ W.
    `lock=True` freezes the encoder (no gradients, dropout off even in train mode); the projection still trains.
    """

    def __init__(self, model_path: str, output_dim: int, pad_id: int = 0, lock: bool = False,
                 trim_padding: bool = True):
        super().__init__()
        from transformers import AutoModel

        path = resolve_hf_path(model_path)
        try:
            self.encoder = AutoModel.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise FileNotFoundError(f"HFTextEncoder: could not load a Hugging Face model from {path!r} "
                                    f"(model.text_model={model_path!r}): {e}") from None
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None          # BERT's [CLS] pooler is unused here: drop it (no dead params)
        self.pad_id, self.lock, self.trim_padding = pad_id, lock, trim_padding
        self.hidden_size = self.encoder.config.hidden_size
        self.proj = nn.Linear(self.hidden_size, output_dim, bias=False)
        nn.init.normal_(self.proj.weight, std=self.hidden_size ** -0.5)
        self._cache: dict[bytes, torch.Tensor] = {}     # locked only: text ids -> pooled vector
        if lock:
            self.encoder.requires_grad_(False)
            self.encoder.eval()
            self.register_load_state_dict_pre_hook(lambda *_: self._cache.clear())   # new weights, new vectors

    def train(self, mode: bool = True) -> "HFTextEncoder":
        super().train(mode)
        if self.lock:
            self.encoder.eval()                 # a frozen encoder keeps dropout off
        return self

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if not getattr(self.encoder, "supports_gradient_checkpointing", False):
            return
        if enable:
            self.encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            self.encoder.gradient_checkpointing_disable()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.trim_padding:
            tokens = _checked_trim(tokens, self.pad_id, "HFTextEncoder")
        pooled = self._cached_pooled(tokens) if self.lock else self._pooled(tokens)
        return self.proj(pooled)

    def _pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = tokens != self.pad_id
        ids = tokens.masked_fill(~mask, 0)      # pad_id may be outside the encoder's vocabulary; pads are masked
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.lock):
            hidden = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # [N, L, H]
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)

    # A locked encoder maps a text to the same pooled vector every time, so each distinct text is encoded once
    # (LiT's trick): a run repeats its captions and rewrites every epoch, and after the first one a locked
    # MiniLM costs nothing (1.2 s a step of 256 on one CPU thread before). At most CACHE_TEXTS are kept.
    CACHE_TEXTS = 200_000

    @torch.no_grad()
    def _cached_pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        keys = [row[row != self.pad_id].tobytes() for row in tokens.cpu().numpy()]
        todo = list({k: i for i, k in enumerate(keys) if k not in self._cache}.values())  # one row per new text
        fresh = dict(zip((keys[i] for i in todo), self._pooled(tokens[todo]))) if todo else {}
        if len(self._cache) + len(fresh) <= self.CACHE_TEXTS:
            self._cache.update(fresh)
        return torch.stack([self._cache.get(k, fresh.get(k)) for k in keys])
