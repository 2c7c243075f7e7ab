"""Evaluation sets and the one evaluation call:

    scores = evaluate(model, tokenizer, sets)      # -> {"<set prefix><metric>": value}

An evaluation set has a `prefix` (the start of every key it writes: its name and a separator) and `scores(...)`,
its metrics computed with the pure functions of `laclip_lite.metrics`:

* `ShapeWorldSet`   a rendered ShapeWorld split: zero-shot top-1 per task and template set (`<task>_top1` for the
                    default templates, `<task>_top1@<set>` for the others, `<task>_top5` on request), image <->
                    caption retrieval (`i2t_R@K`, `t2i_R@K`), linear / k-shot probes trained on another split.
                    The trainer writes `val/...` and `test/...`; compare's table the test split unprefixed.
* `FileSet`         an evaluation set on files, opened by `laclip_lite.data.eval_layouts` (ImageFolder,
                    CLIP_benchmark webdataset, captions CSV, Karpathy JSON): `<name>/top1`, `/top5`,
                    `/mean_per_class_recall`, `/image_to_text_R@K`, `/text_to_image_R@K`, probes, `/n_images`,
                    `/skipped`. `file_sets(specs)` makes one per `eval.datasets` (or suite) entry.

`eval_sets(cfg, split)` is a config's evaluation sets on a split: the training source's own held-out split when it
has one (ShapeWorld's val / test) and every `eval.datasets` entry alike; the trainer and experiments build theirs
with it. `evaluate` is what the trainer (`Trainer.evaluate`), experiments (`run_experiment`) and `laclip-lite eval`
call; `metrics_of` gives one set's metrics without its prefix. Run folders are loaded by `laclip_lite.runs.load_run`.
All accuracies and recalls are percentages (0..100).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from laclip_lite.config import EvalSpec, parse_spec, parse_specs
from laclip_lite.constants import EVAL_TASKS
from laclip_lite.data import vocab
from laclip_lite.data.dataset import held_out_splits, shapeworld_split
from laclip_lite.data.eval_layouts import batches, open_eval_set, resolve_task
from laclip_lite.data.formats import ReadStats
from laclip_lite.errors import ConfigError
from laclip_lite.metrics import (
    _model_device,
    encode_images,
    encode_texts,
    few_shot,
    linear_probe,
    mean_per_class_recall,
    retrieval,
    topk_accuracy,
    zero_shot,
    zero_shot_classifier,
)
from laclip_lite.rewrite.shapes import SYNONYM_TASKS, synonym_classnames
from laclip_lite.templates import get_templates

# CLIP_benchmark's names for the two retrieval directions (the ShapeWorld tables keep the short i2t / t2i).
RETRIEVAL_NAMES = {"i2t": "image_to_text", "t2i": "text_to_image"}


# ---------------------------------------------------------------------------------------------------------
# The one call


def evaluate(model, tokenizer, sets: Sequence, batch_size: int = 256, device=None, num_workers: int = 0,
             progress: bool = False, seed: int = 0, digits: int | None = None) -> dict:
    """Every set's metrics in one flat dict {"<set prefix><metric>": value}, in the order of `sets`.

    `digits` rounds the float values (tables and training logs keep 2); `seed` drives the probes' validation slice
    and k-shot draws. Two sets writing the same key stop with a ValueError (one would hide the other).
    """
    out: dict = {}
    for s in sets:
        for metric, value in s.scores(model, tokenizer, batch_size=batch_size, device=device,
                                      num_workers=num_workers, progress=progress, seed=seed).items():
            key = s.prefix + metric
            if key in out:
                raise ValueError(f"evaluate: two evaluation sets write {key!r}; give them distinct names")
            out[key] = round(value, digits) if digits is not None and isinstance(value, float) else value
    return out


def eval_sets(cfg, split: str = "test", prefix: str | None = None, datasets: bool = True,
              tasks: str | Sequence[str] = EVAL_TASKS, template_sets: Sequence = ("default",),
              retrieval_ks: Sequence[int] = (1, 5, 10), synonyms: bool = False) -> list:
    """The evaluation sets of a run's config on `split`, for one `evaluate` call:

    * the training source's own held-out split `split` when it has one (`data.dataset.held_out_splits`: a
      ShapeWorld run's "val" / "test"; file data has none), its keys `<prefix><metric>` (prefix "<split>/" unless
      given), scored on `tasks` with `template_sets` and image <-> caption recall@`retrieval_ks`; synonyms=True
      names every class by a synonym (keys end @synonyms) and keeps the tasks that have synonyms (none: no set);
    * datasets=True: every `eval.datasets` entry, as `<name>/<metric>` on the split its entry names.
    """
    sets: list = []
    if split in held_out_splits(cfg):
        tasks = resolve_tasks(tasks)
        if synonyms:
            tasks = [t for t in tasks if t in SYNONYM_TASKS]
        if tasks:
            sets.append(ShapeWorldSet(shapeworld_split(cfg, split), prefix=f"{split}/" if prefix is None else prefix,
                                      tasks=tasks, template_sets=template_sets, retrieval_ks=retrieval_ks,
                                      synonyms=synonyms))
    if datasets:
        sets += file_sets(cfg.eval.datasets)
    return sets


def metrics_of(scores: dict, s) -> dict:
    """One set's entries of `evaluate`'s result, without the set's prefix."""
    return {k[len(s.prefix):]: v for k, v in scores.items() if k.startswith(s.prefix)}


# ---------------------------------------------------------------------------------------------------------
# ShapeWorld splits


def resolve_tasks(tasks: str | Sequence[str]) -> list[str]:
    """"all" -> every ShapeWorld task; a name or a list -> checked list."""
    names = list(vocab.TASKS) if tasks == "all" else [tasks] if isinstance(tasks, str) else list(tasks)
    unknown = [t for t in names if t not in vocab.TASKS]
    if unknown or not names:
        raise ValueError(f"unknown zero-shot task(s) {unknown or names!r} (known: {', '.join(vocab.TASKS)}, "
                         "or 'all')")
    return names


def zero_shot_tasks(model, tokenizer, split, tasks: str | Sequence[str] = "all",
                    templates: Sequence[str] | str | None = None, batch_size: int = 256, device=None,
                    image_features: torch.Tensor | None = None,
                    classnames=vocab.classnames) -> dict[str, dict[str, float]]:
    """Zero-shot accuracy on ShapeWorld tasks of a split: {task: {"top1": %, "top5": %}}.

    The images are encoded once and shared by every task; `classnames(task)` names the classes in label order.
    """
    if image_features is None:
        image_features = encode_images(model, split.images, batch_size, device)
    templates = get_templates(templates)
    return {task: zero_shot(model, tokenizer, None, split.labels[task], classnames(task), templates,
                            device=device, image_features=image_features)
            for task in resolve_tasks(tasks)}


def template_label(templates) -> str:
    """How a template set is named in keys and output: its name or file, "default" for None, "custom" for a list."""
    if templates is None:
        return "default"
    return str(templates) if isinstance(templates, (str, Path)) else "custom"


@dataclass
class ShapeWorldSet:
    """A rendered ShapeWorld split (`data.dataset.shapeworld_split`) as an evaluation set."""
    data: object                            # the split: images uint8 [N, 3, H, W], labels {task: [N]}, captions
    prefix: str = "test/"                   # the start of every key it writes ("" = bare table columns)
    tasks: str | Sequence[str] = EVAL_TASKS  # zero-shot tasks: a name, a list or "all"
    template_sets: Sequence = ("default",)  # set names, files or lists; keys of all but "default" end in @<set>
    retrieval_ks: Sequence[int] = (1, 5, 10)  # image <-> caption recall@K scored (() = no retrieval)
    top5: bool = False                      # also `<task>_top5`
    synonyms: bool = False                  # classes named by a synonym (`synonym_classnames`); keys end @synonyms
    probe_train: object = None              # the split the probes train on (needed by linear_probe / few_shot)
    linear_probe: bool = False              # `<task>_linear_probe_top1` / `_C`
    few_shot: int = 0                       # k > 0: `<task>_few_shot_top1` / `_std` / `_k` / `_episodes`

    def __post_init__(self):
        resolve_tasks(self.tasks)                                   # an unknown task stops before any encoding
        if (self.linear_probe or self.few_shot) and self.probe_train is None:
            raise ValueError("ShapeWorldSet: linear_probe / few_shot need probe_train, the split they train on")

    def scores(self, model, tokenizer, batch_size: int = 256, device=None, seed: int = 0, **_) -> dict:
        tasks = resolve_tasks(self.tasks)
        names = synonym_classnames if self.synonyms else vocab.classnames
        feats = encode_images(model, self.data.images, batch_size, device)       # once, shared by every metric
        out: dict = {}
        for tset in self.template_sets:
            label = template_label(tset)
            suffix = ("" if label == "default" else f"@{label}") + ("@synonyms" if self.synonyms else "")
            per_task = zero_shot_tasks(model, tokenizer, self.data, tasks, tset, batch_size, device,
                                       image_features=feats, classnames=names)
            for task, acc in per_task.items():
                out[f"{task}_top1{suffix}"] = acc["top1"]
                if self.top5:
                    out[f"{task}_top5{suffix}"] = acc["top5"]
        if self.retrieval_ks:
            texts = encode_texts(model, tokenizer, self.data.captions, batch_size, device)
            scores = retrieval(feats, texts, ks=self.retrieval_ks)
            out.update({f"{side}_R@{k}": scores[f"{side}_R@{k}"] for k in self.retrieval_ks for side in ("i2t", "t2i")})
        if self.linear_probe or self.few_shot:
            train = self.probe_train
            if self.few_shot:
                _check_shots(self.few_shot, {t: train.labels[t] for t in tasks})
            train_feats = encode_images(model, train.images, batch_size, device)
            for task in tasks if self.linear_probe else ():
                got = linear_probe(train_feats, train.labels[task], feats, self.data.labels[task], seed=seed)
                out.update({f"{task}_linear_probe_{k}": v for k, v in got.items()})
            for task in tasks if self.few_shot else ():
                got = few_shot(train_feats, train.labels[task], feats, self.data.labels[task], k=self.few_shot,
                               seed=seed)
                out.update({f"{task}_few_shot_{k}": v for k, v in got.items()})
        return out


# ---------------------------------------------------------------------------------------------------------
# Evaluation sets on files (laclip_lite.data.eval_layouts reads them)


def _image_size(model) -> int:
    size = getattr(getattr(model, "visual", None), "image_size", None)
    if not size:
        raise ValueError("evaluate: cannot tell the model's input size (model.visual.image_size)")
    return int(size)


def _encode_stream(model, dataset, split: str, batch_size: int, num_workers: int, device, progress: bool):
    """All readable images of a split -> (features [N, D], targets, ReadStats: the unreadable ones by reason)."""
    stats, feats, targets = ReadStats(f"{dataset.path} ({split})"), [], []
    for images, tgt in batches(dataset, split, _image_size(model), batch_size, num_workers, progress, stats):
        feats.append(encode_images(model, images, batch_size, device))
        targets += tgt
    if not feats:
        raise ValueError(f"{dataset.path}: no readable image in split {split!r} ({stats.count} skipped: "
                         f"{stats.reasons() or 'the split is empty'})")
    return torch.cat(feats), targets, stats


@dataclass
class FileSet:
    """One evaluation set read from files; its keys are `<spec.label>/<metric>`.

    Classification (task zeroshot, linear_probe, fewshot) -> top1, top5, mean_per_class_recall, n_images, skipped
    (probes add C / k, std, n_train); retrieval -> image_to_text_R@1/5/10, text_to_image_R@1/5/10, n_images,
    n_texts, skipped. `skipped` counts unreadable images (a warning names the first few). The task defaults to
    the layout's own (zero-shot or retrieval).
    """
    spec: EvalSpec                          # a path or a mapping becomes one through `eval_layouts.parse_spec`

    def __post_init__(self):
        if not isinstance(self.spec, EvalSpec):
            self.spec = parse_spec(self.spec)

    @property
    def prefix(self) -> str:
        return f"{self.spec.label}/"

    def scores(self, model, tokenizer, batch_size: int = 256, device=None, num_workers: int = 0,
               progress: bool = False, seed: int = 0) -> dict:
        spec = self.spec
        dataset = open_eval_set(spec)
        task = resolve_task(spec, dataset)
        device = torch.device(device) if device is not None else _model_device(model)
        feats, targets, skipped = _encode_stream(model, dataset, spec.split, batch_size, num_workers, device,
                                                 progress)
        out: dict = {}
        if task == "retrieval":
            texts = [t for caps in targets for t in caps]
            owner = [i for i, caps in enumerate(targets) for _ in caps]
            scores = retrieval(feats, encode_texts(model, tokenizer, texts, batch_size, device), owner)
            for key, value in scores.items():
                side, k = key.split("_R@")
                out[f"{RETRIEVAL_NAMES[side]}_R@{k}"] = value
            out["n_texts"] = len(texts)
        else:
            labels = torch.tensor(targets, dtype=torch.long)
            n_classes = len(dataset.classnames)
            if int(labels.max()) >= n_classes or int(labels.min()) < 0:
                raise ValueError(f"{dataset.path}: class index {int(labels.max())} but only {n_classes} class "
                                 f"names (classnames has {n_classes} lines)")
            if task == "zeroshot":
                classifier = zero_shot_classifier(model, tokenizer, dataset.classnames, dataset.templates, device)
                logits = feats @ classifier
                out.update(topk_accuracy(logits, labels))           # with fewer than 5 classes top5 is 100
                out["mean_per_class_recall"] = mean_per_class_recall(logits, labels)
            else:
                train_feats, train_targets, train_skipped = _encode_stream(model, dataset, "train", batch_size,
                                                                          num_workers, device, progress)
                skipped.merge(train_skipped)
                train_labels = torch.tensor(train_targets, dtype=torch.long)
                if task == "linear_probe":
                    out.update(linear_probe(train_feats, train_labels, feats, labels, seed=seed))
                else:
                    out.update(few_shot(train_feats, train_labels, feats, labels, k=spec.k, seed=seed))
                out["n_train"] = len(train_labels)
        out["n_images"] = len(feats)
        out["skipped"] = skipped.count
        if skipped.count:
            warnings.warn(f"{dataset.path}: {skipped.count} unreadable image(s) skipped: {skipped.reasons()}",
                          stacklevel=3)
        return out


def _check_shots(k: int, labels: dict) -> None:
    """k larger than every class of a task (each class would use all it has: no longer a k-shot probe) is a
    ConfigError naming the largest k that means something. A rare class with fewer than k uses all it has."""
    for task, y in labels.items():
        most = int(torch.bincount(torch.as_tensor(y)).max())
        if k > most:
            raise ConfigError(f"--few-shot {k}: the training split's largest {task} class has only {most} images; "
                              f"use k <= {most} (or a larger data.train_size)")


def file_sets(specs) -> list[FileSet]:
    """Every entry of `specs` (e.g. `cfg.eval.datasets`: paths, mappings or EvalSpecs; names checked distinct)."""
    if all(isinstance(s, EvalSpec) for s in specs or []):
        return [FileSet(s) for s in specs or []]
    return [FileSet(s) for s in parse_specs(specs)]
