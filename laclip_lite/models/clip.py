"""CLIP: an image tower and a text tower mapped into one embedding space, plus a learnable temperature.

    img = normalize(visual(images))        [N, D]
    txt = normalize(text(tokens))          [N, D]
    logits = exp(logit_scale) * img @ txt.T          (the loss lives in laclip_lite.losses)

`logit_scale` is the log of the inverse temperature: it starts at ln(1/0.07) ~ 2.66 and is clamped to at most
ln(100) after every optimizer step (`clamp_logit_scale`), as in CLIP.

Also here: `param_groups` (AdamW groups without weight decay on gains, biases, embeddings and the
temperature), `count_params`, and `flops_per_sample` (the analytic training FLOPs the benchmark uses for MFU).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from laclip_lite.config import ModelConfig
from laclip_lite.models.text import HFTextEncoder, TextTransformer
from laclip_lite.models.vision import ModifiedResNet, VisionTransformer, resnet_layers
from laclip_lite.utils import resolve_hf_path


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


# ---------------------------------------------------------------------------------------------------------
# FLOPs (one multiply-add = 2 FLOPs; matmuls and convs only; attention counted in full, also when causal)
def _transformer_flops(tokens: int, width: int, layers: int, mlp_hidden: int | None = None,
                       pooled: bool = False) -> int:
    """Forward FLOPs of `layers` blocks on one sequence of T tokens: qkv + out (8 T w^2), MLP (4 T w m),
    attention (4 T^2 w). pooled: the last block computes one token (Transformer.forward_pooled): k, v for all
    T (4 T w^2), q and out for one (4 w^2), its attention row (4 T w) and its MLP (4 w m)."""
    m = 4 * width if mlp_hidden is None else mlp_hidden
    full = 8 * tokens * width ** 2 + 4 * tokens * width * m + 4 * tokens ** 2 * width
    if not pooled or layers == 0:
        return layers * full
    last = 4 * tokens * width ** 2 + 4 * width ** 2 + 4 * tokens * width + 4 * width * m
    return (layers - 1) * full + last


def _patch_embed_flops(cfg: ModelConfig) -> int:
    """The ViT tokeniser: one patch x patch conv (stem="patch"), or the ConvStem's 3x3 stride-2 convs + a 1x1."""
    g, w, p = cfg.image_size // cfg.patch_size, cfg.vision_width, cfg.patch_size
    if cfg.vision_stem != "conv":
        return 2 * g * g * 3 * p * p * w
    n = p.bit_length() - 1
    chans = [3] + [max(16, w >> (n - i)) for i in range(1, n + 1)]          # as in vision.ConvStem
    flops = sum(2 * 9 * cin * cout * (cfg.image_size >> (i + 1)) ** 2
                for i, (cin, cout) in enumerate(zip(chans[:-1], chans[1:])))
    return flops + 2 * g * g * chans[-1] * w


def _resnet_flops(cfg: ModelConfig) -> int:
    w, s = cfg.vision_width, cfg.image_size
    h = s // 2
    flops = 2 * 9 * h * h * (3 * (w // 2) + (w // 2) * (w // 2) + (w // 2) * w)   # three stem convs at s/2
    r, inplanes = s // 4, w
    for i, blocks in enumerate(resnet_layers(cfg.vision_layers)):
        planes, stride = w * 2 ** i, 1 if i == 0 else 2
        for b in range(blocks):
            st = stride if b == 0 else 1
            r_out = r // st
            flops += 2 * r * r * (inplanes * planes + 9 * planes * planes)           # 1x1, 3x3 at input size
            flops += 2 * r_out * r_out * planes * 4 * planes                          # 1x1 expand after the pool
            if b == 0 and (st > 1 or inplanes != 4 * planes):
                flops += 2 * r_out * r_out * inplanes * 4 * planes                    # shortcut 1x1
            inplanes, r = 4 * planes, r_out
    c, t = 32 * w, r * r + 1
    flops += 2 * (2 * t * c * c + c * c) + 4 * t * c + 2 * c * cfg.embed_dim          # attention pool
    return flops


def _hf_dims(cfg: ModelConfig) -> tuple[int, int, int]:
    from transformers import AutoConfig
    hc = AutoConfig.from_pretrained(resolve_hf_path(cfg.text_model))
    return hc.hidden_size, hc.num_hidden_layers, hc.intermediate_size


def forward_flops(cfg: ModelConfig, text_len: int | None = None, pooled: bool = True) -> dict[str, int]:
    """Forward FLOPs of one image and of one text of `text_len` tokens (default: the full context).

    pooled=True counts what our towers do (the last block computes only the pooled token); pooled=False
    counts the usual dense model (every block on every token, as open_clip runs it)."""
    L = cfg.context_length if text_len is None else text_len
    if cfg.vision == "vit":
        g, w = cfg.image_size // cfg.patch_size, cfg.vision_width
        image = _patch_embed_flops(cfg) + 2 * w * cfg.embed_dim \
            + _transformer_flops(g * g + 1, w, cfg.vision_layers, pooled=pooled)
    else:
        image = _resnet_flops(cfg)
    if cfg.text == "hf":
        hidden, layers, inter = _hf_dims(cfg)
        text = _transformer_flops(L, hidden, layers, inter) + 2 * hidden * cfg.embed_dim
    else:
        text = _transformer_flops(L, cfg.text_width, cfg.text_layers, pooled=pooled) \
            + 2 * cfg.text_width * cfg.embed_dim
    return {"image": image, "text": text}


def flops_per_sample(cfg: ModelConfig, text_len: int | None = None, texts_per_image: int = 1,
                     pooled: bool = True) -> float:
    """Training FLOPs per image (with `texts_per_image` texts): forward + backward ~ 3x the forward matmuls.
    A locked HF encoder costs only its forward (its projection still trains). The N x N logits are ignored."""
    f = forward_flops(cfg, text_len, pooled)
    text = 3 * f["text"]
    if cfg.text == "hf" and cfg.text_lock:
        hidden = _hf_dims(cfg)[0]
        proj = 2 * hidden * cfg.embed_dim
        text = (f["text"] - proj) + 3 * proj
    return 3 * f["image"] + texts_per_image * text
