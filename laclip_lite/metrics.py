"""Metrics on frozen features from the two towers: pure functions, no data sets, no run folders.

* `encode_images` / `encode_texts`   images or captions -> L2-normalised features [N, D] (on the CPU).
* `zero_shot_classifier`             class names x templates -> one weight vector per class [D, C]
                                     (CLIP's prompt ensemble); `zero_shot` scores images with it;
                                     `class_probabilities` the softmax over classes.
* `topk_accuracy`, `mean_per_class_recall`   top-k accuracy and CLIP's per-class recall (ties by expectation).
* `retrieval`                        image <-> text recall@K from the cosine-similarity matrix (ties by expectation).
* `linear_probe`, `few_shot`         scikit-learn classifiers on frozen image features.

`laclip_lite.evaluate` applies them to evaluation sets (ShapeWorld splits, files). All accuracies and recalls are
percentages (0..100).
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from laclip_lite.data.transforms import normalize
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
