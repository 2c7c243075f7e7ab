"""Image towers: CLIP's Vision Transformer and CLIP's modified ResNet (attention-pooled).

VisionTransformer (ViT-B/16 at 224: width 768, 12 layers, 12 heads, patch 16 -> 14x14 = 196 patches + 1):

    image [N,3,H,W] -> conv(kernel=stride=patch) -> [N, P, width] patches
    -> prepend the class token, add learned position embeddings, ln_pre
    -> pre-LN Transformer (bidirectional) -> ln_post(class token) -> @ proj -> [N, output_dim]
    (the last block computes only the class token's output: nothing reads the others)

ModifiedResNet (RN50: width 64, blocks (3, 4, 6, 3)), three changes to the classic ResNet:
  1. a stem of three 3x3 convs (instead of one 7x7) followed by a 2x2 average pool (instead of a max pool);
  2. "anti-aliased" strides: a stride-2 block does its 3x3 conv at stride 1 and then an average pool;
  3. global average pooling is replaced by attention pooling: the mean of the final feature map queries
     every spatial position (one multi-head attention step), giving the output embedding.
The feature map is 1/32 of the input side (224 -> 7x7, 32 -> 1x1).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from laclip_lite.models.transformer import Transformer


class ConvStem(nn.Module):
    """Early convolutions (Xiao et al., 2021, "Early Convolutions Help Transformers See Better").

    log2(patch) 3x3 stride-2 convolutions (GELU between them) then a 1x1 to the width: the same token grid as
    the linear patch embedding, but features that are translation-equivariant inside a patch, so a small object
    looks the same wherever it falls. No normalisation layer: batch statistics would make a distributed run
    differ from one process on the combined batch.
    """

    def __init__(self, patch_size: int, width: int):
        super().__init__()
        n = patch_size.bit_length() - 1
        if patch_size < 2 or 2 ** n != patch_size:
            raise ValueError(f"ConvStem: patch_size must be a power of two >= 2, got {patch_size}")
        chans = [3] + [max(16, width >> (n - i)) for i in range(1, n + 1)]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GELU()]
        layers.append(nn.Conv2d(chans[-1], width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VisionTransformer(nn.Module):
    def __init__(self, image_size: int, patch_size: int, width: int, layers: int, heads: int, output_dim: int,
                 stem: str = "patch", act: str = "gelu"):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"VisionTransformer: image_size={image_size} is not divisible by patch_size={patch_size}")
        self.image_size, self.patch_size = image_size, patch_size
        self.grid = image_size // patch_size
        if stem == "conv":
            self.conv1 = ConvStem(patch_size, width)                                                 # conv stem
        else:
            self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)  # patch embedding
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, causal=False, act=act)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))
        self.transformer.init_weights()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.transformer.grad_checkpointing = enable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"VisionTransformer: expected images [N, 3, {self.image_size}, {self.image_size}], "
                             f"got {tuple(x.shape)}")
        x = self.conv1(x).flatten(2).transpose(1, 2)               # [N, P, width]
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding  # [N, P+1, width]
        cls_pos = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        x = self.transformer.forward_pooled(self.ln_pre(x), cls_pos)  # [N, width]: the class token's output
        return self.ln_post(x) @ self.proj


# ---------------------------------------------------------------------------------------------------------
class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> (avg-pool if strided) -> 1x1 (x4 channels), with an avg-pool + 1x1 shortcut when shapes change."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(stride) if stride > 1 else nn.Identity(),
                nn.Conv2d(inplanes, planes * self.expansion, 1, bias=False),
                nn.BatchNorm2d(planes * self.expansion),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        return self.relu(out + identity)


class AttentionPool2d(nn.Module):
    """One attention step: the mean feature (plus position embedding) attends over all H*W positions."""

    def __init__(self, spatial: int, dim: int, heads: int, output_dim: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"AttentionPool2d: channels {dim} not divisible by heads={heads}")
        self.heads = heads
        self.positional_embedding = nn.Parameter(torch.randn(spatial ** 2 + 1, dim) / dim ** 0.5)
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.c_proj = nn.Linear(dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C = x.shape[:2]
        x = x.flatten(2).transpose(1, 2)                             # [N, HW, C]
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + self.positional_embedding  # [N, HW+1, C]
        h, d = self.heads, C // self.heads
        q = self.q_proj(x[:, :1]).view(N, 1, h, d).transpose(1, 2)   # only the mean token queries
        k = self.k_proj(x).view(N, -1, h, d).transpose(1, 2)
        v = self.v_proj(x).view(N, -1, h, d).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v)                  # [N, h, 1, d]
        return self.c_proj(y.transpose(1, 2).reshape(N, C))


@contextlib.contextmanager
def _frozen_bn_stats(module: nn.Module):
    """Restore BatchNorm running statistics on exit: a checkpointed block's recompute must not update them twice."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in bns]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, n) in zip(bns, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(n)


class ModifiedResNet(nn.Module):
    """CLIP's ResNet. `layers` = blocks per stage (4 stages), `width` = stem output channels (64 for RN50)."""

    def __init__(self, layers: tuple[int, int, int, int], output_dim: int, heads: int, image_size: int = 224,
                 width: int = 64):
        super().__init__()
        if image_size % 32:
            raise ValueError(f"ModifiedResNet: image_size={image_size} must be divisible by 32 (total stride)")
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"ModifiedResNet: layers must be 4 positive block counts, got {layers}")
        self.image_size, self.grad_checkpointing, self.channels_last = image_size, False, False
        # stem: three 3x3 convs, then an average pool
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self.relu = nn.ReLU(inplace=True)
        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        embed_dim = width * 32                                        # the ResNet feature dimension
        self.attnpool = AttentionPool2d(image_size // 32, embed_dim, heads, output_dim)
        self.init_weights()

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def init_weights(self) -> None:
        """CLIP's init: attention-pool projections std in_features^-0.5; each block's last BN starts at zero,
        so every residual block begins as the identity."""
        std = self.attnpool.c_proj.in_features ** -0.5
        for lin in (self.attnpool.q_proj, self.attnpool.k_proj, self.attnpool.v_proj, self.attnpool.c_proj):
            nn.init.normal_(lin.weight, std=std)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                nn.init.zeros_(block.bn3.weight)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def set_channels_last(self, enable: bool = True) -> "ModifiedResNet":
        """NHWC memory layout for conv weights and inputs (faster convs on GPUs with tensor cores)."""
        self.channels_last = enable
        return self.to(memory_format=torch.channels_last if enable else torch.contiguous_format)

    def _block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            ctx = lambda: (contextlib.nullcontext(), _frozen_bn_stats(block))  # noqa: E731  (forward, recompute)
            return checkpoint(block, x, use_reentrant=False, context_fn=ctx)
        return block(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"ModifiedResNet: expected images [N, 3, {self.image_size}, {self.image_size}], "
                             f"got {tuple(x.shape)}")
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.avgpool(self.relu(self.bn3(self.conv3(x))))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x = self._block(block, x)
        return self.attnpool(x)


RN50_LAYERS = (3, 4, 6, 3)


def resnet_layers(vision_layers: int) -> tuple[int, int, int, int]:
    """ModelConfig.vision_layers for a ResNet: 0 -> RN50's (3, 4, 6, 3); n -> n blocks in each of the 4 stages."""
    return RN50_LAYERS if vision_layers == 0 else (vision_layers,) * 4
