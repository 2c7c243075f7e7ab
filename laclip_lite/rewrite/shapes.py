"""The world-aware stand-in for an LLM rewriter, for ShapeWorld captions. **It is not a language model.**

LaCLIP rewrites each caption with an LLM (LLaMA-7B, prompted with meta input->output pairs). There are no LLM
weights in this kit, yet the embedded demo needs LLM-like rewrites of its captions, so this module imitates
what a good LLM does with a ShapeWorld caption, by rule:

1. **It sees only the caption text** - never the image, the labels or the scene dict - exactly like an LLM.
2. **It reads the facts the caption states** (`parse_caption`): shapes, colours, sizes, the position, the
   background, and any second object, using the synonyms of `laclip_lite.data.vocab` (plus a few more words
   an LLM would know, `EXTRA_*` below). Stock-photo filler ("vector illustration", "free download") is not a fact.
3. **It keeps exactly those facts.** A rewrite never adds a shape/colour/size/position/background the caption
   did not state and never drops one. It may add neutral scene context ("on a poster", "in a children's
   book") the way an LLM embellishes. Every candidate is re-parsed with the same parser and kept only when its
   facts equal the caption's (`stats["rejected"]` counts discarded candidates; nothing is silent).
4. **It varies the wording widely**: synonyms, adjective order, articles, clause order, active/passive,
   descriptive framing, in four styles that mirror the four meta-pair sources:
   `chatgpt` (vivid, one sentence, under 30 words), `bard` (florid, can run long), `mscoco` (plain COCO
   caption), `human` (a terse human edit).
5. Deterministic for (caption, source, seed); thousands of rewrites per second on one core.

What it cannot do, and an LLM can: rewrite anything outside the ShapeWorld lexicon. A caption with no object
word at all is returned unchanged and counted (`no_object_found`). Its phrasing avoids the zero-shot prompt templates
("a photo of a {}.", the held-out set): rewrites that read like the evaluation prompts would flatter LaCLIP.
"""
from __future__ import annotations

import contextvars
import functools
import random
import re
from bisect import bisect
from collections import Counter
from dataclasses import dataclass

from laclip_lite.config import ConfigError
from laclip_lite.constants import SOURCES
from laclip_lite.data import vocab
from laclip_lite.rewrite.base import Rewriter, seed_for
from laclip_lite.rewrite.meta import canonical_sources

# --- the lexicon: the world's synonyms, plus words an LLM would also use (the parser knows both) -----------
EXTRA_SHAPES = {"circle": ["circular shape", "round form"], "square": ["square shape"],
                "triangle": ["three-sided shape"], "star": ["pointed star"], "heart": ["heart symbol"],
                "cross": ["cross shape", "plus symbol"]}
EXTRA_COLORS = {"red": ["ruby", "fire-engine red"], "orange": ["marigold", "burnt orange"],
                "yellow": ["sunflower yellow", "butter-yellow"], "green": ["jade", "kelly green"],
                "cyan": ["aquamarine"], "blue": ["sapphire", "cornflower blue"], "purple": ["amethyst", "deep purple"],
                "pink": ["hot pink", "blush pink"]}
EXTRA_SIZES = {"small": ["teeny", "pint-sized"], "medium": ["average-sized", "moderately sized"],
               "large": ["oversized", "enormous", "massive"]}
EXTRA_POSITIONS = {
    "center": ["in the centre", "at the center", "dead center", "in the very middle", "center of frame"],
    "left": ["on the left-hand side", "toward the left", "off to the left", "along the left edge", "at left"],
    "right": ["on the right-hand side", "toward the right", "off to the right", "along the right edge", "at right"],
    "top": ["toward the top", "along the top edge", "high in the frame", "at top"],
    "bottom": ["toward the bottom", "along the bottom edge", "low in the frame", "at bottom"],
}
# Backgrounds: the world's phrases, plus "<adjective> <noun>" combinations, plus the terse "on white".
BG_ADJECTIVES = {"white": ["white", "plain white", "clean white", "snow-white", "light"],
                 "black": ["black", "dark", "jet-black", "inky black", "night-dark"],
                 "gray": ["gray", "grey", "neutral gray", "soft grey", "ash-gray"],
                 "noise": ["textured", "grainy", "noisy", "speckled", "mottled"],
                 "gradient": ["gradient", "fading", "softly fading", "soft gradient"]}
BG_NOUNS = ["background", "backdrop", "canvas", "surface", "field"]
BG_TERSE = {"white": "on white", "black": "on black", "gray": "on grey"}
GENERIC_NOUNS = list(vocab.GENERIC_NOUNS)   # "a red object": an object whose shape is not stated


def _synonyms(base: dict, extra: dict) -> dict[str, list[str]]:
    return {k: list(dict.fromkeys(list(v) + extra.get(k, []))) for k, v in base.items()}


SHAPE_WORDS = _synonyms(vocab.SHAPES, EXTRA_SHAPES)
COLOR_WORDS = _synonyms({c: words for c, (_, words) in vocab.COLORS.items()}, EXTRA_COLORS)
SIZE_WORDS = _synonyms(vocab.SIZES, EXTRA_SIZES)
POSITION_WORDS = _synonyms(vocab.POSITIONS, EXTRA_POSITIONS)
BACKGROUND_WORDS = {bg: list(dict.fromkeys(vocab.BACKGROUNDS[bg] + [f"{a} {n}" for a in adjs for n in BG_NOUNS]
                                           + vocab.BACKGROUND_IDIOMS.get(bg, [])
                                           + ([BG_TERSE[bg]] if bg in BG_TERSE else [])))
                    for bg, adjs in BG_ADJECTIVES.items()}


def _build_pattern() -> tuple[re.Pattern, dict[str, tuple[str, str]]]:
    """One regex over every phrase (longest first) -> (kind, value). Shapes may be plural.

    Generic nouns ("object", "figure") are shape mentions with value None: an object whose shape is not stated.
    """
    table: dict[str, tuple[str, str | None]] = {noun: ("shape", None) for noun in GENERIC_NOUNS}
    for kind, words in (("shape", SHAPE_WORDS), ("color", COLOR_WORDS), ("size", SIZE_WORDS),
                        ("position", POSITION_WORDS), ("background", BACKGROUND_WORDS)):
        for value, phrases in words.items():
            for phrase in phrases:
                table[phrase] = (kind, value)
    alts = []
    for phrase in sorted(table, key=len, reverse=True):
        body = r"\s+".join(re.escape(w) for w in phrase.split())
        alts.append(body + (r"(?:e?s)?" if table[phrase][0] == "shape" else ""))
    pattern = re.compile(r"(?<![\w-])(" + "|".join(alts) + r")(?![\w-])", re.IGNORECASE)
    return pattern, table


_PATTERN, _TABLE = _build_pattern()
# Words that join two objects ("a red circle next to a blue star"): an attribute stays on its side of them.
CONNECTORS = list(vocab.SECOND_CONNECTORS) + ["with", "plus", "accompanied by", "paired with"]
_CONNECTOR = re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(c) for c in sorted(CONNECTORS, key=len, reverse=True))
                        + r")(?![\w-])", re.IGNORECASE)


@dataclass(frozen=True)
class ShapeObject:
    shape: str | None   # shape class name ("circle"); None for a generic noun ("a red object")
    color: str | None   # colour class name ("red") or None when not stated
    size: str | None    # size class name ("small") or None when not stated


@dataclass(frozen=True)
class ShapeFacts:
    objects: tuple[ShapeObject, ...]  # in the order the caption mentions them (the main object first)
    positions: tuple[str, ...]        # position values stated, in order (normally zero or one)
    backgrounds: tuple[str, ...]      # background values stated, in order (normally zero or one)

    def attributes(self) -> set[str]:
        """Stated facts as strings ("obj1.color=red", "position=left"): what the quality report checks survive."""
        out = {f"position={p}" for p in self.positions} | {f"background={b}" for b in self.backgrounds}
        for i, o in enumerate(self.objects, 1):
            out |= {f"obj{i}.{k}={v}" for k, v in (("shape", o.shape), ("color", o.color), ("size", o.size)) if v}
        return out


def _phrase_key(text: str) -> str:
    """The lexicon entry a matched phrase is ("Circles" -> "circle")."""
    key = " ".join(text.lower().split())
    if key in _TABLE:
        return key
    for suffix in ("es", "s"):  # plural shape
        if key.endswith(suffix) and key[: -len(suffix)] in _TABLE:
            return key[: -len(suffix)]
    raise KeyError(text)


def _lookup(text: str, table: dict | None = None) -> tuple[str, str]:
    return (table or _TABLE)[_phrase_key(text)]


def parse_caption(text: str, table: dict | None = None) -> ShapeFacts:
    """Read the facts a caption states, from its text alone.

    Objects are anchored on shape words and generic nouns ("object", "figure"). A colour or size word
    belongs to the nearest anchor on the same side of any connector ("next to", "and", "with"; ties go to the
    following anchor, as adjectives precede nouns in English), or to the nearest anchor at all if its side
    has none.
    A repeated shape word with no conflicting attribute is the same object ("red circle clipart, circle icon"
    is one red circle). Colour or size words with no anchor are not an object ("golden retriever on green
    grass" states no ShapeWorld object at all).
    `table` (phrase -> (kind, value)) reads the words with another lexicon (the partial-knowledge stand-in's).
    """
    mentions = [(m.start(), m.end(), *_lookup(m.group(0), table)) for m in _PATTERN.finditer(text)]
    spans = [(m[0], m[1]) for m in mentions]
    cuts = [c.start() for c in _CONNECTOR.finditer(text)     # sorted; bisect -> which side of the connectors
            if not any(a <= c.start() < b for a, b in spans)]  # "plus" in "plus sign" joins nothing
    shapes = [m for m in mentions if m[2] == "shape"]
    attrs: list[dict] = [{"shape": s[3], "color": None, "size": None} for s in shapes]
    for start, end, kind, value in mentions:
        if kind not in ("color", "size") or not shapes:
            continue
        best, best_gap = None, None
        same_side = [i for i, sh in enumerate(shapes) if bisect(cuts, sh[0]) == bisect(cuts, start)]
        for i in same_side or range(len(shapes)):
            s_start, s_end = shapes[i][0], shapes[i][1]
            gap = s_start - end if s_start >= end else start - s_end + 0.5  # +0.5: ties go to the next shape
            if best_gap is None or gap < best_gap:
                best, best_gap = i, gap
        if attrs[best][kind] is None:
            attrs[best][kind] = value
    objects: list[dict] = []
    for a in attrs:
        same = next((o for o in objects if a["shape"] is not None and o["shape"] == a["shape"]
                     and all(o[k] is None or a[k] is None or o[k] == a[k] for k in ("color", "size"))), None)
        if same is None:
            objects.append(dict(a))
        else:
            for k in ("color", "size"):
                same[k] = same[k] or a[k]
    positions = tuple(dict.fromkeys(m[3] for m in mentions if m[2] == "position"))
    backgrounds = tuple(dict.fromkeys(m[3] for m in mentions if m[2] == "background"))
    return ShapeFacts(tuple(ShapeObject(**o) for o in objects), positions, backgrounds)


# --- wording ------------------------------------------------------------------------------------------------
VIVID = ["bold", "crisp", "bright", "vibrant", "glossy", "solid", "neat", "cheerful", "striking", "flat", "punchy",
         "clean-edged", "playful", "sharp"]
FLORID = ["gleaming", "luminous", "radiant", "gentle", "proud", "solitary", "quiet", "graceful", "shimmering",
          "serene", "dreamy", "stately", "wistful", "glowing", "tranquil", "noble"]
CONTEXT = {
    "chatgpt": ["on a poster", "in a children's book", "on a flash card", "in a minimalist print",
                "on a classroom worksheet", "as a clean web graphic", "on a greeting card", "as an app button",
                "on a game board", "in a coloring book", "on a wall decal", "on a magnet"],
    "bard": ["like a single note on an empty page", "as though waiting for a story to begin",
             "a quiet study in form and colour", "as if set down by a careful hand",
             "like a page torn from a picture book", "a calm moment of pure geometry",
             "like a lantern on a still night", "as patient as a held breath", "like a word spoken softly",
             "as if the whole frame had gathered around it", "like a keepsake left on a windowsill",
             "a quiet poem written in paint", "like the first line of a fairy tale", "as calm as a pond at dawn",
             "as though it had always belonged there", "like a secret shared between friends"],
    "mscoco": ["in a graphic", "displayed on a screen", "printed on paper", "on a sign", "on a card",
               "on a computer screen"],
    "human": [],
}
PREPOSITIONS = ("in ", "on ", "at ", "to ", "near ", "toward", "along ", "off ", "high ", "low ")


class _Words:
    """Phrase choices for one rewrite; `plain` is the chance of the world's first (class-name) word.

    `allowed` (leak-free mode) is the set of zero-shot class names the rewrite may write; phrases writing any
    other class name are not offered (None: every phrase may be used).
    """

    def __init__(self, rng: random.Random, plain: float, allowed: frozenset[str] | None = None,
                 phrases: frozenset[str] | None = None):
        self.rng, self.plain, self.allowed = rng, plain, allowed
        self.phrases = phrases          # only these lexicon phrases may be written (None: any)

    def pick(self, options: list[str]) -> str:
        if self.allowed is not None:
            options = [o for o in options if _phrase_class_words(o) <= self.allowed] or options
        if self.phrases is not None:
            options = [o for o in options if o in self.phrases] or options
        return options[0] if self.rng.random() < self.plain else self.rng.choice(options)

    def noun(self, o: ShapeObject, article: str | None = "a", extra_adjs: list[str] | None = None) -> str:
        shape = self.pick(SHAPE_WORDS[o.shape]) if o.shape else self.pick(GENERIC_NOUNS)
        size = self.pick(SIZE_WORDS[o.size]) if o.size else None
        color = self.pick(COLOR_WORDS[o.color]) if o.color else None
        adj = self.rng.choice(extra_adjs) if extra_adjs and self.rng.random() < 0.45 else None
        r = self.rng.random()
        if color and r < 0.15:
            words = [w for w in (adj, size, shape) if w] + ["in", color]        # "a tiny star in crimson"
        elif color and size and r < 0.3:
            words = [w for w in (size, adj) if w] + [f"{color}", shape]          # "a tiny bold crimson star"
        else:
            words = [w for w in (adj, size, color, shape) if w]                 # "a bold tiny crimson star"
        phrase = " ".join(words)
        return f"{_article(phrase, article)}{phrase}" if article else phrase

    def position(self, value: str, leading: bool = False) -> str:
        options = POSITION_WORDS[value]
        if leading:
            lead = [p for p in options if p.startswith(PREPOSITIONS)]
            if self.phrases is not None and not any(p in self.phrases for p in lead):
                lead = []                    # the caption's own words come first (structure-only control)
            options = lead or options
        return self.pick(options)

    def background(self, value: str, article: str = "a") -> str:
        options = [b for b in BACKGROUND_WORDS[value] if not b.startswith("on ")]
        if self.phrases is not None and not any(b in self.phrases for b in options):
            own = [b for b in BACKGROUND_WORDS[value] if b in self.phrases]
            if own:                          # the caption wrote "on white": copied as it is
                return own[0]
        phrase = self.pick(options)
        art = "the " if article == "the" else _article(phrase, "a")
        return art + phrase


def _article(phrase: str, article: str) -> str:
    if article == "a":
        return "an " if phrase[0].lower() in "aeiou" else "a "
    return f"{article} "


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _others(w: _Words, facts: ShapeFacts, adjs: list[str] | None = None) -> str:
    return " and ".join(w.noun(o, "a", adjs) for o in facts.objects[1:])


# --- the four styles --------------------------------------------------------------------------------------
def _chatgpt(facts: ShapeFacts, r: random.Random, allowed: frozenset[str] | None = None) -> str:
    """Vivid, one sentence, under 30 words (the chatbot meta-pair style)."""
    w = _Words(r, plain=0.3, allowed=allowed, phrases=_PHRASES.get())
    main = facts.objects[0]
    P = w.position(facts.positions[0]) if facts.positions else ""
    B = w.background(facts.backgrounds[0]) if facts.backgrounds else ""
    S = _others(w, facts, VIVID)
    verbs = ["sits", "pops", "stands out", "shines", "rests", "glows", "is perched"] if P or B else \
        ["pops", "stands out", "shines", "glows"]
    verb = r.choice(verbs)
    on_b = f"{r.choice(['against', 'on', 'over', 'set against'])} {B}" if B else ""
    a = w.noun(main, "a", VIVID)
    frames = [lambda: _join(_cap(a), verb, P, on_b, f"{r.choice(['next to', 'beside', 'alongside'])} {S}" if S else "")]
    if P:
        frames.append(lambda: _join(f"{_cap(w.position(facts.positions[0], leading=True))},", a, verb, on_b,
                                    f"with {S} close by" if S else ""))
    if B:
        frames.append(lambda: _join(_cap(B), r.choice(["makes", "lets", "helps"]), a, P,
                                    f"and {S}" if S else "", "pop"))
        frames.append(lambda: _join(_cap(B), "is the stage for", a, P, f"and {S}" if S else ""))
    frames.append(lambda: _join(r.choice(["Simple and striking:", "Clean and bold:", "Eye-catching:"]),
                                a, f"and {S}" if S else "", P, on_b))
    text = r.choice(frames)()
    if r.random() < 0.5:
        text = f"{text}, {r.choice(CONTEXT['chatgpt'])}"
    if len(text.split()) >= 29:
        text = _join(_cap(a), P, on_b, f"and {S}" if S else "")
    return text + "."


def _bard(facts: ShapeFacts, r: random.Random, allowed: frozenset[str] | None = None) -> str:
    """Florid and descriptive; may run past 30 words (the second chatbot's style)."""
    w = _Words(r, plain=0.2, allowed=allowed, phrases=_PHRASES.get())
    main = facts.objects[0]
    P = w.position(facts.positions[0]) if facts.positions else ""
    B = w.background(facts.backgrounds[0], r.choice(["a", "the"])) if facts.backgrounds else ""
    S = _others(w, facts, FLORID)
    a = w.noun(main, "a", FLORID)
    verb = r.choice(["rests", "lingers", "takes its place", "glows softly", "stands poised", "waits quietly",
                     "dwells", "reposes", "shines serenely", "holds its ground"])
    simile = r.choice(CONTEXT["bard"])
    company = f"{r.choice(['keeping company with', 'sharing the scene with', 'accompanied by'])} {S}" if S else ""
    verb_ing = r.choice(["resting", "lingering", "taking its place", "glowing softly", "standing poised",
                         "waiting quietly", "dwelling", "shining serenely", "holding its ground"])
    frames = [lambda: _join(f"Behold {a},", r.choice(FLORID), "and unhurried,", verb_ing, P,
                            f"upon {B}" if B else "", company) + f"; {simile}"]
    if B:
        frames.append(lambda: _join(f"Against {B},", a, verb, P, company) + f", {simile}")
        frames.append(lambda: _join(_cap(B) + ",", "calm and unbroken, is graced by", a, P, company) + f", {simile}")
    if P:
        frames.append(lambda: _join(f"There, {w.position(facts.positions[0], leading=True)},", a, verb,
                                    "in quiet splendour", f"framed by {B}" if B else "", company)
                      + f". It feels {simile}")
    frames.append(lambda: _join(r.choice(["In a hush of simple geometry,", "With understated charm,",
                                          "Softly and without fuss,", "As if by quiet magic,",
                                          "In a moment of stillness,", "With gentle grace,"]), a,
                                r.choice(["appears", "emerges", "comes into view", "makes its entrance"]), P,
                                f"over {B}" if B else "", company) + f", {simile}")
    return r.choice(frames)() + "."


def _mscoco(facts: ShapeFacts, r: random.Random, allowed: frozenset[str] | None = None) -> str:
    """Plain, like a human-written COCO caption: mostly class-name words, simple clauses."""
    w = _Words(r, plain=0.7, allowed=allowed, phrases=_PHRASES.get())
    main = facts.objects[0]
    P = w.position(facts.positions[0]) if facts.positions else ""
    B = w.background(facts.backgrounds[0]) if facts.backgrounds else ""
    S = _others(w, facts)
    a = w.noun(main, "a")
    and_s = f"and {S}" if S else ""
    frames = [lambda: _join(a, P, and_s, f"on {B}" if B else ""),
              lambda: _join(a, and_s, "sitting" if P or B else "by itself", P, f"against {B}" if B else ""),
              lambda: _join("A graphic with", a, P, and_s, f"and {B}" if B else "")]
    if P or B:
        frames.append(lambda: _join(_cap(a), and_s, "shown", P, f"against {B}" if B else ""))
    if B:
        frames.append(lambda: _join(_cap(B), "with", a, P, and_s))
    if S:
        frames.append(lambda: _join(_cap(a), P, "with", S, "nearby", f"on {B}" if B else ""))
    text = r.choice(frames)()
    if r.random() < 0.25:
        text = f"{text} {r.choice(CONTEXT['mscoco'])}"
    text = _cap(text) if r.random() < 0.7 else text
    return text + ("." if r.random() < 0.6 else "")


def _human(facts: ShapeFacts, r: random.Random, allowed: frozenset[str] | None = None) -> str:
    """A terse human edit: the facts, few words, little grammar."""
    w = _Words(r, plain=0.5, allowed=allowed, phrases=_PHRASES.get())
    main = facts.objects[0]
    P = w.position(facts.positions[0]) if facts.positions else ""
    bg = facts.backgrounds[0] if facts.backgrounds else None
    if bg in BG_TERSE and r.random() < 0.35 and (w.phrases is None or BG_TERSE[bg] in w.phrases):
        B = BG_TERSE[bg]
    elif bg:
        B = w.background(bg).split(" ", 1)[1]  # no article
    else:
        B = ""
    S = _others(w, facts)
    bare = w.noun(main, None)
    frames = [lambda: _join(_cap(bare) + ("," if P or B else ""), P + ("," if P and B else ""), B,
                            f"plus {S}" if S else ""),
              lambda: _join(_cap(w.noun(main, "a")), P, f"with {S}" if S else "",
                            B if B.startswith("on ") else (f"on {B}" if B else "")),
              lambda: _join(_cap(bare) + (";" if B and not P else ""), P + (";" if P and B else ""), B,
                            f"and {S}" if S else "")]
    return r.choice(frames)().rstrip(",;") + ("." if r.random() < 0.5 else "")


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _plain(facts: ShapeFacts) -> str:
    """The safe last resort: class-name words only (always parses back to the same facts)."""
    def noun(o: ShapeObject) -> str:
        return " ".join(x for x in (o.size, o.color, o.shape or GENERIC_NOUNS[0]) if x)
    text = " and ".join(f"a {noun(o)}" for o in facts.objects)
    if facts.positions:
        text += " " + POSITION_WORDS[facts.positions[0]][0]
    if facts.backgrounds:
        text += " on a " + BACKGROUND_WORDS[facts.backgrounds[0]][0]
    return _cap(text) + "."


_STYLE_FNS = {"chatgpt": _chatgpt, "bard": _bard, "mscoco": _mscoco, "human": _human}
# The lexicon phrases the rewrite being written may use (structure-only / partial-knowledge controls; None: all).
_PHRASES: contextvars.ContextVar[frozenset[str] | None] = contextvars.ContextVar("shapes_phrases", default=None)


def rewrite_shape_caption(caption: str, style: str, seed: int = 0, max_tries: int = 8,
                          stats: Counter | None = None, leak_free: bool = False,
                          error_rate: float = 0.0, mode: str = "full") -> tuple[str, str | None]:
    """One rewrite of one caption in one style -> (text, fallback reason or None).

    Reasons: "no_object_found" (no shape word or generic noun: the original is returned),
    "plain" (every styled candidate changed a fact; the class-name sentence is returned; in leak-free mode the
    original caption, as the class-name sentence could write a class name the caption did not).
    `stats["rejected"]` (when given) counts styled candidates discarded because their facts differed;
    `stats["errors:<kind>"]` counts the rewrites made unfaithful on purpose (`error_rate`).

    Two controls, both off by default (the default output does not depend on them):
    * `leak_free`: never write a zero-shot class name (`CLASS_WORDS`) that the caption itself did not write.
    * `error_rate`: with this probability, the rewrite states the facts of `corrupt(facts)` instead: one
      stated attribute dropped, swapped for a wrong value, or one the caption did not state added (its value
      drawn at random: like an LLM, the stand-in never sees the image), a third of the time each.

    `mode` (`STANDIN_MODES`) takes the stand-in apart: "full" (the stand-in), "denoise" (the caption with its
    filler removed, nothing rewritten), "structure" (new sentence frames, the caption's own attribute words
    copied verbatim), "random-lexicon" (the same frames, every attribute written with the synonyms of a random
    class), "partial" (knows the class name and half the other synonyms of each class; reads the rest as a
    fixed plausible wrong class, so its errors are systematic, and writes only words it knows).
    """
    if mode not in STANDIN_MODES:
        raise ConfigError(f"rewrite.standin must be one of {', '.join(STANDIN_MODES)}, got {mode!r}")
    facts = parse_caption(caption)
    if not facts.objects:
        return caption, "no_object_found"
    if mode == "denoise":
        return denoise(caption), None
    if mode in ("structure", "partial", "random-lexicon"):
        return _control_rewrite(caption, facts, style, seed, mode, max_tries, stats)
    rng = random.Random(seed_for(seed, style, caption))
    allowed = frozenset(class_words(caption)) if leak_free else None
    target, kind = facts, None
    if error_rate > 0:
        err_rng = random.Random(seed_for(seed, style, caption, "error"))
        if err_rng.random() < error_rate:
            target, kind = corrupt(facts, err_rng)
    text, why = _styled(target, style, rng, allowed, max_tries, stats)
    if why and allowed is not None and not class_words(text) <= allowed:
        text = caption                      # the class-name sentence would leak: keep the caption itself
    if kind and stats is not None and parse_caption(text) != facts:
        stats[f"errors:{kind}"] += 1
    return text, why


def _styled(target: ShapeFacts, style: str, rng: random.Random, allowed: frozenset[str] | None, max_tries: int,
            stats: Counter | None) -> tuple[str, str | None]:
    """A rewrite in `style` stating exactly `target` (and no class name outside `allowed`), or the plain one."""
    fn = _STYLE_FNS[style]
    for _ in range(max_tries):
        text = fn(target, rng, allowed)
        if parse_caption(text) == target and (allowed is None or class_words(text) <= allowed):
            return text, None
        if stats is not None:
            stats["rejected"] += 1
    return _plain(target), "plain"


# --- the controls: class-name leak and unfaithful rewrites --------------------------------------------------
# The zero-shot class names of the evaluated tasks (shape, colour; colour+shape combines them): the plain first
# word of each attribute in `vocab`. A text "writes" one when it appears as a whole word ("grass-green" writes
# green, "starburst" does not write star); plurals count ("circles").
CLASS_WORDS = tuple(vocab.SHAPES) + tuple(vocab.COLORS)
_CLASS_WORD = re.compile(r"(?<![a-z])(" + "|".join(CLASS_WORDS) + r")(?:e?s)?(?![a-z])", re.IGNORECASE)


def class_words(text: str) -> set[str]:
    """The zero-shot class names (`CLASS_WORDS`) a text writes."""
    return {m.group(1).lower() for m in _CLASS_WORD.finditer(text)}


@functools.lru_cache(maxsize=4096)
def _phrase_class_words(phrase: str) -> frozenset[str]:
    return frozenset(class_words(phrase))


def class_name_leak(captions: list[str], rewrites: list[str] | None = None) -> dict[str, float]:
    """How often texts write zero-shot class names (%): `texts_with_class_name` (at least one),
    `class_names_per_text` (distinct, mean); with `rewrites` (aligned with `captions`) the same for the
    rewrites, and `unlicensed` - rewrites writing a class name their caption did not write."""
    def rates(texts: list[str]) -> dict[str, float]:
        words = [class_words(t) for t in texts]
        n = max(1, len(texts))
        return {"texts_with_class_name": 100.0 * sum(bool(w) for w in words) / n,
                "class_names_per_text": sum(len(w) for w in words) / n}
    out = rates(captions)
    if rewrites is not None:
        if len(rewrites) != len(captions):
            raise ValueError(f"class_name_leak: {len(rewrites)} rewrites for {len(captions)} captions")
        out = {f"caption_{k}": v for k, v in out.items()}
        out.update({f"rewrite_{k}": v for k, v in rates(rewrites).items()})
        out["unlicensed"] = 100.0 * sum(bool(class_words(r) - class_words(c))
                                        for c, r in zip(captions, rewrites)) / max(1, len(captions))
    return out


ERROR_KINDS = ("drop", "swap", "add")
_VALUES = {"shape": list(vocab.SHAPES), "color": list(vocab.COLORS), "size": list(vocab.SIZES),
           "position": list(vocab.POSITIONS), "background": list(vocab.BACKGROUNDS)}


def corrupt(facts: ShapeFacts, rng: random.Random) -> tuple[ShapeFacts, str]:
    """The facts with one error, as an unfaithful LLM rewrite would state them -> (facts, kind).

    `drop`: one stated attribute left out (a shape becomes a generic noun); `swap`: one stated attribute given
    another value; `add`: one attribute the caption did not state given a random value. A kind with nothing to
    act on (e.g. `add` when every attribute is stated) gives way to the next one in `ERROR_KINDS`, cyclically.
    """
    objects = [dict(vars(o)) for o in facts.objects]
    scene = {"position": list(facts.positions), "background": list(facts.backgrounds)}
    stated = [(i, k) for i, o in enumerate(objects) for k in ("shape", "color", "size") if o[k]] + \
             [(None, k) for k in scene if scene[k]]
    unstated = [(i, k) for i, o in enumerate(objects) for k in ("shape", "color", "size") if not o[k]] + \
               [(None, k) for k in scene if not scene[k]]
    start = rng.randrange(len(ERROR_KINDS))
    for kind in ERROR_KINDS[start:] + ERROR_KINDS[:start]:
        pool = unstated if kind == "add" else stated
        if not pool:
            continue
        i, key = rng.choice(pool)
        current = objects[i][key] if i is not None else (scene[key][0] if scene[key] else None)
        if kind == "drop":
            value = None
        elif kind == "swap":
            value = rng.choice([v for v in _VALUES[key] if v != current])
        else:
            value = rng.choice(_VALUES[key])
        if i is None:
            scene[key] = [value] if value else []
        else:
            objects[i][key] = value
        return ShapeFacts(tuple(ShapeObject(**o) for o in objects), tuple(scene["position"]),
                          tuple(scene["background"])), kind
    return facts, "none"


# --- the controls that take the stand-in apart (rewrite.standin) -------------------------------------------
STANDIN_MODES = ("full", "denoise", "structure", "random-lexicon", "partial")


def denoise(caption: str) -> str:
    """The caption with its filler removed: its own fact words and the connectors between them, in order."""
    pieces = sorted([(m.start(), m.group(0)) for m in _PATTERN.finditer(caption)]
                    + [(m.start(), m.group(0)) for m in _CONNECTOR.finditer(caption)],
                    key=lambda p: (p[0], -len(p[1])))          # "plus sign" (a shape) before "plus" (a connector)
    kept, end = [], -1
    for start, text in pieces:
        if start >= end:                 # a connector inside a phrase ("plus sign") is part of that phrase
            kept.append(text)
            end = start + len(text)
    return _cap(" ".join(kept)) + "." if kept else caption


def _known(phrase: str, value: str, first: str) -> bool:
    """The partial-knowledge stand-in knows a class's name and about half of its other synonyms (fixed)."""
    return phrase == first or seed_for("partial-knows", value, phrase) % 2 == 0


@functools.lru_cache(maxsize=1)
def partial_lexicon() -> tuple[dict, frozenset[str]]:
    """(table, known phrases): how the partial-knowledge stand-in reads every lexicon phrase. A phrase it does
    not know is read, always, as one fixed other class of the same kind (a plausible wrong class)."""
    kinds = {"shape": SHAPE_WORDS, "color": COLOR_WORDS, "size": SIZE_WORDS, "position": POSITION_WORDS,
             "background": BACKGROUND_WORDS}
    table, known = dict(_TABLE), set(GENERIC_NOUNS)
    for kind, words in kinds.items():
        for value, phrases in words.items():
            others = [v for v in words if v != value]
            for phrase in phrases:
                if _TABLE.get(phrase) != (kind, value):
                    continue                 # a phrase of two classes keeps its table entry
                if _known(phrase, value, phrases[0]):
                    known.add(phrase)
                else:
                    table[phrase] = (kind, others[seed_for("partial-wrong", phrase) % len(others)])
    return table, frozenset(known)


def _caption_phrases(caption: str) -> frozenset[str]:
    return frozenset(_phrase_key(m.group(0)) for m in _PATTERN.finditer(caption))


def _random_classes(facts: ShapeFacts, rng: random.Random) -> ShapeFacts:
    """Every stated attribute given a class drawn at random (the random-lexicon control's target)."""
    def draw(key: str, v):
        return rng.choice(_VALUES[key]) if v else v
    objects = tuple(ShapeObject(draw("shape", o.shape), draw("color", o.color), draw("size", o.size))
                    for o in facts.objects)
    return ShapeFacts(objects, tuple(draw("position", p) for p in facts.positions),
                      tuple(draw("background", b) for b in facts.backgrounds))


def _control_rewrite(caption: str, facts: ShapeFacts, style: str, seed: int, mode: str, max_tries: int,
                     stats: Counter | None) -> tuple[str, str | None]:
    rng = random.Random(seed_for(seed, style, caption, mode))
    phrases = None
    if mode == "structure":
        target, phrases = facts, _caption_phrases(caption)
    elif mode == "partial":
        table, phrases = partial_lexicon()
        target = parse_caption(caption, table)
    else:
        target = _random_classes(facts, rng)
    token = _PHRASES.set(phrases)
    try:
        return _styled(target, style, rng, None, max_tries, stats)
    finally:
        _PHRASES.reset(token)


SYNONYM_TASKS = ("shape", "color", "color_shape")   # the tasks `synonym_classnames` can name


def synonym_classnames(task: str) -> list[str]:
    """Zero-shot class names written with a synonym instead of the class name (the last of the world's words
    for each class that writes no class name: circle -> "dot", red -> "cherry"; heart has none, so "valentine
    heart"), in label order: the prompts then hold no class-name token,
    so a gain that rides on rewrites writing class names (the leak) shows up as a smaller gain here."""
    def pick(words: list[str]) -> str:
        return next((w for w in reversed(words) if not class_words(w)), words[-1])
    shapes = {k: pick(v) for k, v in vocab.SHAPES.items()}
    colors = {k: pick(words) for k, (_, words) in vocab.COLORS.items()}
    if task == "shape":
        return list(shapes.values())
    if task == "color":
        return list(colors.values())
    if task == "color_shape":
        return [f"{c} {s}" for c in colors.values() for s in shapes.values()]
    raise ValueError(f"synonym_classnames: no synonyms for task {task!r} ({', '.join(SYNONYM_TASKS)})")


def shape_styles(sources: list[str]) -> list[str]:
    """Source specs -> the stand-in's styles; it imitates the four packaged sources and reads no pair files."""

    names = canonical_sources(sources)
    custom = [s for s in sources if "=" in s]
    if custom:
        raise ConfigError(f"the shapes stand-in imitates the styles {', '.join(SOURCES)} and reads no meta-pair "
                          f"files ({', '.join(custom)}): use rewriter=llm for your own pairs")
    return names


class ShapeWorldRewriter(Rewriter):
    """The LLM stand-in behind `rewriter="shapes"`: one variant per meta-pair source style."""

    name = "shapes"

    def __init__(self, sources: list[str] | None = None, leak_free: bool = False, error_rate: float = 0.0,
                 mode: str = "full"):
        if not 0.0 <= error_rate <= 1.0:
            raise ConfigError(f"rewrite.error_rate must be in [0, 1], got {error_rate}")
        self.variants = shape_styles(sources or list(SOURCES))
        if mode not in STANDIN_MODES:
            raise ConfigError(f"rewrite.standin must be one of {', '.join(STANDIN_MODES)}, got {mode!r}")
        self.leak_free, self.error_rate = leak_free, error_rate   # the controls (see rewrite_shape_caption)
        self.mode = mode
        self.stats: Counter = Counter()   # "rejected": styled candidates discarded because a fact changed

    def rewrite_variant(self, captions: list[str], variant: str, seed: int) -> tuple[list[str], Counter]:
        out, reasons = [], Counter()
        for c in captions:
            text, why = rewrite_shape_caption(c, variant, seed, stats=self.stats, leak_free=self.leak_free,
                                              error_rate=self.error_rate, mode=self.mode)
            out.append(text)
            if why:
                reasons[why] += 1
        return out, reasons
