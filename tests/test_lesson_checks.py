"""Every check a lesson cell makes can fail and accepts every correct answer: each concept cell and exercise check
is run here on small inputs as written, with a known wrong answer swapped in (it must fail) and with two other
correct formulations swapped in (they must pass). Also: the public, seedable calls the cells mirror."""
from __future__ import annotations

import math
import random
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import nbformat
import pytest
import torch
import torch.nn.functional as F

from laclip_lite.course import checks as C

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _source(notebook: str, cell_id: str) -> str:
    nb = nbformat.read(NB_DIR / f"{notebook}.ipynb", as_version=4)
    return next(c.source for c in nb.cells if c.get("id") == cell_id)


def _run(notebook: str, cell_id: str, ns: dict, swap: tuple = ()) -> dict:
    """Execute one notebook cell in `ns`, with (old, new) source replacements: the student's edit."""
    src = _source(notebook, cell_id)
    for old, new in swap:
        assert old in src, f"{notebook}:{cell_id} no longer holds {old!r}"
        src = src.replace(old, new)
    exec(compile(src, f"{notebook}:{cell_id}", "exec"), ns)
    return ns


def _both_ways(notebook, cell_id, make_ns, wrong, correct):
    """`wrong` (a swap) fails the cell's check; each of `correct` (swaps; () = as written) passes it."""
    with pytest.raises(AssertionError):
        _run(notebook, cell_id, make_ns(), wrong)
    for swap in correct:
        _run(notebook, cell_id, make_ns(), swap)


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


# --- lesson 01 ------------------------------------------------------------------------------------------
def _loss_ns():
    img = _unit(8, 16, seed=1)
    return {"untrained": SimpleNamespace(logit_scale=torch.tensor(math.log(1 / 0.07))), "image_features": img,
            "text_features": F.normalize(img + _unit(8, 16, seed=2), dim=-1), "lesson01": mock.Mock(), "torch": torch,
            "lesson": mock.Mock()}


def test_01_loss_cell():
    _both_ways("01_clip_basics", "cell-13", _loss_ns,
               wrong=[("loss = (loss_image_to_text + loss_text_to_image) / 2", "loss = loss_image_to_text")],
               correct=[(), [("F.cross_entropy(logits, labels)",                  # the textbook formula, stably
                              "-(logits.diagonal() - logits.logsumexp(dim=1)).mean()"),
                             ("F.cross_entropy(logits.T, labels)",
                              "-(logits.diagonal() - logits.logsumexp(dim=0)).mean()")],
                        [("F.cross_entropy(logits, labels)",                  # the textbook formula as written
                          "-torch.log(logits.exp().diagonal() / logits.exp().sum(dim=1)).mean()")]])


def test_01_equal_logits_cell():
    ns = _run("01_clip_basics", "cell-13", _loss_ns())
    make = lambda: {**ns, "lesson": mock.Mock()}                                                  # noqa: E731
    _both_ways("01_clip_basics", "cell-15", make,
               wrong=[("torch.zeros(N, N)", "torch.eye(N)")],
               correct=[(), [("torch.zeros(N, N)", "torch.full((N, N), 3.0)")]])


def _classifier_ns():
    from laclip_lite.data.vocab import classnames
    from laclip_lite.metrics import encode_texts
    from laclip_lite.templates import fill, get_templates

    sentences = [fill(t, n) for n in classnames("color") for t in get_templates("default")]
    model = C.TinyTextModel(sentences, dim=12)
    return {"task": "color", "templates": "default", "encode_texts": encode_texts,
            "run": SimpleNamespace(model=model, tokenizer=model.tokenizer), "torch": torch, "F": F}


def test_01_zero_shot_classifier_cell():
    _both_ways("01_clip_basics", "cell-26", _classifier_ns,
               wrong=[("columns.append(mean / mean.norm())", "columns.append(mean)")],
               correct=[(), [("mean = sentences.mean(dim=0)", "mean = sentences.sum(dim=0)")],
                        [("columns.append(mean / mean.norm())", "columns.append(F.normalize(mean, dim=0))")]])


def _accuracy_ns():
    feats, classifier = _unit(50, 8, seed=7), _unit(5, 8, seed=8).T          # [M, D], [D, C] unit columns
    labels = (feats @ classifier + 0.3 * torch.randn(50, 5, generator=torch.Generator().manual_seed(9))).argmax(1)
    world = SimpleNamespace(test=SimpleNamespace(images=None, labels={"color": labels}))
    return {"encode_images": lambda *a: feats, "run": mock.Mock(), "world": world, "classifier": classifier,
            "task": "color", "names": ["a", "b", "c", "d", "e"], "lesson": mock.Mock(), "torch": torch}


def test_01_zero_shot_accuracy_cell():
    _both_ways("01_clip_basics", "cell-27", _accuracy_ns,
               wrong=[(".argmax(dim=1)", ".argmin(dim=1)")],
               correct=[(), [(".argmax(dim=1)", ".topk(1, dim=1).indices[:, 0]")]])


def _retrieval_ns(with_ties: bool = True):
    feats = _unit(30, 8, seed=3)
    txt = F.normalize(feats + 0.8 * _unit(30, 8, seed=4), dim=-1)
    if with_ties:
        txt[7], txt[19] = txt[3], txt[3]                 # repeated captions embed identically: ties
    lesson01 = SimpleNamespace(distinct_texts=_distinct(), show_retrieval=mock.Mock())
    return {"test_features": feats, "encode_texts": lambda *a: txt.clone(), "run": mock.Mock(),
            "world": mock.Mock(), "lesson": mock.Mock(), "lesson01": lesson01, "torch": torch}


def _distinct():
    from laclip_lite.course.lesson01 import distinct_texts
    return distinct_texts


def test_01_recall_cell_is_tie_free_and_can_fail():
    ns = _run("01_clip_basics", "cell-34", _retrieval_ns())
    assert len(ns["keep"]) == 28 and 3 in ns["keep"].tolist() and 7 not in ns["keep"].tolist()
    _both_ways("01_clip_basics", "cell-34", _retrieval_ns,
               wrong=[("(sim > own[:, None])", "(sim >= own[:, None])")],
               correct=[(), [("beaten_by = (sim > own[:, None]).sum(dim=1)",
                              "beaten_by = (sim.argsort(dim=1, descending=True) == torch.arange(len(sim))[:, None])"
                              ".int().argmax(dim=1)")]])


def _t2i_reference(sim, k):
    own = sim.diagonal()
    beaten_by = (sim > own[None, :]).sum(dim=0)
    return 100 * (beaten_by < k).float().mean().item()


def _t2i_topk(sim, k):
    top = sim.topk(k, dim=0).indices                                        # [k, M]: best images per caption
    return (top == torch.arange(sim.shape[1])).any(dim=0).float().mean() * 100


def _t2i_via_transpose(sim, k):
    ranks = (sim.T > sim.diagonal()[:, None]).sum(dim=1)
    return float(100 * (ranks < k).sum() / len(ranks))


def _t2i_rows(sim, k):                                    # image -> text: the rows
    return 100 * ((sim > sim.diagonal()[:, None]).sum(dim=1) < k).float().mean().item()


@pytest.mark.parametrize("wrong, cause", [
    (_t2i_rows, "rows instead of columns"),
    (lambda sim, k: 100 * ((sim > sim.diagonal()[None, :]).sum(dim=0) <= k).float().mean().item(), "off by one"),
    (lambda sim, k: 100 * ((sim >= sim.diagonal()[None, :]).sum(dim=0) < k).float().mean().item(),
     "own image was counted"),
    (lambda sim, k: _t2i_reference(sim, k) / 100, "a fraction, not a percentage"),
    (lambda sim, k: 54.0, "Hint: per caption"),
])
def test_01_exercise3_check_names_the_mistake(wrong, cause):
    sim = _retrieval_ns(with_ties=False)["test_features"] @ _retrieval_ns(with_ties=False)["encode_texts"]().T
    with pytest.raises(C.CheckFailed, match=cause):
        C.check_text_to_image_recall(wrong, sim)


def test_01_exercise3_check_passes_correct_answers_and_refuses_ties():
    ns = _run("01_clip_basics", "cell-34", _retrieval_ns())
    for correct in (_t2i_reference, _t2i_topk, _t2i_via_transpose):
        C.check_text_to_image_recall(correct, ns["sim"])
    tied = ns["sim"].clone()
    tied[5] = tied[2]                                  # two identical images: caption 2's own image ties
    with pytest.raises(C.CheckFailed, match="ties"):
        C.check_text_to_image_recall(_t2i_reference, tied)


def test_01_exercise3_cell_runs_the_check():
    ns = _run("01_clip_basics", "cell-34", _retrieval_ns())
    _run("01_clip_basics", "cell-36", ns)                                     # not written yet: no check
    _run("01_clip_basics", "cell-36", ns, [("return None        # your code here",
                                            "return 100 * ((sim > sim.diagonal()[None, :]).sum(dim=0) < k)"
                                            ".float().mean().item()")])
    with pytest.raises(C.CheckFailed):
        _run("01_clip_basics", "cell-36", ns, [("return None        # your code here", "return 54.0")])


# --- lesson 02 ------------------------------------------------------------------------------------------
def _prompt_ns():
    return {"sources": ["chatgpt", "human"], "captions": ["a small red circle clipart png"], "seed": 0, "k_shot": 3,
            "lesson02": mock.Mock(), "lesson": mock.Mock()}


def test_02_prompt_cell():
    _both_ways("02_text_rewriting", "cell-09", _prompt_ns,
               wrong=[("chosen = rng.sample(examples, min(k_shot, len(examples)))", "chosen = examples[:k_shot]")],
               correct=[(), [("chosen = rng.sample(examples, min(k_shot, len(examples)))",
                              "chosen = [examples[i] for i in rng.sample(range(len(examples)), k_shot)]")],
                        [('prompt = "\\n".join(lines)', 'prompt = "".join(line + "\\n" for line in lines)[:-1]')]])


def test_prompt_rng_is_what_the_llm_rewriter_uses():
    from laclip_lite.rewrite.llm import LLMRewriter
    from laclip_lite.rewrite.prompt import build_prompt, prompt_rng

    rewriter = LLMRewriter(model="unused", sources=["chatgpt", "bard"], k_shot=3)
    for source in ("chatgpt", "bard"):
        for caption in ("red circle", "a blue star on green"):
            assert rewriter.prompt(caption, source, seed=5) == build_prompt(
                caption, rewriter.pairs[source], k=3, rng=prompt_rng(5, source, caption))
    assert prompt_rng(5, "chatgpt", "x").random() != prompt_rng(5, "bard", "x").random()


def _deletion_ns():
    return {"captions": ["small red circle on the blue background clipart png free"], "seed": 0}


def test_02_random_deletion_cell():
    _both_ways("02_text_rewriting", "cell-16", _deletion_ns,
               wrong=[("if rng.random() > p]", "if rng.random() < p]")],
               correct=[(), [("kept = [w for w in words if rng.random() > p]",
                              "kept = []\nfor w in words:\n    if not rng.random() <= p:\n        kept.append(w)")]])


def _swap_rng_sample(words, n, rng):
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(n):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out


def _swap_two_randranges(words, n, rng):
    out = words[:]
    for _ in range(n if len(out) > 1 else 0):
        i = rng.randrange(len(out))
        j = rng.randrange(len(out) - 1)
        j += j >= i                                          # a different position, uniform over the others
        out[i], out[j] = out[j], out[i]
    return out


def _swap_maybe_same_position(words, n, rng):
    out = list(words)
    for _ in range(n if len(out) > 1 else 0):
        i, j = rng.randrange(len(out)), rng.randrange(len(out))     # may pick the same position: no swap
        out[i], out[j] = out[j], out[i]
    return out


def test_02_exercise2_checks_properties_not_one_draw():
    C.check_random_swap(_swap_rng_sample)
    C.check_random_swap(_swap_two_randranges)               # a different draw: the old exact check refused it
    with pytest.raises(C.CheckFailed, match="DIFFERENT positions"):
        C.check_random_swap(_swap_maybe_same_position)


def test_02_exercise2_cell():
    ns = {"words": "small red circle on the blue background".split(), "seed": 0, "random": random,
          "_swap": _swap_two_randranges}
    _run("02_text_rewriting", "cell-18", ns)                                   # not written yet: no check
    _run("02_text_rewriting", "cell-18", ns, [("    return None        # your code here",
                                               "    return _swap(words, n, rng)")])
    with pytest.raises(C.CheckFailed):
        _run("02_text_rewriting", "cell-18", ns, [("    return None        # your code here",
                                                   "    return rng.sample(words, len(words))")])


# --- lesson 03 ------------------------------------------------------------------------------------------
def _draw_ns():
    return {"plan": SimpleNamespace(texts=["orig", "r1", "r2", "r3", "r4"], batch_size=16), "seed": 3}


def test_03_text_draw_cell():
    _both_ways("03_laclip_training", "cell-07", _draw_ns,
               wrong=[("torch.randint(0, K, (B,), generator=g)", "torch.randint(0, K - 1, (B,), generator=g)")],
               correct=[(), [("torch.randint(0, K, (B,), generator=g)", "torch.randint(K, size=(B,), generator=g)")]])


def test_draw_text_index_with_seed_and_step_is_what_training_draws():
    from laclip_lite.data.loader import draw_text_index, select_texts, text_generator
    from laclip_lite.utils import step_generator

    for step in (0, 1, 57):
        a = draw_text_index("laclip", 32, 5, seed=2, step=step)
        assert torch.equal(a, draw_text_index("laclip", 32, 5, step_generator(2, step, stream=2)))   # unchanged
        tokens = torch.arange(32 * 5 * 3).view(32, 5, 3)
        assert torch.equal(select_texts(tokens, "laclip", text_generator(2, step)), tokens[torch.arange(32), a])
    assert torch.equal(draw_text_index("clip", 4, 5, seed=0, step=0), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="seed= and step="):
        draw_text_index("laclip", 4, 5)


def _mt_ns():
    img = _unit(6, 12, seed=5)
    txt = F.normalize(img[:, None, :] + 0.7 * torch.randn(6, 4, 12, generator=torch.Generator().manual_seed(6)),
                      dim=-1)
    return {"lesson03": SimpleNamespace(features_with_all_texts=lambda *a: (img, txt, torch.tensor(10.0))),
            "lesson": mock.Mock(), "comparison": None, "torch": torch, "F": F}


def test_03_multi_text_loss_cell():
    _both_ways("03_laclip_training", "cell-14", _mt_ns,
               wrong=[("loss_mt = torch.stack(per_text).mean()",
                       "loss_mt = clip_loss(image_features, F.normalize(text_features.mean(1), dim=-1), s)")],
               correct=[(), [("loss_mt = torch.stack(per_text).mean()", "loss_mt = sum(per_text) / K")]])


# --- lesson 04 ------------------------------------------------------------------------------------------
def _pandas_ns(tmp_path):
    from laclip_lite.course import common, lesson04
    from laclip_lite.course import params as P

    rows = [{"ablation": a, "value": v, "arm": "x", "seed": s, "label": v, "color_shape_top1": m + 3 * s}
            for a, vals in (("augment", ("none", "eda")), ("num_rewrites", ("0", "4")))
            for v, m in zip(vals, (20.0, 31.5)) for s in (0, 1, 2)]
    lesson = common.Lesson("04_ablations", {**P.defaults("04_ablations"), "preset": "test"}, tmp_path)
    tmp_path.mkdir(exist_ok=True)
    import csv
    with open(tmp_path / "ablations_runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with mock.patch("laclip_lite.course.common.display_markdown"):
        lesson04.ablation_table(lesson, rows)
    return {"lesson": lesson, "rows": rows, "lesson04": lesson04, "ablations": ["augment", "num_rewrites"]}


def test_04_pandas_means_cell(tmp_path):
    base = _pandas_ns(tmp_path)

    def check(swap):
        ns = _run("04_ablations", "cell-12", dict(base), swap)
        _run("04_ablations", "cell-14", ns)

    with pytest.raises(AssertionError):
        check([("[shown].mean()   ", "[shown].max()   ")])
    check(())
    check([("[shown].mean()   ", "[shown].agg(\"mean\")   ")])
    check([("[shown].mean()   ",
            "[shown].sum() / frame.groupby([\"ablation\", \"label\"], sort=False)[shown].count()   ")])


# --- assignment 1: clip_loss and float32 overflow -------------------------------------------------------
def _textbook(i, t, s):
    z = s * i @ t.T
    e = z.exp()
    return (-torch.log(e.diagonal() / e.sum(1)).mean() - torch.log(e.diagonal() / e.sum(0)).mean()) / 2


def _log_softmax_loss(i, t, s):
    z = s * i @ t.T
    return -(z.log_softmax(1).diagonal().mean() + z.log_softmax(0).diagonal().mean()) / 2


def _logsumexp_loss(i, t, s):
    z = s * i @ t.T
    return (z.logsumexp(1) + z.logsumexp(0) - 2 * z.diagonal()).mean() / 2


def test_clip_loss_check_names_numerical_stability_at_a_large_scale():
    for hidden in (False, True):                            # the visible check has scale 100 too
        with pytest.raises(C.CheckFailed, match="numerical stability.*overflows float32"):
            C.check_clip_loss(_textbook, hidden=hidden)
        with pytest.raises(C.CheckFailed, match="numerical stability"):
            C.check_clip_loss(lambda i, t, s: -((s * i @ t.T).softmax(1).log().diagonal().mean()
                                                + (s * i @ t.T).softmax(0).log().diagonal().mean()) / 2, hidden=hidden)
        C.check_clip_loss(_log_softmax_loss, hidden=hidden)
        C.check_clip_loss(_logsumexp_loss, hidden=hidden)


# --- lesson 01: the training step, written out -----------------------------------------------------------
@pytest.fixture(scope="module")
def _world(tmp_path_factory):
    from laclip_lite.course import lesson01
    from laclip_lite.course import params as P

    out = tmp_path_factory.mktemp("lesson01")
    with mock.patch.dict("os.environ", {"LACLIP_LITE_CACHE": str(out / "cache")}):
        lesson = lesson01.start({**P.defaults("01_clip_basics"), "preset": "test", "steps": 6, "out_dir": str(out)})
        world = lesson01.show_world(lesson)
        lesson01.tokenizer_walkthrough(lesson, world)                # builds the rewrite cache the trainer reads
        yield lesson, world


def _step_ns(lesson, world):
    from laclip_lite.course import lesson01
    from laclip_lite.metrics import encode_images, encode_texts

    return {"lesson": lesson, "world": world, "lesson01": lesson01, "torch": torch, "math": math,
            "encode_images": encode_images, "encode_texts": encode_texts, "images": world.test.images[:6],
            "captions": world.test.captions[:6], "similarity": torch.randn(6, 6)}


def test_01_training_step_cells_match_the_trainer_and_can_fail(_world):
    lesson, world = _world

    def run(swap=()):
        ns = _run("01_clip_basics", "cell-19a", _step_ns(lesson, world), swap)
        return _run("01_clip_basics", "cell-19b", ns)

    ns = run()
    assert ns["trainer"].step == 3 and len(ns["trainer"].window) == 3
    run([("loss = clip_loss(image_features, text_features, scale)",          # the loss written out (textbook)
          "logits = scale * image_features @ text_features.T\n"
          "    labels = torch.arange(len(logits))\n"
          "    loss = (torch.nn.functional.cross_entropy(logits, labels)\n"
          "            + torch.nn.functional.cross_entropy(logits.T, labels)) / 2")])
    for wrong in ("    scheduler.step()                                               # warm-up, then cosine decay",
                  "    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)  # no step larger than the norm "
                  "allows"):
        with pytest.raises(AssertionError, match="weights differ"):
            run([(wrong, "    pass")])


def test_04_plot_from_the_dataframe_cell(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    base = _pandas_ns(tmp_path)
    checked = _run("04_ablations", "cell-12", dict(base))
    _run("04_ablations", "cell-14", checked)

    def plot(swap):
        import matplotlib.pyplot as plt
        plt.close("all")                                   # as the notebook's inline backend does after a cell
        _run("04_ablations", "cell-16", dict(checked), swap)

    with pytest.raises(AssertionError, match="not the seed means"):
        plot([(".groupby(\"label\", sort=False)[shown].mean()", ".groupby(\"label\", sort=False)[shown].max()")])
    plot(())
    plot([(".groupby(\"label\", sort=False)[shown].mean()", ".groupby(\"label\", sort=False)[shown].agg(\"mean\")")])


def test_01_written_out_steps_use_an_exact_trainer_when_the_run_compiles(_world, monkeypatch):
    """bf16 autocast or torch.compile would make a hand-written fp32 step differ: the steps are then compared with
    a separate fp32 eager Trainer (said in the notebook), and the run itself trains as configured."""
    from laclip_lite.course import lesson01

    lesson, world = _world
    config = lesson.config
    monkeypatch.setattr(lesson, "config", lambda extra=None: config({"train.compile": True, **(extra or {})}))
    said = []
    monkeypatch.setattr(lesson, "markdown", lambda text, *a, **k: said.append(text))
    trainer = lesson01.start_training(lesson, world)
    assert trainer.out.name == "first_steps" and trainer.cfg.train.compile is False
    assert any("torch.compile" in s and "separate fp32, uncompiled Trainer" in s for s in said)
