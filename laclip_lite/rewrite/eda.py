"""EDA: Easy Data Augmentation (Wei & Zou, 2019), the rule-based baseline LaCLIP compares against.

Four word-level operations, each applied alone to make one augmented sentence:

* **synonym replacement** (SR): replace n non-stop-words with a synonym;
* **random insertion** (RI):    insert a synonym of a random word at a random position, n times;
* **random swap** (RS):         swap two random words, n times;
* **random deletion** (RD):     delete each word with probability p.

n = max(1, alpha x number of words), with the EDA paper's defaults alpha_sr = alpha_ri = alpha_rs = p_rd = 0.1.
`eda()` makes num_aug sentences exactly as the reference code does: int(num_aug / 4) + 1 per operation,
shuffled, the first num_aug kept.

Differences from the reference code, on purpose: it lower-cases the sentence and strips every character that
is not a letter; here **digits and punctuation are kept** (a caption's "4k", "2019" and commas are part of
it), a word's surrounding punctuation stays in place when the word is replaced, and synonyms come from a
built-in caption lexicon (the ShapeWorld vocabulary + common web-caption words) so it works offline.
WordNet is used as well when `nltk` and its WordNet data are installed (the reference code's source).
"""
from __future__ import annotations

import random
import re
from collections import Counter
from functools import lru_cache

from laclip_lite.data import vocab
from laclip_lite.rewrite.base import Rewriter, RewriteResult, seed_for

# The reference implementation's stop words (a subset of NLTK's English list): never replaced.
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself
it its itself they them their theirs themselves what which who whom this that these those am is are was were be
been being have has had having do does did doing a an the and but if or because as until while of at by for with
about against between into through during before after above below to from up down in out on off over under
again further then once here there when where why how all any both each few more most other some such no nor
not only own same so than too very s t can will just don should now
""".split())

# Synonym groups for caption vocabulary: every word of a group may replace every other.
CAPTION_SYNONYMS: list[list[str]] = [
    ["photo", "picture", "image", "photograph", "snapshot", "shot"],
    ["illustration", "drawing", "graphic", "artwork"],
    ["man", "guy", "gentleman", "male"], ["woman", "lady", "female"], ["boy", "lad", "kid"],
    ["girl", "lass", "kid"], ["child", "kid", "youngster"], ["children", "kids", "youngsters"],
    ["people", "persons", "folks", "crowd"], ["person", "individual", "someone"],
    ["dog", "puppy", "hound", "pup"], ["cat", "kitten", "kitty"], ["car", "automobile", "vehicle"],
    ["house", "home", "building"], ["road", "street", "avenue"], ["city", "town", "metropolis"],
    ["beautiful", "pretty", "lovely", "gorgeous"], ["happy", "joyful", "cheerful", "glad"],
    ["old", "aged", "vintage", "antique"], ["new", "modern", "fresh", "recent"],
    ["delicious", "tasty", "yummy", "appetizing"], ["food", "meal", "dish", "cuisine"],
    ["view", "scene", "vista", "panorama"], ["sunset", "sundown", "dusk"], ["sunrise", "dawn", "daybreak"],
    ["sea", "ocean"], ["beach", "shore", "seaside", "coast"], ["mountain", "peak", "summit"],
    ["forest", "woods", "woodland"], ["field", "meadow", "pasture"], ["river", "stream", "creek"],
    ["sitting", "seated", "resting"], ["walking", "strolling", "stepping"], ["running", "jogging", "sprinting"],
    ["holding", "carrying", "gripping"], ["looking", "gazing", "staring"], ["smiling", "grinning", "beaming"],
    ["playing", "frolicking"], ["standing", "upright", "posing"], ["eating", "dining", "feeding"],
    ["background", "backdrop", "setting"], ["isolated", "alone", "separate"], ["design", "layout", "pattern"],
    ["icon", "symbol", "emblem"], ["wooden", "wood", "timber"], ["table", "desk", "counter"],
    ["cup", "mug"], ["bowl", "dish"], ["shirt", "top", "tee"], ["dress", "gown", "frock"],
    ["night", "evening", "nighttime"], ["day", "daytime"], ["winter", "wintertime"], ["summer", "summertime"],
    ["travel", "trip", "journey", "tourism"], ["concept", "idea", "notion"], ["set", "collection", "group"],
    ["shape", "form", "figure"], ["simple", "plain", "basic"], ["cute", "adorable", "sweet"],
]


def _shapeworld_groups() -> list[list[str]]:
    """Synonym groups from the ShapeWorld lexicon: each shape / colour / size word list is one group."""
    groups = [list(words) for words in vocab.SHAPES.values()]
    groups += [list(words) for _, words in vocab.COLORS.values()]
    groups += [list(words) for words in vocab.SIZES.values()]
    return groups


def _build_lexicon() -> dict[str, list[str]]:
    lex: dict[str, set[str]] = {}
    for group in CAPTION_SYNONYMS + _shapeworld_groups():
        for word in group:
            if " " in word:          # multi-word entries are replacements, never lookup keys
                continue
            lex.setdefault(word, set()).update(w for w in group if w != word)
    return {w: sorted(s) for w, s in lex.items()}


LEXICON: dict[str, list[str]] = _build_lexicon()


@lru_cache(maxsize=1)
def _wordnet():
    """nltk's WordNet corpus when nltk and its data are installed, else None (never downloads)."""
    try:
        from nltk.corpus import wordnet
        wordnet.synsets("dog")
        return wordnet
    except (ImportError, LookupError, OSError):  # nltk missing, or its WordNet data missing
        return None


@lru_cache(maxsize=50_000)
def synonyms(word: str) -> tuple[str, ...]:
    """Synonyms of a lower-case word: the built-in lexicon, plus WordNet lemmas when available."""
    found = list(LEXICON.get(word, []))
    wn = _wordnet()
    if wn is not None:
        for syn in wn.synsets(word):
            for lemma in syn.lemmas():
                name = lemma.name().replace("_", " ").replace("-", " ").lower()
                if name != word and re.fullmatch(r"[a-z ]+", name):
                    found.append(name)
    return tuple(dict.fromkeys(found))


_CORE = re.compile(r"^(\W*)(.*?)(\W*)$")


def _split(token: str) -> tuple[str, str, str]:
    """'"Photo,' -> ('"', 'Photo', ','): punctuation around a word stays where it is."""
    return _CORE.match(token).groups()


def _with_case(replacement: str, original: str) -> str:
    return replacement[:1].upper() + replacement[1:] if original[:1].isupper() else replacement


def synonym_replacement(words: list[str], n: int, rng: random.Random) -> list[str]:
    """Replace up to n distinct non-stop-words that have synonyms (every occurrence of each) with one."""
    out = list(words)
    candidates = sorted({_split(w)[1].lower() for w in words} - STOP_WORDS - {""})
    rng.shuffle(candidates)
    replaced = 0
    for word in candidates:
        options = synonyms(word)
        if not options:
            continue
        choice = rng.choice(options)
        for i, token in enumerate(out):
            pre, core, post = _split(token)
            if core.lower() == word:
                out[i] = pre + _with_case(choice, core) + post
        replaced += 1
        if replaced >= n:
            break
    return " ".join(out).split()  # multi-word synonyms become several words


def random_insertion(words: list[str], n: int, rng: random.Random) -> list[str]:
    """Insert a synonym of a random word at a random position, n times (10 tries to find a word per insert)."""
    out = list(words)
    for _ in range(n):
        for _try in range(10):
            if not out:
                break
            core = _split(rng.choice(out))[1].lower()
            options = synonyms(core) if core and core not in STOP_WORDS else ()
            if options:
                out[rng.randint(0, len(out)):0] = rng.choice(options).split()
                break
    return out


def random_swap(words: list[str], n: int, rng: random.Random) -> list[str]:
    """Swap the words at two random positions, n times."""
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(n):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out


def random_deletion(words: list[str], p: float, rng: random.Random) -> list[str]:
    """Delete each word with probability p; a one-word sentence stays, and one word always survives."""
    if len(words) <= 1:
        return list(words)
    kept = [w for w in words if rng.random() > p]
    return kept or [rng.choice(words)]


def eda(sentence: str, alpha_sr: float = 0.1, alpha_ri: float = 0.1, alpha_rs: float = 0.1, p_rd: float = 0.1,
        num_aug: int = 9, rng: random.Random | None = None) -> list[str]:
    """num_aug augmented sentences, each made by one operation (the reference code's recipe)."""
    rng = rng or random.Random(0)
    words = sentence.split()
    if not words:
        return [sentence] * num_aug
    per_op = num_aug // 4 + 1
    out = []
    for alpha, op in ((alpha_sr, synonym_replacement), (alpha_ri, random_insertion), (alpha_rs, random_swap)):
        if alpha > 0:
            n = max(1, int(alpha * len(words)))
            out += [" ".join(op(words, n, rng)) for _ in range(per_op)]
    if p_rd > 0:
        out += [" ".join(random_deletion(words, p_rd, rng)) for _ in range(per_op)]
    rng.shuffle(out)
    return out[:num_aug]


class EDARewriter(Rewriter):
    """EDA behind `rewriter="eda"`: variants eda1..edaM are the M sentences `eda()` makes for a caption."""

    name = "eda"

    def __init__(self, num_variants: int = 4, alpha_sr: float = 0.1, alpha_ri: float = 0.1, alpha_rs: float = 0.1,
                 p_rd: float = 0.1):
        self.num_variants = num_variants
        self.alphas = {"alpha_sr": alpha_sr, "alpha_ri": alpha_ri, "alpha_rs": alpha_rs, "p_rd": p_rd}
        self.variants = [f"eda{i}" for i in range(1, num_variants + 1)]

    def augment(self, caption: str, seed: int = 0) -> list[str]:
        """All M variants of one caption, deterministic for (caption, seed)."""
        return eda(caption, num_aug=self.num_variants, rng=random.Random(seed_for(seed, "eda", caption)),
                   **self.alphas)

    def rewrite_variant(self, captions: list[str], variant: str, seed: int) -> tuple[list[str], Counter]:
        self.check_variant(variant)
        i = self.variants.index(variant)
        return [self.augment(c, seed)[i] for c in captions], self._fallbacks(captions)

    def rewrite_batch(self, captions: list[str], seed: int = 0):
        rows = [self.augment(c, seed) for c in captions]
        falls = dict(self._fallbacks(captions))
        return RewriteResult({v: [r[i] for r in rows] for i, v in enumerate(self.variants)},
                             {v: dict(falls) for v in self.variants})

    def settings(self) -> dict:
        return {**super().settings(), **self.alphas, "wordnet": _wordnet() is not None}

    @staticmethod
    def _fallbacks(captions: list[str]) -> Counter:
        return Counter({"empty_caption": sum(1 for c in captions if not c.split())}) + Counter()
