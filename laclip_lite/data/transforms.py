"""Image transforms without torchvision.

Images travel as uint8 [3,H,W] tensors from the data layer (cheap to batch, pin and copy) and become floats
only on the training device:

* `pil_to_uint8(img, size, train, crop_scale, rng)`: a PIL image -> uint8 [3,size,size]; training uses
  CLIP's RandomResizedCrop (area fraction in `crop_scale`, aspect 3/4..4/3), evaluation resizes the shorter
  side and centre-crops. File data is augmented here, once, in the DataLoader worker (`PilTransform`), with
  random numbers drawn from (seed, step, sample index) (`sample_rng`).
* `random_resized_crop(images, scale, generator)`: the same augmentation for a whole uint8 batch at once
  (one affine resample), used for in-memory data such as ShapeWorld, on the device; its numbers are drawn
  from (seed, step, micro-batch) for the whole global batch and each rank takes its rows.
* `normalize(images)`: 0..255 values -> float, CLIP's mean / std.
"""
from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Images with values in 0..255 (uint8, or float from `random_resized_crop`) [N,3,H,W] -> float32
    normalised with CLIP's mean and std, on the images' device."""
    mean = torch.tensor(CLIP_MEAN, device=images.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(CLIP_STD, device=images.device).view(1, 3, 1, 1) * 255
    return (images.float() - mean) / std


def _sample_crop(width: int, height: int, scale: tuple[float, float], rng: random.Random) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params: (left, top, w, h), falling back to a centre crop."""
    area = width * height
    log_ratio = (math.log(3 / 4), math.log(4 / 3))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ratio = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w), rng.randint(0, height - h), w, h
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side, side


def pil_to_uint8(img, size: int, train: bool = False, crop_scale=(0.5, 1.0), rng: random.Random | None = None,
                 hflip: bool = False) -> torch.Tensor:
    """PIL image -> uint8 tensor [3, size, size] (train: one RandomResizedCrop, then a flip when `hflip`)."""
    img = img if img.mode == "RGB" else img.convert("RGB")      # (convert would copy an RGB image)
    if train:
        rng = rng or random.Random()
        left, top, w, h = _sample_crop(img.width, img.height, tuple(crop_scale), rng)
        img = img.resize((size, size), Image.BICUBIC, box=(left, top, left + w, top + h))
        if hflip and rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
    else:
        s = size / min(img.width, img.height)
        img = img.resize((max(size, round(img.width * s)), max(size, round(img.height * s))), Image.BICUBIC)
        left, top = (img.width - size) // 2, (img.height - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def sample_rng(seed: int, step: int, index: int) -> random.Random:
    """The random numbers of one sample's augmentation: a function of (seed, step, global sample index) only,
    so DataLoader workers differ, ranks differ, and a resumed run redraws exactly the same crops."""
    return random.Random((seed * 1_000_003 + step * 7_919) * 2_147_483_647 + index)


class PilTransform:
    """Picklable PIL -> uint8 transform for DataLoader workers: `transform(img, step, index)`. Training images
    get their one augmentation here (the trainer does not crop them again); eval images are centre-cropped."""

    def __init__(self, size: int, train: bool, crop_scale=(0.5, 1.0), hflip: bool = False, seed: int = 0):
        self.size, self.train, self.crop_scale, self.hflip, self.seed = size, train, tuple(crop_scale), hflip, seed

    def __call__(self, img, step: int = 0, index: int = 0) -> torch.Tensor:
        rng = sample_rng(self.seed, step, index) if self.train else None
        return pil_to_uint8(img, self.size, self.train, self.crop_scale, rng, self.hflip)


def random_resized_crop(images: torch.Tensor, scale=(0.7, 1.0), generator: torch.Generator | None = None,
                        hflip: bool = False, ratio=(3 / 4, 4 / 3), offset: int = 0,
                        total: int | None = None) -> torch.Tensor:
    """Batched RandomResizedCrop (+ optional horizontal flip) of uint8 [N,3,H,W]; returns float [N,3,H,W] in 0..255.

    Each image gets its own crop: area fraction ~ U(scale), log aspect ratio ~ U(log 3/4, log 4/3), a uniform
    position inside the image; the crop is resampled bilinearly back to H x W by one `grid_sample`.
    The random numbers are drawn for `total` images and rows `offset:offset+N` are used, so a rank of a
    distributed run crops its slice of the global batch exactly as one process would.
    """
    n = images.shape[0]
    device = images.device
    u = torch.rand(total or n, 5, generator=generator)[offset:offset + n].to(device)
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    aspect = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1])
    w = torch.sqrt(area * aspect).clamp(max=1.0)     # crop size as a fraction of the image side
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (2 * u[:, 2] - 1) * (1 - w)                # centre in [-1+w, 1-w] (normalised coordinates)
    cy = (2 * u[:, 3] - 1) * (1 - h)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 2] = w, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    if hflip:
        flip = u[:, 4] < 0.5
        theta[flip, 0, 0] *= -1
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)

