"""Contrastive losses: CLIP's symmetric InfoNCE, LaCLIP-MT's multi-text loss, and their distributed form.

Notation: image features x_i and text features t_j (L2-normalised, i, j = 1..N), scale s = exp(logit_scale),
logits z_ij = s * <x_i, t_j>.

CLIP loss (image i's positive is text i; every other text of the batch is a negative, and vice versa):

    L_clip = 1/2 * [ 1/N sum_i ( log sum_j exp(z_ij) - z_ii )        # image -> text (rows)
                   + 1/N sum_j ( log sum_i exp(z_ij) - z_jj ) ]      # text -> image (columns)

LaCLIP-MT loss, texts t_{j,k} with k = 1..K texts per image (original + rewrites), z^k_ij = s <x_i, t_{j,k}>:

    L_mt = 1/K sum_k L_clip(x, t_{:,k})
         = 1/(2NK) sum_k [ sum_i ( log sum_j exp(z^k_ij) - z^k_ii ) + sum_j ( log sum_i exp(z^k_ij) - z^k_jj ) ]

i.e. for each k the images are contrasted with the k-th texts of all images, in both directions, and the K
losses are averaged. With K = 1 it is the CLIP loss.

Distributed (reference: open_clip `loss.py`): each of W ranks holds N images. `gather_features` all-gathers
them *with gradient* (torch.distributed.nn.functional.all_gather), and in the local-loss form rank r computes
only its own N rows against all W*N columns, labels offset by r*N:

    L_r = 1/2 [ CE(s x_local @ t_all^T, r*N + arange(N)) + CE(s t_local @ x_all^T, r*N + arange(N)) ]

Each global row (and column) belongs to exactly one rank, so 1/W sum_r L_r equals L_clip on the W*N batch,
and DDP's gradient averaging (with the gradient that flows back through the gather) gives exactly the
gradient of the global loss. The same holds for L_mt term by term.
"""
from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed.nn.functional import all_gather


def _contrastive(img_rows: torch.Tensor, txt_rows: torch.Tensor, img_all: torch.Tensor, txt_all: torch.Tensor,
                 logit_scale: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Symmetric InfoNCE of local rows against all columns.

    img_rows, txt_rows: [n, D] (this rank's pairs); img_all, txt_all: [M, D] (all pairs, the local ones at
    rows offset..offset+n). Also batched over a leading K dim: [K, n, D] and [K, M, D] (images broadcast).
    """
    labels = torch.arange(offset, offset + img_rows.shape[-2], device=img_rows.device)
    per_image = logit_scale * img_rows @ txt_all.transpose(-1, -2)      # [(K,) n, M]: image -> all texts
    per_text = logit_scale * txt_rows @ img_all.transpose(-1, -2)       # [(K,) n, M]: text -> all images
    M = per_image.shape[-1]
    labels = labels.expand(per_image.shape[:-1]).reshape(-1)
    return 0.5 * (F.cross_entropy(per_image.reshape(-1, M), labels) + F.cross_entropy(per_text.reshape(-1, M), labels))


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric CLIP loss of N pairs: image_features, text_features [N, D]; logit_scale = exp(log scale)."""
    _check(image_features, text_features, multi_text=False)
    return _contrastive(image_features, text_features, image_features, text_features, logit_scale)


def multi_text_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                    logit_scale: torch.Tensor) -> torch.Tensor:
    """LaCLIP-MT loss: image_features [N, D], text_features [N, K, D]; the mean over k of
    clip_loss(image_features, text_features[:, k])."""
    _check(image_features, text_features, multi_text=True)
    txt = text_features.transpose(0, 1)                                 # [K, N, D]
    return _contrastive(image_features, txt, image_features, txt, logit_scale)


def _check(img: torch.Tensor, txt: torch.Tensor, multi_text: bool) -> None:
    want = 3 if multi_text else 2
    name = "multi_text_loss" if multi_text else "clip_loss"
    if img.dim() != 2 or txt.dim() != want or txt.shape[0] != img.shape[0] or txt.shape[-1] != img.shape[-1]:
        shape = "[N, K, D]" if multi_text else "[N, D]"
        raise ValueError(f"{name}: expected image features [N, D] and text features {shape} with the same N and D, "
                         f"got {tuple(img.shape)} and {tuple(txt.shape)}")


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the gradient contiguous. all_gather's backward hands the gradient slices
    to an all-to-all, and gloo silently mixes up non-contiguous tensors (pytorch/pytorch#192920); the
    multi-text loss transposes the gathered texts, so their gradient slices are strided."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def _all_gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():       # deprecated in favour of a private API; still the documented one
        warnings.simplefilter("ignore", FutureWarning)
        parts = all_gather(t.contiguous())
    return torch.cat([_ContiguousGrad.apply(p) for p in parts], 0)


def gather_features(image_features: torch.Tensor, text_features: torch.Tensor, rank: int, world_size: int,
                    gather_with_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """All-gather both feature tensors along dim 0 across the process group -> [W*N, ...] (rank order).

    With gather_with_grad the gradient flows back to the rank that produced each row (an all-to-all in
    backward). Without it the gathered copies are constants except this rank's own slice.
    """
    if gather_with_grad:
        return _all_gather_with_grad(image_features), _all_gather_with_grad(text_features)
    out = []
    for t in (image_features, text_features):
        parts = [torch.empty_like(t) for _ in range(world_size)]
        dist.all_gather(parts, t.contiguous())
        parts[rank] = t                                                  # keep this rank's gradient path
        out.append(torch.cat(parts, 0))
    return out[0], out[1]


class ClipLoss(nn.Module):
    """CLIP / LaCLIP-MT loss for one process or many.

    local_loss=True:  local rows vs gathered columns (labels offset by rank*N): O(N * W*N) logits per rank.
    local_loss=False: every rank builds the full W*N x W*N logits (same value on every rank).
    gather_with_grad=True makes both forms exact: the mean over ranks of the loss, and DDP's mean of the
    gradients, equal one process on the combined batch. Without it, gradients through the other ranks'
    features are dropped (open_clip's cheaper default).
    """

    def __init__(self, local_loss: bool = True, gather_with_grad: bool = True, rank: int = 0, world_size: int = 1,
                 multi_text: bool = False):
        super().__init__()
        self.local_loss, self.gather_with_grad = local_loss, gather_with_grad
        self.rank, self.world_size, self.multi_text = rank, world_size, multi_text

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor) -> torch.Tensor:
        _check(image_features, text_features, self.multi_text)
        if self.world_size == 1:
            fn = multi_text_loss if self.multi_text else clip_loss
            return fn(image_features, text_features, logit_scale)
        img_all, txt_all = gather_features(image_features, text_features, self.rank, self.world_size,
                                           self.gather_with_grad)
        img, txt = image_features, text_features
        if self.multi_text:                                             # [N, K, D] -> [K, N, D]
            txt, txt_all = txt.transpose(0, 1), txt_all.transpose(0, 1)
        if self.local_loss:
            return _contrastive(img, txt, img_all, txt_all, logit_scale, offset=self.rank * img.shape[0])
        return _contrastive(img_all, txt_all, img_all, txt_all, logit_scale)
