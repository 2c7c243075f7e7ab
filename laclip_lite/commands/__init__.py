"""One module per `laclip-lite` sub-command holding its `run(args) -> int` (heavy imports at its top); every
command's arguments live in `commands/arguments.py` and its help line in `cli.COMMANDS`."""
