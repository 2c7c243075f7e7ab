"""`laclip-lite eval`: score a run folder; prints one JSON object (or, with --suite, writes one CSV + one table).

    laclip-lite eval --checkpoint RUN                                   # ShapeWorld: the run's own test split
    laclip-lite eval --checkpoint RUN --task all --linear-probe         # every ShapeWorld task, with probes
    laclip-lite eval --checkpoint RUN --dataset data/imagenet/val --classnames imagenet_labels.json
    laclip-lite eval --checkpoint RUN --dataset wds_cars --task linear_probe
    laclip-lite eval --checkpoint RUN --suite suite.yaml --out runs/scores

`--dataset` reads an ImageFolder, a CLIP_benchmark webdataset folder, a captions CSV or a Karpathy JSON (the layout
is detected; `laclip_lite.data.eval_layouts`); its task defaults to the layout's own (zero-shot or retrieval).
A suite file is a YAML list of datasets, each a path or a mapping {path, task, classnames, templates, name, split,
image_root, k}, or a mapping with such a list under `datasets:`. A run trained with `eval.datasets` and given no
`--dataset` is scored on those.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from laclip_lite.commands.arguments import FILE_TASKS, SHAPEWORLD_TASKS
from laclip_lite.config import Config, ConfigError, EvalSpec, parse_specs, read_yaml
from laclip_lite.data.dataset import held_out_splits, shapeworld_split
from laclip_lite.data.eval_layouts import open_eval_set, resolve_task
from laclip_lite.errors import DataError
from laclip_lite.evaluate import FileSet, ShapeWorldSet, evaluate, file_sets, metrics_of, resolve_tasks, template_label
from laclip_lite.files import atomic_open, atomic_write_text
from laclip_lite.runs import load_run
from laclip_lite.templates import get_templates
from laclip_lite.utils import markdown_table


def load_suite(path: str) -> list:
    """A suite YAML -> its list of dataset entries (ConfigError naming the file when it is not one)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"suite file not found: {file}")
    data = read_yaml(file)
    entries = data.get("datasets") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{file}: a suite is a non-empty list of datasets (or one under 'datasets:')")
    specs = parse_specs(entries, where=str(file))
    for spec in specs:                        # relative paths start from the suite file's folder
        for key in ("path", "classnames", "templates", "image_root"):
            value = getattr(spec, key)
            if value and not Path(value).is_absolute() and (file.parent / value).exists():
                setattr(spec, key, str(file.parent / value))
    return specs


def _file_spec(args):
    if args.task in SHAPEWORLD_TASKS:
        raise ConfigError(f"--task {args.task} is a ShapeWorld task; with --dataset use one of {', '.join(FILE_TASKS)}")
    return EvalSpec(path=args.dataset, task=args.task or "", classnames=args.classnames or "",
                    templates=args.templates or "", name=args.name, split=args.split or "test",
                    image_root=args.image_root, k=args.few_shot or 5)


def run(args: argparse.Namespace) -> int:
    progress = not args.no_progress
    options = dict(batch_size=args.batch_size, num_workers=args.workers, progress=progress, seed=args.seed)
    if args.suite or args.dataset:
        specs = load_suite(args.suite) if args.suite else [_file_spec(args)]
        for spec in specs:                    # every dataset is checked before the model loads
            open_eval_set(spec)
        model, tokenizer, cfg = load_run(args.checkpoint, args.device)
        sets = [FileSet(spec) for spec in specs]
        scores = evaluate(model, tokenizer, sets, **options)
        results = {s.spec.label: metrics_of(scores, s) for s in sets}
        if not args.suite:
            spec = specs[0]
            print(json.dumps({"run": str(args.checkpoint), "dataset": spec.path, "name": spec.label,
                              **results[spec.label]}, indent=2))
            return 0
        out = Path(args.out) if args.out else load_run_folder(args.checkpoint)
        csv_path, md_path = write_suite(results, specs, out, str(args.checkpoint))
        print(md_path.read_text())
        print(f"wrote {csv_path} and {md_path}")
        return 0
    task = args.task or "color_shape"
    if task in FILE_TASKS:
        raise ConfigError(f"--task {task} needs --dataset PATH (ShapeWorld tasks: {', '.join(SHAPEWORLD_TASKS)})")
    saved = load_run_folder(args.checkpoint) / "config.yaml"
    if saved.is_file() and not held_out_splits(Config.load(saved)) and Config.load(saved).eval.datasets:
        model, tokenizer, cfg = load_run(args.checkpoint, args.device)   # a file-data run: its own evaluation sets
        sets = file_sets(cfg.eval.datasets)
        scores = evaluate(model, tokenizer, sets, **options)
        print(json.dumps({"run": str(args.checkpoint), "datasets": {s.spec.label: metrics_of(scores, s)
                                                                    for s in sets}}, indent=2))
        return 0
    print(json.dumps(score_shapeworld(args, task), indent=2))
    return 0


def score_shapeworld(args: argparse.Namespace, task: str) -> dict:
    """A ShapeWorld run on its own `--split` (the world it trained on): {"run", "split", "n_images", "templates",
    "num_templates", "<split>/<task>_top1[@<templates>]", "<split>/<task>_top5[...]", "<split>/i2t_R@K",
    "<split>/t2i_R@K" (unless --no-retrieval), "<split>/<task>_linear_probe_top1" / "_C" (--linear-probe),
    "<split>/<task>_few_shot_top1" / "_std" / "_k" / "_episodes" (--few-shot K)}: the keys training writes to
    final_metrics.json. Probes train on the training split."""
    tasks = resolve_tasks(task)
    template_list = get_templates(args.templates)  # a bad template file fails before the model loads
    model, tokenizer, cfg = load_run(args.checkpoint, args.device)
    if not held_out_splits(cfg):
        raise DataError(f"a ShapeWorld evaluation needs a ShapeWorld run; {args.checkpoint} trained on data.source="
                        f"{cfg.data.source!r}: score it on evaluation sets of its own domain "
                        "(laclip-lite eval --dataset PATH, or eval.datasets in its config)")
    split = args.split or "test"
    data = shapeworld_split(cfg, split)
    probes = args.linear_probe or args.few_shot
    train = (data if split == "train" else shapeworld_split(cfg, "train")) if probes else None
    s = ShapeWorldSet(data, prefix=f"{split}/", tasks=tasks, template_sets=[args.templates],
                      retrieval_ks=() if args.no_retrieval else (1, 5, 10), top5=True, probe_train=train,
                      linear_probe=args.linear_probe, few_shot=args.few_shot)
    scores = evaluate(model, tokenizer, [s], batch_size=args.batch_size, seed=args.seed)
    return {"run": str(Path(args.checkpoint)), "split": split, "n_images": len(data.images),
            "templates": template_label(args.templates), "num_templates": len(template_list), **scores}


def load_run_folder(checkpoint: str):
    path = Path(checkpoint)
    return path.parent if path.suffix == ".pt" else path


SUITE_COLUMNS = ("top1", "top5", "mean_per_class_recall", "image_to_text_R@1", "image_to_text_R@5",
                 "text_to_image_R@1", "text_to_image_R@5", "n_images", "skipped")


def write_suite(results: dict[str, dict], specs: list, out, run: str):
    """One row per dataset -> `out/suite.csv` (every metric) and `out/suite.md` (the headline columns)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for spec in specs:
        task = resolve_task(spec, open_eval_set(spec))
        rows.append({"dataset": spec.label, "task": task, "path": spec.path, **results[spec.label]})
    keys = list(dict.fromkeys(k for r in rows for k in r))
    csv_path, md_path = out / "suite.csv", out / "suite.md"
    with atomic_open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    cols = ["dataset", "task"] + [c for c in SUITE_COLUMNS if any(c in r for r in rows)]
    title = f"Run `{run}` on {len(rows)} evaluation set(s) (%; a probe's top1 is the probe's accuracy).\n\n"
    atomic_write_text(md_path, title + markdown_table(rows, cols, right=cols[2:]))
    return csv_path, md_path
