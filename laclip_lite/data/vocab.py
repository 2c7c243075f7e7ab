"""The ShapeWorld lexicon, shared by the image/caption generator and the world-aware rewriter.

Zero-shot class names are the first (plain English) entry of each list. Captions and rewrites may use any
synonym; every synonym maps back to exactly one attribute value, so a caption's stated facts can be read off
its text alone (which is all the stand-in rewriter is allowed to see).
"""
from __future__ import annotations

# shape -> words a caption may use for it (first = class name)
SHAPES: dict[str, list[str]] = {
    "circle": ["circle", "disc", "round shape", "dot"],
    "square": ["square", "box", "block", "tile"],
    "triangle": ["triangle", "triangular shape", "wedge", "pyramid shape"],
    "star": ["star", "star shape", "five-pointed star", "starburst"],
    "heart": ["heart", "heart shape", "love heart", "valentine heart"],
    "cross": ["cross", "plus sign", "plus shape", "cross mark"],
}

# colour -> (RGB in 0..255, words a caption may use for it (first = class name))
COLORS: dict[str, tuple[tuple[int, int, int], list[str]]] = {
    "red": ((220, 30, 30), ["red", "crimson", "scarlet", "cherry"]),
    "orange": ((245, 140, 20), ["orange", "tangerine", "amber", "pumpkin"]),
    "yellow": ((240, 220, 30), ["yellow", "golden", "lemon", "canary"]),
    "green": ((40, 170, 50), ["green", "emerald", "grass-green", "leafy green"]),
    "cyan": ((30, 200, 210), ["cyan", "turquoise", "aqua", "teal"]),
    "blue": ((35, 70, 220), ["blue", "cobalt", "azure", "royal blue"]),
    "purple": ((130, 40, 180), ["purple", "violet", "lilac", "plum"]),
    "pink": ((245, 120, 190), ["pink", "rose", "bubblegum", "magenta"]),
}

# size -> words (first = plain)
SIZES: dict[str, list[str]] = {
    "small": ["small", "little", "tiny", "mini"],
    "medium": ["medium", "mid-sized", "medium-sized", "regular"],
    "large": ["large", "big", "huge", "giant"],
}

# position of the main object -> phrases
POSITIONS: dict[str, list[str]] = {
    "center": ["in the center", "in the middle", "centered", "at the centre"],
    "left": ["on the left", "to the left", "at the left side", "left of frame"],
    "right": ["on the right", "to the right", "at the right side", "right of frame"],
    "top": ["at the top", "near the top", "in the upper part", "top of frame"],
    "bottom": ["at the bottom", "near the bottom", "in the lower part", "bottom of frame"],
}

# background -> (kind used by the renderer, phrases)
BACKGROUNDS: dict[str, list[str]] = {
    "white": ["white background", "plain white backdrop", "white backdrop", "light background"],
    "black": ["black background", "dark background", "black backdrop", "night-dark backdrop"],
    "gray": ["gray background", "grey background", "neutral gray backdrop", "gray backdrop"],
    "noise": ["textured background", "grainy background", "noisy texture", "speckled backdrop"],
    "gradient": ["gradient background", "soft gradient", "gradient backdrop", "fading background"],
}

# Filler a web alt-text carries (CC3M style): stock-photo tokens, vague nouns, the occasional irrelevant word.
STOCK_TOKENS = ["stock photo", "vector illustration", "royalty free image", "clip art", "icon", "image",
                "graphic", "isolated", "flat design", "free download", "illustration", "picture", "hd wallpaper"]
IRRELEVANT_WORDS = ["vintage", "modern", "concept", "minimal", "abstract", "simple", "cute", "art", "design",
                    "background", "template", "2024", "new", "best", "set", "symbol", "logo", "sticker"]

TASKS = ("shape", "color", "color_shape", "size", "background")


def classnames(task: str) -> list[str]:
    """Plain-English class names of a zero-shot task, in label order."""
    if task == "shape":
        return list(SHAPES)
    if task == "color":
        return list(COLORS)
    if task == "color_shape":
        return [f"{c} {s}" for c in COLORS for s in SHAPES]
    if task == "size":
        return list(SIZES)
    if task == "background":
        return list(BACKGROUNDS)
    raise ValueError(f"unknown zero-shot task {task!r} (known: {', '.join(TASKS)})")


# --- Additions for the ShapeWorld alt-text generator (extensions only; the names above are unchanged) -------

# Nouns a caption uses when it leaves the shape out ("a red object on a black background").
GENERIC_NOUNS = ["shape", "object", "figure", "item", "element"]

# Words that introduce the second (smaller) object. The generator uses them nowhere else, so a parser can split
# a caption into "main object" and "second object" parts at the first one.
SECOND_CONNECTORS = ["next to", "beside", "alongside", "together with", "and"]

# Background idioms of web alt-text that are whole phrases, not "<colour> background" noun phrases.
# "isolated on white" states a white background; it is only ever written for white backgrounds.
BACKGROUND_IDIOMS: dict[str, list[str]] = {"white": ["isolated on white", "on white"]}

# Stock-site suffixes in the "| royalty free" style.
STOCK_SUFFIXES = ["| royalty free", "- stock image", "| free vector", "- stock illustration", "| shutterstock",
                  "png", "jpg", "clipart png"]
