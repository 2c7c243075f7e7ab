"""`laclip-lite` command line: one sub-command per module in `laclip_lite/commands/`.

Every command's arguments are added by its function in `commands/arguments.py` (argparse and light constants only)
and its one-line help lives in `COMMANDS` here, so the whole parser imports no command module and neither torch:
`laclip-lite --help`, `laclip-lite train --help` and an argument error stay instant. Each `commands/<name>.py`
holds the command's `run(args) -> int` and imports what it needs (torch included) at its top; `main` imports only
the module of the command it runs. Errors a person can act on (`errors.UserError`: a bad value, bad data, a missing
or unwritable path, a full disk, a busy folder) print as one line, exit code 2, no traceback; `--debug` (or
LACLIP_LITE_DEBUG=1) shows the traceback as well.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import traceback

from laclip_lite.commands.arguments import ARGUMENTS
from laclip_lite.errors import UserError

COMMANDS = {        # name -> its one-line help; commands/arguments.py: its arguments; commands/<name>.py: its run
    "train": "train a CLIP / LaCLIP / LaCLIP-MT model (writes checkpoint.pt, config.yaml, metrics.jsonl)",
    "eval": "evaluate a run folder: ShapeWorld tasks, or zero-shot / retrieval / linear / k-shot probes on an "
            "ImageFolder, CLIP_benchmark folder, captions CSV or Karpathy JSON",
    "compare": "train and compare text policies (clip, laclip, mt) over seeds; writes summary.csv/.md and compare.png",
    "ablate": "run the paper's ablations (augment, num_rewrites, source, backbone, text_tower) and the controls "
              "(leak, faithfulness, data_size, steps, data_epochs, policy, standin, rewrite_subsets) over worlds "
              "x seeds; paired differences to CLIP and between settings with 95%% t-intervals",
    "rewrite": "rewrite captions (llm / eda / backtranslate / shapes) into line-aligned files; resumable and shardable",
    "export": "export a ShapeWorld split (HF dataset, webdataset shards, LaCLIP CSV, ImageFolder, CLIP_benchmark "
              "folder) or a trained model for open_clip",
    "sweep": "run a notebook over a parameter grid with papermill (resumable, shardable) -> sweep.csv / sweep.md",
    "demo": "run the four lesson notebooks headless (papermill) and write <out>/REPORT.md",
    "assignments": "write student versions of the assignment notebooks (solutions stripped, hidden tests removed)",
    "grade": "grade a submitted assignment notebook (runs it with the instructor's checks; score per exercise)",
}


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command, from `commands/arguments.py` alone; a command without its arguments function or
    its `commands/<name>.py` module is an error here (the module is found, not imported)."""
    parser = argparse.ArgumentParser(prog="laclip-lite", description="A teaching and ablation kit for CLIP and LaCLIP.")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error too (or set LACLIP_LITE_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in COMMANDS.items():
        module = f"laclip_lite.commands.{name}"
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(f"No module named {module!r} (command {name!r} of cli.COMMANDS)", name=module)
        if name not in ARGUMENTS:
            raise LookupError(f"command {name!r} of cli.COMMANDS has no arguments function in "
                              "laclip_lite.commands.arguments.ARGUMENTS")
        ARGUMENTS[name](sub.add_parser(name, help=text, description=text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    run = importlib.import_module(f"laclip_lite.commands.{args.command}").run    # only the command it runs
    try:
        return int(run(args) or 0)
    except UserError as e:
        if args.debug or os.environ.get("LACLIP_LITE_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        print(f"laclip-lite {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"laclip-lite {args.command}: interrupted", file=sys.stderr)
        return 130


def one_line(e: BaseException) -> str:
    """An error's message on one line (an OSError without its own text: its strerror and the file)."""
    if isinstance(e, OSError) and e.filename and e.strerror:       # not "[Errno 13] ...: 'path'"
        text = f"{e.strerror}: {e.filename}"
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
