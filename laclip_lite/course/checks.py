"""Checks the assignment notebooks call: one function per exercise, comparing the student's function with the
library's reference on random inputs and explaining a mismatch.

A check returns None when the function agrees with the reference and raises `CheckFailed` (an AssertionError)
otherwise. Its message says which input it was, what came back, what was expected, and, when the wrong value
equals what a known mistake would give (the image->text half of the loss only, no logit scale, the average of
the text embeddings instead of the losses...), names that mistake.

Every check has a visible form (what students run while working) and a `hidden=True` form the grader adds:
more and larger inputs, edge cases, gradients, and the library's own function switched off while the student's
runs, so a wrapper around the reference earns nothing.
"""
from __future__ import annotations

import contextlib
import inspect
import math
import random
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from laclip_lite import losses, metrics
from laclip_lite.losses import clip_loss
from laclip_lite.metrics import retrieval
from laclip_lite.rewrite import eda
from laclip_lite.rewrite import prompt as ref
from laclip_lite.rewrite.meta import MetaPair


class CheckFailed(AssertionError):
    """The student's function disagrees with the reference; the message says how."""


# ---------------------------------------------------------------------------------------------------------
# Shared helpers


def _unit(*shape: int, g: torch.Generator) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def _paired(n: int, d: int, g: torch.Generator, noise: float = 0.6) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit image features and text features that resemble them (a batch a half-trained model would give)."""
    img = _unit(n, d, g=g)
    return img, F.normalize(img + noise * torch.randn(n, d, generator=g), dim=-1)


def _call(fn: Callable, name: str, setting: str, *args):
    """fn(*args); an exception becomes a CheckFailed that names the input it happened on."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise CheckFailed(f"{name}: not implemented yet (replace `raise NotImplementedError()` with your code)") \
            from None
    except Exception as e:
        raise CheckFailed(f"{name} raised {type(e).__name__} on {setting}: {e}") from e


def _scalar(out, name: str, hint: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"{name} should return a torch tensor, got {type(out).__name__}"
                          + (" (did you call .item()? keep it a tensor so gradients flow)"
                             if isinstance(out, float) else ""))
    if out.dim() != 0:
        raise CheckFailed(f"{name} should return a scalar (shape ()), got shape {tuple(out.shape)}: {hint}")
    return out


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> bool:
    return a.shape == b.shape and torch.allclose(a.detach().float(), b.detach().float(), rtol=tol, atol=tol)


def _diagnose(name: str, setting: str, got: torch.Tensor, want: torch.Tensor,
              mistakes: dict[str, torch.Tensor], otherwise: str) -> CheckFailed:
    if got.dim() == 0:
        msg = f"{name}: on {setting}: you returned {got.item():.5f} but the reference gives {want.item():.5f}."
    else:
        diff = (got.detach().float() - want.float()).abs().max().item()
        msg = f"{name}: on {setting}: your result differs from the reference (largest difference {diff:.4f})."
    found = [why for why, value in mistakes.items() if _close(got, value)]
    return CheckFailed(f"{msg}\n  Likely cause: {found[0]}" if found else f"{msg}\n  Hint: {otherwise}")


def _blocked(*args, **kwargs):
    raise RuntimeError("this exercise asks you to write the function yourself: the library's reference is "
                       "switched off while your function is graded")


@contextlib.contextmanager
def reference_disabled(fn: Callable) -> Iterator[None]:
    """Make every call of the library function `fn` fail (however the student imported or wrapped it).

    The function object is shared by every name bound to it, so its code is swapped, not a module attribute.
    """
    target = inspect.unwrap(fn)                      # a decorated reference: switch off the function inside
    original = target.__code__
    target.__code__ = _blocked.__code__
    try:
        yield
    finally:
        target.__code__ = original


def _not_the_reference(student: Callable, reference: Callable, name: str) -> None:
    if student is reference:
        raise CheckFailed(f"{name} is the library's own function: the exercise asks you to write it")


# ---------------------------------------------------------------------------------------------------------
# Exercise: the symmetric contrastive (InfoNCE) loss


OVERFLOW = ("At logit_scale=100 the logits reach ~100 and exp(100) overflows float32 (exp(89) is already inf), so "
            "-log(exp(z_ii) / sum_j exp(z_ij)) and log(softmax(z)) give inf, nan or a wrong gradient. Write it with "
            "F.cross_entropy, F.log_softmax or torch.logsumexp, which subtract each row's maximum before exp().")


def _sym_ce(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(logits.shape[0])
    return F.cross_entropy(logits, labels), F.cross_entropy(logits.T, labels)


def _clip_loss_mistakes(img, txt, scale) -> dict[str, torch.Tensor]:
    sims = img @ txt.T
    i2t, t2i = _sym_ce(scale * sims)
    n = img.shape[0]
    return {
        "only the image->text half: CLIP's loss is symmetric, the MEAN of the image->text cross-entropy "
        "(rows of the logit matrix) and the text->image one (its columns)": i2t,
        "only the text->image half: add the image->text cross-entropy and take the mean of the two": t2i,
        "the SUM of the two halves: CLIP averages them, (loss_i2t + loss_t2i) / 2": i2t + t2i,
        "the logit scale is missing: the logits are logit_scale * (image_features @ text_features.T)":
            sum(_sym_ce(sims)) / 2,
        "the similarities are divided by the logit scale: it multiplies them (it is 1/temperature)":
            sum(_sym_ce(sims / scale)) / 2,
        "exp() applied to logit_scale: it is already the scale (the model passes logit_scale.exp())":
            sum(_sym_ce(scale.exp() * sims)) / 2,
        "summed over the batch: F.cross_entropy averages over rows by default (reduction='mean')":
            n * (i2t + t2i) / 2,
    }


def check_clip_loss(clip_loss: Callable, hidden: bool = False) -> None:
    """clip_loss(image_features [N,D], text_features [N,D], logit_scale 0-d tensor) -> scalar."""
    g = torch.Generator().manual_seed(101 if hidden else 0)
    # (N, D, scale, noise): at scale 100 (CLIP's clamp) with well-matched pairs (low noise) exp() overflows float32
    cases = [(6, 8, 7.0, 0.6), (4, 16, 3.5, 0.6), (9, 5, 10.0, 0.6), (8, 16, 100.0, 0.1)]
    if hidden:
        _not_the_reference(clip_loss, losses.clip_loss, "clip_loss")
        cases += [(1, 4, 5.0, 0.6), (32, 24, 100.0, 0.6), (17, 3, 1.0, 0.6)]
    for n, d, s, noise in cases:
        img, txt = _paired(n, d, g, noise)
        img.requires_grad_(True)
        scale = torch.tensor(s)
        setting = f"a batch of N={n} pairs, D={d}, logit_scale={s}"
        with reference_disabled(losses.clip_loss) if hidden else contextlib.nullcontext():
            out = _scalar(_call(clip_loss, "clip_loss", setting, img, txt, scale), "clip_loss",
                          "average the cross-entropies (F.cross_entropy does by default)")
        want = losses.clip_loss(img.detach(), txt, scale)
        grad = torch.autograd.grad(out, img, allow_unused=True)[0] if out.requires_grad else None
        if not torch.isfinite(out).all() or (grad is not None and not torch.isfinite(grad).all()):
            what = f"loss is {out.item()}" if not torch.isfinite(out).all() else "gradient is not finite"
            raise CheckFailed(f"clip_loss: on {setting}: your {what}: numerical stability. {OVERFLOW}")
        if not _close(out, want):
            raise _diagnose("clip_loss", setting, out, want, _clip_loss_mistakes(img.detach(), txt, scale),
                            "build logits = logit_scale * image_features @ text_features.T (N x N); the right "
                            "match of row i is column i; average the cross-entropy over rows and over columns")
        if hidden:
            if not out.requires_grad:
                raise CheckFailed(f"clip_loss: on {setting}: the loss carries no gradient to the features "
                                  "(no .item(), .numpy() or torch.no_grad() inside the loss)")
            ref_img = img.detach().clone().requires_grad_(True)
            ref_grad, = torch.autograd.grad(losses.clip_loss(ref_img, txt, scale), ref_img)
            if grad is None or not _close(grad, ref_grad):
                raise CheckFailed(f"clip_loss: on {setting}: the value is right but the gradient is not: "
                                  + ("numerical stability? " + OVERFLOW if s >= 50 else
                                     "is part of the computation detached?"))


# ---------------------------------------------------------------------------------------------------------
# Exercise: the multi-text (LaCLIP-MT) loss


def _multi_text_mistakes(img, txt, scale) -> dict[str, torch.Tensor]:
    n, k, d = txt.shape
    per_text = torch.stack([clip_loss(img, txt[:, j], scale) for j in range(k)])
    return {
        "only the first text of each image: loop over all K texts, txt[:, k] for k in range(K)": per_text[0],
        "only the last text of each image: average over ALL K texts": per_text[-1],
        "the SUM over the K texts: LaCLIP-MT averages the K losses": per_text.sum(),
        "the text EMBEDDINGS were averaged before the loss: average the K LOSSES instead": clip_loss(
            img, F.normalize(txt.mean(dim=1), dim=-1), scale),
        "all N*K texts went into one big batch, so an image's own other texts became its negatives: "
        "compute one N x N loss per text index k": clip_loss(
            img.repeat_interleave(k, dim=0), txt.reshape(n * k, d), scale),
    }


def check_multi_text_loss(multi_text_loss: Callable, hidden: bool = False) -> None:
    """multi_text_loss(image_features [N,D], text_features [N,K,D], logit_scale) -> scalar."""
    g = torch.Generator().manual_seed(202 if hidden else 1)
    cases = [(5, 3, 8, 7.0), (6, 2, 12, 4.0), (4, 5, 6, 10.0)]
    if hidden:
        _not_the_reference(multi_text_loss, losses.multi_text_loss, "multi_text_loss")
        cases += [(7, 1, 4, 5.0), (16, 4, 16, 100.0)]
    for n, k, d, s in cases:
        img = _unit(n, d, g=g)
        txt = F.normalize(img[:, None, :] + 0.6 * torch.randn(n, k, d, generator=g), dim=-1)
        scale = torch.tensor(s)
        setting = f"N={n} images with K={k} texts each, D={d}, logit_scale={s}"
        with reference_disabled(losses.multi_text_loss) if hidden else contextlib.nullcontext():
            out = _scalar(_call(multi_text_loss, "multi_text_loss", setting, img, txt, scale), "multi_text_loss",
                          "average the K per-text losses into one number")
        want = losses.multi_text_loss(img, txt, scale)
        if not _close(out, want):
            raise _diagnose("multi_text_loss", setting, out, want, _multi_text_mistakes(img, txt, scale),
                            "for each k, the CLIP loss of the images against text k of every image "
                            "(text_features[:, k]); then the mean over k")


# ---------------------------------------------------------------------------------------------------------
# Exercise: the zero-shot classifier with a template ensemble


class TinyTextModel(torch.nn.Module):
    """A stand-in text tower: a bag of random word vectors, NOT normalised (norms differ per sentence)."""

    def __init__(self, sentences: list[str], dim: int = 12, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        words = sorted({w for s in sentences for w in s.split()})
        self.vocab = {w: i + 1 for i, w in enumerate(words)}                    # 0 = padding
        self.emb = torch.nn.Parameter(torch.randn(len(words) + 1, dim, generator=g)
                                      * torch.rand(len(words) + 1, 1, generator=g) * 3)

    def tokenizer(self, texts: list[str]) -> torch.Tensor:
        ids = [[self.vocab[w] for w in t.split()] for t in texts]
        out = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)
        for row, seq in enumerate(ids):
            out[row, :len(seq)] = torch.tensor(seq)
        return out

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        vecs = self.emb[tokens]
        vecs = vecs * (tokens != 0)[..., None]
        return vecs.sum(dim=1) + self.emb[0]

    def encode(self, texts) -> torch.Tensor:
        """What the student gets: list of sentences -> [N, D] features (not normalised)."""
        with torch.no_grad():
            return self.encode_text(self.tokenizer(list(texts)))


def _zero_shot_mistakes(model: TinyTextModel, classnames, templates) -> dict[str, torch.Tensor]:
    c, t = len(classnames), len(templates)
    class_major = model.encode([tp.replace("{}", name) for name in classnames for tp in templates])
    template_major = model.encode([tp.replace("{}", name) for tp in templates for name in classnames])
    unit = F.normalize(class_major, dim=-1)
    d = unit.shape[-1]
    return {
        "each sentence embedding must be L2-normalised BEFORE averaging over templates (the features here "
        "are not unit length)": F.normalize(class_major.view(c, t, d).mean(1), dim=-1).T,
        "the averaged class vector must be L2-normalised again (a mean of unit vectors is shorter than 1)":
            unit.view(c, t, d).mean(1).T,
        "neither the sentence embeddings nor their average were normalised": class_major.view(c, t, d).mean(1).T,
        "only the first template was used: average over all of them": unit.view(c, t, d)[:, 0].T,
        "classes and templates got mixed up: the sentences were built class by class but reshaped as "
        "[templates, classes]": F.normalize(unit.view(t, c, d).mean(0), dim=-1).T,
        "classes and templates got mixed up: the sentences were built template by template but reshaped as "
        "[classes, templates]": F.normalize(F.normalize(template_major, dim=-1).view(c, t, d).mean(1), dim=-1).T,
    }


def check_zero_shot_classifier(zero_shot_weights: Callable, hidden: bool = False) -> None:
    """zero_shot_weights(encode_text, classnames, templates) -> [D, C] (unit columns), as
    `laclip_lite.metrics.zero_shot_classifier` computes it for a model + tokenizer."""
    cases = [(["red circle", "blue square", "green triangle"], ["a photo of a {}.", "a drawing of a {}.", "{}"])]
    if hidden:
        _not_the_reference(zero_shot_weights, metrics.zero_shot_classifier, "zero_shot_weights")
        cases += [(["cat", "dog", "small grey bird", "fish", "tree"], ["a photo of a {}.", "itap of my {}."]),
                  (["red", "blue"], ["{} it is", "a {} thing", "look : {}", "the {} one", "so {}"])]
    for seed, (classnames, templates) in enumerate(cases, start=7 if hidden else 0):
        sentences = [tp.replace("{}", name) for name in classnames for tp in templates]
        model = TinyTextModel(sentences, seed=seed)
        d, c = model.emb.shape[1], len(classnames)
        setting = f"{c} classes x {len(templates)} templates with {d}-d features"
        with reference_disabled(metrics.zero_shot_classifier) if hidden else contextlib.nullcontext():
            out = _call(zero_shot_weights, "zero_shot_weights", setting, model.encode, list(classnames),
                        list(templates))
        if not isinstance(out, torch.Tensor):
            raise CheckFailed(f"zero_shot_weights should return a torch tensor, got {type(out).__name__}")
        want = metrics.zero_shot_classifier(model, model.tokenizer, classnames, templates)
        if tuple(out.shape) == (c, d) and c != d:
            raise CheckFailed(f"zero_shot_weights: on {setting}: you returned shape {tuple(out.shape)} = [C, D]; "
                              f"the classifier is [D, C] = {(d, c)} (one column per class) so that "
                              "image_features @ weights gives [N, C] logits: transpose it")
        if tuple(out.shape) != (d, c):
            raise CheckFailed(f"zero_shot_weights: on {setting}: you returned shape {tuple(out.shape)}, "
                              f"expected [D, C] = {(d, c)}")
        if not _close(out, want):
            raise _diagnose("zero_shot_weights", setting, out, want, _zero_shot_mistakes(model, classnames, templates),
                            "per class: fill every template with the class name, encode, L2-normalise each "
                            "embedding, average over templates, L2-normalise the average; stack classes as columns")


# ---------------------------------------------------------------------------------------------------------
# Exercise: reading an ablation sweep (logit scale x batch size)

SWEEP_SCALES = (1.0, 5.0, 14.3, 50.0, 100.0)
SWEEP_BATCHES = (16, 64, 256)


def temperature_sweep(scales=SWEEP_SCALES, batch_sizes=SWEEP_BATCHES, dim: int = 32, noise: float = 0.5,
                      repeats: int = 8, seed: int = 0) -> list[dict]:
    """The sweep table of the ablation exercise: CLIP loss and image->text R@1 for one fixed "model" seen
    at every logit scale and batch size. Rows: {"batch", "logit_scale", "loss", "R@1"} (R@1 in %).

    The "model" is fixed: text features are the image features plus noise (a partly trained CLIP). Each batch
    size averages `repeats` random batches, the same batches for every scale, so only the scale changes along
    a batch size's rows. Deterministic for `seed`; a fraction of a second on a CPU.
    """
    rows = []
    for b in batch_sizes:
        g = torch.Generator().manual_seed(seed * 1000 + b)
        batches = [_paired(b, dim, g, noise) for _ in range(repeats)]
        r1 = 100.0 * sum(float(((img @ txt.T).argmax(dim=1) == torch.arange(b)).float().mean())
                         for img, txt in batches) / repeats
        for s in scales:
            loss = sum(float(clip_loss(img, txt, torch.tensor(s))) for img, txt in batches) / repeats
            rows.append({"batch": b, "logit_scale": s, "loss": round(loss, 4), "R@1": round(r1, 2)})
    return rows


def format_table(rows: list[dict]) -> str:
    """Rows of dicts as an aligned text table (what the notebook prints)."""
    cols = list(rows[0])
    cells = [[f"{r[c]:g}" if isinstance(r[c], float) else str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    def line(items) -> str:
        return "  ".join(x.rjust(w) for x, w in zip(items, widths))
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells])


def check_sweep_answers(lowest_loss_scale, r1_drop, hidden: bool = False) -> None:
    """Visible: the answers have the right form. Hidden: they match the table (recomputed here, not read from
    the notebook's variable): the scale with the lowest loss at batch 256, and R@1(batch 16) - R@1(batch 256)
    in percentage points (within 0.5)."""
    for name, value in (("lowest_loss_scale", lowest_loss_scale), ("r1_drop", r1_drop)):
        if value is None or value is Ellipsis:
            raise CheckFailed(f"{name}: fill in your answer (a number read off the table)")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise CheckFailed(f"{name} should be a finite number, got {value!r}")
    if not any(math.isclose(lowest_loss_scale, s, rel_tol=1e-3) for s in SWEEP_SCALES):
        raise CheckFailed(f"lowest_loss_scale={lowest_loss_scale!r} is not one of the swept scales {SWEEP_SCALES}")
    if not -100 <= r1_drop <= 100:
        raise CheckFailed(f"r1_drop={r1_drop!r}: a difference of two R@1 values in % lies within [-100, 100]")
    if not hidden:
        return
    rows = temperature_sweep()
    at_256 = [r for r in rows if r["batch"] == 256]
    best = min(at_256, key=lambda r: r["loss"])["logit_scale"]
    r1 = {r["batch"]: r["R@1"] for r in rows}
    if not math.isclose(lowest_loss_scale, best, rel_tol=1e-3):
        raise CheckFailed(f"lowest_loss_scale={lowest_loss_scale!r} is not the scale with the lowest loss at batch 256")
    if abs(r1_drop - (r1[16] - r1[256])) > 0.5:
        raise CheckFailed(f"r1_drop={r1_drop!r} is not R@1 at batch 16 minus R@1 at batch 256 (in points)")


# ---------------------------------------------------------------------------------------------------------
# Exercise: the in-context (ICL) prompt builder

PROMPT_INSTRUCTION = "Rewrite the image caption in a different way, keeping its meaning."

_CHECK_PAIRS = [  # (web caption, rewrite): made up for the check, in the style of the meta pairs
    ("red circle clipart png", "A bright red circle drawn on a plain background."),
    ("blue square icon vector", "A simple blue square icon."),
    ("green triangle stock photo", "A green triangle in the middle of the picture."),
    ("yellow star shape free download", "A yellow star shape stands out on the page."),
    ("small purple heart sticker", "A little purple heart sticker."),
    ("orange hexagon pattern tile", "An orange hexagon tile from a repeating pattern."),
]


class _FixedChoice:
    """Stands in for random.Random in the reference: its `sample` returns the pairs the student chose."""

    def __init__(self, chosen):
        self.chosen = chosen

    def sample(self, population, k):
        return list(self.chosen)


def _prompt_diff(got: str, want: str) -> str:
    g, w = got.split("\n"), want.split("\n")
    for n, (a, b) in enumerate(zip(g, w), 1):
        if a != b:
            return f"line {n} is {a!r} but should be {b!r}"
    if len(g) != len(w):
        return (f"your prompt has {len(g)} lines, the expected one {len(w)} "
                "(a missing or extra line / trailing newline?)")
    return "they differ"


def check_prompt_builder(build_prompt: Callable, hidden: bool = False) -> None:
    """build_prompt(caption, pairs, k, rng) -> str, the prompt of `laclip_lite.rewrite.prompt.build_prompt`
    with its default format: the instruction line, k distinct pairs "source => target" drawn with `rng`,
    then "caption =>" (caption stripped); all k when k >= len(pairs). Any way of drawing the k pairs from
    `rng` is accepted, as long as it is random, without repeats, and repeatable for the same seed."""
    pairs = [MetaPair(s, t) for s, t in _CHECK_PAIRS]
    cases = [("a red circle on a white background", 3), ("  blue square   ", 2), ("green triangle", 1)]
    if hidden:
        _not_the_reference(build_prompt, ref.build_prompt, "build_prompt")
        cases += [("tiny star", 6), ("big heart", 10), ("orange hexagon", 0)]
    by_line = {f"{p.source} => {p.target}": p for p in pairs}
    def guard():
        return reference_disabled(ref.build_prompt) if hidden else contextlib.nullcontext()
    for caption, k in cases:
        setting = f"caption={caption!r}, k={k}, {len(pairs)} pairs"
        with guard():
            got = _call(build_prompt, "build_prompt", setting, caption, list(pairs), k, random.Random(0))
            again = _call(build_prompt, "build_prompt", setting, caption, list(pairs), k, random.Random(0))
        if not isinstance(got, str):
            raise CheckFailed(f"build_prompt should return one string, got {type(got).__name__}")
        if got != again:
            raise CheckFailed(f"build_prompt: on {setting}: two calls with random.Random(0) gave different prompts: "
                              "draw the pairs with the `rng` you are given (rng.sample), not the `random` module")
        lines = got.split("\n")
        chosen = [by_line[x] for x in lines if x in by_line]
        if len(set(chosen)) != len(chosen):
            raise CheckFailed(f"build_prompt: on {setting}: a pair appears twice: "
                              "sample WITHOUT replacement (rng.sample)")
        if len(chosen) != min(k, len(pairs)):
            raise CheckFailed(f"build_prompt: on {setting}: the prompt holds {len(chosen)} pairs written as "
                              f"'source => target', expected {min(k, len(pairs))} (k, or all pairs when k is larger)")
        want = ref.build_prompt(caption, pairs, k, rng=_FixedChoice(chosen))
        if got != want:
            raise CheckFailed(f"build_prompt: on {setting}: {_prompt_diff(got, want)}.\n  Expected:\n{want}")
    # The pairs must be drawn at random: over 30 seeds, k=2 of 6 pairs can't always be the same two.
    with guard():
        draws = {_call(build_prompt, "build_prompt", f"k=2, rng=random.Random({seed})", "a caption", list(pairs), 2,
                       random.Random(seed)) for seed in range(30)}
    if len(draws) == 1:
        raise CheckFailed("build_prompt: 30 different rngs gave the same prompt: the k pairs must be sampled "
                          "at random with rng (e.g. rng.sample(pairs, k)), not taken in order")


# ---------------------------------------------------------------------------------------------------------
# Exercise: one EDA operation, random swap


def _transpositions(before: list[str], after: list[str]) -> int:
    """The fewest swaps that turn `before` into `after` (words distinct): positions - cycles of the permutation."""
    where = {w: i for i, w in enumerate(before)}
    perm = [where[w] for w in after]
    seen, cycles = set(), 0
    for start in range(len(perm)):
        if start not in seen:
            cycles += 1
            while start not in seen:
                seen.add(start)
                start = perm[start]
    return len(perm) - cycles


def check_random_swap(random_swap: Callable, hidden: bool = False) -> None:
    """random_swap(words, n, rng) -> new list: the words at two different random positions exchanged, n times,
    drawn with `rng` (as `laclip_lite.rewrite.eda.random_swap`). Checked by its properties, so any correct way
    of drawing the positions passes: the same words come back, the input list is left alone, a one-swap
    result differs in exactly two places, at most n swaps happen (and n do happen), fewer than two words come
    back unchanged, the same seed gives the same result and different seeds different ones."""
    name = "random_swap"
    sentences = ["small red circle on the blue background", "green square clipart png free download"]  # distinct words
    if hidden:
        _not_the_reference(random_swap, eda.random_swap, name)
        sentences += ["one two three", "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"]
    guard = (lambda: reference_disabled(eda.random_swap)) if hidden else contextlib.nullcontext
    for sentence in sentences:
        words = sentence.split()
        for n in (1, 2, 3):
            setting = f"{sentence!r}.split(), n={n}"
            results = []
            for seed in range(20):
                given = list(words)
                with guard():
                    out = _call(random_swap, name, setting, given, n, random.Random(seed))
                    again = _call(random_swap, name, setting, list(words), n, random.Random(seed))
                if not isinstance(out, list):
                    raise CheckFailed(f"{name} should return a list of words, got {type(out).__name__}")
                if given != words:
                    raise CheckFailed(f"{name}: on {setting}: your function changed the list it was given; "
                                      "copy it first (out = list(words)) and swap in the copy")
                if sorted(out) != sorted(words):
                    raise CheckFailed(f"{name}: on {setting}: returned {out}, which does not hold exactly the same "
                                      "words: a swap only exchanges two words' positions")
                if out != again:
                    raise CheckFailed(f"{name}: on {setting}: two calls with random.Random({seed}) gave different "
                                      "results: draw the positions with the `rng` you are given, not `random`")
                swaps = _transpositions(words, out)
                if n == 1 and swaps != 1:
                    raise CheckFailed(f"{name}: on {setting}: returned {out}; one swap changes exactly two positions"
                                      + (" (pick two DIFFERENT positions, e.g. rng.sample(range(len(words)), 2))"
                                         if swaps == 0 else " (did you shuffle the whole sentence?)"))
                if swaps > n:
                    raise CheckFailed(f"{name}: on {setting}: returned {out}, which needs {swaps} swaps to undo; "
                                      f"random swap makes at most n={n} (did you shuffle the whole sentence?)")
                results.append(tuple(out))
            if len(set(results)) == 1:
                raise CheckFailed(f"{name}: on {setting}: 20 different rngs gave the same result; the positions "
                                  "must be random")
            if n > 1 and len(words) >= 6 and max(_transpositions(words, list(r)) for r in results) < n:
                raise CheckFailed(f"{name}: on {setting}: never more than one swap in 20 tries: swap n times")
    for short in ([], ["alone"]):
        with guard():
            out = _call(random_swap, name, f"words={short}, n=2", list(short), 2, random.Random(0))
        if out != short:
            raise CheckFailed(f"{name}: words={short}, n=2 should come back unchanged (nothing to swap), got {out}")


# ---------------------------------------------------------------------------------------------------------
# Lesson 01, Exercise 3: text -> image recall@K


def _recall_mistakes(sim: torch.Tensor, k: int) -> dict[str, float]:
    own = sim.diagonal()
    by_col = (sim > own[None, :]).sum(dim=0)
    by_row = (sim > own[:, None]).sum(dim=1)
    return {
        "rows instead of columns: that is image -> text; a caption is a COLUMN of sim[i, t], compare each column "
        "with its diagonal entry (or use sim.T)": 100 * (by_row < k).float().mean().item(),
        "off by one: a caption is found at K when FEWER than K images score above its own (beaten_by < k)":
            100 * (by_col <= k).float().mean().item(),
        "the caption's own image was counted against it: count images scoring strictly ABOVE the right one (>)":
            100 * ((sim >= own[None, :]).sum(dim=0) < k).float().mean().item(),
        "a fraction, not a percentage: multiply by 100": (by_col < k).float().mean().item(),
    }


def check_text_to_image_recall(text_to_image_recall: Callable, sim: torch.Tensor | None = None) -> None:
    """text_to_image_recall(sim [M images, M captions], k) -> % of captions whose own image ranks in their top k,
    against `metrics.retrieval`'s `t2i_R@K` for K = 1, 5, 10 on `sim` (the lesson's tie-free matrix) and on two
    random tie-free matrices. Any correct formulation passes (counting, topk, argsort ranks)."""
    name = "text_to_image_recall"
    g = torch.Generator().manual_seed(3)
    mats = [("the lesson's similarity matrix", sim)] if sim is not None else []
    for m in (12, 40):
        img, txt = _paired(m, 16, g, noise=1.0)
        mats.append((f"a random {m} x {m} similarity matrix", img @ txt.T))
    for where, s in mats:
        s = s.detach().float()
        if s.dim() != 2 or s.shape[0] != s.shape[1]:
            raise CheckFailed(f"{name}: the similarity matrix must be square [M images, M captions]")
        ties = (s == s.diagonal()[None, :]).sum(dim=0) - 1
        if ties.any():
            raise CheckFailed(f"{name}: {where} has ties with a caption's own image: recall is defined up to "
                              "tie-breaking there; check on distinct captions (lesson01.distinct_texts)")
        library = retrieval(s, torch.eye(len(s)), ks=[k for k in (1, 5, 10) if k <= len(s)])
        for k in (1, 5, 10):
            if k > len(s):
                continue
            setting = f"{where}, k={k}"
            out = _call(text_to_image_recall, name, setting, s.clone(), k)
            if isinstance(out, torch.Tensor) and out.numel() == 1:
                out = out.item()
            if not isinstance(out, (int, float)) or isinstance(out, bool):
                raise CheckFailed(f"{name} should return a number (a percentage), got {type(out).__name__}")
            want = library[f"t2i_R@{k}"]
            if abs(out - want) > 1e-4:
                found = [why for why, v in _recall_mistakes(s, k).items() if abs(out - v) <= 1e-4]
                raise CheckFailed(f"{name}: on {setting}: you returned {out:.2f} but metrics.retrieval's "
                                  f"t2i_R@{k} is {want:.2f}.\n  "
                                  + (f"Likely cause: {found[0]}" if found else
                                     "Hint: per caption (column t), count the images scoring above sim[t, t]; the "
                                     "caption is found when fewer than k do; return the percentage found"))
