"""Write the four lesson notebooks from this one source, so they stay thin and consistent.

    python notebooks/build_notebooks.py           # (re)write notebooks/0*.ipynb
    python notebooks/build_notebooks.py --check   # exit 1 if a committed notebook differs from this source

Every notebook: a title and "what you will learn"; a `parameters` cell written from
`laclip_lite.params.NOTEBOOKS`; a check cell (`lessons.start`) right after it; prose between steps; each
working cell one call into `laclip_lite.lessons`; a last cell writing `<out_dir>/metrics.json`. The files are
written without outputs, with fixed cell ids, so the same source always gives the same bytes.
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import nbformat

from laclip_lite.params import parameters_cell

HERE = Path(__file__).resolve().parent
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
LANGUAGE_INFO = {"name": "python"}


def md(text: str) -> dict:
    return {"type": "markdown", "source": textwrap.dedent(text).strip()}


def code(text: str) -> dict:
    return {"type": "code", "source": textwrap.dedent(text).strip()}


def how_to_run(name: str, example: str) -> dict:
    return md(f"""
        **Run it** in JupyterLab top to bottom (set `interactive = True` below for the widgets), or headless:

        ```bash
        papermill notebooks/{name}.ipynb runs/{name}.ipynb {example}
        ```

        The next cell holds the parameters (papermill replaces them); the cell after it checks them, so a typo or
        a wrong type stops here with a message naming the parameter, before any work starts.
        """)


def start(name: str) -> dict:
    return code(f"""
        from laclip_lite import lessons

        lesson = lessons.start("{name}", globals())
        """)


FINISH = [md("""
    ## Save the run's numbers

    `metrics.json` lands in `out_dir` next to the executed notebook; `laclip-lite sweep` and the demo report read it.
    """), code("result = lessons.finish(lesson)")]


NOTEBOOKS = {
    "01_clip_basics": [
        md("""
        # 01 · CLIP basics

        CLIP learns to put an image and a sentence about it close together in one embedding space, from nothing
        but (image, caption) pairs. In a few minutes on a laptop CPU you will watch that happen on ShapeWorld, a
        small procedural world of coloured shapes with noisy web-style captions.

        **What you will learn**

        1. what the data looks like, and how a caption becomes token ids;
        2. the two towers (image and text) and the joint embedding space;
        3. the similarity matrix, before and after training;
        4. the contrastive loss, computed step by step on one batch;
        5. what the learnable temperature does;
        6. zero-shot classification with prompt templates and template ensembles;
        7. retrieval: text → image and image → text.
        """),
        how_to_run("01_clip_basics", "-p steps 400"),
        {"type": "parameters"},
        start("01_clip_basics"),
        md("""
        ## 1. The world: images and their captions

        Each image shows one main object (a shape, a colour, a size, a position) on a background, sometimes with a
        second smaller object. Each image has **exactly one caption**, written like alt-text scraped from the
        web: stock-photo filler, synonyms, odd word order, and often missing facts. A caption never lies, but it
        rarely says everything.
        """),
        code("world = lessons.show_world(lesson)"),
        md("""
        ## 2. From words to numbers: the tokenizer

        The text tower reads integers. A byte-pair-encoding (BPE) tokenizer, trained on the world's text, splits a
        caption into frequent pieces, maps them to ids, and wraps them CLIP's way: a start token, the pieces, an
        end-of-text token `[EOT]`, then padding up to a fixed length.
        """),
        code("tokenizer = lessons.tokenizer_walkthrough(lesson, world)"),
        md("""
        ## 3. Two towers, one space

        The **image tower** (a small Vision Transformer: the image is cut into patches, each patch is a token) and
        the **text tower** (a causal Transformer whose output at `[EOT]` summarises the caption) each end in a
        linear projection to the same `embed_dim`. Both outputs are L2-normalised, so the dot product of an image
        row and a text row is their **cosine similarity**, between −1 and 1.
        """),
        code("untrained = lessons.build_towers(lesson, world, tokenizer)"),
        md("""
        ## 4. The similarity matrix before training

        Rows are captions, columns are the images they belong to: the matching pairs sit on the diagonal. A
        random model has no idea which caption goes with which image, so the matrix is noise.
        """),
        code('sim_before = lessons.similarity_matrix(lesson, untrained, tokenizer, world, "before training")'),
        md(r"""
        ## 5. The contrastive loss, step by step

        For a batch of $N$ pairs with image features $x_i$, text features $t_j$ and scale $s$
        (= 1 / temperature), the logits are $z_{ij} = s\,\langle x_i, t_j\rangle$. Each image should pick its own
        caption out of the $N$ (a softmax over the row), and each caption its own image (a softmax over the
        column):

        $$L = \tfrac12\Big[\tfrac1N\sum_i -\log \frac{e^{z_{ii}}}{\sum_j e^{z_{ij}}}
                     + \tfrac1N\sum_j -\log \frac{e^{z_{jj}}}{\sum_i e^{z_{ij}}}\Big]$$

        Every other caption in the batch is a negative: the batch is the classifier's set of classes. The three
        panels below are exactly these steps; the number under them is checked against the library's loss.
        """),
        code("loss = lessons.contrastive_loss_walkthrough(lesson, untrained, tokenizer, world)"),
        md("""
        ## 6. Training

        Now the real thing: AdamW on that loss for `steps` steps of `batch_size` pairs (warm-up, then cosine
        decay), with random crops and flips of the images. The captions are never changed: every time CLIP sees
        an image, it sees the same words. (Notebook 02 is about changing that.) The curves show the loss falling
        and the learned scale rising.
        """),
        code("run = lessons.train_clip(lesson, world)"),
        md("""
        ## 7. The similarity matrix after training

        The same images and captions as in step 4. Training pulls the diagonal up and pushes the rest down; the
        table counts how often a caption's most similar image is its own.
        """),
        code("sims = lessons.similarity_before_after(lesson, untrained, run, world)"),
        md("""
        ## 8. The temperature

        The scale $s$ multiplies every cosine before the softmax. With $s = 1$ all probabilities stay close to
        uniform (cosines lie in [−1, 1]); a large $s$ makes the softmax sharp. CLIP **learns** $\\log s$, starting
        at $1/0.07 \\approx 14.3$ and clamped at 100. Left: the softmax over captions for a few scales; right: the
        loss of a large test batch as a function of the scale.
        """),
        code("temperature = lessons.temperature_demo(lesson, run, world)"),
        md("""
        ## 9. Zero-shot classification with templates

        No classifier is trained. Each class name ("red circle") is written into sentences by **templates**
        ("a photo of a {}."), the text tower embeds them, and the average of a class's template embeddings becomes
        its weight vector: an image is assigned the class whose vector is most similar. The wording matters, so
        CLIP averages over many templates (an **ensemble**). The `heldout` set is never used to choose anything: it
        is the honest score.
        """),
        code("zero_shot = lessons.zero_shot_lesson(lesson, run, world)"),
        md("""
        ## 10. Retrieval

        Search the test split in both directions: for each image, rank all captions (image → text), and for each
        caption, rank all images (text → image). Recall@K is the share whose true partner is among the top K.
        """),
        code("recall = lessons.retrieval_lesson(lesson, run, world)"),
        md("""
        ## 11. Explore

        With `interactive = True`: type a prompt to see the test images closest to it, or pick an image to see
        its nearest captions. Headless, the same two views are drawn for a few example inputs.
        """),
        code("ui = lessons.explorer(lesson, run, world)"),
        *FINISH,
    ],
    "02_text_rewriting": [
        md("""
        # 02 · Rewriting captions with a language model

        CLIP augments its images (crops, flips) but never its text. LaCLIP ("Improving CLIP Training with Language
        Rewrites", NeurIPS 2023) rewrites every caption several times with a large language model, by in-context
        learning, and trains on a caption drawn at random from {original, rewrites} each time an image comes
        around. This notebook builds those rewrites and looks at them hard. No training happens here.

        **What you will learn**

        1. why text needs augmenting when data is scarce;
        2. meta input → output pairs from four sources, and the in-context prompt an LLM sees;
        3. rewriting with an LLM (or the world-aware stand-in this kit uses on a CPU);
        4. the baselines: EDA and back-translation, side by side;
        5. how to measure rewrites: diversity vs faithfulness;
        6. the cache that makes a second run free.
        """),
        how_to_run("02_text_rewriting", "-p llm_model /path/to/a/causal-lm"),
        {"type": "parameters"},
        start("02_text_rewriting"),
        md("""
        ## 1. Why text needs augmenting

        With few images and many epochs, CLIP sees each image over and over, and always with the same words. It
        can memorise those exact words instead of learning what they mean, and the facts a caption leaves out are
        never said at all.
        """),
        code("captions = lessons.load_captions(lesson)"),
        md("""
        ## 2. Meta pairs: examples of a good rewrite

        The LLM is not fine-tuned. It is shown a few examples of the task, *meta input → output pairs*, and
        continues the pattern. LaCLIP collected 16 pairs from each of four sources, each with its own style:
        `chatgpt` (vivid, one sentence), `bard` (florid), `mscoco` (two human captions of the same COCO image),
        `human` (terse edits). Each source gives one rewrite per caption.
        """),
        code("pairs = lessons.show_meta_pairs(lesson)"),
        md("""
        ## 3. The prompt, as the LLM sees it

        An instruction, `k_shot` pairs sampled for this caption (the same caption always gets the same pairs),
        then the caption and `=>`. The LLM's continuation up to the first newline is the rewrite.
        """),
        code("prompts = lessons.show_prompt(lesson, captions)"),
        md("""
        ## 4. Rewriting

        With `llm_model` set (a local folder, or a hub name on a GPU machine), every caption is rewritten once per
        source by that model. Without it, the kit's **world-aware stand-in** plays the LLM: it reads the facts a
        ShapeWorld caption states and rewrites them in each source's style, never inventing or dropping a fact.
        The output below says plainly which one ran.
        """),
        code("rewrites = lessons.rewrite_with_llm(lesson, captions)"),
        md("""
        ## 5. The baselines: EDA and back-translation

        **EDA** edits words: synonym swaps, random insertions, swaps and deletions. **Back-translation**
        translates to a pivot language and back. Both keep most of the original's words; LLM rewrites change the
        sentence while keeping the meaning.
        """),
        code("baselines = lessons.eda_and_backtranslation(lesson, captions, rewrites)"),
        md("""
        ## 6. How good are the rewrites?

        A useful rewrite is **different** (low BLEU against the original, high distinct-n) and **faithful**
        (high MiniLM cosine to the original; on ShapeWorld also: the attributes it keeps, and how often it
        invents one). Fallbacks count rewrites that were rejected and replaced by the original.
        """),
        code("quality = lessons.quality_lesson(lesson, captions, rewrites, baselines)"),
        md("""
        ## 7. The cache

        Rewriting a real dataset takes GPU-days, so the job writes every finished batch to disk and resumes after
        a crash. Running the same job again makes no generation calls at all.
        """),
        code("cache = lessons.cache_lesson(lesson, captions, rewrites)"),
        *FINISH,
    ],
    "03_laclip_training": [
        md("""
        # 03 · CLIP vs LaCLIP vs LaCLIP-MT

        The paper's main claim in miniature: the same images, model, steps, batch and seeds; only the **text
        policy** changes.

        * **CLIP**: each image is paired with its original caption, every time.
        * **LaCLIP**: each time an image is drawn, its text is drawn uniformly from {original, rewrites}. No
          extra compute per step.
        * **LaCLIP-MT**: every image is paired with *all* its texts in the same step, and the contrastive loss is
          averaged over them (more text compute per step).

        **What you will learn**: how to run a fair comparison over seeds, read learning curves, and judge
        zero-shot (with held-out templates) and retrieval results; and how the learned similarity differs.

        The defaults train one seed of each arm with the `tiny` preset for 500 steps on a CPU. The same notebook
        trains on a real dataset on a GPU: the command below trains a ViT-B/16 on the LaCLIP release's CC3M CSV
        and its rewrite files, for the preset's full schedule (`steps None`).
        """),
        how_to_run("03_laclip_training",
                   "-p preset vit-b16 -p steps None -p data /path/to/cc3m_train.csv -p policies clip,laclip"),
        {"type": "parameters"},
        start("03_laclip_training"),
        md("""
        ## 1. The plan

        One row per arm. The example shows one training image with the texts each policy draws from.
        """),
        code("plan = lessons.training_plan(lesson)"),
        md("""
        ## 2. Train every arm

        `laclip_lite.experiments.compare` trains each (arm, seed) into its own folder, evaluates it on the
        ShapeWorld test split with several template sets (one held out), and writes `summary.md`. Finished runs
        are reused, so an interrupted notebook resumes where it stopped.
        """),
        code("comparison = lessons.train_policies(lesson)"),
        md("""
        ## 3. Learning curves

        CLIP's training loss falls fastest: with one fixed caption per image it can memorise. LaCLIP's stays
        higher, because the text keeps changing; that is the point.
        """),
        code("lessons.learning_curves_by_policy(lesson, comparison)"),
        md("""
        ## 4. Zero-shot and retrieval

        Mean ± standard deviation over seeds (dots are single seeds). Look at the `@heldout` column: templates
        nobody tuned anything on. With one seed, differences of a few points are noise; raise `seeds` before
        believing them.
        """),
        code("lessons.results_table(lesson, comparison)"),
        md("""
        ## 5. What each model learned

        The similarity matrix of each arm on the same eight test images and their captions: a sharper diagonal
        means captions find their own image.
        """),
        code("sims = lessons.similarity_by_policy(lesson, comparison)"),
        *FINISH,
    ],
    "04_ablations": [
        md("""
        # 04 · Ablations

        The paper asks *which part* of LaCLIP matters. Each ablation changes one thing and keeps the rest:

        * **augment**: the text augmentation strategy: none (CLIP), EDA, back-translation, LLM rewrites
          (here the world-aware stand-in, `shapes`, unless `llm_model` is set);
        * **num_rewrites**: how many rewrites per caption take part, 0..4;
        * **source**: one meta-pair source alone (chatgpt, bard, mscoco, human);
        * **backbone**: the image tower, ViT or ResNet, CLIP vs LaCLIP on each;
        * **text_tower**: trained from scratch, or a pretrained MiniLM, locked or fine-tuned.

        **What you will learn**: how to set up a grid that shares runs between ablations, aggregate seeds into one
        table, and read error bars.

        The default grid is small so it fits a CPU in a few minutes: short runs (`steps = 300`) on a smaller world
        (`data.train_size: 1500` in `overrides`), so that each image is still seen ~50 times. That is the
        data-scarce regime where text augmentation matters: CLIP memorises its few captions (the paper's largest
        gains are on its smallest dataset). `ablations = "all"` with more `seeds` is the full grid, for a GPU or
        for `laclip-lite sweep` over many machines.
        """),
        how_to_run("04_ablations", "-p ablations all -y 'values: {}' -y 'seeds: [0, 1, 2]' -p steps 1000"),
        {"type": "parameters"},
        start("04_ablations"),
        md("""
        ## 1. The grid

        A setting shared by two ablations (augment=none is num_rewrites=0: plain CLIP) runs once. The same grid is
        also written as a sweep file for notebook 03, to run it with papermill on many machines.
        """),
        code("grid = lessons.ablation_grid(lesson)"),
        md("""
        ## 2. Run it

        Each distinct configuration trains and is evaluated like an arm of notebook 03 (finished runs are reused).
        """),
        code("rows = lessons.run_ablations(lesson, grid)"),
        md("""
        ## 3. One table

        Every ablation's settings, mean ± standard deviation over seeds.
        """),
        code("table = lessons.ablation_table(lesson, rows)"),
        md("""
        ## 4. Figures with error bars

        One panel per ablation; gray bars and the dashed line are plain CLIP. Short runs and few seeds make noisy
        bars: the error bars say how much to trust a gap.
        """),
        code("lessons.ablation_figures(lesson, rows)"),
        *FINISH,
    ],
}


def build(name: str) -> nbformat.NotebookNode:
    """The notebook `name` as nbformat 4.5, no outputs, deterministic cell ids."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO)}
    for i, spec in enumerate(NOTEBOOKS[name]):
        if spec["type"] == "parameters":
            cell = nbformat.v4.new_code_cell(parameters_cell(name))
            cell.metadata["tags"] = ["parameters"]
        elif spec["type"] == "markdown":
            cell = nbformat.v4.new_markdown_cell(spec["source"])
        else:
            cell = nbformat.v4.new_code_cell(spec["source"])
        cell.id = f"cell-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(name: str) -> str:
    return nbformat.writes(build(name)) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name in NOTEBOOKS:
        path = HERE / f"{name}.ipynb"
        text = render(name)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"out of date (run python notebooks/build_notebooks.py): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
