"""The pre-LN Transformer that both towers of CLIP are made of.

CLIP's text encoder uses it with a causal mask; the ViT in `vision.py` uses the same blocks without one.

    x = x + attn(ln_1(x))          # multi-head self-attention (causal for text)
    x = x + mlp(ln_2(x))           # Linear(d, 4d) -> GELU (or CLIP's QuickGELU) -> Linear(4d, d)

A tower that pools one token (ViT: the class token; text: EOT) reads only that token of the last block, so
`Transformer.forward_pooled` lets the last block compute just that one output.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection and PyTorch's fused SDPA kernel.

    x [B, L, D] -> qkv [B, L, 3, H, D/H] -> q, k, v [B, H, L, D/H] (strided views, no copies)
    -> softmax(q k^T / sqrt(D/H) (+ causal mask)) v -> [B, L, D] -> out_proj.

    `forward_at(x, pos, key_mask)` computes the output at one position per sequence only (x[b, pos[b]]):
    keys and values still come from every position, the query from that one.
    """

    def __init__(self, width: int, heads: int, causal: bool = False):
        super().__init__()
        if width % heads:
            raise ValueError(f"Attention: width={width} is not divisible by heads={heads}")
        self.heads, self.causal = heads, causal
        self.in_proj = nn.Linear(width, 3 * width)     # q, k and v in one matmul
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.in_proj(x).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # [B, H, L, D/H]
        return self.out_proj(y.transpose(1, 2).reshape(B, L, D))

    def forward_at(self, x: torch.Tensor, pos: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, L, D], pos [B] -> [B, D]; key_mask [B, 1, 1, L] (True = may attend) replaces the causal mask."""
        B, L, D = x.shape
        h = self.heads
        w, b = self.in_proj.weight, self.in_proj.bias
        q = F.linear(x[torch.arange(B, device=x.device), pos], w[:D], b[:D]).view(B, h, 1, D // h)
        k, v = F.linear(x, w[D:], b[D:]).view(B, L, 2, h, D // h).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)     # [B, H, 1, D/H]
        return self.out_proj(y.reshape(B, D))


class QuickGELU(nn.Module):
    """OpenAI CLIP's activation, x * sigmoid(1.702 x): a cheap approximation of GELU that CLIP's checkpoints,
    the LaCLIP release's text tower and open_clip's `-quickgelu` models were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {"gelu": nn.GELU, "quickgelu": QuickGELU}     # model.vision_act / model.text_act


class MLP(nn.Module):
    def __init__(self, width: int, ratio: float = 4.0, act: str = "gelu"):
        super().__init__()
        hidden = int(width * ratio)
        self.c_fc = nn.Linear(width, hidden)
        self.gelu = ACTIVATIONS[act]()
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    """One pre-LN block: x + attn(ln_1(x)), then + mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int, causal: bool = False, act: str = "gelu"):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads, causal)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = MLP(width, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))

    def forward_at(self, x: torch.Tensor, pos: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The block's output at x[b, pos[b]] only: [B, L, D] -> [B, D]. The attention still reads every
        position, but the residual stream, out_proj and the MLP run on one token per sequence."""
        y = x[torch.arange(x.shape[0], device=x.device), pos] + self.attn.forward_at(self.ln_1(x), pos, key_mask)
        return y + self.mlp(self.ln_2(y))


class Transformer(nn.Module):
    """A stack of `layers` blocks on batch-first [B, L, width] inputs; optional gradient checkpointing."""

    def __init__(self, width: int, layers: int, heads: int, causal: bool = False, act: str = "gelu"):
        super().__init__()
        self.width, self.layers = width, layers
        self.grad_checkpointing = False
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads, causal, act) for _ in range(layers)])

    def init_weights(self) -> None:
        """CLIP's init: attention std width^-0.5, residual output projections scaled down by sqrt(2*layers)."""
        attn_std = self.width ** -0.5
        proj_std = attn_std * (2 * self.layers) ** -0.5
        fc_std = (2 * self.width) ** -0.5
        for block in self.resblocks:
            nn.init.normal_(block.attn.in_proj.weight, std=attn_std)
            nn.init.zeros_(block.attn.in_proj.bias)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.zeros_(block.attn.out_proj.bias)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.zeros_(block.mlp.c_fc.bias)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
            nn.init.zeros_(block.mlp.c_proj.bias)

    def _run(self, fn, *args):
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)   # keep only the block input; recompute in backward
        return fn(*args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, width] -> [B, L, width]: every position of every block."""
        for block in self.resblocks:
            x = self._run(block, x)
        return x

    def forward_pooled(self, x: torch.Tensor, pos: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L, width] -> [B, width]: the output at position pos[b] of each sequence only.

        A tower that pools one token (ViT: the class token; text: EOT) never reads the last block's other
        outputs, so that block computes just the pooled token (its keys/values still see every position).
        The same numbers as forward(x)[arange(B), pos], with about (L-1)/L of the last block's work skipped.
        """
        if not self.resblocks:
            return x[torch.arange(x.shape[0], device=x.device), pos]
        for block in self.resblocks[:-1]:
            x = self._run(block, x)
        return self._run(self.resblocks[-1].forward_at, x, pos, key_mask)
