"""CLIP's byte-level BPE (49,408 tokens), the tokenizer of OpenAI CLIP, open_clip and the LaCLIP release.

The merges come from `bpe_simple_vocab_16e6.txt.gz`, a file shipped inside the `open_clip_torch` and
`openai-clip` packages; the kit never downloads it. `find_bpe_file(path)` returns the user's path, else the copy
inside an installed package, else stops with a message naming both ways.

The algorithm (CLIP's `SimpleTokenizer`): clean the text (ftfy when installed, HTML entities, whitespace),
lower-case it, split it into words, numbers and punctuation runs, map each word's UTF-8 bytes to printable
characters, mark the word end with `</w>`, then merge pairs by rank until no ranked pair is left.
Vocabulary: 256 byte symbols, the same 256 with `</w>`, the first 48,894 merges, `<start_of_text>`,
`<end_of_text>` (ids 49406 and 49407 with the real file).
"""
from __future__ import annotations

import gzip
import html
import importlib.util
import itertools
from functools import lru_cache
from pathlib import Path

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
NUM_MERGES = 49152 - 256 - 2          # merges CLIP uses: a vocabulary of 49,408 with the 512 byte symbols + 2
PACKAGES = ("open_clip", "clip")      # pip install open_clip_torch / openai-clip: both ship BPE_FILE inside


def find_bpe_file(path: str = "") -> Path:
    """The merges file: `path` when given, else the one inside an installed open_clip / openai-clip package."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"data.clip_bpe_path={path}: no such file (CLIP's {BPE_FILE})")
        return p
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)          # finds the package without importing it
        for folder in (spec.submodule_search_locations or []) if spec else []:
            if (Path(folder) / BPE_FILE).is_file():
                return Path(folder) / BPE_FILE
    raise FileNotFoundError(
        f"data.tokenizer=clip needs CLIP's BPE merges ({BPE_FILE}), which the kit never downloads. Either install "
        "a package that ships it (pip install open_clip_torch, or pip install openai-clip), or point "
        f"data.clip_bpe_path at a copy of {BPE_FILE}")


@lru_cache
def byte_symbols() -> dict[int, str]:
    """Each of the 256 bytes -> one printable character (printable Latin-1 bytes map to themselves)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {b: chr(b) for b in keep}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table                      # insertion order (kept bytes first) numbers the first 256 ids


class ClipBPE:
    """encode(text) -> ids (no special tokens); decode(ids) -> text; sot_id, eot_id, vocab_size."""

    SOT, EOT = "<start_of_text>", "<end_of_text>"

    def __init__(self, bpe_path: str | Path):
        import regex

        self.path = Path(bpe_path)
        lines = gzip.open(self.path, "rt", encoding="utf-8").read().split("\n")
        merges = [tuple(line.split()) for line in lines[1:NUM_MERGES + 1] if line.strip()]   # line 0: version
        bad = [m for m in merges if len(m) != 2]
        if bad:
            raise ValueError(f"{self.path}: not a BPE merges file (a merge line must hold two symbols, got {bad[0]})")
        symbols = list(byte_symbols().values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [self.SOT, self.EOT]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.decoder = dict(enumerate(vocab))
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.sot_id, self.eot_id = self.encoder[self.SOT], self.encoder[self.EOT]
        self.vocab_size = len(vocab)
        self._bytes = byte_symbols()
        self._unbytes = {c: b for b, c in self._bytes.items()}
        self._split = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                                    regex.IGNORECASE)
        self._cache: dict[str, list[str]] = {}

    @staticmethod
    def clean(text: str) -> str:
        try:
            import ftfy
            text = ftfy.fix_text(text)
        except ImportError:          # ftfy only repairs mojibake; plain text tokenises the same without it
            pass
        return " ".join(html.unescape(html.unescape(text)).split()).lower()

    def _merge(self, word: str) -> list[str]:
        if word in self._cache:
            return self._cache[word]
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = set(itertools.pairwise(parts))
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self._cache[word] = parts
        return parts

    def encode(self, text: str) -> list[int]:
        ids = []
        for word in self._split.findall(self.clean(text)):
            symbols = "".join(self._bytes[b] for b in word.encode("utf-8"))
            ids.extend(self.encoder[p] for p in self._merge(symbols))
        return ids

    def decode(self, ids) -> str:
        out = bytearray()
        for i in ids:
            token = self.decoder.get(int(i))
            if token is None or token in (self.SOT, self.EOT):
                continue
            end = token.endswith("</w>")
            out += bytes(self._unbytes[c] for c in (token[:-4] if end else token))
            out += b" " if end else b""
        return out.decode("utf-8", errors="replace").strip()
