"""Every `laclip-lite` sub-command's arguments, one function per command (`ARGUMENTS`), in a module light enough
that the full parser costs nothing: argparse, laclip_lite.constants and the ShapeWorld vocabulary only, never torch,
numpy, PIL or a command's run module. `cli.build_parser` adds them all; `cli.main` then imports only
`laclip_lite.commands.<name>` of the command it runs, so every `--help` and every argument error stays instant
(`tests/test_cli.py`). Choice lists come from laclip_lite.constants, their one home.
"""
from __future__ import annotations

import argparse

from laclip_lite.constants import DATASET_TASKS as FILE_TASKS
from laclip_lite.constants import EXPERIMENT_PRESET, POLICIES, REWRITERS, SOURCES
from laclip_lite.constants import EXPORT_EVAL_FORMATS as EVAL_FORMATS
from laclip_lite.constants import EXPORT_FORMATS as TRAIN_FORMATS
from laclip_lite.data.vocab import TASKS

SHAPEWORLD_TASKS = (*TASKS, "all")                                   # eval --task on ShapeWorld


def add_gpus_argument(p: argparse.ArgumentParser) -> None:
    """`--gpus`, shared by the commands that run many jobs (compare, ablate, sweep)."""
    p.add_argument("--gpus", default="auto", metavar="IDS",
                   help="GPUs to share out, one per job via CUDA_VISIBLE_DEVICES, e.g. 0,1,2,3 (default auto: "
                        "every visible GPU; none on a CPU; 'none': do not assign)")


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="tiny",
                   help="named preset: tiny (CPU minutes), tiny-rich (lesson 01's first CLIP), tiny-2k "
                        "(compare / ablate), tiny-scarce (their earlier default), test, laclip-cc3m, laclip-cc12m "
                        "(the LaCLIP release's recipe), "
                        "vit-b32 (LAION-style), vit-b16, rn50")
    p.add_argument("--config", default=None, help="a YAML file of config values (applied after the preset)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set train.policy=laclip --set model.vision=resnet")
    p.add_argument("--policy", choices=POLICIES, default=None, help="shortcut for --set train.policy=...")
    p.add_argument("--out", default=None, help="run folder (required unless --dry-run)")
    p.add_argument("--resume", nargs="?", const="yes", default="no", choices=["yes", "auto"],
                   help="continue the run in --out from its last checkpoint; '--resume auto': continue when a "
                        "checkpoint exists, else start the run (for requeued / preempted jobs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true",
                   help="print the steps the run would take (epochs -> steps, global batch, lr schedule) and stop")
    p.add_argument("--world-size", type=int, default=None,
                   help="--dry-run: processes (GPUs) to plan for (default: $WORLD_SIZE or 1)")
    p.add_argument("--samples", type=int, default=None,
                   help="--dry-run: dataset size to plan for (default: data.num_samples, else count data.source)")


def eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR",
                   help="run folder written by `laclip-lite train` (or its checkpoint.pt)")
    p.add_argument("--dataset", default=None, metavar="PATH",
                   help="an evaluation set on files: ImageFolder, CLIP_benchmark webdataset folder, captions CSV, "
                        "Karpathy JSON (default: ShapeWorld, or the run's eval.datasets)")
    p.add_argument("--suite", default=None, metavar="YAML", help="score many datasets; writes suite.csv + suite.md")
    p.add_argument("--out", default=None, help="--suite: folder for suite.csv / suite.md (default: the run folder)")
    p.add_argument("--task", default=None, choices=SHAPEWORLD_TASKS + FILE_TASKS,
                   help="ShapeWorld: a task or 'all' (default color_shape); --dataset: zeroshot, retrieval, "
                        "linear_probe or fewshot (default: from the layout)")
    p.add_argument("--classnames", default=None, metavar="FILE",
                   help="--dataset: class names, one per line in sorted folder order, or JSON folder -> name")
    p.add_argument("--templates", default=None, metavar="FILE_OR_SET",
                   help="template set name (default, photo, art, spoken, heldout, bare) or a file with one "
                        "template per line containing {} (default: the dataset's own file, else 'default')")
    p.add_argument("--image-root", default="", help="--dataset CSV / JSON: folder the image paths start from")
    p.add_argument("--name", default="", help="--dataset: the name in the output (default: the folder name)")
    p.add_argument("--linear-probe", action="store_true", help="ShapeWorld: also fit a logistic-regression probe")
    p.add_argument("--few-shot", type=_non_negative, default=0, metavar="K",
                   help="ShapeWorld: also run a K-shot probe per task; --task fewshot: K (default 5)")
    p.add_argument("--no-retrieval", action="store_true", help="ShapeWorld: skip image<->caption retrieval")
    p.add_argument("--split", default=None, choices=("train", "val", "test"), help="split to score (default: test)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--batch-size", type=_positive, default=256, help="images / texts per forward pass")
    p.add_argument("--workers", type=_non_negative, default=2, help="--dataset: DataLoader workers decoding images")
    p.add_argument("--seed", type=int, default=0, help="seed of the probes' validation slice and k-shot draws")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policies", default=",".join(POLICIES),
                   help="comma list of policy[:augment], e.g. clip,laclip,mt,laclip:eda "
                        "(augment defaults to --augment)")
    p.add_argument("--augment", default="shapes", help=f"rewrite cache for laclip/mt arms: {', '.join(REWRITERS)}")
    p.add_argument("--seeds", default="0,1,2", help="comma list of seeds")
    p.add_argument("--worlds", default=None, help="comma list of data.world_seed values (new images, captions, "
                                                 "val and test sets; default: the preset's); runs pair by "
                                                 "(world, seed)")
    p.add_argument("--preset", default=EXPERIMENT_PRESET,
                   help=f"preset every run starts from (default: {EXPERIMENT_PRESET}, the data-scarce regime sized "
                        "so 3 policies x 3 seeds fit 10 minutes on 2 cores)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per run; finished runs are skipped)")
    p.add_argument("--contrasts-only", action="store_true",
                   help="recompute contrasts.csv/.md from OUT/runs.csv (committed per-seed results) and exit")
    p.add_argument("--jobs", type=int, default=0,
                   help="runs in parallel, each with cores/jobs threads (0: auto: one per GPU of --gpus, else one "
                        "per core on a CPU)")
    add_gpus_argument(p)


def ablate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (runs/ inside; finished runs are reused)")
    p.add_argument("--seeds", default="0,1,2", help="comma list of seeds (3 or more for intervals)")
    p.add_argument("--worlds", default="0", help="comma list of data.world_seed values: runs pair by (world, seed); "
                                                 "tables per world and pooled")
    p.add_argument("--contrasts-only", action="store_true",
                   help="recompute contrasts.csv/.md from OUT/ablations.csv (committed per-seed results) and exit")
    p.add_argument("--ablations", default="all",
                   help="comma list of augment, num_rewrites, source, backbone, text_tower; 'all'; '' for none")
    p.add_argument("--controls", default="", help="comma list of leak, faithfulness, data_size, steps, "
                                                   "data_epochs, policy, standin, rewrite_subsets; or 'all'")
    p.add_argument("--policy", default="laclip", choices=["laclip", "mt"], help="text policy of the augmented arms")
    p.add_argument("--preset", default=EXPERIMENT_PRESET,
                   help=f"preset every run starts from (default: {EXPERIMENT_PRESET}, compare's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every run")
    p.add_argument("--llm-model", default="", help="causal LM for augment=llm (empty: that value is skipped)")
    p.add_argument("--bt-models", default="", help="'forward,backward' translation models for augment=backtranslate "
                                                   "(empty: that value is skipped)")
    p.add_argument("--skip", default="", metavar="ABLATION=VALUE,...",
                   help="grid values to leave out, e.g. text_tower=minilm-unlocked (~1 h a run on one CPU thread)")
    p.add_argument("--jobs", type=int, default=0, help="runs in parallel (0: auto, from --gpus, the cores and device)")
    add_gpus_argument(p)
    p.add_argument("--list", action="store_true", help="print the grid's points and exit")


def rewrite_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", help="captions: a training source (LaCLIP .csv, tar shards: .tar / folder / glob, "
                                   "HF dataset folder; read with training's skip rules), .txt (one per line) or .jsonl")
    p.add_argument("--out", help="output folder (<variant>.txt, dataset/, report.json, cache/)")
    p.add_argument("--rewriter", choices=REWRITERS, default="shapes",
                   help="llm: in-context rewriting with a causal LM; shapes: the ShapeWorld LLM stand-in")
    p.add_argument("--model", default="", help="llm: causal LM folder or hub name; backtranslate: 'forward,backward'")
    p.add_argument("--sources", default=",".join(SOURCES),
                   help="llm/shapes: meta-pair sources, comma-separated (coco = mscoco; name=pairs.jsonl or "
                        "name=pairs.tsv for your own)")
    p.add_argument("--meta-pairs-dir", default="", metavar="PATH",
                   help="llm: read every source's meta pairs from a local checkout of the LaCLIP release "
                        "(its rewrite/utils.py; parsed, never run, never copied)")
    p.add_argument("--prompt-format", choices=["kit", "laclip"], default="kit",
                   help="llm: kit = this kit's prompt (one line per pair, the default); laclip = the layout of the "
                        "LaCLIP release's llama_rewrite.py (its instruction line, blank-line-separated pairs)")
    p.add_argument("--device", default="auto",
                   help="llm/backtranslate: auto (LOCAL_RANK, else the shard's GPU, else cuda:0 / cpu), cpu, cuda:N")
    p.add_argument("--num-variants", type=int, default=4, help="eda/backtranslate: rewrites per caption")
    p.add_argument("--max-new-tokens", type=int, default=77, help="llm/backtranslate: generation budget")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="do only batches b with b %% N == I, then --merge; 'auto' = RANK/WORLD_SIZE (torchrun)")
    p.add_argument("--merge", default=None, metavar="DIR", help="merge the finished shards in DIR into the outputs")
    p.add_argument("--job", default="", metavar="FINGERPRINT",
                   help="--merge: which job, when DIR holds several (the error lists them)")
    p.add_argument("--batch-size", type=int, default=32, help="captions per generation batch (and per cached batch)")
    p.add_argument("--seed", type=int, default=0, help="rewrites are deterministic for a seed")
    p.add_argument("--column", default="caption", help="caption column / key for .jsonl and HF dataset inputs")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any RewriteConfig field, e.g. --set k_shot=2 --set temperature=0.7")
    p.add_argument("--report", action="store_true",
                   help="also write quality.json + quality.md (diversity, faithfulness)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (a plain line every rewrite.print_every_s seconds instead)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads for generation (0: torch default)")
    p.add_argument("--backend", choices=["auto", "hf", "vllm"], default="auto",
                   help="llm: generation backend (auto: vLLM when installed and CUDA is present, else hf); "
                        "vLLM's GPU memory share: --set rewrite.vllm_gpu_memory=0.5")


def export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=[*TRAIN_FORMATS, "all", *EVAL_FORMATS, "open_clip"], default="all",
                   help="output layout")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--checkpoint", default=None, metavar="RUN_DIR",
                   help="open_clip: the run to export; imagefolder / clip_benchmark: export that run's own split")
    p.add_argument("--name", default=None, help="open_clip: the model name to register (default laclip-lite-<run>)")
    p.add_argument("--task", default="color_shape",
                   help="imagefolder / clip_benchmark: the labels (shape, color, color_shape, size, background) or "
                        "retrieval (clip_benchmark)")
    p.add_argument("--n", type=int, default=None, help="number of samples (default 48; with --checkpoint the run's)")
    p.add_argument("--split", default=None,
                   help="ShapeWorld split: train | val | test (default train; evaluation layouts: test, or a "
                        "comma list such as train,test)")
    p.add_argument("--seed", type=int, default=0, help="ShapeWorld world seed")
    p.add_argument("--image-size", type=int, default=32, help="image side in pixels")
    p.add_argument("--shards", type=int, default=2, help="wds: number of tar shards")
    p.add_argument("--rewriter", default="", help="also export rewrites made by this rewriter (e.g. shapes)")


def sweep_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", help="the notebook to run, e.g. notebooks/03_laclip_training.ipynb")
    p.add_argument("--grid", required=True, help="grid YAML: axes as lists, optional 'fixed:' and 'points:'")
    p.add_argument("--out", required=True, help="output folder: one sub-folder per point, sweep.csv, sweep.md")
    p.add_argument("--jobs", type=int, default=0,
                   help="points run in parallel, each kernel with cores/jobs threads (0: one per GPU of --gpus, "
                        "else 1)")
    add_gpus_argument(p)
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="run only points whose grid index is I modulo N (0-based), to spread a grid over machines")
    p.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's kernelspec)")
    p.add_argument("--list", action="store_true", help="print the grid's points (this shard) and exit")
    p.add_argument("--aggregate", action="store_true", help="only rebuild sweep.csv / sweep.md from --out")


def demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--only", default="", help="comma list of notebooks (e.g. 01_clip_basics,03_laclip_training)")
    p.add_argument("-p", dest="parameters", action="append", default=[], metavar="NAME=VALUE",
                   help="a parameter for every notebook that has it (YAML value), e.g. -p preset=test -p steps=200")
    p.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebooks' python3)")
    p.add_argument("--report-only", action="store_true", help="only rebuild REPORT.md from --out")


def assignments_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="folder for the student notebooks (created if missing)")
    p.add_argument("--source", default=None,
                   help="folder of source notebooks with solutions (default: the kit's own, shipped in "
                        "laclip_lite/course/assignments)")


def grade_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("submission", help="the student's .ipynb")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--source", default=None,
                   help="the source notebook it was released from (default: matched by nbgrader grade_ids)")
    p.add_argument("--source-dir", default=None, help="folder of source notebooks to match against "
                   "(default: the kit's own, shipped in laclip_lite/course/assignments)")
    p.add_argument("--timeout", type=int, default=60, help="seconds a cell may run before it is stopped")
    p.add_argument("--executed", default=None, metavar="PATH", help="also save the graded run as a notebook")


ARGUMENTS = {       # command -> the function adding its arguments (cli.COMMANDS holds its help line)
    "train": train_arguments,
    "eval": eval_arguments,
    "compare": compare_arguments,
    "ablate": ablate_arguments,
    "rewrite": rewrite_arguments,
    "export": export_arguments,
    "sweep": sweep_arguments,
    "demo": demo_arguments,
    "assignments": assignments_arguments,
    "grade": grade_arguments,
}
