"""Gradient accumulation: how a step of `accum_steps` micro-batches turns into one gradient.

`train.accum_mode` picks what each contrastive loss contrasts:

* `micro` (the kit's first form): each micro-batch is its own loss, L = 1/A sum_j L(micro-batch j). A loss
  contrasts batch_size x processes samples; accumulation adds images per step, not negatives.
* `global` (open_clip's `--accum-freq`, GradCache's idea): one loss over the whole global batch. First the
  features of every micro-batch are computed without gradient (a cache); then each micro-batch j is run again
  with gradient and its features replace their cached copy in the full set:

      L = L_clip(cat(c_1, ..., f_j, ..., c_A))        (c = cached, f_j = recomputed with gradient)

  Backward gives dL/df_j * df_j/dtheta; the sum over j is dL/dtheta of the full batch, because the cached values
  equal the recomputed ones (the towers are deterministic: no dropout; BatchNorm's running statistics are
  restored after the cache pass, so they advance once per micro-batch as in `micro` mode). The logit scale
  enters every pass but keeps its gradient in one of them (the last, which is also the pass DDP synchronises),
  so it is counted once, not A times (open_clip counts it A times). Under torchrun `ClipLoss` gathers each
  rank's full set with gradient, so every loss contrasts the whole global batch.

Cost: one extra forward per micro-batch (~1/3 more compute than `micro`) and the cached features (tiny); memory:
the activations of one micro-batch, not of the global batch. BatchNorm (the ResNet towers) still normalises
per micro-batch in both modes, so for them neither mode equals one big batch exactly.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import torch

from laclip_lite.models.vision import _frozen_bn_stats

ACCUM_MODES = ("micro", "global")

Features = tuple[torch.Tensor, torch.Tensor, torch.Tensor]     # image [n, D], text [n, D] or [n, K, D], scale


def accumulate(mode: str, features: Callable[[object], Features], inputs: Sequence[object],
               loss_fn: Callable[..., torch.Tensor], no_sync: Callable[[int], contextlib.AbstractContextManager],
               check: Callable[[torch.Tensor, int], None] = lambda loss, j: None,
               model: torch.nn.Module | None = None) -> float:
    """Backward of one optimizer step over the micro-batches `inputs`; returns the step's loss.

    features(x) -> (image, text, scale) runs the model on micro-batch x; loss_fn(image, text, scale) -> loss;
    no_sync(j) is the context for micro-batch j's backward (DDP's no_sync except on the last);
    check(loss, j) may raise on a bad loss; model: whose BatchNorm statistics the `global` cache pass keeps.
    """
    if mode == "micro":
        return _micro(features, inputs, loss_fn, no_sync, check)
    if mode == "global":
        return _global(features, inputs, loss_fn, no_sync, check, model)
    raise ValueError(f"accum_mode {mode!r} is not one of: {', '.join(ACCUM_MODES)}")


def _micro(features, inputs, loss_fn, no_sync, check) -> float:
    total, n = 0.0, len(inputs)
    for j, x in enumerate(inputs):
        with no_sync(j):
            loss = loss_fn(*features(x)) / n
            check(loss * n, j)
            loss.backward()
        total += loss.item()
    return total


def _global(features, inputs, loss_fn, no_sync, check, model) -> float:
    last = len(inputs) - 1
    with torch.no_grad(), (_frozen_bn_stats(model) if model is not None else contextlib.nullcontext()):
        cached = [features(x)[:2] for x in inputs]
    value = 0.0
    for j, x in enumerate(inputs):
        with no_sync(j):
            img, txt, scale = features(x)
            if j != last:
                scale = scale.detach()          # the scale's gradient is taken once, in the last pass
            img_all = torch.cat([c[0] for c in cached[:j]] + [img] + [c[0] for c in cached[j + 1:]])
            txt_all = torch.cat([c[1] for c in cached[:j]] + [txt] + [c[1] for c in cached[j + 1:]])
            loss = loss_fn(img_all, txt_all, scale)
            check(loss, j)
            loss.backward()
        value = loss.item()                     # every pass computes the same loss value
    return value
