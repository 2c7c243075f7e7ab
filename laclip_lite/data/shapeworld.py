"""ShapeWorld: a procedural world of small captioned images, the kit's embedded default dataset.

Every image shows one *main* object (a shape in a colour, a size, a position) on a background, and in about
30% of images a second, smaller object of a different shape and colour. The main object is always the larger
one; the zero-shot labels (`vocab.TASKS`) are about it.

Each image gets exactly ONE fixed caption written like web alt-text (CC3M): many patterns, varied word order,
synonyms, stock-photo filler, the occasional irrelevant word, and often missing facts (no shape, no colour,
no background). A caption never states a wrong fact. This is what makes the LaCLIP demo work: with few
images and many epochs, CLIP memorises these noisy captions, while rewrites give it more ways to say the
same true thing.

    world = ShapeWorld(seed=0, image_size=32)
    split = world.split("train", 1500)       # images uint8 [n,3,H,W], captions, labels, scenes

Determinism: a split depends only on (seed, split name, n); every random draw comes from a stream named by
(seed, split, what is drawn), so `split(name, 100)` is the first 100 items of `split(name, 200)`, and
different split names draw from unrelated streams (disjoint splits).

Rendering is vectorised numpy: shape masks are evaluated on a grid supersampled 2-4x, then box-averaged
(anti-aliasing). Geometry is in units of the image side, so any `image_size` (32, 64, 224) shows the same scene.
"""
from __future__ import annotations

import copy
import random
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from laclip_lite.data import vocab

SHAPE_NAMES = list(vocab.SHAPES)
COLOR_NAMES = list(vocab.COLORS)
SIZE_NAMES = list(vocab.SIZES)
POSITION_NAMES = list(vocab.POSITIONS)
BACKGROUND_NAMES = list(vocab.BACKGROUNDS)

# Radius (half-extent, as a fraction of the image side) of the main object per size class; second objects
# are always smaller than any main object, so "small" is a true word for them.
SIZE_RADIUS = {"small": (0.14, 0.18), "medium": (0.21, 0.26), "large": (0.30, 0.36)}
SECOND_RADIUS = (0.09, 0.125)
SECOND_OBJECT_P = 0.3
COLOR_JITTER = 14  # +- per RGB channel, so colours are not a single exact value


@dataclass
class ShapeWorldSplit:
    """One rendered split. `labels[task][i]` indexes `vocab.classnames(task)`."""

    name: str
    images: torch.Tensor               # uint8 [n, 3, H, W]
    captions: list[str]                # one noisy alt-text caption per image
    labels: dict[str, torch.Tensor]    # task -> long [n], about the main object
    scenes: list[dict]                 # ground truth per image (see `ShapeWorld._scenes`)

    def __len__(self) -> int:
        return len(self.captions)

    def copy(self) -> "ShapeWorldSplit":
        """An independent copy (images, captions, labels and scenes): editing it leaves this split as it is."""
        return ShapeWorldSplit(self.name, self.images.clone(), list(self.captions),
                               {k: v.clone() for k, v in self.labels.items()}, copy.deepcopy(self.scenes))


class ShapeWorld:
    """The world: `seed` fixes every scene, image and caption; `image_size` only changes the rendering."""

    def __init__(self, seed: int = 0, image_size: int = 32):
        if image_size < 8:
            raise ValueError(f"ShapeWorld image_size must be >= 8, got {image_size}")
        self.seed, self.image_size = int(seed), int(image_size)
        self.supersample = int(min(4, max(2, 128 // image_size)))

    def split(self, name: str, n: int) -> ShapeWorldSplit:
        if n < 0:
            raise ValueError(f"ShapeWorld.split({name!r}, n={n}): n must be >= 0")
        scenes = self._scenes(name, n)
        images = self._render(name, scenes)
        captions = []
        for i, scene in enumerate(scenes):
            text, info = alt_text(scene, random.Random(f"caption-{self.seed}-{name}-{i}"))
            scene.update(caption=text, caption_pattern=info["pattern"], stated=info["stated"])
            captions.append(text)
        return ShapeWorldSplit(name, images, captions, scene_labels(scenes), scenes)

    # -- scene sampling ----------------------------------------------------------------------------------
    def _rng(self, split: str, stream: str) -> np.random.Generator:
        """An independent generator per (seed, split, stream); prefix-stable: item i never depends on n."""
        key = [self.seed, zlib.crc32(split.encode()), zlib.crc32(stream.encode())]
        return np.random.default_rng(np.random.SeedSequence(key))

    def _balanced(self, split: str, stream: str, k: int, n: int) -> np.ndarray:
        """Class ids in blocks of k: each block is a permutation of 0..k-1 (balanced, still prefix-stable)."""
        blocks = [np.random.default_rng([self.seed, zlib.crc32(split.encode()), zlib.crc32(stream.encode()), b])
                  .permutation(k) for b in range(-(-n // k))]
        return np.concatenate(blocks)[:n] if blocks else np.zeros(0, dtype=np.int64)

    def _scenes(self, split: str, n: int) -> list[dict]:
        ns, nc = len(SHAPE_NAMES), len(COLOR_NAMES)
        combo = self._balanced(split, "color_shape", ns * nc, n)
        color, shape = combo // ns, combo % ns
        size = self._balanced(split, "size", len(SIZE_NAMES), n)
        bg = self._balanced(split, "background", len(BACKGROUND_NAMES), n)
        pos = self._rng(split, "position").integers(0, len(POSITION_NAMES), n)
        u = self._rng(split, "continuous").random((n, 8))   # radius, jitter x/y, rotation, colour jitter x3, spare
        second = self._rng(split, "second").random((n, 6))  # present?, shape, colour, radius, slot noise, rotation
        scenes = []
        for i in range(n):
            sz = SIZE_NAMES[size[i]]
            lo, hi = SIZE_RADIUS[sz]
            r = lo + (hi - lo) * u[i, 0]
            cx, cy = _place(POSITION_NAMES[pos[i]], r, u[i, 1], u[i, 2])
            main = {"shape": SHAPE_NAMES[shape[i]], "color": COLOR_NAMES[color[i]], "size": sz,
                    "position": POSITION_NAMES[pos[i]], "center": (cx, cy), "radius": r,
                    "rotation": (u[i, 3] - 0.5) * 24.0, "rgb": _jitter_rgb(COLOR_NAMES[color[i]], u[i, 4:7])}
            scene = {"index": i, **main, "background": BACKGROUND_NAMES[bg[i]], "second": None}
            if second[i, 0] < SECOND_OBJECT_P:
                scene["second"] = _second_object(main, second[i, 1:])
            scenes.append(scene)
        return scenes

    # -- rendering ---------------------------------------------------------------------------------------
    def _render(self, split: str, scenes: list[dict]) -> torch.Tensor:
        n, size, ss = len(scenes), self.image_size, self.supersample
        out = np.empty((n, size, size, 3), dtype=np.uint8)
        # two streams, each drawn in scene order chunk after chunk, so item i never depends on n (prefix-stable)
        rngs = self._rng(split, "background-params"), self._rng(split, "texture")
        chunk = max(1, (1 << 21) // (size * ss) ** 2)
        for start in range(0, n, chunk):
            part = scenes[start:start + chunk]
            img = render_backgrounds(part, size, *rngs)
            for layer in ("second", "main"):        # the main object is drawn last, on top
                objs = [(j, s["second"] if layer == "second" else s) for j, s in enumerate(part)]
                objs = [(j, o) for j, o in objs if o is not None]
                for shape in SHAPE_NAMES:
                    group = [(j, o) for j, o in objs if o["shape"] == shape]
                    if not group:
                        continue
                    idx = np.array([j for j, _ in group])
                    cov = coverage(shape, [o for _, o in group], size, ss)[..., None]   # [m, H, W, 1]
                    rgb = np.array([o["rgb"] for _, o in group], dtype=np.float32)[:, None, None, :]
                    img[idx] = img[idx] * (1.0 - cov) + rgb * cov
            out[start:start + len(part)] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def scene_labels(scenes: list[dict]) -> dict[str, torch.Tensor]:
    """Labels per task (indices into `vocab.classnames(task)`), about the main object."""
    ns = len(SHAPE_NAMES)
    cols = {
        "shape": [SHAPE_NAMES.index(s["shape"]) for s in scenes],
        "color": [COLOR_NAMES.index(s["color"]) for s in scenes],
        "size": [SIZE_NAMES.index(s["size"]) for s in scenes],
        "background": [BACKGROUND_NAMES.index(s["background"]) for s in scenes],
    }
    cols["color_shape"] = [c * ns + s for c, s in zip(cols["color"], cols["shape"])]
    return {task: torch.tensor(cols[task], dtype=torch.long) for task in vocab.TASKS}


def _place(position: str, r: float, jx: float, jy: float) -> tuple[float, float]:
    """Centre of the main object for a named position; off-centre objects stay inside the frame."""
    off = float(np.clip(0.5 - r - 0.03, 0.12, 0.30))
    dx, dy = {"center": (0, 0), "left": (-off, 0), "right": (off, 0), "top": (0, -off), "bottom": (0, off)}[position]
    return 0.5 + dx + (jx - 0.5) * 0.06, 0.5 + dy + (jy - 0.5) * 0.06


def _jitter_rgb(color: str, u: np.ndarray) -> tuple[float, float, float]:
    base = np.array(vocab.COLORS[color][0], dtype=np.float64)
    return tuple(float(v) for v in np.clip(base + (u - 0.5) * 2 * COLOR_JITTER, 0, 255))


# Where a second object may go (image-side units); the slot farthest from the main object wins.
_SLOTS = np.array([(0.15, 0.15), (0.85, 0.15), (0.15, 0.85), (0.85, 0.85), (0.5, 0.13), (0.5, 0.87),
                   (0.13, 0.5), (0.87, 0.5)])


def _second_object(main: dict, u: np.ndarray) -> dict:
    """A smaller object of a different shape AND colour, in the free slot farthest from the main object."""
    shapes = [s for s in SHAPE_NAMES if s != main["shape"]]
    colors = [c for c in COLOR_NAMES if c != main["color"]]
    shape, color = shapes[int(u[0] * len(shapes))], colors[int(u[1] * len(colors))]
    r = SECOND_RADIUS[0] + (SECOND_RADIUS[1] - SECOND_RADIUS[0]) * u[2]
    dist = np.linalg.norm(_SLOTS - np.array(main["center"]), axis=1)
    dist = dist + np.modf(np.arange(1, len(_SLOTS) + 1) * u[3] * 97.31)[0] * 0.05  # break ties, seeded by u
    cx, cy = _SLOTS[int(np.argmax(dist))]
    return {"shape": shape, "color": color, "size": "small", "center": (float(cx), float(cy)), "radius": float(r),
            "rotation": (u[4] - 0.5) * 24.0, "rgb": _jitter_rgb(color, u[1:4][::-1] % 1.0)}


def render_backgrounds(scenes: list[dict], size: int, params_rng: np.random.Generator,
                       texture_rng: np.random.Generator) -> np.ndarray:
    """float32 [n, H, W, 3] backgrounds: white, black, gray, noise texture, gradient."""
    n = len(scenes)
    img = np.empty((n, size, size, 3), dtype=np.float32)
    kinds = np.array([s["background"] for s in scenes])
    params = params_rng.random((n, 8)).astype(np.float32)    # one row per scene, used by whichever kind applies
    for i, kind in enumerate(kinds):
        p = params[i]
        if kind == "white":
            img[i] = 244 + 11 * p[0]
        elif kind == "black":
            img[i] = 4 + 16 * p[0]
        elif kind == "gray":
            img[i] = 112 + 36 * p[0]
    noisy = np.flatnonzero(kinds == "noise")
    if len(noisy):
        base = 95 + 70 * params[noisy, 0]                      # mid-gray level
        tint = (params[noisy, 1:4] - 0.5) * 30                 # a faint colour cast
        grain = texture_rng.normal(0, 28, (len(noisy), size, size, 1)).astype(np.float32)
        img[noisy] = base[:, None, None, None] + tint[:, None, None, :] + grain
    grad = np.flatnonzero(kinds == "gradient")
    if len(grad):
        t = np.linspace(0, 1, size, dtype=np.float32)
        ang = params[grad, 0] * 2 * np.pi
        ramp = np.cos(ang)[:, None, None] * t[None, None, :] + np.sin(ang)[:, None, None] * t[None, :, None]
        ramp = (ramp - ramp.min(axis=(1, 2), keepdims=True)) / np.ptp(ramp, axis=(1, 2), keepdims=True).clip(1e-6)
        lo = 60 + 60 * params[grad, 1:2] + (params[grad, 2:5] - 0.5) * 40   # desaturated start / end colours
        hi = 180 + 60 * params[grad, 5:6] + (params[grad, 2:5][:, ::-1] - 0.5) * 40
        img[grad] = lo[:, None, None, :] + (hi - lo)[:, None, None, :] * ramp[..., None]
    return np.clip(img, 0, 255)


def coverage(shape: str, objs: list[dict], size: int, ss: int) -> np.ndarray:
    """Fraction of each pixel covered by each object: float32 [m, H, W] (supersample ss x ss, then average)."""
    g = (np.arange(size * ss, dtype=np.float32) + 0.5) / (size * ss)
    cx = np.array([o["center"][0] for o in objs], dtype=np.float32)[:, None, None]
    cy = np.array([o["center"][1] for o in objs], dtype=np.float32)[:, None, None]
    r = np.array([o["radius"] for o in objs], dtype=np.float32)[:, None, None]
    th = np.deg2rad(np.array([o["rotation"] for o in objs], dtype=np.float32))[:, None, None]
    dx, dy = (g[None, None, :] - cx) / r, (g[None, :, None] - cy) / r
    cos, sin = np.cos(th), np.sin(th)
    u, v = dx * cos + dy * sin, dy * cos - dx * sin        # object frame, unit = radius, v points down
    mask = SHAPE_MASKS[shape](u, v)
    m = len(objs)
    hits = mask.view(np.uint8).reshape(m, size, ss, size, ss).sum(axis=(2, 4), dtype=np.uint8)  # ss*ss <= 16
    return hits.astype(np.float32) * np.float32(1.0 / (ss * ss))


def _polygon(u, v, k: int, inradius: float, theta0: float):
    """Inside a regular k-gon: on the inner side of every edge (edge normals at theta0 + 2*pi*j/k)."""
    inside = None
    for j in range(k):
        a = theta0 + 2 * np.pi * j / k
        h = u * np.float32(np.cos(a)) + v * np.float32(np.sin(a)) <= inradius
        inside = h if inside is None else inside & h
    return inside


def _star(u, v):
    """Inside a filled five-pointed star (pentagram): at most one of its five lines has the point beyond it.

    The centre pentagon is inside all five lines, each tip is beyond exactly one, and everything outside the
    star is beyond at least two. Lines sit at distance cos(72 deg) from the centre; the first tip points up.
    """
    beyond = None
    for j in range(5):
        a = -np.pi / 2 + 2 * np.pi * j / 5
        b = (u * np.float32(np.cos(a)) + v * np.float32(np.sin(a)) > np.float32(0.309)).view(np.uint8)
        beyond = b if beyond is None else beyond + b
    return beyond <= 1


def _heart(u, v):
    x, y = u * 1.15, -v * 1.15 + 0.12
    a = x * x + y * y - 1
    return a * a * a - x * x * y * y * y <= 0


SHAPE_MASKS = {
    "circle": lambda u, v: u * u + v * v <= 0.85 ** 2,
    "square": lambda u, v: (np.abs(u) <= 0.7) & (np.abs(v) <= 0.7),
    "triangle": lambda u, v: _polygon(u, v - 0.1, 3, 0.5, np.pi / 2),
    "star": _star,
    "heart": _heart,
    "cross": lambda u, v: ((np.abs(u) <= 0.28) & (np.abs(v) <= 0.88)) | ((np.abs(v) <= 0.28) & (np.abs(u) <= 0.88)),
}


# ------------------------------------------------------------------------------------------------------------
# Alt-text captions: one fixed, noisy, always-true caption per image.
#
# A template picks the word order and which slots it has; each slot may come out empty. Slots:
#   {np} / {a_np}  the main object ("small red star", "star in crimson", "red object"), without / with article
#   {pos}          position of the main object ("on the left")          -- only before the second object
#   {sec}          the second object ("next to a small blue square")   -- starts with a vocab.SECOND_CONNECTORS word
#   {bg}           background ("on a black background", "isolated on white")
#   {stock} {suffix} {junk}   stock-photo tokens, stock-site suffixes, an irrelevant word
# Pattern 15 is Title Case, as some alt-text is. "!" marks a slot the template always fills.
TEMPLATES = [
    "{a_np}{pos}{sec}{bg}",
    "{np}{sec}{bg} {stock}",
    "{stock} of {a_np}{pos}{sec}{bg}",
    "{np}{sec} {stock}{bg} {suffix}",
    "{np}{bg!} - {stock}",
    "{junk!} {np} {stock}",
    "{stock}: {a_np}{sec}{bg}",
    "close-up of {a_np}{pos}{sec}{bg}",
    "{np}{pos}{sec}, {stock}",
    "{np} {stock} {junk!} {suffix}",
    "{np}{sec}{bg!}",
    "{a_np}{pos}{bg}. {stock}.",
    "{np} icon{sec} {suffix}",
    "simple {np}{sec} {stock}{bg}",
    "{np}{bg} #{junk!} #clipart",
    "{np} {stock}{bg}",                     # rendered in Title Case
    "{np} drawing{pos}{sec}",
    "{stock} - {np}{sec}{bg}",
    "{a_np}{pos!}{bg!}",
    "{np} sticker {suffix}",
    "{np} clipart {junk}",
    "{junk!} {np}{pos}{sec}",
    "{np}{sec} for your design{bg}",
    "photo of {a_np}{pos}{sec}{bg}",
    "{a_np}{sec} isolated{bg}",
    "{np}{sec!}",
]
TITLE_CASE_PATTERN = 15
P_OMIT_SHAPE, P_OMIT_COLOR, P_SIZE = 0.15, 0.15, 0.3      # the main object's noun phrase
P_POS, P_BG, P_SEC, P_JUNK = 0.25, 0.35, 0.6, 0.3          # optional slots (when the template has them)


def _word(words: list[str], rng: random.Random, plain: float = 0.6) -> str:
    """The plain word most of the time, otherwise a synonym."""
    return words[0] if rng.random() < plain or len(words) == 1 else rng.choice(words[1:])


def _article(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def _noun_phrase(obj: dict, rng: random.Random, shape: bool, color: bool, size: bool) -> str:
    """"small red star", "star in crimson", "scarlet colored disc", "blue object", "little shape", ..."""
    noun = _word(vocab.SHAPES[obj["shape"]], rng) if shape else rng.choice(vocab.GENERIC_NOUNS)
    adj = _word(vocab.SIZES[obj["size"]], rng) + " " if size else ""
    if not color:
        return adj + noun
    col = _word(vocab.COLORS[obj["color"]][1], rng)
    form = rng.random()
    if form < 0.62:
        return f"{adj}{col} {noun}"
    if form < 0.76:
        return f"{adj}{noun} in {col}"
    if form < 0.86:
        return f"{adj}{col} colored {noun}"
    if form < 0.94:
        return f"{adj}{noun}, {col}"
    return f"{adj}{noun} ({col})"


def _background_phrase(bg: str, rng: random.Random) -> str:
    idioms = vocab.BACKGROUND_IDIOMS.get(bg, [])
    if idioms and rng.random() < 0.3:
        return rng.choice(idioms)
    phrase = _word(vocab.BACKGROUNDS[bg], rng, plain=0.5)
    return rng.choice(["on", "on", "against", "over", "with"]) + " " + _article(phrase)


def _second_phrase(obj: dict, rng: random.Random) -> str:
    shape, color = rng.random() > 0.15, rng.random() > 0.15
    shape = shape or not color                 # never "next to a small object": name at least one attribute
    size = rng.random() < 0.7
    return rng.choice(vocab.SECOND_CONNECTORS) + " " + _article(_noun_phrase(obj, rng, shape, color, size))


def alt_text(scene: dict, rng: random.Random) -> tuple[str, dict]:
    """One web-style caption of `scene` -> (caption, info); info = {"pattern": id, "stated": {fact: bool}}.

    Every fact the caption states is true of the scene; many facts are left out, as on the web.
    """
    pattern = rng.randrange(len(TEMPLATES))
    template = TEMPLATES[pattern]
    shape, color = rng.random() >= P_OMIT_SHAPE, rng.random() >= P_OMIT_COLOR
    size = rng.random() < P_SIZE
    np_ = _noun_phrase(scene, rng, shape, color, size)

    def want(slot: str, p: float) -> bool:
        return "{" + slot + "!}" in template or ("{" + slot + "}" in template and rng.random() < p)

    sec = scene["second"] is not None and want("sec", P_SEC)
    pos, bg, junk = want("pos", P_POS), want("bg", P_BG), want("junk", P_JUNK)
    slots = {
        "np": np_, "a_np": _article(np_),
        "pos": " " + _word(vocab.POSITIONS[scene["position"]], rng) if pos else "",
        "sec": " " + _second_phrase(scene["second"], rng) if sec else "",
        "bg": " " + _background_phrase(scene["background"], rng) if bg else "",
        "stock": rng.choice(vocab.STOCK_TOKENS), "suffix": rng.choice(vocab.STOCK_SUFFIXES),
        "junk": rng.choice(vocab.IRRELEVANT_WORDS) if junk else "",
    }
    text = template.replace("!}", "}").format(**slots)
    text = " ".join(text.replace("isolated isolated", "isolated").split()).replace(" ,", ",").strip(" ,-:#")
    text = text.replace(" .", ".").replace("# ", "")
    if pattern == TITLE_CASE_PATTERN:
        text = text.title()
    stated = {"shape": shape, "color": color, "size": size, "position": pos, "background": bg, "second": sec}
    return text, {"pattern": pattern, "stated": stated}
