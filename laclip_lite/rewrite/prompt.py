"""The in-context prompt: an instruction, k meta pairs, then the caption to rewrite (LaCLIP, Section 3.2).

With the default format a prompt for k = 3 reads:

    Rewrite the image caption in a different way, keeping its meaning.
    cute puppy in a basket stock photo => A fluffy puppy naps inside a wicker basket.
    nyc skyline night 4k wallpaper => The New York skyline glitters against the night sky.
    fresh salad bowl healthy food => A bowl of fresh green salad sits on a wooden table.
    red bicycle leaning against wall =>

The LM continues after the final ``=>``; the first line of its continuation is the rewrite. The pairs are
sampled per caption with a seed derived from (seed, caption), so the same caption always sees the same
examples and different captions see different ones.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from laclip_lite.rewrite.base import seed_for
from laclip_lite.rewrite.meta import MetaPair


@dataclass(frozen=True)
class PromptFormat:
    instruction: str = "Rewrite the image caption in a different way, keeping its meaning."  # first line ("" = none)
    pair: str = "{source} => {target}"   # one meta pair per line
    query: str = "{caption} =>"          # the last line; the LM writes the rewrite after it
    separator: str = "\n"                # between lines; a rewrite ends at the first separator


DEFAULT_FORMAT = PromptFormat()


def build_prompt(caption: str, pairs: list[MetaPair], k: int = 3, rng: random.Random | None = None,
                 seed: int = 0, fmt: PromptFormat = DEFAULT_FORMAT) -> str:
    """Instruction, k pairs sampled without replacement, then the caption (see the module docstring).

    `rng` overrides the per-caption generator made from (seed, caption).
    """
    rng = rng or random.Random(seed_for(seed, caption))
    chosen = rng.sample(pairs, min(k, len(pairs)))
    lines = [fmt.instruction] if fmt.instruction else []
    lines += [fmt.pair.format(source=p.source, target=p.target) for p in chosen]
    lines.append(fmt.query.format(caption=caption.strip()))
    return fmt.separator.join(lines)
