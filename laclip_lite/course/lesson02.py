"""Lesson 02, rewriting captions: the plumbing behind notebooks/02_text_rewriting.ipynb.

The notebook builds the in-context prompt from meta pairs and one EDA operation in its own cells, checked against
`laclip_lite.rewrite`; the functions here load captions, run the rewrite jobs (LLM or the stand-in, EDA,
back-translation), score them, and draw the figures and the rewrite explorer widget.
"""
from __future__ import annotations

import json
import time

import numpy as np
from matplotlib.figure import Figure

from laclip_lite.config import RewriteConfig, build_config
from laclip_lite.course import common
from laclip_lite.course.common import Lesson, ParameterError, table
from laclip_lite.data import vocab
from laclip_lite.data.dataset import shapeworld_split
from laclip_lite.rewrite import shapes
from laclip_lite.rewrite.base import seed_for
from laclip_lite.rewrite.eda import EDARewriter
from laclip_lite.rewrite.inputs import read_captions
from laclip_lite.rewrite.job import build_rewriter, rewrite_captions
from laclip_lite.rewrite.meta import load_meta_pairs
from laclip_lite.rewrite.prompt import build_prompt
from laclip_lite.rewrite.quality import MiniLMEmbedder, quality_markdown, quality_report

NOTEBOOK = "02_text_rewriting"


def start(namespace: dict) -> Lesson:
    """Check the parameters cell (a typo or a wrong type stops here) and make `out_dir`."""
    return common.start(NOTEBOOK, namespace)


finish = common.finish


def _rewrite_config(lesson: Lesson, rewriter: str, model: str = ""):
    p = lesson.params
    rcfg = RewriteConfig(rewriter=rewriter, model=model, sources=list(p["sources"]), k_shot=p["k_shot"],
                         seed=p["seed"], num_variants=len(p["sources"]))
    if p.get("batch_size"):
        rcfg.batch_size = p["batch_size"]
    return rcfg


def load_captions(lesson: Lesson) -> list[str]:
    """The captions to rewrite: ShapeWorld's training captions, or a caption file (`data`); and why they need
    augmenting: each is seen many times, verbatim, and many leave facts out."""
    p, n = lesson.params, lesson.params["n_captions"]
    cfg = build_config(p["preset"], {"train.seed": p["seed"]})
    if p["data"] == "shapeworld":
        split = shapeworld_split(cfg, "train")
        captions = list(split.captions[:n])
        facts = ["shape", "color", "size", "position", "background"]
        share = [100 * np.mean([s["stated"][f] for s in split.scenes]) for f in facts]
        fig = Figure(figsize=(5.5, 2.8), layout="constrained")
        ax = fig.add_subplot()
        ax.bar(facts, share, color="tab:blue")
        ax.set_ylim(0, 100)
        ax.set_ylabel("% of captions stating it")
        ax.set_title(f"What the {len(split):,} training captions say about the main object", fontsize=10)
        lesson.figure(fig, "caption_facts", "What captions state", key=True)
        epochs = cfg.train.steps * cfg.train.batch_size / len(split)
        lesson.markdown(f"With the `{p['preset']}` preset CLIP sees each image about **{epochs:.0f} times**, "
                        "always with this one caption: it can memorise the caption's exact words, and it never "
                        "hears the facts the caption left out.")
    else:
        captions = read_captions(p["data"])[:n]
    if not captions:
        raise ParameterError(f"data: no captions found in {p['data']!r}")
    lesson.markdown("First captions:\n\n" + "\n".join(f"{i}. {c}" for i, c in enumerate(captions[:8], 1)))
    lesson.metrics["n_captions"] = len(captions)
    return captions


def show_meta_pairs(lesson: Lesson, per_source: int = 2) -> dict:
    """The in-context examples (meta input -> output pairs) of each source, as the LLM will see them."""

    pairs = {s: load_meta_pairs(s) for s in lesson.params["sources"]}
    rows = [{"source": s, "input (web caption)": pr.source, "output (rewrite)": pr.target}
            for s, ps in pairs.items() for pr in ps[:per_source]]
    lesson.markdown(", ".join(f"`{s}`: {len(ps)} pairs" for s, ps in pairs.items())
                    + ". **These pairs are this kit's own**, written in the style of each of the paper's four sources "
                    "(`laclip_lite/rewrite/meta_pairs/*.jsonl`); they are not the paper's pairs. Replace a source "
                    "with your own file as `name=path/to/pairs.jsonl`.\n\n" + table(rows), "Meta pairs")
    return pairs


def show_prompt(lesson: Lesson, prompt: str, source: str, caption: str) -> None:
    """Show the prompt built in the notebook, as the LLM receives it."""
    lesson.markdown(f"The prompt for the caption *{caption}* with the `{source}` pairs (the LLM continues after "
                    f"the last `=>`; its first line is the rewrite). The instruction line is the kit's "
                    f"(`rewrite.prompt.PromptFormat`), written after the paper's description:\n\n"
                    f"```text\n{prompt}\n```", "The prompt")


def _job(lesson: Lesson, captions: list[str], rcfg) -> tuple[dict, dict]:
    out = lesson.out_dir / "rewrites" / rcfg.rewriter
    texts = rewrite_captions(captions, out, rcfg, progress=lesson.progress)
    return texts, json.loads((out / "report.json").read_text())


def _stand_in_note() -> str:
    world = sum(len(w) for w in vocab.SHAPES.values()) + sum(len(w) for _, w in vocab.COLORS.values()) \
        + sum(len(w) for w in vocab.SIZES.values())
    extra = sum(len(w) for d in (shapes.EXTRA_SHAPES, shapes.EXTRA_COLORS, shapes.EXTRA_SIZES) for w in d.values())
    return ("**No `llm_model` given, so these rewrites come from the world-aware stand-in (`rewriter=\"shapes\"`), "
            "not from an LLM.** It reads the facts a ShapeWorld caption states and rewrites them in each source's "
            "style, never adding or dropping a fact. Its words are the world's own: the "
            f"{world} shape, colour and size words of `laclip_lite.data.vocab` (the ones captions are written with) "
            f"plus {extra} phrases an LLM would also use (`rewrite.shapes.EXTRA_*`); a caption outside that "
            "vocabulary is kept as it is. It is how this kit runs LaCLIP on a CPU.")


STAND_IN_NOTE = _stand_in_note()


def rewrite_with_llm(lesson: Lesson, captions: list[str]) -> dict:
    """Rewrite every caption once per source: with the LLM in `llm_model`, or the world-aware stand-in."""
    p = lesson.params
    if p["llm_model"]:
        rcfg = _rewrite_config(lesson, "llm", p["llm_model"])
        note = f"Rewriting with the LLM **{p['llm_model']}** by in-context learning ({p['k_shot']} pairs per prompt)."
    else:
        rcfg = _rewrite_config(lesson, "shapes")
        note = STAND_IN_NOTE + (" Set `llm_model` to a local causal LM (or a hub name on a GPU machine) for real "
                                "LLM rewrites.")
        if p["data"] != "shapeworld":
            note += " On captions that are not ShapeWorld's, the stand-in finds no shapes and keeps the original."
    texts, report = _job(lesson, captions, rcfg)
    rows = [{"original": c, **{v: texts[v][i] for v in texts}} for i, c in enumerate(captions[:5])]
    falls = {v: r.get("total", 0) for v, r in report["fallbacks"].items()}
    lesson.markdown(note + f"\n\n{report['generation_calls']} generation calls, {report['batches_reused']} batches "
                    f"reused from the cache; fallbacks to the original: {falls}.\n\n" + table(rows),
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
        who = "stand-in" if rewrites["rewriter"] == "shapes" else rewrites["rewriter"]
        row[f"{who} ({first_llm})"] = rewrites["texts"][first_llm][i]
        rows.append(row)
    lesson.markdown(bt_note + "\n\n" + table(rows), "EDA and back-translation", key=True)
    return out


def quality_lesson(lesson: Lesson, captions: list[str], rewrites: dict, baselines: dict) -> dict:
    """Diversity vs faithfulness of every method's rewrites (`laclip_lite.rewrite.quality`)."""
    embedder = MiniLMEmbedder() if lesson.params["embed"] else None
    # the stand-in is named as such wherever its rewrites are shown (it is not an LLM)
    methods = {"stand-in" if rewrites["rewriter"] == "shapes" else rewrites["rewriter"]:
               (rewrites["texts"], rewrites["report"])}
    methods.update({m: (b["texts"], b["report"]) for m, b in baselines.items()})
    rows = {}
    for method, (texts, report) in methods.items():
        q = quality_report(captions, texts, report.get("fallbacks"), embed=embedder is not None, embedder=embedder)
        for variant, row in q["rows"].items():
            if variant == "original" and "original" in rows:
                continue
            rows[variant if variant == "original" else f"{method}:{variant}"] = row
    lesson.markdown(quality_markdown(rows), "Rewrite quality", key=True)
    lesson.markdown(_reading_the_table(rows, list(methods)))
    # On ShapeWorld the attributes a rewrite keeps are the sharpest faithfulness measure; else MiniLM cosine.
    faith = next((k for k in ("kept", "cosine", "overlap") if any(k in r for n, r in rows.items() if n != "original")))
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.add_subplot()
    colors = dict(zip(methods, ("tab:blue", "tab:orange", "tab:green", "tab:purple")))
    markers = ("o", "s", "^", "D", "v", "P", "X", "*")
    for i, method in enumerate(methods):
        pts = [(name.split(":", 1)[1], 1 - r["bleu"], r[faith]) for name, r in rows.items()
               if name.startswith(method + ":") and faith in r]
        if i == 0:                                  # the LLM's variants by marker (named in the legend: no overprint)
            for j, (variant, x, y) in enumerate(pts):
                ax.scatter([x], [y], color=colors[method], s=50, marker=markers[j % len(markers)],
                           label=f"{method}: {variant}")
        else:
            ax.scatter([p[1] for p in pts], [p[2] for p in pts], color=colors[method], s=40, label=method)
    ax.set_xlabel("diversity: 1 − BLEU against the original")
    ax.set_ylabel({"cosine": "faithfulness: MiniLM cosine to the original",
                   "kept": "faithfulness: share of stated attributes kept",
                   "overlap": "word overlap with the original"}[faith])
    ax.set_xlim(0, 1.02)
    ax.set_title("Good rewrites sit top right: new words, same facts", fontsize=10)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper", fontsize=9)
    ax.grid(alpha=0.3)
    lesson.figure(fig, "rewrite_quality", "Diversity vs faithfulness", key=True)
    for name, r in rows.items():
        if name != "original":
            lesson.metrics[f"{name}/bleu"] = round(r["bleu"], 4)
            if faith in r:
                lesson.metrics[f"{name}/{faith}"] = round(r[faith], 4)
    return rows


def _reading_the_table(rows: dict, methods: list[str]) -> str:
    """The quality table per method (the mean over its variants), and what each column does and does not
    measure, with this run's numbers: why a rewriter that changes the words scores low on MiniLM cosine and
    distinct-n next to EDA, and what the attribute columns say instead."""
    cols = [("bleu", "BLEU vs original"), ("overlap", "word overlap"), ("distinct2", "distinct-2"),
            ("cosine", "MiniLM cos"), ("kept", "attrs kept"), ("invented", "invented")]
    mean = {m: {k: float(np.mean([r[k] for n, r in rows.items() if n.startswith(m + ":") and k in r]))
                for k, _ in cols if any(k in r for n, r in rows.items() if n.startswith(m + ":"))} for m in methods}
    present = [(k, h) for k, h in cols if any(k in v for v in mean.values())]
    lines = ["| method (mean of its variants) | " + " | ".join(h for _, h in present) + " |",
             "|---|" + "---:|" * len(present)]
    lines += [f"| {m} | " + " | ".join(f"{v[k]:.3f}" if k in v else "" for k, _ in present) + " |"
              for m, v in mean.items()]
    text = ("\n".join(lines) + "\n\n**Reading it.** *Distinct-n* is the share of distinct n-grams over all of a "
            "method's rewrites: high when the words vary from caption to caption. A method that keeps the original's "
            "words inherits the originals' distinct-n; a rewriter that reuses stock phrases (a source's style) "
            "lowers it even while every sentence is new. *MiniLM cosine* to the original rewards keeping the "
            "original's words, not only its meaning, so a rewrite in new words can score lower than a copy with "
            "one word swapped. Neither says whether the facts survived; on ShapeWorld the *attrs kept* and *invented* "
            "columns do, directly.")
    first, eda = methods[0], mean.get("eda")
    name = f"the {first}" if first == "stand-in" else first
    if eda and first != "eda" and {"distinct2", "overlap"} <= set(eda) & set(mean[first]):
        lead = mean[first]
        text += (f"\n\nHere {name} keeps {100 * lead['overlap']:.0f}% of the original's words (word overlap), "
                 f"EDA {100 * eda['overlap']:.0f}%: EDA's distinct-2 ({eda['distinct2']:.2f}) is close to the "
                 f"originals' ({rows['original']['distinct2']:.2f}) because it keeps their words, and {name}'s is "
                 f"{'lower' if lead['distinct2'] < eda['distinct2'] else 'higher'} ({lead['distinct2']:.2f})")
        if "cosine" in eda and "cosine" in lead:
            text += (f"; its MiniLM cosine is {lead['cosine']:.2f} against EDA's {eda['cosine']:.2f}")
        if "kept" in eda and "kept" in lead:
            text += (f". Yet it keeps {100 * lead['kept']:.0f}% of the stated attributes and invents "
                     f"{100 * lead.get('invented', 0):.0f}%, where EDA keeps {100 * eda['kept']:.0f}% and invents "
                     f"{100 * eda.get('invented', 0):.0f}%: different words, the same facts, which is what a "
                     "LaCLIP rewrite is for")
        text += "."
    return text


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



EXAMPLE_CAPTION = "small red circle on a black background stock photo"


def explore_one(lesson: Lesson, caption: str, rewrites: dict) -> dict:
    """For one caption: the prompt the LLM would receive (first source), each source's rewrite by the rewriter
    that ran (the LLM or the stand-in), and EDA's variants. -> {"prompt", "rewrites", "eda"}."""

    p = lesson.params
    first = p["sources"][0]
    prompt = build_prompt(caption, load_meta_pairs(first), k=p["k_shot"], seed=seed_for(p["seed"], first))
    rewriter = build_rewriter(rewrites["rcfg"])
    mine = {v: rewriter.rewrite([caption], v, p["seed"])[0] for v in rewriter.variants}
    eda = EDARewriter(num_variants=len(p["sources"])).augment(caption, p["seed"])
    return {"prompt": prompt, "rewrites": mine, "eda": eda}


def _explore_markdown(caption: str, found: dict, rewriter: str) -> str:
    who = "the stand-in (not an LLM)" if rewriter == "shapes" else f"the LLM `{rewriter}`"
    rows = [{"method": f"{who}: {v}", "text": t} for v, t in found["rewrites"].items()]
    rows += [{"method": f"EDA {i}", "text": t} for i, t in enumerate(found["eda"], 1)]
    return (f"**Caption:** {caption}\n\nThe prompt the LLM receives:\n\n```text\n{found['prompt']}\n```\n\n"
            + table(rows))


def rewrite_explorer(lesson: Lesson, rewrites: dict, caption: str = EXAMPLE_CAPTION):
    """Type a caption: see the prompt the LLM receives, the rewrites (one per source) and EDA's. A widget when
    `interactive` is True; else the same view for an example caption."""
    rewriter = rewrites["rewriter"]
    if not lesson.params["interactive"]:
        lesson.markdown(_explore_markdown(caption, explore_one(lesson, caption, rewrites), rewriter),
                        "Rewrite explorer")
        return None
    import ipywidgets as W

    box = W.Text(value=caption, description="caption", continuous_update=False, layout=W.Layout(width="90%"))
    out = common.live_output([box], lambda: _explore_markdown(box.value, explore_one(lesson, box.value or " ",
                                                                                      rewrites), rewriter))
    return common.show_widget(W.VBox([W.HTML("<b>Type a caption</b> (Enter to rewrite)"), box, out]))
