"""`laclip-lite eval`: zero-shot, retrieval and (on request) probes of a run folder; prints one JSON object."""
from __future__ import annotations

import argparse
import json

HELP = "evaluate a run folder on ShapeWorld: zero-shot top-1/top-5, retrieval R@K, linear / k-shot probes"

TASK_CHOICES = ("shape", "color", "color_shape", "size", "background", "all")  # vocab.TASKS + "all"


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR",
                   help="run folder written by `laclip-lite train` (or its checkpoint.pt)")
    p.add_argument("--task", default="color_shape", choices=TASK_CHOICES,
                   help="zero-shot task (default: color_shape); 'all' evaluates every task")
    p.add_argument("--templates", default=None, metavar="FILE_OR_SET",
                   help="template set name (default, photo, art, spoken, heldout, bare) or a file with one "
                        "template per line containing {} (default: the 'default' set)")
    p.add_argument("--linear-probe", action="store_true", help="also fit a logistic-regression probe per task")
    p.add_argument("--few-shot", type=_non_negative, default=0, metavar="K", help="also run a K-shot probe per task")
    p.add_argument("--no-retrieval", action="store_true", help="skip image<->caption retrieval")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="ShapeWorld split (default: test)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--batch-size", type=int, default=256, help="images / texts per forward pass")
    p.add_argument("--seed", type=int, default=0, help="seed of the probes' validation slice and k-shot draws")


def run(args: argparse.Namespace) -> int:
    from laclip_lite.evaluate import evaluate_run

    result = evaluate_run(args.checkpoint, task=args.task, templates=args.templates,
                          retrieval=not args.no_retrieval, linear_probe=args.linear_probe,
                          few_shot=args.few_shot, split=args.split, device=args.device,
                          batch_size=args.batch_size, seed=args.seed)
    print(json.dumps(result, indent=2))
    return 0
