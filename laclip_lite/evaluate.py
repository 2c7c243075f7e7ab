"""Evaluation of a trained CLIP: zero-shot classification, retrieval, linear probe and k-shot probe.

Everything works on *frozen* features from the two towers:

* `encode_images` / `encode_texts`   images or captions -> L2-normalised features [N, D] (on the CPU).
* `zero_shot_classifier`             class names x templates -> one weight vector per class [D, C]
                                     (CLIP's prompt ensemble); `zero_shot` scores images with it.
* `retrieval`                        image <-> text recall@K from the cosine-similarity matrix.
* `linear_probe`, `few_shot`         scikit-learn classifiers on frozen image features.
* `evaluate_shapeworld`              the one ShapeWorld evaluation (zero-shot per task and template set,
                                     retrieval) behind the trainer, `experiments` / compare and the CLI.
* `evaluate_dataset(s)`              the same metrics on evaluation sets read from files (ImageFolder,
                                     CLIP_benchmark webdataset, captions CSV, Karpathy JSON:
                                     `laclip_lite.data.eval_layouts`): zero-shot, retrieval, linear / k-shot probe.
* `load_run`, `evaluate_run`         a run folder -> (model, tokenizer, cfg) -> one dict of metrics; the call
                                     behind `laclip-lite eval`.

All accuracies and recalls are percentages (0..100).
"""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from laclip_lite.constants import EVAL_TASKS
from laclip_lite.templates import fill, get_templates

# ---------------------------------------------------------------------------------------------------------
# Features


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no autograd inside; the model's previous train/eval mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _model_device(model: torch.nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def encode_images(model, images: torch.Tensor, batch_size: int = 256, device=None) -> torch.Tensor:
    """Images [N,3,H,W] -> L2-normalised image features [N, D] (float32, CPU).

    uint8 images (0..255, as ShapeWorld makes them) are normalised with CLIP's mean/std first; float images are
    taken as already normalised model input. `device` defaults to the model's device.
    """
    from laclip_lite.data.transforms import normalize

    device = torch.device(device) if device is not None else _model_device(model)
    out = []
    with _eval_mode(model):
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].to(device)
            if batch.dtype == torch.uint8:
                batch = normalize(batch)
            out.append(F.normalize(model.encode_image(batch).float(), dim=-1).cpu())
    if not out:
        raise ValueError("encode_images got no images")
    return torch.cat(out)


def encode_texts(model, tokenizer, texts: Sequence[str], batch_size: int = 256, device=None) -> torch.Tensor:
    """Texts -> L2-normalised text features [N, D] (float32, CPU). `tokenizer(list[str])` -> LongTensor [N, L]."""
    device = torch.device(device) if device is not None else _model_device(model)
    texts = list(texts)
    out = []
    with _eval_mode(model):
        for start in range(0, len(texts), batch_size):
            tokens = tokenizer(texts[start:start + batch_size]).to(device)
            out.append(F.normalize(model.encode_text(tokens).float(), dim=-1).cpu())
    if not out:
        raise ValueError("encode_texts got no texts")
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------------------
# Zero-shot classification


def zero_shot_classifier(model, tokenizer, classnames: Sequence[str], templates: Sequence[str],
                         device=None) -> torch.Tensor:
    """CLIP's prompt ensemble: one unit-length weight vector per class, stacked as columns [D, C].

    For each class: fill every template with the class name, encode the sentences, L2-normalise each
    embedding, average them, and L2-normalise the average.
    """
    texts = [fill(t, name) for name in classnames for t in templates]               # C*T sentences, class-major
    emb = encode_texts(model, tokenizer, texts, device=device)                     # [C*T, D], unit rows
    emb = F.normalize(emb, dim=-1).view(len(classnames), len(templates), -1)       # [C, T, D]
    weights = F.normalize(emb.mean(dim=1), dim=-1)                                 # [C, D]: average, re-normalise
    return weights.T                                                               # [D, C]


def class_probabilities(image_features: torch.Tensor, classifier: torch.Tensor,
                        logit_scale: float = 100.0) -> torch.Tensor:
    """Softmax over classes of scaled cosine similarities [N, C] (CLIP uses a scale of 100)."""
    return (logit_scale * image_features @ classifier).softmax(dim=-1)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """{"top1": %, "top5": %}: the share of rows whose label is among the k highest logits.

    A row's label ranks after the classes scoring strictly higher; ties count by their expectation under random
    tie-breaking, so a collapsed model (all logits equal) scores chance, k/C. With fewer than k classes every
    label is within the top k (100).
    """
    labels = torch.as_tensor(labels).long().view(-1, 1).to(logits.device)
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(f"topk_accuracy: {logits.shape[0]} rows of logits but {labels.shape[0]} labels")
    _check_finite(logits, "zero-shot logits")
    own = logits.gather(1, labels)                               # [N, 1]: the true class's score
    not_own = torch.ones_like(logits, dtype=torch.bool).scatter_(1, labels, False)
    return {f"top{k}": v for k, v in _expected_hits(logits, own, not_own, ks).items()}


def _check_finite(x: torch.Tensor, what: str) -> None:
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or inf (a diverged model?); refusing to score them")


def zero_shot(model, tokenizer, images: torch.Tensor, labels: torch.Tensor, classnames: Sequence[str],
              templates: Sequence[str] | str | None = None, batch_size: int = 256, device=None,
              image_features: torch.Tensor | None = None) -> dict[str, float]:
    """Zero-shot top-1 / top-5 accuracy (%) of `images` against `classnames` with a template ensemble.

    `templates` is a list, a set name or a file (None = the `default` set). Pass `image_features` to reuse
    features already computed (then `images` is ignored and may be None).
    """
    if image_features is None:
        image_features = encode_images(model, images, batch_size, device)
    classifier = zero_shot_classifier(model, tokenizer, classnames, get_templates(templates), device)
    return topk_accuracy(image_features @ classifier, labels)


def resolve_tasks(tasks: str | Sequence[str]) -> list[str]:
    """"all" -> every ShapeWorld task; a name or a list -> checked list."""
    from laclip_lite.data.vocab import TASKS

    names = list(TASKS) if tasks == "all" else [tasks] if isinstance(tasks, str) else list(tasks)
    unknown = [t for t in names if t not in TASKS]
    if unknown or not names:
        raise ValueError(f"unknown zero-shot task(s) {unknown or names!r} (known: {', '.join(TASKS)}, or 'all')")
    return names


def zero_shot_tasks(model, tokenizer, split, tasks: str | Sequence[str] = "all",
                    templates: Sequence[str] | str | None = None, batch_size: int = 256, device=None,
                    image_features: torch.Tensor | None = None) -> dict[str, dict[str, float]]:
    """Zero-shot accuracy on ShapeWorld tasks of a split: {task: {"top1": %, "top5": %}}.

    The images are encoded once and shared by every task.
    """
    from laclip_lite.data.vocab import classnames

    if image_features is None:
        image_features = encode_images(model, split.images, batch_size, device)
    templates = get_templates(templates)
    return {task: zero_shot(model, tokenizer, None, split.labels[task], classnames(task), templates,
                            device=device, image_features=image_features)
            for task in resolve_tasks(tasks)}


# ---------------------------------------------------------------------------------------------------------
# Retrieval


def retrieval(image_features: torch.Tensor, text_features: torch.Tensor,
              text_to_image: torch.Tensor | Sequence[int] | None = None,
              ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K (%) for image->text (`i2t_R@K`) and text->image (`t2i_R@K`) retrieval.

    `text_to_image[j]` is the image text j describes; None means one caption per image, in order. An image
    counts as found at K when any of its texts ranks in the top K. Ties are scored by their expectation under
    random tie-breaking, so a model that gives every text the same embedding scores chance (K/N), not 100.
    """
    n_img, n_txt = image_features.shape[0], text_features.shape[0]
    if text_to_image is None:
        if n_img != n_txt:
            raise ValueError(f"retrieval: {n_img} images but {n_txt} texts; pass text_to_image for several per image")
        text_to_image = torch.arange(n_txt)
    text_to_image = torch.as_tensor(text_to_image).long()
    bad_shape = text_to_image.shape != (n_txt,)
    if bad_shape or (n_txt and not 0 <= int(text_to_image.min()) <= int(text_to_image.max()) < n_img):
        raise ValueError(f"retrieval: text_to_image must hold {n_txt} image indices in 0..{n_img - 1}")
    positive = text_to_image.view(1, -1) == torch.arange(n_img).view(-1, 1)      # [N_img, N_txt]
    if not positive.any(dim=1).all():
        missing = (~positive.any(dim=1)).nonzero().flatten()[:5].tolist()
        raise ValueError(f"retrieval: images {missing} have no text; every image needs at least one")

    sim = image_features.float() @ text_features.float().T                      # [N_img, N_txt]
    _check_finite(sim, "retrieval similarities")
    # image -> text: the best-scoring positive text of each image against the image's negative texts
    best = sim.masked_fill(~positive, float("-inf")).max(dim=1, keepdim=True).values
    i2t = _expected_hits(sim, best, ~positive, ks)
    # text -> image: each text's own image against every other image (a column of sim)
    own = sim.gather(0, text_to_image.view(1, -1))                              # [1, N_txt]
    t2i = _expected_hits(sim.T, own.T, ~positive.T, ks)
    return {**{f"i2t_R@{k}": v for k, v in i2t.items()}, **{f"t2i_R@{k}": v for k, v in t2i.items()}}


def _expected_hits(scores: torch.Tensor, target: torch.Tensor, negative: torch.Tensor,
                   ks: Sequence[int]) -> dict[int, float]:
    """Mean over rows, in %, of P(target ranks in the top K) (see `_row_hits`)."""
    return {k: 100.0 * hits.mean().item() for k, hits in _row_hits(scores, target, negative, ks).items()}


def _row_hits(scores: torch.Tensor, target: torch.Tensor, negative: torch.Tensor,
              ks: Sequence[int]) -> dict[int, torch.Tensor]:
    """Per row: P(target ranks in the top K) = clamp((K - #negatives above) / (#negatives tied + 1), 0, 1).

    Shared by top-k accuracy (negatives = the other classes) and retrieval (negatives = non-matching items).
    """
    above = ((scores > target) & negative).sum(dim=1).double()
    tied = ((scores == target) & negative).sum(dim=1).double()
    return {k: ((k - above) / (tied + 1)).clamp(0, 1) for k in ks}


def mean_per_class_recall(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 recall (%) of each class present in `labels`, averaged over those classes (CLIP's metric for
    unbalanced sets such as FGVC Aircraft or Caltech-101); ties count by expectation, as in `topk_accuracy`."""
    labels = torch.as_tensor(labels).long().view(-1, 1).to(logits.device)
    own = logits.gather(1, labels)
    not_own = torch.ones_like(logits, dtype=torch.bool).scatter_(1, labels, False)
    hits = _row_hits(logits, own, not_own, (1,))[1]
    labels = labels.view(-1)
    recalls = [hits[labels == c].mean().item() for c in labels.unique()]
    return 100.0 * float(np.mean(recalls))


# ---------------------------------------------------------------------------------------------------------
# Linear probe and k-shot probe (scikit-learn on frozen features)


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _logistic_regression(C: float):
    """Standardised features -> multinomial logistic regression (L-BFGS), CLIP's linear-probe classifier."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))


def _fit(clf, x: np.ndarray, y: np.ndarray):
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a probe that stops at max_iter is still a probe
        warnings.filterwarnings("ignore", message="The number of unique classes")  # k-shot: few rows per class
        return clf.fit(x, y)


def linear_probe(train_feats, train_labels, test_feats, test_labels, C: float | None = None,
                 grid: Sequence[float] = (0.01, 0.1, 1.0, 10.0, 100.0), val_fraction: float = 0.2,
                 seed: int = 0) -> dict[str, float]:
    """Logistic regression on frozen features -> {"top1": test accuracy %, "C": the C used}.

    With C=None the inverse regularisation strength is picked from `grid` on a held-out `val_fraction` of
    the training features (never the test set), then the probe is refitted on all training features.
    """
    x_tr, y_tr, x_te, y_te = _numpy(train_feats), _numpy(train_labels), _numpy(test_feats), _numpy(test_labels)
    if len(x_tr) != len(y_tr) or len(x_te) != len(y_te):
        raise ValueError(f"linear_probe: features/labels lengths differ (train {len(x_tr)}/{len(y_tr)}, "
                         f"test {len(x_te)}/{len(y_te)})")
    if len(np.unique(y_tr)) < 2:
        raise ValueError("linear_probe needs at least two classes in the training labels")
    if C is None:
        order = np.random.default_rng(seed).permutation(len(x_tr))
        n_val = max(1, int(round(val_fraction * len(x_tr))))
        val, fit = order[:n_val], order[n_val:]
        if len(np.unique(y_tr[fit])) < 2:
            raise ValueError(f"linear_probe: too few training examples ({len(x_tr)}) to hold out a validation slice")
        scores = [(_fit(_logistic_regression(c), x_tr[fit], y_tr[fit]).score(x_tr[val], y_tr[val]), -i, c)
                  for i, c in enumerate(grid)]
        C = max(scores)[2]  # best validation accuracy; ties go to the smaller C (stronger regularisation)
    clf = _fit(_logistic_regression(C), x_tr, y_tr)
    return {"top1": 100.0 * clf.score(x_te, y_te), "C": float(C)}


def _nearest_class_mean(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray) -> np.ndarray:
    """Predict the class whose mean (L2-normalised) feature has the highest cosine with each test feature."""
    def unit(a):
        return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    classes = np.unique(y_tr)
    means = unit(np.stack([unit(x_tr[y_tr == c]).mean(axis=0) for c in classes]))
    return classes[(unit(x_te) @ means.T).argmax(axis=1)]


def few_shot(train_feats, train_labels, test_feats, test_labels, k: int, seed: int = 0, episodes: int = 5,
             method: str = "ncm", C: float = 1.0) -> dict[str, float]:
    """k-shot probe: per episode, draw k training examples of every class, fit, score the whole test set.

    `method` "ncm" (nearest class mean by cosine; no hyper-parameters) or "logreg" (logistic regression with
    inverse regularisation `C`). Returns {"top1": mean %, "std": std % over episodes, "k", "episodes"};
    the same seed gives the same draws. Classes with fewer than k training examples use all they have.
    """
    if k < 1 or episodes < 1:
        raise ValueError(f"few_shot needs k >= 1 and episodes >= 1, got k={k}, episodes={episodes}")
    if method not in ("ncm", "logreg"):
        raise ValueError(f"few_shot method must be 'ncm' or 'logreg', got {method!r}")
    x_tr, y_tr, x_te, y_te = _numpy(train_feats), _numpy(train_labels), _numpy(test_feats), _numpy(test_labels)
    rng = np.random.default_rng(seed)
    accs = []
    for _ in range(episodes):
        idx = np.concatenate([rng.choice(np.flatnonzero(y_tr == c), size=min(k, int((y_tr == c).sum())),
                                         replace=False) for c in np.unique(y_tr)])
        if method == "ncm" or len(np.unique(y_tr[idx])) < 2:
            pred = _nearest_class_mean(x_tr[idx], y_tr[idx], x_te)
        else:
            pred = _fit(_logistic_regression(C), x_tr[idx], y_tr[idx]).predict(x_te)
        accs.append(100.0 * float((pred == y_te).mean()))
    return {"top1": float(np.mean(accs)), "std": float(np.std(accs)), "k": int(k), "episodes": int(episodes)}


# ---------------------------------------------------------------------------------------------------------
# ShapeWorld: the one evaluation behind the trainer, experiments / compare and `laclip-lite eval`

def evaluate_shapeworld(model, tokenizer, data, tasks: str | Sequence[str] = EVAL_TASKS,
                        template_sets: Sequence[str | Path | None] = ("default",), with_retrieval: bool = True,
                        batch_size: int = 256, device=None, image_features: torch.Tensor | None = None) -> dict:
    """Zero-shot accuracy of every task under every template set, and retrieval, on a ShapeWorld split `data`.

    -> {"zero_shot": {template set: {task: {"top1", "top5"}}}, "retrieval": {i2t_R@K, t2i_R@K}} (no "retrieval"
    when with_retrieval=False). The images are encoded once. `flat_shapeworld` turns it into table columns.
    """
    if image_features is None:
        image_features = encode_images(model, data.images, batch_size, device)
    out: dict = {"zero_shot": {}}
    for tset in template_sets:
        label = "default" if tset is None else str(tset)
        out["zero_shot"][label] = zero_shot_tasks(model, tokenizer, data, tasks, tset, batch_size, device,
                                                  image_features=image_features)
    if with_retrieval:
        out["retrieval"] = retrieval(image_features, encode_texts(model, tokenizer, data.captions, batch_size, device))
    return out


def flat_shapeworld(scores: dict, prefix: str = "", ks: Sequence[int] = (1, 5, 10), digits: int = 2) -> dict:
    """`evaluate_shapeworld`'s result as flat columns: `<prefix><task>_top1` for the default templates,
    `<prefix><task>_top1@<set>` for the others, and `<prefix>i2t_R@K` / `t2i_R@K` for K in `ks`."""
    out = {}
    for tset, per_task in scores["zero_shot"].items():
        suffix = "" if tset == "default" else f"@{tset}"
        out.update({f"{prefix}{task}_top1{suffix}": round(v["top1"], digits) for task, v in per_task.items()})
    for k in ks:
        for side in ("i2t", "t2i"):
            if f"{side}_R@{k}" in scores.get("retrieval", {}):
                out[f"{prefix}{side}_R@{k}"] = round(scores["retrieval"][f"{side}_R@{k}"], digits)
    return out


# ---------------------------------------------------------------------------------------------------------
# Evaluation sets on files (laclip_lite.data.eval_layouts reads them)

# CLIP_benchmark's names for the two retrieval directions (the ShapeWorld tables keep the short i2t / t2i).
RETRIEVAL_NAMES = {"i2t": "image_to_text", "t2i": "text_to_image"}


def _image_size(model) -> int:
    size = getattr(getattr(model, "visual", None), "image_size", None)
    if not size:
        raise ValueError("evaluate_dataset: cannot tell the model's input size (model.visual.image_size)")
    return int(size)


def _encode_stream(model, dataset, split: str, batch_size: int, num_workers: int, device, progress: bool):
    """All readable images of a split -> (features [N, D], targets, Skipped)."""
    from laclip_lite.data.eval_layouts import Skipped, batches

    skipped, feats, targets = Skipped(), [], []
    for images, tgt in batches(dataset, split, _image_size(model), batch_size, num_workers, progress, skipped):
        feats.append(encode_images(model, images, batch_size, device))
        targets += tgt
    if not feats:
        raise ValueError(f"{dataset.path}: no readable image in split {split!r} ({skipped.count} skipped, e.g. "
                         f"{skipped.examples})")
    return torch.cat(feats), targets, skipped


def evaluate_dataset(model, tokenizer, spec, device=None, batch_size: int = 256, num_workers: int = 0,
                     progress: bool = True, seed: int = 0) -> dict:
    """Score a model on one evaluation set read from files; `spec` is an `EvalSpec`, a path or a mapping.

    Classification (task zeroshot, linear_probe, fewshot) -> {"top1", "top5", "mean_per_class_recall",
    "n_images", "skipped"} (probes add "C" / "k", "std", "n_train"); retrieval -> {"image_to_text_R@1/5/10",
    "text_to_image_R@1/5/10", "n_images", "n_texts", "skipped"}. Percentages; `skipped` counts unreadable images
    (a warning names the first few). The task defaults to the layout's own (zero-shot or retrieval).
    """
    from laclip_lite.data.eval_layouts import EvalSpec, open_eval_set, parse_spec, resolve_task

    spec = spec if isinstance(spec, EvalSpec) else parse_spec(spec)
    dataset = open_eval_set(spec)
    task = resolve_task(spec, dataset)
    device = torch.device(device) if device is not None else _model_device(model)
    feats, targets, skipped = _encode_stream(model, dataset, spec.split, batch_size, num_workers, device, progress)
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
            raise ValueError(f"{dataset.path}: class index {int(labels.max())} but only {n_classes} class names "
                             f"(classnames has {n_classes} lines)")
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
        warnings.warn(f"{dataset.path}: {skipped.count} unreadable image(s) skipped (e.g. {skipped.examples})",
                      stacklevel=2)
    return out


def evaluate_datasets(model, tokenizer, specs, device=None, batch_size: int = 256, num_workers: int = 0,
                      progress: bool = True, seed: int = 0) -> dict[str, dict]:
    """`evaluate_dataset` on every entry of `specs` (e.g. `cfg.eval.datasets`) -> {name: metrics}."""
    from laclip_lite.data.eval_layouts import parse_specs

    return {spec.label: evaluate_dataset(model, tokenizer, spec, device, batch_size, num_workers, progress, seed)
            for spec in parse_specs(specs)}


def flat_dataset_metrics(results: dict[str, dict], digits: int = 2) -> dict[str, float]:
    """{name: metrics} -> {"<name>/<metric>": value}, as training logs them (e.g. "imagenet_val/top1")."""
    return {f"{name}/{k}": round(v, digits) if isinstance(v, float) else v
            for name, metrics in results.items() for k, v in metrics.items()}


# ---------------------------------------------------------------------------------------------------------
# Run folders


def _strip_prefixes(state: dict) -> dict:
    """Weights saved from torch.compile (`_orig_mod.`) or DDP (`module.`) wrappers -> plain module names."""
    for prefix in ("_orig_mod.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_run(run_dir: str | Path, device: str = "auto"):
    """A run folder (or its checkpoint.pt) -> (model in eval mode on `device`, tokenizer, cfg).

    Reads `config.yaml`, the tokenizer the run saved, and the weights in `checkpoint.pt` (`["model"]`),
    loaded with `torch.load(weights_only=True)`. Works on a run still training (its latest checkpoint). A
    config.yaml or tokenizer that is not what the checkpoint recorded stops with a DataError (`laclip_lite.runs`).
    """
    path = Path(run_dir)
    ckpt_path = path if path.suffix == ".pt" else path / "checkpoint.pt"
    run_dir = ckpt_path.parent
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    for needed in (run_dir / "config.yaml", ckpt_path):
        if not needed.is_file():
            raise FileNotFoundError(f"run folder {run_dir} has no {needed.name} (expected {needed})")

    from laclip_lite.config import Config
    from laclip_lite.data.tokenizer import load_tokenizer
    from laclip_lite.errors import DataError
    from laclip_lite.models.clip import build_model
    from laclip_lite.utils import resolve_device

    cfg = Config.load(run_dir / "config.yaml")
    _check_tokenizer_files(run_dir)
    tokenizer = load_tokenizer(run_dir, cfg.model.context_length)
    if cfg.model.vocab_size == 0:  # a config saved before the tokenizer filled these in
        cfg.model.vocab_size, cfg.model.pad_id = tokenizer.vocab_size, tokenizer.pad_id
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    from laclip_lite.runs import check_recorded_config, check_tokenizer
    check_recorded_config(run_dir, cfg, checkpoint)      # a cut config.yaml would score the defaults' test set
    check_tokenizer(run_dir, tokenizer, checkpoint)
    model = build_model(cfg.model)
    state = checkpoint["model"] if isinstance(checkpoint, dict) and "model" in checkpoint else checkpoint
    try:
        model.load_state_dict(_strip_prefixes(state))
    except RuntimeError as e:
        raise DataError(f"{ckpt_path}: weights do not fit the model described by {run_dir / 'config.yaml'}: "
                        f"{str(e).splitlines()[0]}") from e
    model.to(resolve_device(device)).eval()
    return model, tokenizer, cfg


def _check_tokenizer_files(run_dir: Path) -> None:
    """The files `load_tokenizer` reads, each named when missing (a copied run folder often lacks one)."""
    import json

    from laclip_lite.data.tokenizer import CLIP_FILE_NAME, FILE_NAME

    meta = run_dir / "tokenizer_meta.json"
    if not meta.is_file():
        raise FileNotFoundError(f"run folder {run_dir} has no tokenizer_meta.json (the tokenizer the run saved; "
                                f"expected {meta})")
    kind = json.loads(meta.read_text()).get("kind")
    needed = run_dir / {"bpe": FILE_NAME, "clip": CLIP_FILE_NAME}.get(kind, "hf_tokenizer")
    if not needed.exists():
        raise FileNotFoundError(f"run folder {run_dir} has no {needed.name} (its {kind} tokenizer; expected {needed})")


# evaluate_run's flags share these functions' names; it calls them through these aliases.
_retrieval, _linear_probe, _few_shot = retrieval, linear_probe, few_shot


def evaluate_run(run_dir: str | Path, task: str | Sequence[str] = "color_shape",
                 templates: Sequence[str] | str | None = None, retrieval: bool = True,
                 linear_probe: bool = False, few_shot: int = 0, split: str = "test", device: str = "auto",
                 batch_size: int = 256, seed: int = 0) -> dict:
    """Evaluate a ShapeWorld run folder; the one call behind `laclip-lite eval`.

    Rebuilds the run's ShapeWorld `split` (`cfg.data.world_seed`, `<split>_size`, `cfg.model.image_size`) and
    returns {"run", "split", "n_images", "templates", "num_templates", "zero_shot": {task: {top1, top5}},
    "retrieval": {i2t_R@K, t2i_R@K} (unless retrieval=False), "linear_probe": {task: {top1, C}} (on request),
    "few_shot": {task: {top1, std, k, episodes}} (when few_shot=k > 0)}. Probes train on the training split.
    """
    from laclip_lite.errors import DataError

    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    tasks = resolve_tasks(task)
    template_list = get_templates(templates)  # a bad template file fails before the model loads
    model, tokenizer, cfg = load_run(run_dir, device)
    if not cfg.data.is_shapeworld:
        raise DataError(f"evaluate_run needs a ShapeWorld run; {run_dir} trained on data.source="
                        f"{cfg.data.source!r}: score it on evaluation sets of its own domain "
                        "(laclip-lite eval --dataset PATH, or eval.datasets in its config)")
    from laclip_lite.data.dataset import shapeworld_split  # the trainer's own split builder

    data = shapeworld_split(cfg, split)
    feats = encode_images(model, data.images, batch_size)
    label = str(templates) if isinstance(templates, (str, Path)) else "default" if templates is None else "custom"
    scores = evaluate_shapeworld(model, tokenizer, data, tasks, [template_list], retrieval, batch_size,
                                 image_features=feats)
    result = {"run": str(Path(run_dir)), "split": split, "n_images": len(data.images), "templates": label,
              "num_templates": len(template_list), "zero_shot": next(iter(scores["zero_shot"].values()))}
    if retrieval:
        result["retrieval"] = scores["retrieval"]
    if linear_probe or few_shot:
        train = data if split == "train" else shapeworld_split(cfg, "train")
        train_feats = encode_images(model, train.images, batch_size)
        if linear_probe:
            result["linear_probe"] = {t: _linear_probe(train_feats, train.labels[t], feats, data.labels[t], seed=seed)
                                      for t in tasks}
        if few_shot:
            result["few_shot"] = {t: _few_shot(train_feats, train.labels[t], feats, data.labels[t], k=few_shot,
                                               seed=seed) for t in tasks}
    return result
