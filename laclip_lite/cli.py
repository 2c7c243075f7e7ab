"""`laclip-lite` command line: one sub-command per module in `laclip_lite/commands/`.

Each command module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`, and imports
heavy libraries (torch, transformers) inside `run`, so `laclip-lite --help` stays instant. Errors a person can
act on (`errors.UserError`: a bad value, bad data, a missing or unwritable path, a full disk, a busy folder) print
as one line, exit code 2, no traceback; `--debug` (or LACLIP_LITE_DEBUG=1) shows the traceback as well.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

COMMANDS = ["train", "eval", "compare", "ablate", "rewrite", "export", "sweep", "demo", "assignments", "grade"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="laclip-lite", description="A teaching and ablation kit for CLIP and LaCLIP.")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error too (or set LACLIP_LITE_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"laclip_lite.commands.{name}")   # a missing module is an error
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from laclip_lite.errors import UserError
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
