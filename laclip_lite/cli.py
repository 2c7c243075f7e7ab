"""`laclip-lite` command line: one sub-command per module in `laclip_lite/commands/`.

Each command module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`, and imports
heavy libraries (torch, transformers) inside `run`, so `laclip-lite --help` stays instant. Errors a person can
act on (`ConfigError`, `DataError`, missing files) print as one line, exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["train", "eval", "compare", "ablate", "rewrite", "export", "sweep", "demo", "assignments", "grade"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="laclip-lite", description="A teaching and ablation kit for CLIP and LaCLIP.")
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
        print(f"laclip-lite {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"laclip-lite {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
