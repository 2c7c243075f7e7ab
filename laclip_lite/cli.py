"""`laclip-lite` command line: one sub-command per module in `laclip_lite/commands/`.

Each command module defines `add_arguments(parser)` and `run(args) -> int` and imports what it needs (torch
included) at its top; its one-line help lives in `COMMANDS` here, and `main` imports only the module of the
command it runs, so `laclip-lite --help` imports none of them and stays instant. Errors a person can act on
(`errors.UserError`: a bad value, bad data, a missing or unwritable path, a full disk, a busy folder) print as one
line, exit code 2, no traceback; `--debug` (or LACLIP_LITE_DEBUG=1) shows the traceback as well.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Collection

from laclip_lite.errors import UserError

COMMANDS = {        # name -> its one-line help; laclip_lite/commands/<name>.py holds its arguments and run
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


def build_parser(load: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the arguments of the commands in `load` (default: all, importing every command module;
    `main` loads only the command it runs)."""
    parser = argparse.ArgumentParser(prog="laclip-lite", description="A teaching and ablation kit for CLIP and LaCLIP.")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error too (or set LACLIP_LITE_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text)
        if load is None or name in load:
            module = importlib.import_module(f"laclip_lite.commands.{name}")   # a missing module is an error
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = [a for a in argv if not a.startswith("-")][:1]    # --debug, the only option before it, takes no value
    args = build_parser(command).parse_args(argv)
    try:
        return int(args._run(args) or 0)
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
