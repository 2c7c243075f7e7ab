"""The lesson notebooks' steps: one function per step, so a notebook cell is one call and tests reach it all.

    lesson = lessons.start("01_clip_basics", globals())     # checks the parameters cell, makes out_dir
    world = lessons.show_world(lesson)                      # ... one call per step ...
    lessons.finish(lesson)                                  # <out_dir>/metrics.json next to the notebook

Each step shows what it found (tables as Markdown, figures as PNG saved under `<out_dir>/figures/`) and
returns the objects the next steps need. Nothing here opens a window: figures are built with
`matplotlib.figure.Figure`, saved, and displayed as images, so a notebook run headless with papermill keeps
every figure in its outputs. Widgets (`ipywidgets`) appear only when the parameter `interactive` is True;
otherwise the same views are drawn as static figures.

Sections: common machinery; 01 CLIP basics; 02 text rewriting; 03 LaCLIP training; 04 ablations.
"""
from __future__ import annotations

import json
import math
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from laclip_lite.config import PRESETS, Config, build_config
from laclip_lite.params import ParameterError, check_parameters, run_by_papermill

HEADLINE = ("color_shape_top1", "color_shape_top1@heldout", "shape_top1", "color_top1", "i2t_R@1", "t2i_R@1")


# =========================================================================================================
# Common machinery
# =========================================================================================================
@dataclass
class Lesson:
    """One run of one notebook: its checked parameters, output folder, and what it reports."""

    notebook: str
    params: dict
    out_dir: Path
    started: float = field(default_factory=time.perf_counter)
    progress: bool = True                           # progress bars (off headless: they'd be saved at 0%)
    metrics: dict = field(default_factory=dict)     # flat numbers: the sweep table's columns
    report: list = field(default_factory=list)      # items for REPORT.md: {"title", "markdown" | "figure", "key"}

    def overrides(self, extra: dict | None = None) -> dict:
        """The config overrides the parameters imply (steps, batch_size, seed, device, data), then `extra`."""
        p = self.params
        out: dict[str, Any] = {"train.device": p["device"], "train.seed": p["seed"]}
        if p.get("steps") is not None:
            out["train.steps"] = p["steps"]
        if p.get("batch_size") is not None:
            out["train.batch_size"] = p["batch_size"]
        if p.get("data", "shapeworld") != "shapeworld":
            out["data.source"] = p["data"]
        out.update(_overrides_dict(p.get("overrides") or []))
        out.update(extra or {})
        return out

    def config(self, extra: dict | None = None) -> Config:
        return build_config(self.params["preset"], self.overrides(extra))

    def figure(self, fig, name: str, title: str = "", key: bool = False) -> Path:
        """Save `fig` as `figures/<name>.png`, show it, and remember it for the report."""
        path = self.out_dir / "figures" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")
        _display_png(path.read_bytes())
        self.report.append({"title": title or name, "figure": str(path.relative_to(self.out_dir)), "key": key})
        return path

    def markdown(self, text: str, title: str = "", key: bool = False) -> None:
        """Show Markdown (a table, a note); `key` items go into the demo's REPORT.md."""
        _display_markdown(text)
        if title or key:
            self.report.append({"title": title, "markdown": text, "key": key})


def _overrides_dict(overrides) -> dict:
    """['a.b=1', ...] or {'a.b': 1} -> {'a.b': value}; string values are parsed by the config (YAML)."""
    if isinstance(overrides, dict):
        return dict(overrides)
    out = {}
    for item in overrides:
        if "=" not in item:
            raise ParameterError(f"overrides: {item!r} must look like key=value (e.g. train.lr=1e-3)")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def _display_markdown(text: str) -> None:
    if _in_kernel():
        from IPython.display import Markdown, display
        display(Markdown(text))
    else:
        print(text)


def _display_png(data: bytes) -> None:
    if _in_kernel():
        from IPython.display import Image, display
        display(Image(data=data))


def _fig_png(fig) -> bytes:
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def project_root() -> Path:
    """The checkout holding the package (where `runs/` lives), or the working directory for an install."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").exists() else Path.cwd()


def start(notebook: str, namespace: dict) -> Lesson:
    """Check the notebook's parameters (see `laclip_lite.params`), validate the config they make, and create
    the output folder. Every problem stops the notebook here, before any work, with a message naming it."""
    params = check_parameters(notebook, namespace)
    if params["preset"] not in PRESETS:
        raise ParameterError(f"preset: unknown preset {params['preset']!r} (known: {', '.join(PRESETS)})")
    data = params.get("data", "shapeworld")
    if data != "shapeworld":
        if notebook == "01_clip_basics":
            raise ParameterError("data: notebook 01 teaches on ShapeWorld (it needs its labels for zero-shot); "
                                 "train on your own data with notebook 03")
        if not data.startswith("hf:") and not Path(data).expanduser().exists() and "*" not in data \
                and "{" not in data:
            raise ParameterError(f"data: {data!r} is neither 'shapeworld' nor an existing path")
    from laclip_lite.utils import resolve_device
    resolve_device(params["device"])                     # "cuda" on a machine without one fails here
    out_dir = Path(params["out_dir"]).expanduser() if params["out_dir"] else \
        project_root() / "runs" / "notebooks" / notebook
    lesson = Lesson(notebook, params, out_dir.resolve(), progress=not run_by_papermill(namespace))
    if notebook == "04_ablations":
        from laclip_lite.sweep import ablation_points
        ablation_points(params["ablations"], params["values"], params["policy"], params["llm_model"],
                        params["bt_models"])                                     # names and values checked
    if notebook != "02_text_rewriting":
        lesson.config()                                  # a bad override key or value fails here
    lesson.out_dir.mkdir(parents=True, exist_ok=True)
    device = str(resolve_device(params["device"]))
    lesson.markdown(f"**{notebook}** · preset `{params['preset']}` · device `{device}` · seed {params['seed']}"
                    f" · writing to `{lesson.out_dir}`")
    return lesson


def finish(lesson: Lesson) -> dict:
    """Write `<out_dir>/metrics.json`: parameters, the run's numbers, report items, wall time."""
    from laclip_lite.utils import atomic_write_text

    result = {"notebook": lesson.notebook, "parameters": lesson.params, "metrics": lesson.metrics,
              "report": lesson.report, "wall_seconds": round(time.perf_counter() - lesson.started, 1),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_text(lesson.out_dir / "metrics.json", json.dumps(result, indent=1, default=str))
    lines = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in lesson.metrics.items())
    _display_markdown(f"Wrote `{lesson.out_dir / 'metrics.json'}` ({result['wall_seconds']} s).\n\n"
                      f"| metric | value |\n|---|---:|\n{lines}")
    return result


def _fmt(v) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A Markdown table of dict rows (numbers to 1-2 decimals)."""
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    def cell(v):
        if isinstance(v, float):
            return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
        return str(v).replace("|", "\\|").replace("\n", " ")
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |\n" for r in rows)


def _thumbs_row(fig, gs_row, images) -> None:
    for i, img in enumerate(images):
        ax = fig.add_subplot(gs_row[i])
        ax.imshow(_hwc(img), interpolation="nearest")
        ax.set_axis_off()


def _hwc(img) -> np.ndarray:
    a = img.detach().cpu().numpy() if hasattr(img, "detach") else np.asarray(img)
    return a.transpose(1, 2, 0) if a.ndim == 3 and a.shape[0] in (1, 3) else a


# =========================================================================================================
# 01 CLIP basics
# =========================================================================================================
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


def _warm_rewrite_cache(cfg: Config, progress: bool) -> None:
    """Make the world's stand-in rewrites (every run's tokenizer is trained on them) with our own progress
    setting, so the library's later calls find them cached and print nothing."""
    import copy

    if not cfg.data.is_shapeworld or cfg.data.rewrites_dir:
        return
    from laclip_lite.data.dataset import rewrite_cache_dir, rewrite_config, shapeworld_split
    from laclip_lite.rewrite.job import rewrite_captions

    key = (cfg.data.world_seed, cfg.data.train_size, cfg.model.image_size)
    if key not in _TRAIN_CAPTIONS:
        _TRAIN_CAPTIONS[key] = list(shapeworld_split(cfg, "train").captions)
    captions = _TRAIN_CAPTIONS[key]
    for augment in dict.fromkeys(["shapes", cfg.data.augment]):
        if augment not in ("shapes", "eda"):
            continue                             # llm / backtranslate need a model: the library reports those
        c = copy.deepcopy(cfg)
        c.data.augment = augment
        rewrite_captions(captions, rewrite_cache_dir(c, captions), rewrite_config(c), progress=progress)


_TRAIN_CAPTIONS: dict[tuple, list[str]] = {}   # (world seed, train size, image size) -> training captions


def show_world(lesson: Lesson, n: int = 16) -> World:
    """Render ShapeWorld's training and test splits and show the first `n` training images with captions."""
    from laclip_lite.data.dataset import shapeworld_split
    from laclip_lite.plots import show_images

    cfg = lesson.config({"train.policy": "clip", "data.augment": "none"})
    world = World(cfg, shapeworld_split(cfg, "train"), shapeworld_split(cfg, "test"))
    epochs = cfg.train.steps * cfg.train.batch_size / len(world.train)
    lesson.markdown(
        f"{len(world.train):,} training and {len(world.test):,} test images of {cfg.model.image_size}×"
        f"{cfg.model.image_size} pixels; each has **one** caption written like web alt-text. Training for "
        f"{cfg.train.steps:,} steps of {cfg.train.batch_size} shows every image about {epochs:.0f} times, always "
        f"with the same caption.")
    lesson.figure(show_images(world.train.images, world.train.captions, n=n, ncols=8,
                              title="ShapeWorld: training images and their captions"), "world", "The world")
    return world


def tokenizer_walkthrough(lesson: Lesson, world: World, n: int = 3):
    """Build the tokenizer exactly as training will, and show captions -> pieces -> ids -> padded rows."""
    from laclip_lite.data.dataset import shapeworld_rewrites, tokenizer_corpus
    from laclip_lite.data.tokenizer import build_tokenizer

    cfg, captions = world.cfg, list(world.train.captions)
    _warm_rewrite_cache(cfg, lesson.progress)
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
                    + _table(rows))
    return tok


def build_towers(lesson: Lesson, world: World, tokenizer):
    """An untrained CLIP (seeded): show each tower, its size, and what goes in and comes out."""
    import torch

    from laclip_lite.data.transforms import normalize
    from laclip_lite.models.clip import build_model, count_params
    from laclip_lite.utils import resolve_device, seed_everything

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
    lesson.markdown(_table(rows) + f"\nEvery output row has length 1 (min {norms.min():.4f}, max {norms.max():.4f}); "
                    f"the learnable scale exp(logit_scale) starts at {scale.item():.2f} = 1/0.07.")
    return model


def _pairs_similarity(model, tokenizer, images, captions):
    from laclip_lite.evaluate import encode_images, encode_texts
    return encode_texts(model, tokenizer, captions) @ encode_images(model, images).T   # [texts, images]


def similarity_matrix(lesson: Lesson, model, tokenizer, world: World, title: str = "before training"):
    """Cosine similarity of the first `n_show` test images with their captions (rows = captions)."""
    from laclip_lite.plots import similarity_heatmap

    n = lesson.params["n_show"]
    images, captions = world.test.images[:n], world.test.captions[:n]
    sim = _pairs_similarity(model, tokenizer, images, captions)
    name = "similarity_" + title.replace(" ", "_")
    lesson.figure(similarity_heatmap(sim, images, captions, title=f"Cosine similarity, {title}"), name,
                  f"Similarity matrix {title}", key=True)
    return sim


def contrastive_loss_walkthrough(lesson: Lesson, model, tokenizer, world: World):
    """The CLIP loss on one batch, step by step: logits, softmax over rows and columns, both cross-entropies."""
    import torch

    from laclip_lite.evaluate import encode_images, encode_texts
    from laclip_lite.losses import clip_loss
    from laclip_lite.plots import loss_matrix_walkthrough

    n = lesson.params["n_show"]
    img = encode_images(model, world.train.images[:n])
    txt = encode_texts(model, tokenizer, world.train.captions[:n])
    scale = model.logit_scale.exp().item()
    lesson.figure(loss_matrix_walkthrough(img, txt, scale, world.train.captions[:n]), "loss_walkthrough",
                  "The contrastive loss on one batch")
    logits = scale * img @ txt.T
    by_hand = 0.5 * (torch.nn.functional.cross_entropy(logits, torch.arange(n))
                     + torch.nn.functional.cross_entropy(logits.T, torch.arange(n))).item()
    library = clip_loss(img, txt, torch.tensor(scale)).item()
    lesson.markdown(f"By hand: {by_hand:.4f}; `laclip_lite.losses.clip_loss`: {library:.4f}. Logits that are all "
                    f"equal would score ln({n}) = {math.log(n):.4f}; a random model scaled by {scale:.1f} is "
                    f"confidently wrong now and then, so it can score worse.")
    lesson.metrics["loss_untrained_batch"] = round(library, 4)
    return library


def train_clip(lesson: Lesson, world: World) -> Run:
    """Train CLIP on the world (or reuse a finished run with the same settings) and show its learning curves."""
    from laclip_lite.evaluate import load_run
    from laclip_lite.plots import learning_curves
    from laclip_lite.train import CHECKPOINT, train
    from laclip_lite.utils import stable_hash

    import os

    import torch

    extra = {"train.policy": "clip", "data.augment": "none"}
    small_cpu = (os.cpu_count() or 1) <= 2 and lesson.config().train.device in ("auto", "cpu") \
        and not torch.cuda.is_available()
    if small_cpu:          # on 2 shared cores, 2 threads stall whenever another process runs; 1 thread does not
        extra["train.threads"] = 1
    cfg = lesson.config(extra)
    run_dir = lesson.out_dir / f"clip-{stable_hash(cfg.to_dict(), length=8)}"
    done = run_dir / "final_metrics.json"
    if done.exists():
        final = json.loads(done.read_text())
        lesson.markdown(f"Reusing the finished run in `{run_dir}` (same settings).")
    else:
        _warm_rewrite_cache(cfg, lesson.progress)
        threads = torch.get_num_threads()
        try:
            final = train(cfg, run_dir, resume=(run_dir / CHECKPOINT).exists(), progress=lesson.progress)
        finally:
            torch.set_num_threads(threads)                  # the trainer sets it process-wide
    model, tok, run_cfg = load_run(run_dir, device=lesson.params["device"])
    lesson.figure(learning_curves(run_dir, ("loss", "logit_scale"), title="CLIP training"), "learning_curves",
                  "Learning curves", key=True)
    rows = [{"metric": k.removeprefix("test/"), "value": v} for k, v in final.items() if k.startswith("test/")]
    lesson.markdown(("Trained on one CPU thread (steadier than two on a small shared machine). " if small_cpu else "")
                    + f"Trained {final['step']} steps in {final['train_seconds']} s; final loss "
                    f"{final['final_loss']:.3f}. On the test split:\n\n" + _table(rows))
    lesson.metrics.update({"train_seconds": final["train_seconds"], "final_loss": round(final["final_loss"], 4)})
    return Run(run_dir, model, tok, run_cfg, final)


def similarity_before_after(lesson: Lesson, before, run: Run, world: World) -> dict:
    """The same images and captions, before and after training; the diagonal (matching pairs) should win."""
    from laclip_lite.plots import similarity_heatmap

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
                     "captions whose best image is their own (%)": hits})
    lesson.figure(similarity_heatmap(sims["after"], images, captions, title="Cosine similarity, after training"),
                  "similarity_after_training", "Similarity matrix after training", key=True)
    lesson.markdown(_table(rows), "Similarity before vs after", key=True)
    lesson.metrics["diagonal_minus_offdiagonal"] = round(rows[1]["matching pairs (diagonal)"]
                                                         - rows[1]["other pairs"], 4)
    return sims


def temperature_demo(lesson: Lesson, run: Run, world: World, n_batch: int = 256):
    """What the learned temperature does: the softmax over texts at several scales, and the loss vs scale."""
    import torch
    from matplotlib.figure import Figure

    from laclip_lite.evaluate import encode_images, encode_texts
    from laclip_lite.losses import clip_loss

    n = lesson.params["n_show"]
    m = min(n_batch, len(world.test))
    img = encode_images(run.model, world.test.images[:m])
    txt = encode_texts(run.model, run.tokenizer, world.test.captions[:m])
    learned = run.model.logit_scale.exp().item()
    scales = sorted({1.0, round(1 / 0.07, 2), round(learned, 2), 100.0})
    fig = Figure(figsize=(3.2 * len(scales) + 3.5, 3.4), layout="constrained")
    axes = fig.subplots(1, len(scales) + 1, width_ratios=[1] * len(scales) + [1.4])
    for ax, s in zip(axes, scales):
        p = (s * img[:n] @ txt[:n].T).softmax(dim=1)
        ax.imshow(p, vmin=0, vmax=1, cmap="magma")
        tag = " (learned)" if s == round(learned, 2) else " (init)" if s == round(1 / 0.07, 2) else ""
        ax.set_title(f"scale {s:g}{tag}\nmean p(own caption) {p.diagonal().mean():.2f}", fontsize=9)
        ax.set_xlabel("caption")
        ax.set_ylabel("image")
    grid = np.geomspace(0.5, 200, 60)
    losses = [clip_loss(img, txt, torch.tensor(float(s))).item() for s in grid]
    ax = axes[-1]
    ax.plot(grid, losses)
    ax.axvline(learned, color="tab:green", ls="--", label=f"learned {learned:.1f}")
    ax.axvline(1 / 0.07, color="tab:gray", ls=":", label="init 14.3")
    ax.axvline(100, color="tab:red", ls=":", label="clamp 100")
    ax.set_xscale("log")
    ax.set_xlabel("logit scale = 1 / temperature")
    ax.set_title(f"CLIP loss of {m} test pairs vs scale", fontsize=9)
    ax.legend(fontsize=7)
    lesson.figure(fig, "temperature", "The temperature", key=False)
    best = float(grid[int(np.argmin(losses))])
    lesson.markdown(f"Learned scale {learned:.1f}; on these test pairs the loss would be lowest near {best:.1f}.")
    lesson.metrics["logit_scale"] = round(learned, 2)
    return {"learned": learned, "best_on_test": best}


def zero_shot_lesson(lesson: Lesson, run: Run, world: World, n_images: int = 6) -> dict:
    """Zero-shot classification: top-k for a few test images, each template alone vs the ensemble, and every
    named template set."""
    from matplotlib.figure import Figure

    from laclip_lite.data.vocab import classnames
    from laclip_lite.evaluate import class_probabilities, encode_images, topk_accuracy, zero_shot_classifier
    from laclip_lite.plots import topk_images
    from laclip_lite.templates import fill, get_templates, template_sets

    task, tset = lesson.params["task"], lesson.params["templates"]
    names, labels = classnames(task), world.test.labels[task]
    feats = encode_images(run.model, world.test.images)
    templates = get_templates(tset)
    classifier = zero_shot_classifier(run.model, run.tokenizer, names, templates)
    probs = class_probabilities(feats, classifier)
    lesson.figure(topk_images(world.test.images, probs, names, k=5, n=n_images, labels=labels, ncols=3),
                  "zero_shot_topk", "Zero-shot predictions (true class in green)", key=True)

    def acc(tmpls) -> float:
        return topk_accuracy(feats @ zero_shot_classifier(run.model, run.tokenizer, names, tmpls), labels)["top1"]

    single = [(fill(t, "{}"), acc([t])) for t in templates]
    ensemble = acc(templates)
    sets = [(s, acc(get_templates(s))) for s in template_sets()]
    chance = 100.0 / len(names)
    fig = Figure(figsize=(11, max(2.8, 0.32 * max(len(single), len(sets)) + 1.2)), layout="constrained")
    a1, a2 = fig.subplots(1, 2)
    y = np.arange(len(single) + 1)
    a1.barh(y, [v for _, v in single] + [ensemble], color=["tab:gray"] * len(single) + ["tab:blue"])
    a1.set_yticks(y, [textwrap.shorten(t, 34) for t, _ in single] + [f"ensemble of {len(single)}"], fontsize=8)
    a1.invert_yaxis()
    a1.set_title(f"'{tset}' templates, {task}: each alone vs averaged", fontsize=9)
    y2 = np.arange(len(sets))
    a2.barh(y2, [v for _, v in sets], color=["tab:orange" if s == "heldout" else "tab:blue" for s, _ in sets])
    a2.set_yticks(y2, [s for s, _ in sets], fontsize=8)
    a2.invert_yaxis()
    a2.set_title("every named template set (ensembles)", fontsize=9)
    for ax in (a1, a2):
        ax.axvline(chance, color="tab:red", ls=":", label=f"chance {chance:.1f}%")
        ax.set_xlabel("top-1 accuracy (%)")
        ax.legend(fontsize=7)
    lesson.figure(fig, "templates", "Templates and template ensembles", key=True)
    lesson.markdown(f"Zero-shot **{task}** ({len(names)} classes, chance {chance:.1f}%): ensemble of '{tset}' "
                    f"{ensemble:.1f}%, best single template {max(v for _, v in single):.1f}%, worst "
                    f"{min(v for _, v in single):.1f}%.")
    lesson.metrics.update({f"zero_shot_{task}_top1": round(ensemble, 2),
                           **{f"zero_shot_{task}_top1@{s}": round(v, 2) for s, v in sets}})
    return {"ensemble": ensemble, "single": dict(single), "sets": dict(sets)}


def retrieval_lesson(lesson: Lesson, run: Run, world: World) -> dict:
    """Image -> text and text -> image recall@K on the test split, against chance (K/N)."""
    from matplotlib.figure import Figure

    from laclip_lite.evaluate import encode_images, encode_texts, retrieval

    img = encode_images(run.model, world.test.images)
    txt = encode_texts(run.model, run.tokenizer, world.test.captions)
    ks = [k for k in (1, 2, 5, 10, 20, 50, 100) if k <= len(img)]
    r = retrieval(img, txt, ks=ks)
    fig = Figure(figsize=(5, 3.4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(ks, [r[f"i2t_R@{k}"] for k in ks], marker="o", label="image → text")
    ax.plot(ks, [r[f"t2i_R@{k}"] for k in ks], marker="o", label="text → image")
    ax.plot(ks, [100 * k / len(img) for k in ks], ls=":", color="tab:red", label="chance K/N")
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("recall@K (%)")
    ax.set_title(f"Retrieval among {len(img):,} test pairs")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    lesson.figure(fig, "retrieval", "Retrieval recall@K", key=True)
    rows = [{"direction": d, **{f"R@{k}": r[f"{p}_R@{k}"] for k in ks if k in (1, 5, 10)}}
            for d, p in (("image → text", "i2t"), ("text → image", "t2i"))]
    lesson.markdown(_table(rows), "Retrieval", key=True)
    lesson.metrics.update({k: round(v, 2) for k, v in r.items() if k.endswith(("@1", "@5", "@10"))})
    return r


EXAMPLE_PROMPTS = ["a red circle", "a small blue star", "a green heart on a black background",
                   "a yellow triangle on the left"]


def _text_to_images_fig(query_feats, queries, img_feats, images, k: int = 5):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.5 * k + 2.6, 1.6 * len(queries)), layout="constrained")
    axes = fig.subplots(len(queries), k + 1, squeeze=False, width_ratios=[2.2] + [1] * k)
    for row, (q, f) in enumerate(zip(queries, query_feats)):
        scores = img_feats @ f
        top = scores.argsort(descending=True)[:k]
        axes[row, 0].text(0, 0.5, textwrap.fill(q, 22), va="center", fontsize=9)
        axes[row, 0].set_axis_off()
        for col, i in enumerate(top.tolist(), 1):
            axes[row, col].imshow(_hwc(images[i]), interpolation="nearest")
            axes[row, col].set_title(f"{scores[i]:.2f}", fontsize=8)
            axes[row, col].set_axis_off()
    fig.suptitle("prompt → the test images most similar to it", fontsize=10)
    return fig


def _image_to_captions_fig(indices, img_feats, txt_feats, images, captions, k: int = 3):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 1.5 * len(indices)), layout="constrained")
    axes = fig.subplots(len(indices), 2, squeeze=False, width_ratios=[1, 5])
    for row, i in enumerate(indices):
        scores = txt_feats @ img_feats[i]
        top = scores.argsort(descending=True)[:k].tolist()
        axes[row, 0].imshow(_hwc(images[i]), interpolation="nearest")
        axes[row, 0].set_axis_off()
        lines = [f"{'✔' if j == i else ' '} {scores[j]:.2f}  {textwrap.shorten(captions[j], 70)}" for j in top]
        if i not in top:
            lines.append(f"  (its own caption ranks {int((scores > scores[i]).sum()) + 1}: "
                         f"{textwrap.shorten(captions[i], 50)})")
        axes[row, 1].text(0, 0.5, "\n".join(lines), va="center", fontsize=8, family="monospace")
        axes[row, 1].set_axis_off()
    fig.suptitle("image → the test captions most similar to it (✔ = its own caption)", fontsize=10)
    return fig


def explorer(lesson: Lesson, run: Run, world: World, prompts: list[str] | None = None,
             images: list[int] | None = None):
    """Type a prompt -> the top test images; pick an image -> its nearest captions. Widgets when the
    parameter `interactive` is True, else the same two views as static figures for example inputs."""
    from laclip_lite.evaluate import encode_images, encode_texts

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

    box_text, out_text = W.Text(value=prompts[0], description="prompt", continuous_update=False), W.Output()
    slider, out_img = W.IntSlider(value=images[0], min=0, max=len(world.test) - 1, description="image"), W.Output()

    def show(out, fig):
        from IPython.display import Image, display
        with out:
            out.clear_output(wait=True)
            display(Image(data=_fig_png(fig)))

    box_text.observe(lambda ch: show(out_text, by_text([ch["new"] or " "])), names="value")
    slider.observe(lambda ch: show(out_img, by_image([ch["new"]])), names="value")
    show(out_text, by_text([prompts[0]]))
    show(out_img, by_image([images[0]]))
    ui = W.VBox([W.HTML("<b>Type a prompt</b> (Enter to search)"), box_text, out_text,
                 W.HTML("<b>Pick a test image</b>"), slider, out_img])
    if _in_kernel():
        from IPython.display import display
        display(ui)
    return ui


# =========================================================================================================
# 02 Text rewriting
# =========================================================================================================
def _rewrite_config(lesson: Lesson, rewriter: str, model: str = ""):
    from laclip_lite.config import RewriteConfig

    p = lesson.params
    rcfg = RewriteConfig(rewriter=rewriter, model=model, sources=list(p["sources"]), k_shot=p["k_shot"],
                         seed=p["seed"], num_variants=len(p["sources"]))
    if p.get("batch_size"):
        rcfg.batch_size = p["batch_size"]
    return rcfg


def load_captions(lesson: Lesson) -> list[str]:
    """The captions to rewrite: ShapeWorld's training captions, or a caption file (`data`); and why they need
    augmenting: each is seen many times, verbatim, and many leave facts out."""
    from matplotlib.figure import Figure

    p, n = lesson.params, lesson.params["n_captions"]
    cfg = build_config(p["preset"], {"train.seed": p["seed"]})
    if p["data"] == "shapeworld":
        from laclip_lite.data.dataset import shapeworld_split
        split = shapeworld_split(cfg, "train")
        captions = list(split.captions[:n])
        facts = ["shape", "color", "size", "position", "background"]
        share = [100 * np.mean([s["stated"][f] for s in split.scenes]) for f in facts]
        fig = Figure(figsize=(5.5, 2.8), layout="constrained")
        ax = fig.add_subplot()
        ax.bar(facts, share, color="tab:blue")
        ax.set_ylim(0, 100)
        ax.set_ylabel("% of captions stating it")
        ax.set_title(f"What the {len(split):,} training captions say about the main object", fontsize=9)
        lesson.figure(fig, "caption_facts", "What captions state", key=True)
        epochs = cfg.train.steps * cfg.train.batch_size / len(split)
        lesson.markdown(f"With the `{p['preset']}` preset CLIP sees each image about **{epochs:.0f} times**, "
                        "always with this one caption: it can memorise the caption's exact words, and it never "
                        "hears the facts the caption left out.")
    else:
        from laclip_lite.rewrite.inputs import read_captions
        captions = read_captions(p["data"])[:n]
    if not captions:
        raise ParameterError(f"data: no captions found in {p['data']!r}")
    lesson.markdown("First captions:\n\n" + "\n".join(f"{i}. {c}" for i, c in enumerate(captions[:8], 1)))
    lesson.metrics["n_captions"] = len(captions)
    return captions


def show_meta_pairs(lesson: Lesson, per_source: int = 2) -> dict:
    """The in-context examples (meta input -> output pairs) of each source, as the LLM will see them."""
    from laclip_lite.rewrite.meta import load_meta_pairs

    pairs = {s: load_meta_pairs(s) for s in lesson.params["sources"]}
    rows = [{"source": s, "input (web caption)": pr.source, "output (rewrite)": pr.target}
            for s, ps in pairs.items() for pr in ps[:per_source]]
    lesson.markdown(", ".join(f"`{s}`: {len(ps)} pairs" for s, ps in pairs.items()) + "\n\n" + _table(rows),
                    "Meta pairs")
    return pairs


def show_prompt(lesson: Lesson, captions: list[str], index: int = 0) -> dict:
    """The exact prompt the LLM gets for one caption, per source (k meta pairs sampled per caption)."""
    from laclip_lite.rewrite.base import seed_for
    from laclip_lite.rewrite.meta import load_meta_pairs
    from laclip_lite.rewrite.prompt import build_prompt

    p = lesson.params
    prompts = {s: build_prompt(captions[index], load_meta_pairs(s), k=p["k_shot"], seed=seed_for(p["seed"], s))
               for s in p["sources"]}
    first = next(iter(prompts))
    lesson.markdown(f"The prompt for caption {index + 1} with the `{first}` pairs (the LLM continues after the "
                    f"last `=>`; its first line is the rewrite):\n\n```text\n{prompts[first]}\n```", "The prompt")
    return prompts


def _job(lesson: Lesson, captions: list[str], rcfg) -> tuple[dict, dict]:
    from laclip_lite.rewrite.job import rewrite_captions

    out = lesson.out_dir / "rewrites" / rcfg.rewriter
    texts = rewrite_captions(captions, out, rcfg, progress=lesson.progress)
    return texts, json.loads((out / "report.json").read_text())


def rewrite_with_llm(lesson: Lesson, captions: list[str]) -> dict:
    """Rewrite every caption once per source: with the LLM in `llm_model`, or the world-aware stand-in."""
    p = lesson.params
    if p["llm_model"]:
        rcfg = _rewrite_config(lesson, "llm", p["llm_model"])
        note = f"Rewriting with the LLM **{p['llm_model']}** by in-context learning ({p['k_shot']} pairs per prompt)."
    else:
        rcfg = _rewrite_config(lesson, "shapes")
        note = ("**No `llm_model` given, so these rewrites come from the world-aware stand-in (`rewriter=\"shapes\"`), "
                "not from an LLM.** It reads the facts a ShapeWorld caption states and rewrites them in each "
                "source's style, never adding or dropping a fact; it is how this kit runs LaCLIP on a CPU. "
                "Set `llm_model` to a local causal LM (or a hub name on a GPU machine) for real LLM rewrites.")
        if p["data"] != "shapeworld":
            note += " On captions that are not ShapeWorld's, the stand-in finds no shapes and keeps the original."
    texts, report = _job(lesson, captions, rcfg)
    rows = [{"original": c, **{v: texts[v][i] for v in texts}} for i, c in enumerate(captions[:5])]
    falls = {v: r.get("total", 0) for v, r in report["fallbacks"].items()}
    lesson.markdown(note + f"\n\n{report['generation_calls']} generation calls, {report['batches_reused']} batches "
                    f"reused from the cache; fallbacks to the original: {falls}.\n\n" + _table(rows),
                    "Rewrites", key=True)
    lesson.metrics.update({"rewriter": rcfg.rewriter, "first_run_generation_calls": report["generation_calls"]})
    return {"rewriter": rcfg.rewriter, "rcfg": rcfg, "texts": texts, "report": report}


def eda_and_backtranslation(lesson: Lesson, captions: list[str], rewrites: dict) -> dict:
    """The two baselines beside the LLM's rewrites: EDA (word-level edits) and back-translation (only when
    `bt_models` names a translation pair)."""
    p = lesson.params
    eda_texts, eda_report = _job(lesson, captions, _rewrite_config(lesson, "eda"))
    out = {"eda": {"texts": eda_texts, "report": eda_report}}
    if p["bt_models"]:
        bt_texts, bt_report = _job(lesson, captions, _rewrite_config(lesson, "backtranslate", p["bt_models"]))
        out["backtranslate"] = {"texts": bt_texts, "report": bt_report}
        bt_note = f"Back-translation through `{p['bt_models']}`."
    else:
        bt_note = ("**Back-translation skipped**: it needs a pair of translation models (`bt_models=\"en-de,de-en\"`, "
                   "e.g. Helsinki-NLP/opus-mt-en-de,Helsinki-NLP/opus-mt-de-en as local folders), which this "
                   "machine does not have offline.")
    first_llm = next(iter(rewrites["texts"]))
    rows = []
    for i, c in enumerate(captions[:6]):
        row = {"original": c, "EDA": eda_texts["eda1"][i]}
        if "backtranslate" in out:
            row["back-translation"] = out["backtranslate"]["texts"]["bt1"][i]
        row[f"{rewrites['rewriter']} ({first_llm})"] = rewrites["texts"][first_llm][i]
        rows.append(row)
    lesson.markdown(bt_note + "\n\n" + _table(rows), "EDA and back-translation", key=True)
    return out


def quality_lesson(lesson: Lesson, captions: list[str], rewrites: dict, baselines: dict) -> dict:
    """Diversity vs faithfulness of every method's rewrites (`laclip_lite.rewrite.quality`)."""
    from matplotlib.figure import Figure

    from laclip_lite.rewrite.quality import MiniLMEmbedder, markdown_table, quality_report

    embedder = MiniLMEmbedder() if lesson.params["embed"] else None
    methods = {rewrites["rewriter"]: (rewrites["texts"], rewrites["report"])}
    methods.update({m: (b["texts"], b["report"]) for m, b in baselines.items()})
    rows = {}
    for method, (texts, report) in methods.items():
        q = quality_report(captions, texts, report.get("fallbacks"), embed=embedder is not None, embedder=embedder)
        for variant, row in q["rows"].items():
            if variant == "original" and "original" in rows:
                continue
            rows[variant if variant == "original" else f"{method}:{variant}"] = row
    lesson.markdown(markdown_table(rows), "Rewrite quality", key=True)
    # On ShapeWorld the attributes a rewrite keeps are the sharpest faithfulness measure; else MiniLM cosine.
    faith = next((k for k in ("kept", "cosine", "overlap") if any(k in r for n, r in rows.items() if n != "original")))
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.add_subplot()
    colors = dict(zip(methods, ("tab:blue", "tab:orange", "tab:green", "tab:purple")))
    for i, method in enumerate(methods):
        pts = [(name.split(":", 1)[1], 1 - r["bleu"], r[faith]) for name, r in rows.items()
               if name.startswith(method + ":") and faith in r]
        ax.scatter([p[1] for p in pts], [p[2] for p in pts], color=colors[method], s=40, label=method)
        if i == 0:                                  # the LLM's variants by name; baselines by method
            for variant, x, y in pts:
                ax.annotate(variant, (x, y), fontsize=7, xytext=(4, -3), textcoords="offset points")
    ax.set_xlabel("diversity: 1 − BLEU against the original")
    ax.set_ylabel({"cosine": "faithfulness: MiniLM cosine to the original",
                   "kept": "faithfulness: share of stated attributes kept",
                   "overlap": "word overlap with the original"}[faith])
    ax.set_xlim(0, 1.02)
    ax.set_title("Good rewrites sit top right: new words, same facts", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    lesson.figure(fig, "rewrite_quality", "Diversity vs faithfulness", key=True)
    for name, r in rows.items():
        if name != "original":
            lesson.metrics[f"{name}/bleu"] = round(r["bleu"], 4)
            if faith in r:
                lesson.metrics[f"{name}/{faith}"] = round(r[faith], 4)
    return rows


def cache_lesson(lesson: Lesson, captions: list[str], rewrites: dict) -> dict:
    """Run the same rewrite job again: every batch comes from the cache, so it makes 0 generation calls."""
    t0 = time.perf_counter()
    _, report = _job(lesson, captions, rewrites["rcfg"])
    seconds = time.perf_counter() - t0
    calls = report["generation_calls"]
    if calls != 0:
        raise RuntimeError(f"the rewrite cache in {lesson.out_dir / 'rewrites'} was not reused: the second run "
                           f"made {calls} generation calls (expected 0)")
    lesson.markdown(f"Second run of the same job: **{calls} generation calls** ({report['n_batches']} batches "
                    f"read from `{lesson.out_dir / 'rewrites' / rewrites['rewriter']}/cache/`) in {seconds:.2f} s. "
                    f"The cache key hashes the captions and every setting that changes the output, so a new "
                    f"temperature or meta-pair file makes a new cache.", "The cache", key=True)
    lesson.metrics["second_run_generation_calls"] = calls
    return report


# =========================================================================================================
# 03 LaCLIP training
# =========================================================================================================
@dataclass
class Comparison:
    out_dir: Path
    summary: list[dict]
    runs: list[dict]
    run_dirs: dict      # "<arm>-s<seed>" -> folder


def _arms(lesson: Lesson):
    from laclip_lite.experiments import Arm
    return [Arm.parse(p, lesson.params["augment"]) for p in lesson.params["policies"]]


def _seeds(lesson: Lesson) -> list[int]:
    return list(lesson.params["seeds"] or [lesson.params["seed"]])


def _over_seeds(lesson: Lesson) -> str:
    from laclip_lite.experiments import over_seeds
    return over_seeds(len(_seeds(lesson)))


def training_plan(lesson: Lesson) -> list[dict]:
    """What each arm trains on: same data, model, steps and batch; only the text policy differs."""
    from laclip_lite.experiments import arm_config

    rows, cfgs = [], {}
    for arm in _arms(lesson):
        cfg = arm_config(arm, _seeds(lesson)[0], lesson.params["preset"], lesson.overrides())
        cfgs[arm.name] = cfg
        k = 1 + (cfg.data.num_rewrites if arm.augment != "none" else 0)
        texts = {"clip": "1 (the original)", "laclip": f"1 drawn from {k}", "mt": f"all {k}"}[arm.policy]
        rows.append({"arm": arm.name, "texts per image per step": texts, "rewrites": arm.augment,
                     "steps": cfg.train.steps, "batch": cfg.train.batch_size, "image tower": cfg.model.vision,
                     "text tower": cfg.model.text, "data": cfg.data.source})
    lesson.markdown(_table(rows), "The arms", key=True)
    cfg = next(iter(cfgs.values()))
    if cfg.data.is_shapeworld:
        from laclip_lite.data.dataset import select_variants, shapeworld_rewrites, shapeworld_split

        split = shapeworld_split(cfg, "train")
        with_rw = next((c for c in cfgs.values() if c.data.augment != "none"), None)
        _warm_rewrite_cache(with_rw or cfg, lesson.progress)
        texts, names = [split.captions[0]], ["original"]
        if with_rw is not None:
            rw = shapeworld_rewrites(with_rw, list(split.captions))
            names += select_variants(list(rw), with_rw)
            texts += [rw[v][0] for v in names[1:]]
        lesson.figure(_image_with_texts(split.images[0], texts, names), "example_texts", "One image and its texts")
    else:
        lesson.markdown(f"Training on `{cfg.data.source}`. Note: the evaluation after training uses ShapeWorld's "
                        "test split (the labelled set the kit ships), which says little about a model of real "
                        "photos; evaluate such models with your own labelled images (`laclip_lite.evaluate`).")
    return rows


def _image_with_texts(image, texts: list[str], names: list[str]):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 1.6), layout="constrained")
    a1, a2 = fig.subplots(1, 2, width_ratios=[1, 6])
    a1.imshow(_hwc(image), interpolation="nearest")
    a1.set_axis_off()
    lines = [f"{name:>8}: {textwrap.shorten(t, 95)}" for name, t in zip(names, texts)]
    a2.text(0, 0.5, "\n".join(lines), va="center", fontsize=9, linespacing=1.5, family="monospace")
    a2.set_axis_off()
    fig.suptitle("CLIP sees only the original; LaCLIP one text drawn at random each time; MT all at once",
                 fontsize=10)
    return fig


def jobs(lesson: Lesson) -> int:
    """The `jobs` parameter; 0 = auto: one run at a time on CUDA, two on a CPU with 2+ cores. On a small shared
    CPU two single-threaded runs side by side train ~1.5x faster than one run on two threads."""
    import os

    from laclip_lite.utils import resolve_device
    if lesson.params["jobs"] > 0:
        return lesson.params["jobs"]
    return 1 if resolve_device(lesson.params["device"]).type == "cuda" else max(1, min(2, os.cpu_count() or 1))


def train_policies(lesson: Lesson) -> Comparison:
    """`experiments.compare`: every (arm, seed) on the same budget; finished runs are reused on a rerun."""
    import csv

    from laclip_lite.experiments import compare, markdown_table

    p = lesson.params
    out = lesson.out_dir / "compare"
    n_jobs = jobs(lesson)
    # In parallel, start the slowest arm (MT) first, so the others fill the other worker meanwhile.
    order = sorted(p["policies"], key=lambda a: not a.startswith("mt")) if n_jobs > 1 else list(p["policies"])
    n_runs = len(p["policies"]) * len(_seeds(lesson))
    if n_jobs > 1:
        _display_markdown(f"Training {n_runs} runs, {n_jobs} at a time in worker processes (no progress bar until "
                          f"they finish; each run's `metrics.jsonl` in `{out}` grows as it trains).")
    for arm in _arms(lesson):
        _warm_rewrite_cache(lesson.config({"data.augment": arm.augment}), lesson.progress)
    summary = compare(order, _seeds(lesson), out, p["preset"], lesson.overrides(), p["augment"],
                      jobs=n_jobs, progress=lesson.progress)
    names = [a.name for a in _arms(lesson)]
    summary = sorted(summary, key=lambda r: names.index(r["policy"]))
    with open(out / "runs.csv", newline="") as f:
        runs = sorted(({k: _num(v) for k, v in r.items()} for r in csv.DictReader(f)),
                      key=lambda r: (names.index(r["policy"]), r["seed"]))
    dirs = {f"{r['policy']}-s{r['seed']}": out / f"{str(r['policy']).replace(':', '-')}-s{r['seed']}" for r in runs}
    columns = [m for m in HEADLINE if m in summary[0]] + ["train_seconds"]
    lesson.markdown(f"Zero-shot top-1 (%) on the ShapeWorld test split and retrieval R@1, {_over_seeds(lesson)}; "
                    "`@heldout`: templates never used for any choice.\n\n"
                    + markdown_table(summary, columns), "CLIP vs LaCLIP vs LaCLIP-MT", key=True)
    for row in summary:
        for m in HEADLINE + ("train_seconds",):
            if m in row:
                lesson.metrics[f"{row['policy']}/{m}"] = row[m]
    return Comparison(out, summary, runs, dirs)


def _num(v: str):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return int(f) if f.is_integer() and "." not in v else f


def learning_curves_by_policy(lesson: Lesson, comparison: Comparison):
    """Training loss and logit scale of every run."""
    from laclip_lite.plots import learning_curves

    lesson.figure(learning_curves(comparison.run_dirs, ("loss", "logit_scale"),
                                  title="Learning curves (MT's loss averages over its texts)"),
                  "learning_curves", "Learning curves", key=True)


def bars(rows: list[dict], metrics: list[str], group: str, title: str = "", ncols: int = 3):
    """One panel per metric (`ncols` per row): mean ± std over seeds per group value, seeds as dots."""
    from matplotlib.figure import Figure

    metrics = [m for m in metrics if any(m in r for r in rows)]
    names = list(dict.fromkeys(str(r[group]) for r in rows))
    ncols = min(ncols, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = Figure(figsize=(max(3.2, 0.75 * len(names) + 1.4) * ncols, 3.0 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes[len(metrics):]:
        ax.set_axis_off()
    for ax, m in zip(axes, metrics):
        vals = [[float(r[m]) for r in rows if str(r[group]) == g and r.get(m) not in (None, "")] for g in names]
        means = [np.mean(v) if v else np.nan for v in vals]
        stds = [np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in vals]
        xs = np.arange(len(names))
        ax.bar(xs, means, yerr=stds, capsize=4, color="tab:blue", alpha=0.75)
        for x, v, mean in zip(xs, vals, means):
            ax.scatter([x] * len(v), v, color="black", s=10, zorder=3)
            ax.annotate(f"{mean:.1f}", (x, mean), xytext=(0, 3), textcoords="offset points", ha="center",
                        fontsize=7)
        ax.set_xticks(xs, names, rotation=30 if len(names) > 3 else 0, ha="right" if len(names) > 3 else "center",
                      fontsize=8)
        ax.set_title(m, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def results_table(lesson: Lesson, comparison: Comparison):
    """Zero-shot (default and held-out templates) and retrieval, mean ± std over seeds, as bars."""
    title = _over_seeds(lesson).capitalize() + "; dots are seeds"
    lesson.figure(bars(comparison.runs, list(HEADLINE), "policy", title), "results", "Results", key=True)


def similarity_by_policy(lesson: Lesson, comparison: Comparison, world_split: str = "test"):
    """The similarity matrix of each arm's model (first seed) on the same test images and captions."""
    from matplotlib.figure import Figure

    from laclip_lite.data.dataset import shapeworld_split
    from laclip_lite.evaluate import load_run

    n = min(lesson.params.get("n_show", 8), 8)
    first = {}
    for name, d in comparison.run_dirs.items():
        first.setdefault(name.rsplit("-s", 1)[0], d)
    sims, split = {}, None
    for arm, d in first.items():
        model, tok, cfg = load_run(d, device=lesson.params["device"])
        split = split or shapeworld_split(cfg, world_split)
        sims[arm] = _pairs_similarity(model, tok, split.images[:n], split.captions[:n])
    lo = min(float(v.min()) for v in sims.values())
    hi = max(float(v.max()) for v in sims.values())
    fig = Figure(figsize=(3.3 * len(sims), 4.0), layout="constrained")
    gs = fig.add_gridspec(2, len(sims) * n, height_ratios=[1, n])
    for a, (arm, sim) in enumerate(sims.items()):
        _thumbs_row(fig, [gs[0, a * n + i] for i in range(n)], split.images[:n])
        ax = fig.add_subplot(gs[1, a * n:(a + 1) * n])
        mappable = ax.imshow(sim, vmin=lo, vmax=hi, cmap="viridis")
        diag = sim.diagonal().mean().item()
        ax.set_title(f"{arm}: diagonal {diag:.2f}, rest {(sim.sum() - sim.diagonal().sum()).item() / (n * n - n):.2f}",
                     fontsize=9)
        ax.set_xlabel("image")
        ax.set_ylabel("caption")
    fig.colorbar(mappable, ax=fig.axes[-1], shrink=0.7)
    lesson.figure(fig, "similarity_by_policy", "Similarity matrices by policy", key=True)
    return sims


# =========================================================================================================
# 04 Ablations
# =========================================================================================================
def ablation_grid(lesson: Lesson):
    """The grid: one run per distinct configuration (a value shared by two ablations runs once), and the same
    grid written as a papermill sweep of notebook 03 for running it at scale."""
    from laclip_lite.sweep import ablation_points, ablation_sweep_yaml

    p = lesson.params
    points, skipped = ablation_points(p["ablations"], p["values"], p["policy"], p["llm_model"], p["bt_models"])
    runs = _ablation_runs(lesson, points)
    rows = [{"ablation": pt.ablation, "value": pt.value, "arm": pt.arm,
             "overrides": ", ".join(f"{k}={v}" for k, v in pt.overrides.items()) or "-",
             "run": runs[i][0][0].name} for i, pt in enumerate(points)]
    unique = len({r["run"] for r in rows})
    note = "".join(f"\n- skipped {a}={v}: {why}" for a, v, why in skipped)
    yaml_path = lesson.out_dir / "ablations_sweep.yaml"
    yaml_path.write_text(ablation_sweep_yaml(points, p, _seeds(lesson)))
    lesson.markdown(f"{len(points)} grid points, {unique} distinct runs × {len(_seeds(lesson))} seed(s) = "
                    f"{unique * len(_seeds(lesson))} trainings of {lesson.config().train.steps} steps.{note}\n\n"
                    + _table(rows) + f"\nThe same grid as a papermill sweep of notebook 03 (on many machines, "
                    f"`--shard i/n` each):\n\n```bash\nlaclip-lite sweep notebooks/03_laclip_training.ipynb "
                    f"--grid {yaml_path} --out runs/ablations --shard 0/4\n```", "The grid", key=True)
    return points


def _ablation_runs(lesson: Lesson, points) -> list[list[tuple[Path, Config]]]:
    """Per point, per seed: (run folder, config). Identical configurations share a folder."""
    from laclip_lite.experiments import Arm, arm_config
    from laclip_lite.utils import stable_hash

    out = []
    for pt in points:
        arm = Arm.parse(pt.arm, "shapes")
        per_seed = []
        for seed in _seeds(lesson):
            cfg = arm_config(arm, seed, lesson.params["preset"], lesson.overrides(pt.overrides))
            key = stable_hash(cfg.to_dict(), length=8)
            per_seed.append((lesson.out_dir / "runs" / f"{arm.name.replace(':', '-')}-s{seed}-{key}", cfg))
        out.append(per_seed)
    return out


def run_ablations(lesson: Lesson, points) -> list[dict]:
    """Train and evaluate every distinct run (finished runs are reused); one row per (point, seed)."""
    from laclip_lite.sweep import run_configs

    runs = _ablation_runs(lesson, points)
    unique = {d: cfg for per_seed in runs for d, cfg in per_seed}
    for cfg in unique.values():
        _warm_rewrite_cache(cfg, lesson.progress)
    results = run_configs(list(unique.items()), jobs=jobs(lesson), progress=lesson.progress)
    rows = []
    for pt, per_seed in zip(points, runs):
        for d, cfg in per_seed:
            rows.append({"ablation": pt.ablation, "value": str(pt.value), "arm": pt.arm, "seed": cfg.train.seed,
                         "label": pt.label, **results[d]})
    import csv
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(lesson.out_dir / "ablations_runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return rows


def ablation_table(lesson: Lesson, rows: list[dict]) -> str:
    """One aggregated table: every ablation's settings, mean ± std over seeds."""
    from laclip_lite.experiments import summarise, summary_cell

    metric = lesson.params["metric"]
    cols = list(dict.fromkeys([metric, f"{metric}@heldout", "t2i_R@1", "i2t_R@1"]))
    lines = ["| ablation | setting | seeds | " + " | ".join(cols) + " |", "|---|---|---:|" + "---:|" * len(cols)]
    summary_rows = []
    for ablation in dict.fromkeys(r["ablation"] for r in rows):
        mine = [{k: v for k, v in r.items() if k not in ("ablation", "value", "arm")} for r in rows
                if r["ablation"] == ablation]
        for s in summarise(mine, group="label"):
            cells = [summary_cell(s, c) for c in cols]
            lines.append(f"| {ablation} | {s['label']} | {s['seeds']} | " + " | ".join(cells) + " |")
            summary_rows.append({"ablation": ablation, **s})
            lesson.metrics[f"{ablation}/{s['label']}/{metric}"] = s.get(metric)
    text = "\n".join(lines) + "\n"
    (lesson.out_dir / "ablations.md").write_text(text)
    lesson.markdown(f"Zero-shot top-1 (%) on the ShapeWorld test split (`@heldout`: templates never tuned on) "
                    f"and retrieval R@1, mean ± std over seeds.\n\n" + text, "Ablations", key=True)
    return text


def ablation_figures(lesson: Lesson, rows: list[dict]):
    """One panel per ablation: `metric` per setting with error bars; the CLIP baseline as a dashed line."""
    from laclip_lite.sweep import ablation_figure

    lesson.figure(ablation_figure(rows, lesson.params["metric"]), "ablations", "Ablations", key=True)
