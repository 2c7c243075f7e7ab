"""The in-context prompt: an instruction, k meta pairs, then the caption to rewrite (LaCLIP, Section 3.2).

Two layouts (`PROMPT_FORMATS`, `rewrite.prompt_format` / `--prompt-format`):

* ``kit`` (the default) - this kit's own layout, one line per pair. A prompt for k = 3 reads:

    Rewrite the image caption in a different way, keeping its meaning.
    cute puppy in a basket stock photo => A fluffy puppy naps inside a wicker basket.
    nyc skyline night 4k wallpaper => The New York skyline glitters against the night sky.
    fresh salad bowl healthy food => A bowl of fresh green salad sits on a wooden table.
    red bicycle leaning against wall =>

* ``laclip`` - the layout of the LaCLIP release's `rewrite/llama_rewrite.py`: the instruction
  ``write image captions differently,``, then the three ``source => target`` pairs and the caption, each
  separated by a blank line and indented by 12 spaces (the indentation of the release's triple-quoted prompt
  string, which its LLaMA saw and which is kept here for that reason):

      write image captions differently,

                  cute puppy in a basket stock photo => A fluffy puppy naps inside a wicker basket.

                  nyc skyline night 4k wallpaper => The New York skyline glitters against the night sky.

                  fresh salad bowl healthy food => A bowl of fresh green salad sits on a wooden table.

                  red bicycle leaning against wall =>

  The release takes line 8 of prompt + continuation (the query line) and keeps what follows its ``=>``: the
  first line of the continuation, as here.

In both the LM continues after the final ``=>``; the first line of its continuation is the rewrite. The pairs
are sampled per caption with a seed derived from (seed, caption), so the same caption always sees the same
examples and different captions see different ones (the release draws them with Python's unseeded `random`).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from laclip_lite.errors import ConfigError
from laclip_lite.rewrite.base import seed_for
from laclip_lite.rewrite.meta import MetaPair


@dataclass(frozen=True)
class PromptFormat:
    instruction: str = "Rewrite the image caption in a different way, keeping its meaning."  # first line ("" = none)
    pair: str = "{source} => {target}"   # one meta pair per line
    query: str = "{caption} =>"          # the last line; the LM writes the rewrite after it
    separator: str = "\n"                # between lines; a rewrite ends at the first newline


DEFAULT_FORMAT = PromptFormat()   # the kit's own layout
_RELEASE_INDENT = " " * 12      # llama_rewrite.py's prompt lines carry the indentation of its source code
LACLIP_FORMAT = PromptFormat(instruction="write image captions differently,",
                             pair=_RELEASE_INDENT + "{source} => {target}", query=_RELEASE_INDENT + "{caption} =>",
                             separator="\n\n")
PROMPT_FORMATS = {"kit": DEFAULT_FORMAT, "laclip": LACLIP_FORMAT}


def prompt_format(name: str) -> PromptFormat:
    """"kit" | "laclip" -> its PromptFormat; anything else is a ConfigError naming the choices."""
    if name not in PROMPT_FORMATS:
        raise ConfigError(f"rewrite.prompt_format={name!r} is not one of: {', '.join(PROMPT_FORMATS)}")
    return PROMPT_FORMATS[name]


def prompt_rng(seed: int, source: str, caption: str) -> random.Random:
    """The generator that picks the meta pairs of `caption`'s prompt for meta-pair `source`: seeded by
    (seed, source), then by the caption, as the LLM rewriter does (`build_prompt(..., seed=seed_for(seed,
    source))`). The same caption always sees the same examples; different captions see different ones."""
    return random.Random(seed_for(seed_for(seed, source), caption))


def build_prompt(caption: str, pairs: list[MetaPair], k: int = 3, rng: random.Random | None = None,
                 seed: int = 0, fmt: PromptFormat = DEFAULT_FORMAT) -> str:
    """Instruction, k pairs sampled without replacement with `rng`, then the caption (see the module docstring).

    Without `rng`, the per-caption generator made from (seed, caption); `rng=prompt_rng(seed, source, caption)`
    gives the prompt the LLM rewriter sends for that source.
    """
    rng = rng or random.Random(seed_for(seed, caption))
    chosen = rng.sample(pairs, min(k, len(pairs)))
    lines = [fmt.instruction] if fmt.instruction else []
    lines += [fmt.pair.format(source=p.source, target=p.target) for p in chosen]
    lines.append(fmt.query.format(caption=caption.strip()))
    return fmt.separator.join(lines)
