"""Shapes drawn with PIL in a style ShapeWorld's renderer never uses, as ImageFolder evaluation sets.

    python data_samples/draw_shapes.py                  # -> data_samples/eval/drawn_shapes, drawn_color_shapes

A transfer test: a model trained on ShapeWorld is scored on pictures it has never seen the like of. Each image is
drawn at 128x128 on paper-like backgrounds (cream, pale blue, or ruled lines) with a dark outline of random width,
hand-jittered vertices, a random rotation, size and offset, a fill colour near (±25 per channel) the ShapeWorld
colour of its class, and then shrunk to 64x64 (LANCZOS): the kit's reader resizes it to the model's input. None of
that (outlines, rotation, paper, jitter, downsampling) is in ShapeWorld's renderer. Deterministic (seeded).

* `drawn_shapes/<shape>/`               12 images per shape (6 classes), colours drawn at random;
* `drawn_color_shapes/<color>_<shape>/`  3 images per colour+shape (48 classes: ShapeWorld's `color_shape` task).
"""
from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

from PIL import Image, ImageDraw

from laclip_lite.data.export import class_folder
from laclip_lite.data.vocab import COLORS, SHAPES

CANVAS, SIDE = 128, 64


def _background(rng: random.Random) -> Image.Image:
    kind = rng.choice(["cream", "blue", "ruled"])
    base = {"cream": (246, 238, 214), "blue": (222, 234, 246), "ruled": (250, 250, 246)}[kind]
    img = Image.new("RGB", (CANVAS, CANVAS), base)
    draw = ImageDraw.Draw(img)
    if kind == "ruled":
        for y in range(12, CANVAS, 14):
            draw.line([(0, y), (CANVAS, y)], fill=(150, 180, 220), width=1)
        draw.line([(18, 0), (18, CANVAS)], fill=(230, 120, 120), width=1)
    for _ in range(40):                                             # paper grain
        x, y = rng.randrange(CANVAS), rng.randrange(CANVAS)
        g = rng.randint(-18, 0)
        draw.point((x, y), fill=tuple(max(0, c + g) for c in base))
    return img


def _outline(shape: str, rng: random.Random) -> list[tuple[float, float]]:
    """Unit-scale polygon points of a shape around (0, 0)."""
    if shape == "circle":
        return [(math.cos(t), math.sin(t)) for t in (2 * math.pi * k / 40 for k in range(40))]
    if shape == "square":
        return [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]
    if shape == "triangle":
        return [(math.cos(t), math.sin(t)) for t in (-math.pi / 2 + 2 * math.pi * k / 3 for k in range(3))]
    if shape == "star":
        return [((1.0 if k % 2 == 0 else 0.42) * math.cos(t), (1.0 if k % 2 == 0 else 0.42) * math.sin(t))
                for k, t in enumerate(-math.pi / 2 + math.pi * k / 5 for k in range(10))]
    if shape == "heart":
        pts = []
        for k in range(60):
            t = 2 * math.pi * k / 60
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((x / 17, -y / 17))
        return pts
    if shape == "cross":
        a, b = 0.3, 0.9
        return [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a),
                (-a, -a)]
    raise ValueError(shape)


def draw(shape: str, color: str, rng: random.Random) -> Image.Image:
    img = _background(rng)
    d = ImageDraw.Draw(img)
    rgb = tuple(min(255, max(0, c + rng.randint(-25, 25))) for c in COLORS[color][0])
    radius = rng.uniform(28, 48)
    cx, cy = CANVAS / 2 + rng.uniform(-14, 14), CANVAS / 2 + rng.uniform(-14, 14)
    angle = rng.uniform(-0.5, 0.5) if shape != "circle" else 0.0
    pts = []
    for x, y in _outline(shape, rng):
        x, y = x + rng.uniform(-0.04, 0.04), y + rng.uniform(-0.04, 0.04)           # a hand's wobble
        xr, yr = x * math.cos(angle) - y * math.sin(angle), x * math.sin(angle) + y * math.cos(angle)
        pts.append((cx + radius * xr, cy + radius * yr))
    ink = tuple(int(c * 0.35) for c in rgb)
    d.polygon(pts, fill=rgb, outline=ink, width=rng.randint(2, 6))
    return img.resize((SIDE, SIDE), Image.LANCZOS)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(Path(__file__).parent / "eval"), help="folder for the two sets")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    out = Path(args.out)
    for shape in SHAPES:
        folder = out / "drawn_shapes" / class_folder(shape)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(12):
            draw(shape, rng.choice(list(COLORS)), rng).save(folder / f"{i:02d}.png")
    for color in COLORS:
        for shape in SHAPES:
            folder = out / "drawn_color_shapes" / class_folder(f"{color} {shape}")
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(3):
                draw(shape, color, rng).save(folder / f"{i:02d}.png")
    print(f"wrote {out / 'drawn_shapes'} (6 x 12) and {out / 'drawn_color_shapes'} (48 x 3)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
