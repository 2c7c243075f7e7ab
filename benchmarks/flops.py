"""FLOP accounting for CLIP models: what the train-step benchmark divides its measured time by.

One multiply-add = 2 FLOPs; matmuls and convs only; attention counted in full, also when causal. The counts are
exact for our towers: tests/test_flops.py checks them against torch's FlopCounterMode on tiny and paper-size
configs. `forward_flops(cfg)` gives one image's and one text's forward FLOPs; `flops_per_sample(cfg)` the
training FLOPs per image (forward + backward ~ 3x forward).

    from benchmarks.flops import flops_per_sample     # from the repository root (tests, benchmarks)
"""
from __future__ import annotations

from laclip_lite.config import ModelConfig
from laclip_lite.models.vision import resnet_layers
from laclip_lite.utils import resolve_hf_path


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
