"""Lesson 01, CLIP basics: the plumbing behind notebooks/01_clip_basics.ipynb.

The notebook writes the concepts out in its own cells (the similarity matrix, the symmetric loss, the loss at
initialisation, the zero-shot classifier, recall@K) and checks each against the library; the functions here
render the world, build and train the model, and draw the figures and widgets.
"""
from __future__ import annotations

import copy
import json
import math
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from laclip_lite.config import Config
from laclip_lite.course import common
from laclip_lite.course.common import Lesson, hwc, table
from laclip_lite.data.dataset import shapeworld_split
from laclip_lite.data.tokenizer import build_tokenizer
from laclip_lite.data.transforms import normalize, random_resized_crop
from laclip_lite.data.vocab import classnames
from laclip_lite.losses import clip_loss
from laclip_lite.metrics import (
    class_probabilities,
    encode_images,
    encode_texts,
    retrieval,
    topk_accuracy,
    zero_shot_classifier,
)
from laclip_lite.models.clip import build_model, count_params
from laclip_lite.models.text import trim_padding
from laclip_lite.plots import learning_curves, loss_matrix_walkthrough, show_images, similarity_heatmap, topk_images
from laclip_lite.rewrite.prepare import shapeworld_rewrites, tokenizer_corpus
from laclip_lite.runs import load_run
from laclip_lite.templates import fill, get_templates, template_sets
from laclip_lite.train import CHECKPOINT, Trainer, build_optimizer, train
from laclip_lite.utils import autocast_dtype, resolve_device, seed_everything, stable_hash, step_generator

NOTEBOOK = "01_clip_basics"


def start(namespace: dict) -> Lesson:
    """Check the parameters cell (a typo or a wrong type stops here) and make `out_dir`."""
    return common.start(NOTEBOOK, namespace, check=_check)


def _check(lesson: Lesson) -> None:
    if lesson.params["data"] != "shapeworld":
        raise common.ParameterError("data: notebook 01 teaches on ShapeWorld (it needs its labels for zero-shot); "
                                    "train on your own data with notebook 03")

    try:
        get_templates(lesson.params["templates"])
    except FileNotFoundError:
        raise common.ParameterError(f"templates: {lesson.params['templates']!r} is neither a template set "
                                    f"(allowed: {', '.join(template_sets())}) nor an existing file") from None
    except ValueError as e:                          # DataError: a file line without '{}'
        raise common.ParameterError(f"templates: {e}") from None
    lesson.config()                                  # a bad override key or value fails here


finish = common.finish


@dataclass
class World:
    cfg: Config
    train: Any       # ShapeWorldSplit
    test: Any


@dataclass
class Run:
    dir: Path
    model: Any
    tokenizer: Any
    cfg: Config
    final: dict


def show_world(lesson: Lesson, n: int = 8) -> World:
    """Render ShapeWorld's training and test splits and show the first `n` training images with captions."""

    cfg = lesson.config({"train.policy": "clip", "data.augment": "none"})
    world = World(cfg, shapeworld_split(cfg, "train"), shapeworld_split(cfg, "test"))
    epochs = cfg.train.steps * cfg.train.batch_size / len(world.train)
    lesson.markdown(
        f"{len(world.train):,} training and {len(world.test):,} test images of {cfg.model.image_size}×"
        f"{cfg.model.image_size} pixels; each has **one** caption written like web alt-text. Training for "
        f"{cfg.train.steps:,} steps of {cfg.train.batch_size} shows every image about {epochs:.0f} times, always "
        f"with the same caption.")
    lesson.figure(show_images(world.train.images, world.train.captions, n=n, ncols=4,
                              title="ShapeWorld: training images and their captions"), "world", "The world")
    return world


def tokenizer_walkthrough(lesson: Lesson, world: World, n: int = 3):
    """Build the tokenizer exactly as training will, and show captions -> pieces -> ids -> padded rows."""

    cfg, captions = world.cfg, list(world.train.captions)
    common.warm_rewrite_cache(cfg, lesson.progress)
    tok = build_tokenizer(cfg.data, cfg.model, tokenizer_corpus(cfg, captions, shapeworld_rewrites(cfg, captions)))
    rows = []
    for text in captions[:n]:
        ids = tok([text])[0]
        used = ids[ids != tok.pad_id].tolist()
        pieces = tok.backend.encode(text, add_special_tokens=False).tokens if tok.kind == "bpe" else \
            tok.backend.tokenize(text)
        rows.append({"caption": text, "pieces": " · ".join(pieces), "ids (SOT … EOT)": " ".join(map(str, used)),
                     "padding": f"{len(ids) - len(used)} × [PAD]"})
    lesson.markdown(f"A {tok.kind.upper()} tokenizer with {tok.vocab_size:,} tokens; every caption becomes "
                    f"{tok.context_length} ids: `[SOT]`={tok.sot_id}, the pieces, `[EOT]`={tok.eot_id}, then "
                    f"padding `[PAD]`={tok.pad_id}. The text tower reads its summary at the `[EOT]` position.\n\n"
                    + table(rows))
    return tok


def build_towers(lesson: Lesson, world: World, tokenizer):
    """An untrained CLIP (seeded): show each tower, its size, and what goes in and comes out."""

    cfg = world.cfg
    cfg.model.vocab_size, cfg.model.pad_id = tokenizer.vocab_size, tokenizer.pad_id
    seed_everything(cfg.train.seed)
    model = build_model(cfg.model).to(resolve_device(cfg.train.device)).eval()
    device = next(model.parameters()).device
    images = normalize(world.train.images[:4].to(device))
    tokens = tokenizer(world.train.captions[:4]).to(device)
    with torch.no_grad():
        img, txt, scale = model(images, tokens)
    m = cfg.model
    vision = (f"ViT: {m.image_size}/{m.patch_size} → {(m.image_size // m.patch_size) ** 2} patches + [CLS], "
              f"width {m.vision_width}, {m.vision_layers} blocks" if m.vision == "vit" else
              f"ResNet (CLIP's modified), base width {m.vision_width}")
    text = (f"causal Transformer, width {m.text_width}, {m.text_layers} blocks, pooled at [EOT]"
            if m.text == "transformer" else f"pretrained {m.text_model} (mean pooling)")
    rows = [{"tower": "image", "architecture": vision, "parameters": f"{count_params(model.visual):,}",
             "input": f"images {tuple(images.shape)}", "output": f"{tuple(img.shape)}, unit rows"},
            {"tower": "text", "architecture": text, "parameters": f"{count_params(model.text):,}",
             "input": f"token ids {tuple(tokens.shape)}", "output": f"{tuple(txt.shape)}, unit rows"}]
    norms = torch.cat([img.norm(dim=-1), txt.norm(dim=-1)])
    lesson.markdown(table(rows) + f"\nEvery output row has length 1 (min {norms.min():.4f}, max {norms.max():.4f}); "
                    f"the learnable scale exp(logit_scale) starts at {scale.item():.2f} = 1/0.07.")
    return model



def _pairs_similarity(model, tokenizer, images, captions):
    return encode_texts(model, tokenizer, captions) @ encode_images(model, images).T   # [texts, images]


def show_similarity(lesson: Lesson, similarity, images, captions, title: str = "before training"):
    """Draw a [captions, images] cosine-similarity matrix with the images above their columns."""

    name = "similarity_" + title.replace(" ", "_")
    lesson.figure(similarity_heatmap(similarity, images, captions, title=f"Cosine similarity, {title}"), name,
                  f"Similarity matrix {title}", key=True)
    spread = similarity.detach().float().std(dim=1).mean().item()
    lesson.markdown(f"Stripes: {stripes(similarity):.0f}% of this matrix's variance is its row means (how much "
                    f"the caption alone decides the score); within a row the scores vary by {spread:.3f} on "
                    f"average (standard deviation), across rows they span "
                    f"{similarity.detach().float().mean(dim=1).min().item():.2f} to "
                    f"{similarity.detach().float().mean(dim=1).max().item():.2f}.")


def show_loss(lesson: Lesson, logits, loss) -> None:
    """The loss of one batch in three panels: the logits, the softmax over each row, the softmax over each column;
    and the number next to ln N (the loss of a model that cannot tell the pairs apart)."""

    n = logits.shape[0]
    lesson.figure(loss_matrix_walkthrough(logits.detach()), "loss_walkthrough", "The contrastive loss on one batch")
    lesson.markdown(f"Loss of this batch of {n} pairs: **{float(loss):.4f}**; equal logits would give "
                    f"ln {n} = {math.log(n):.4f}.")
    lesson.metrics["loss_untrained_batch"] = round(float(loss), 4)


def _run_dir(lesson: Lesson):
    cfg = lesson.config({"train.policy": "clip", "data.augment": "none"})
    return cfg, lesson.out_dir / f"clip-{stable_hash(cfg.to_dict(), length=8)}"


def start_training(lesson: Lesson, world: World):
    """The library's `Trainer` for this lesson's run (data, model, AdamW, warm-up + cosine schedule), before its
    first step, or where an interrupted run stopped. When the run already finished (a rerun of the notebook), a
    fresh Trainer in `out_dir/first_steps` instead, for the written-out steps; `train_clip` then reuses the run."""

    cfg, run_dir = _run_dir(lesson)
    inexact = [what for what, on in (("bf16 autocast", autocast_dtype(cfg.train.precision, resolve_device(
        cfg.train.device)) is not None), ("torch.compile", cfg.train.compile)) if on]
    if (run_dir / "final_metrics.json").exists() or inexact:
        if inexact:                 # the written-out step is fp32 eager; compare it with an fp32 eager Trainer
            lesson.markdown(f"This run trains with {' and '.join(inexact)}; the written-out steps are compared "
                            "with a separate fp32, uncompiled Trainer in `first_steps/`, and `train_clip` trains "
                            "the run itself.")
            cfg = lesson.config({"train.policy": "clip", "data.augment": "none", "train.precision": "fp32",
                                 "train.compile": False})
        run_dir = lesson.out_dir / "first_steps"
        shutil.rmtree(run_dir, ignore_errors=True)
    common.warm_rewrite_cache(cfg, lesson.progress)
    threads = torch.get_num_threads()
    try:
        trainer = Trainer(cfg, run_dir, resume=(run_dir / CHECKPOINT).exists(), progress=lesson.progress)
    finally:
        torch.set_num_threads(threads)                      # the trainer sets it process-wide
    if trainer.cfg.train.accum_steps != 1 or trainer.world_size != 1:
        raise common.ParameterError("the written-out training step needs one process and no gradient "
                                    "accumulation (train.accum_steps=1)")
    return trainer


def copy_of(trainer):
    """(model, optimizer, scheduler): an exact copy of the trainer's, in the same state, for a hand-written step."""

    model = copy.deepcopy(trainer.model)
    optimizer, scheduler = build_optimizer(model, trainer.cfg, trainer.device)
    optimizer.load_state_dict(trainer.optimizer.state_dict())
    scheduler.load_state_dict(trainer.scheduler.state_dict())
    return model.train(), optimizer, scheduler


def step_inputs(trainer, step: int):
    """(images, tokens) of training step `step`, made as `Trainer.train_step` makes them: the loader's batch for
    that step (a function of seed and step), random crops seeded by (seed, step), normalised; padding trimmed."""

    cfg = trainer.cfg
    batch = trainer.data.pairs.batch(step)
    images = batch.images.to(trainer.device)
    if not trainer.data.pairs.augmented:
        images = random_resized_crop(images, cfg.data.crop_scale, step_generator(cfg.train.seed, step, 3),
                                     hflip=cfg.data.hflip, total=images.shape[0])
    images = normalize(images)
    if cfg.model.vision == "resnet":
        images = images.contiguous(memory_format=torch.channels_last)
    return images, trim_padding(batch.tokens, cfg.model.pad_id).to(trainer.device)


def stripes(similarity) -> float:
    """How much of a [captions, images] similarity matrix is horizontal stripes: the share (%) of its variance
    that the row means explain. An untrained image tower maps every image to nearly the same vector, so each
    caption scores every image alike (rows nearly constant: ~100%); training spreads the images apart."""
    sim = similarity.detach().float()
    total = sim.var(unbiased=False).item()
    return 100.0 * sim.mean(dim=1).var(unbiased=False).item() / total if total > 0 else 100.0


def train_clip(lesson: Lesson, world: World, trainer=None) -> Run:
    """Train CLIP on the world: continue `trainer` (`start_training`, after the written-out steps) to the end, or
    reuse a finished run with the same settings; show its learning curves."""

    cfg, run_dir = _run_dir(lesson)
    done = run_dir / "final_metrics.json"
    if done.exists():
        final = json.loads(done.read_text())
        lesson.markdown(f"Reusing the finished run in `{run_dir}` (same settings).")
    else:
        common.warm_rewrite_cache(cfg, lesson.progress)
        threads = torch.get_num_threads()
        try:
            if trainer is not None and trainer.out == run_dir:
                lesson.markdown(f"The library trains the rest: steps {trainer.step + 1} to {trainer.cfg.train.steps}.")
                final = trainer.run()
            else:
                final = train(cfg, run_dir, resume=(run_dir / CHECKPOINT).exists(), progress=lesson.progress)
        finally:
            torch.set_num_threads(threads)                  # the trainer sets it process-wide
    model, tok, run_cfg = load_run(run_dir, device=lesson.params["device"])
    lesson.figure(learning_curves(run_dir, ("loss", "logit_scale"), title="CLIP training"), "learning_curves",
                  "Learning curves", key=True)
    rows = [{"metric": k.removeprefix("test/"), "value": v} for k, v in final.items() if k.startswith("test/")]
    lesson.markdown(f"Trained {final['step']} steps in {final['train_seconds']} s; final loss "
                    f"{final['final_loss']:.3f}. On the test split:\n\n" + table(rows)
                    + _what_it_learned(final)
                    + f"\nThe run folder `{run_dir}` holds `checkpoint.pt`, `config.yaml` and the tokenizer: "
                    f"score it again with `laclip-lite eval --checkpoint {run_dir}`.")
    lesson.metrics.update({"train_seconds": final["train_seconds"], "final_loss": round(final["final_loss"], 4)})
    return Run(run_dir, model, tok, run_cfg, final)


def _what_it_learned(final: dict) -> str:
    """One computed sentence on which attributes this run learned (vs chance), or "" without those scores."""

    said = []
    for attribute in ("color", "shape"):
        score = final.get(f"test/{attribute}_top1")
        if score is not None:
            chance = 100 / len(classnames(attribute))
            verdict = "learned" if score >= 2 * chance else "not learned (near chance)"
            said.append(f"{attribute} {score:.1f}% vs chance {chance:.1f}%: {verdict}")
    return ("\nZero-shot, default templates: " + "; ".join(said) + ".\n") if said else ""


def similarity_before_after(lesson: Lesson, before, run: Run, world: World) -> dict:
    """The same images and captions, before and after training; the diagonal (matching pairs) should win."""

    n = lesson.params["n_show"]
    images, captions = world.test.images[:n], world.test.captions[:n]
    sims = {"before": _pairs_similarity(before, run.tokenizer, images, captions),
            "after": _pairs_similarity(run.model, run.tokenizer, images, captions)}
    rows = []
    for name, sim in sims.items():
        diag = sim.diagonal()
        off = (sim.sum() - diag.sum()) / (n * n - n)
        hits = (sim.argmax(dim=1) == np.arange(n)).float().mean().item() * 100
        rows.append({"model": name, "matching pairs (diagonal)": diag.mean().item(), "other pairs": off.item(),
                     "captions whose best image is their own (%)": hits, "stripes (% variance in row means)":
                     stripes(sim)})
    lesson.figure(similarity_heatmap(sims["after"], images, captions, title="Cosine similarity, after training"),
                  "similarity_after_training", "Similarity matrix after training", key=True)
    lesson.markdown(table(rows), "Similarity before vs after", key=True)
    lesson.metrics["diagonal_minus_offdiagonal"] = round(rows[1]["matching pairs (diagonal)"]
                                                         - rows[1]["other pairs"], 4)
    return sims


def temperature_demo(lesson: Lesson, run: Run, world: World, n_batch: int = 256):
    """What the learned temperature does: the softmax over texts at several scales, and the loss vs scale."""

    n = lesson.params["n_show"]
    m = min(n_batch, len(world.test))
    img = encode_images(run.model, world.test.images[:m])
    txt = encode_texts(run.model, run.tokenizer, world.test.captions[:m])
    learned = run.model.logit_scale.exp().item()
    scales = sorted({1.0, round(1 / 0.07, 2), round(learned, 2), 100.0})
    fig = Figure(figsize=(9.6, 6.4), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.1])
    axes = list(top.subplots(1, len(scales))) + [bottom.subplots()]
    for ax, s in zip(axes, scales):
        p = (s * img[:n] @ txt[:n].T).softmax(dim=1)
        ax.imshow(p, vmin=0, vmax=1, cmap="magma")
        tag = " (learned)" if s == round(learned, 2) else " (init)" if s == round(1 / 0.07, 2) else ""
        ax.set_title(f"scale {s:g}{tag}\np(own) {p.diagonal().mean():.2f}", fontsize=10)
        ax.set_xlabel("caption")
        ax.set_ylabel("image")
    grid = np.geomspace(0.5, 200, 60)
    losses = [clip_loss(img, txt, torch.tensor(float(s))).item() for s in grid]
    ax = axes[-1]
    ax.plot(grid, losses)
    ax.axvline(learned, color="tab:green", ls="--", label=f"learned {learned:.1f}")
    ax.axvline(1 / 0.07, color="tab:gray", ls=":", label=f"init 1/0.07 = {1 / 0.07:.1f}")
    ax.axvline(100, color="tab:red", ls=":", label="clamp 100")
    ax.set_xscale("log")
    ax.set_xlabel("logit scale = 1 / temperature")
    ax.set_ylabel("loss")
    ax.set_title(f"CLIP loss of {m} test pairs vs scale", fontsize=10)
    ax.legend(fontsize=9)
    lesson.figure(fig, "temperature", "The temperature", key=False)
    best = float(grid[int(np.argmin(losses))])
    lesson.markdown(f"The scale starts at s = 1/0.07 = {1 / 0.07:.1f} (CLIP stores log s = ln(1/0.07) = "
                    f"{math.log(1 / 0.07):.2f} and learns that); training moved it to s = {learned:.1f} "
                    f"(log s = {math.log(learned):.2f}). On these {m} test pairs the loss would be lowest near "
                    f"s = {best:.1f}.")
    lesson.metrics["logit_scale"] = round(learned, 2)
    return {"learned": learned, "best_on_test": best}


def single_attribute_baseline(task: str) -> tuple[float, str]:
    """For a combined task (color_shape): the accuracy (%) of a model that knows one attribute perfectly and
    guesses the other, for the better of the two attributes; (chance, "chance") for a single-attribute task."""

    n = len(classnames(task))
    parts = task.split("_")
    if len(parts) == 1:
        return 100.0 / n, "chance"
    best = max(parts, key=lambda a: len(classnames(a)))        # knowing the attribute with more values leaves fewer
    other = n // len(classnames(best))
    return 100.0 / other, f"{best} only (guessing the rest)"


def zero_shot_figures(lesson: Lesson, run: Run, world: World, classifier, n_images: int = 6) -> dict:
    """What the zero-shot classifier built in the notebook does: top-5 for a few test images; each template
    alone vs the ensemble, and every named template set, with chance and the best single-attribute baseline."""

    task, tset = lesson.params["task"], lesson.params["templates"]
    names, labels = classnames(task), world.test.labels[task]
    feats = encode_images(run.model, world.test.images)
    templates = get_templates(tset)
    probs = class_probabilities(feats, classifier)
    lesson.figure(topk_images(world.test.images, probs, names, k=5, n=n_images, labels=labels, ncols=2),
                  "zero_shot_topk", "Zero-shot predictions (true class in green)", key=True)

    def acc(tmpls) -> float:
        return topk_accuracy(feats @ zero_shot_classifier(run.model, run.tokenizer, names, tmpls), labels)["top1"]

    single = [(fill(t, "{}"), acc([t])) for t in templates]
    ensemble = topk_accuracy(feats @ classifier, labels)["top1"]
    sets = [(s, acc(get_templates(s))) for s in template_sets()]
    chance = 100.0 / len(names)
    baseline, baseline_name = single_attribute_baseline(task)
    fig = Figure(figsize=(9.6, max(3.2, 0.3 * max(len(single), len(sets)) + 1.6)), layout="constrained")
    a1, a2 = fig.subplots(1, 2)
    y = np.arange(len(single) + 1)
    a1.barh(y, [v for _, v in single] + [ensemble], color=["tab:gray"] * len(single) + ["tab:blue"])
    a1.set_yticks(y, [textwrap.shorten(t, 30) for t, _ in single] + [f"ensemble of {len(single)}"], fontsize=9)
    a1.invert_yaxis()
    a1.set_title(f"'{tset}' templates, {task}:\neach alone vs averaged", fontsize=10)
    y2 = np.arange(len(sets))
    a2.barh(y2, [v for _, v in sets], color=["tab:orange" if s == "heldout" else "tab:blue" for s, _ in sets])
    a2.set_yticks(y2, [s for s, _ in sets], fontsize=9)
    a2.invert_yaxis()
    a2.set_title("every named template set\n(ensembles)", fontsize=10)
    for ax in (a1, a2):
        ax.axvline(chance, color="tab:red", ls=":", label=f"chance {chance:.1f}%")
        if baseline_name != "chance":
            ax.axvline(baseline, color="tab:purple", ls="--", label=f"{baseline_name} {baseline:.1f}%")
        ax.set_xlabel("top-1 accuracy (%)")
        ax.set_xlim(0, 100)
    fig.legend(*a1.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=9)   # below the bars
    lesson.figure(fig, "templates", "Templates and template ensembles", key=True)
    versus = f"; a model that knows only {baseline_name.split()[0]} would score {baseline:.1f}%" \
        if baseline_name != "chance" else ""
    lesson.markdown(f"Zero-shot **{task}** ({len(names)} classes, chance {chance:.1f}%{versus}): ensemble of "
                    f"'{tset}' {ensemble:.1f}%, best single template {max(v for _, v in single):.1f}%, worst "
                    f"{min(v for _, v in single):.1f}%; the held-out set "
                    f"{dict(sets).get('heldout', float('nan')):.1f}%.")
    lesson.metrics.update({f"zero_shot_{task}_top1": round(ensemble, 2),
                           **{f"zero_shot_{task}_top1@{s}": round(v, 2) for s, v in sets}})
    for attribute in ("shape", "color"):
        if attribute != task:
            lesson.metrics[f"zero_shot_{attribute}_top1"] = round(topk_accuracy(
                feats @ zero_shot_classifier(run.model, run.tokenizer, classnames(attribute), templates),
                world.test.labels[attribute])["top1"], 2)
    return {"ensemble": ensemble, "single": dict(single), "sets": dict(sets)}


def distinct_texts(text_features):
    """Indices of the first pair of each distinct text embedding. Repeated captions (the test split has a few)
    embed identically and tie with each other; `metrics.retrieval` scores a tie by its expectation under random
    tie-breaking, a count of "captions scoring above" does not. On these pairs there are no ties, so the two agree
    exactly."""
    _, inverse = torch.unique(text_features, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(inverse), dtype=torch.long)
    first = first.scatter_reduce(0, inverse, torch.arange(len(inverse)), reduce="amin")
    return first.sort().values


def show_retrieval(lesson: Lesson, image_features, text_features) -> dict:
    """Image -> text and text -> image recall@K of the test split (`metrics.retrieval`), against chance K/N."""
    n = len(image_features)
    ks = [k for k in (1, 2, 5, 10, 20, 50, 100) if k <= n]
    r = retrieval(image_features, text_features, ks=ks)
    fig = Figure(figsize=(5, 3.4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(ks, [r[f"i2t_R@{k}"] for k in ks], marker="o", label="image → text")
    ax.plot(ks, [r[f"t2i_R@{k}"] for k in ks], marker="o", label="text → image")
    ax.plot(ks, [100 * k / n for k in ks], ls=":", color="tab:red", label="chance K/N")
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("recall@K (%)")
    ax.set_title(f"Retrieval among {n:,} test pairs")
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3)
    lesson.figure(fig, "retrieval", "Retrieval recall@K", key=True)
    rows = [{"direction": d, **{f"R@{k}": r[f"{p}_R@{k}"] for k in ks if k in (1, 5, 10)}}
            for d, p in (("image → text", "i2t"), ("text → image", "t2i"))]
    lesson.markdown(table(rows), "Retrieval", key=True)
    lesson.metrics.update({k: round(v, 2) for k, v in r.items() if k.endswith(("@1", "@5", "@10"))})
    return r


EXAMPLE_PROMPTS = ["a red circle", "a small blue star", "a green heart on a black background",
                   "a yellow triangle on the left"]


def _text_to_images_fig(query_feats, queries, img_feats, images, k: int = 5):
    fig = Figure(figsize=(1.3 * k + 2.4, 1.5 * len(queries)), layout="constrained")
    axes = fig.subplots(len(queries), k + 1, squeeze=False, width_ratios=[2.2] + [1] * k)
    for row, (q, f) in enumerate(zip(queries, query_feats)):
        scores = img_feats @ f
        top = scores.argsort(descending=True)[:k]
        axes[row, 0].text(0, 0.5, textwrap.fill(q, 22), va="center", fontsize=9)
        axes[row, 0].set_axis_off()
        for col, i in enumerate(top.tolist(), 1):
            axes[row, col].imshow(hwc(images[i]), interpolation="nearest")
            axes[row, col].set_title(f"{scores[i]:.2f}", fontsize=9)
            axes[row, col].set_axis_off()
    fig.suptitle("prompt → the test images most similar to it", fontsize=10)
    return fig


def _image_to_captions_fig(indices, img_feats, txt_feats, images, captions, k: int = 3):
    fig = Figure(figsize=(9, 1.5 * len(indices)), layout="constrained")
    axes = fig.subplots(len(indices), 2, squeeze=False, width_ratios=[1, 5])
    for row, i in enumerate(indices):
        scores = txt_feats @ img_feats[i]
        top = scores.argsort(descending=True)[:k].tolist()
        axes[row, 0].imshow(hwc(images[i]), interpolation="nearest")
        axes[row, 0].set_axis_off()
        lines = [f"{'✔' if j == i else ' '} {scores[j]:.2f}  {textwrap.shorten(captions[j], 64)}" for j in top]
        if i not in top:
            lines.append(f"  (its own caption ranks {int((scores > scores[i]).sum()) + 1}: "
                         f"{textwrap.shorten(captions[i], 50)})")
        axes[row, 1].text(0, 0.5, "\n".join(lines), va="center", fontsize=9, family="monospace")
        axes[row, 1].set_axis_off()
    fig.suptitle("image → the test captions most similar to it (✔ = its own caption)", fontsize=10)
    return fig


def explorer(lesson: Lesson, run: Run, world: World, prompts: list[str] | None = None,
             images: list[int] | None = None):
    """Type a prompt -> the top test images; pick an image -> its nearest captions. Widgets when the
    parameter `interactive` is True, else the same two views as static figures for example inputs."""

    prompts = prompts or EXAMPLE_PROMPTS
    images = images or [0, 1, 2]
    img_feats = encode_images(run.model, world.test.images)
    txt_feats = encode_texts(run.model, run.tokenizer, world.test.captions)

    def by_text(queries):
        return _text_to_images_fig(encode_texts(run.model, run.tokenizer, queries), queries, img_feats,
                                   world.test.images)

    def by_image(idx):
        return _image_to_captions_fig(idx, img_feats, txt_feats, world.test.images, world.test.captions)

    if not lesson.params["interactive"]:
        lesson.figure(by_text(prompts), "explorer_text_to_images", "Prompt → images", key=True)
        lesson.figure(by_image(images), "explorer_image_to_captions", "Image → captions")
        return None
    import ipywidgets as W

    box_text = W.Text(value=prompts[0], description="prompt", continuous_update=False)
    slider = W.IntSlider(value=images[0], min=0, max=len(world.test) - 1, description="image")
    out_text = common.live_output([box_text], lambda: by_text([box_text.value or " "]))
    out_img = common.live_output([slider], lambda: by_image([slider.value]))
    return common.show_widget(W.VBox([W.HTML("<b>Type a prompt</b> (Enter to search)"), box_text, out_text,
                                      W.HTML("<b>Pick a test image</b>"), slider, out_img]))

