"""CLIP: an image tower and a text tower mapped into one embedding space, plus a learnable temperature.

    img = normalize(visual(images))        [N, D]
    txt = normalize(text(tokens))          [N, D]
    logits = exp(logit_scale) * img @ txt.T          (the loss lives in laclip_lite.losses)

`logit_scale` is the log of the inverse temperature: it starts at ln(1/0.07) ~ 2.66 and is clamped to at most
ln(100) after every optimizer step (`clamp_logit_scale`), as in CLIP.

Also here: `param_groups` (AdamW groups without weight decay on gains, biases, embeddings and the
temperature) and `count_params`. The analytic FLOP counts the train-step benchmark uses are in
`benchmarks/flops.py`.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from laclip_lite.config import ModelConfig
from laclip_lite.models.text import HFTextEncoder, TextTransformer
from laclip_lite.models.vision import ModifiedResNet, VisionTransformer, resnet_layers


class CLIP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_dim = cfg.embed_dim
        self.max_logit_scale = cfg.max_logit_scale
        if cfg.vision == "vit":
            self.visual: nn.Module = VisionTransformer(cfg.image_size, cfg.patch_size, cfg.vision_width,
                                                       cfg.vision_layers, cfg.vision_heads, cfg.embed_dim,
                                                       stem=cfg.vision_stem, act=cfg.vision_act)
        elif cfg.vision == "resnet":
            self.visual = ModifiedResNet(resnet_layers(cfg.vision_layers), cfg.embed_dim, cfg.vision_heads,
                                         cfg.image_size, cfg.vision_width)
        else:
            raise ValueError(f"model.vision={cfg.vision!r} is not one of: vit, resnet")
        if cfg.text == "transformer":
            self.text: nn.Module = TextTransformer(cfg.vocab_size, cfg.context_length, cfg.text_width,
                                                   cfg.text_layers, cfg.text_heads, cfg.embed_dim, cfg.pad_id,
                                                   act=cfg.text_act)
        elif cfg.text == "hf":
            if not cfg.text_model:
                raise ValueError("model.text=hf needs model.text_model (a local path or 'minilm')")
            self.text = HFTextEncoder(cfg.text_model, cfg.embed_dim, cfg.pad_id, lock=cfg.text_lock)
        else:
            raise ValueError(f"model.text={cfg.text!r} is not one of: transformer, hf")
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.init_logit_scale)))
        self.text_buckets, self.pad_id = cfg.text_buckets, cfg.pad_id

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        x = self.visual(images)
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        x = self._bucketed_text(tokens) if self._bucketing(tokens) else self.text(tokens)
        return F.normalize(x, dim=-1) if normalize else x

    def _bucketing(self, tokens: torch.Tensor) -> bool:
        return (self.text_buckets > 1 and isinstance(self.text, TextTransformer)
                and tokens.shape[0] >= 16 * self.text_buckets)

    def _bucketed_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Sort texts by length, encode `text_buckets` chunks (each trimmed to its own longest text), unsort.

        Exact: each text's output depends only on its own tokens. It pays off when lengths vary, as in
        LaCLIP-MT, where a batch mixes terse originals with florid rewrites: padding every text to the longest
        one would spend most of the text tower on pads.
        """
        lengths = (tokens != self.pad_id).sum(-1)
        order = lengths.argsort()
        parts = [self.text(tokens[idx]) for idx in order.chunk(self.text_buckets)]
        return torch.cat(parts)[order.argsort()]

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        """-> (image features [N,D], text features [M,D], both L2-normalised; logit scale exp(logit_scale))."""
        return self.encode_image(images), self.encode_text(tokens), self.logit_scale.exp()

    @torch.no_grad()
    def clamp_logit_scale(self) -> None:
        """Keep exp(logit_scale) <= max_logit_scale (100): call after every optimizer step."""
        self.logit_scale.clamp_(max=math.log(self.max_logit_scale))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.visual.set_grad_checkpointing(enable)
        self.text.set_grad_checkpointing(enable)

    def set_channels_last(self, enable: bool = True) -> "CLIP":
        """NHWC layout for the ResNet tower (a no-op for the ViT)."""
        if isinstance(self.visual, ModifiedResNet):
            self.visual.set_channels_last(enable)
        return self


def build_model(cfg: ModelConfig) -> CLIP:
    """The CLIP of a ModelConfig (`vocab_size` / `pad_id` must already come from the tokenizer)."""
    if cfg.text == "transformer" and cfg.vocab_size < 1:
        raise ValueError("build_model: model.vocab_size is 0; fill it (and model.pad_id) from the tokenizer first")
    model = CLIP(cfg)
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model


# ---------------------------------------------------------------------------------------------------------
# Optimizer groups
def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Parameters that AdamW should not decay: biases, norm gains, every 1-D tensor, embedding tables
    (token / position / class embeddings) and the logit scale. Weight decay is for matmul and conv weights."""
    names = set()
    embedding_tables = {f"{mn}.weight" if mn else "weight" for mn, m in model.named_modules()
                        if isinstance(m, nn.Embedding)}
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if p.ndim < 2 or leaf.endswith("embedding") or name in embedding_tables or leaf == "logit_scale":
            names.add(name)
    return names


def release_no_weight_decay_names(model: nn.Module) -> set[str]:
    """The LaCLIP release's rule (train.py): no decay on tensors of fewer than 2 dimensions and on any name
    containing "bias", "ln" or "bn"; everything else decays, token / positional embeddings included."""
    return {name for name, p in model.named_parameters()
            if p.ndim < 2 or any(part in name for part in ("bias", "ln", "bn"))}


def param_groups(model: nn.Module, weight_decay: float, rule: str = "kit") -> list[dict]:
    """Two AdamW groups: decayed weights, and the no-decay names of `rule` ("kit": `no_weight_decay_names`;
    "release": `release_no_weight_decay_names`) at weight_decay 0. Frozen params (a locked text encoder) are
    left out."""
    skip = release_no_weight_decay_names(model) if rule == "release" else no_weight_decay_names(model)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
