"""One module per `laclip-lite` sub-command: HELP, add_arguments(parser), run(args) -> int."""
