"""One module per `laclip-lite` sub-command: add_arguments(parser), run(args) -> int (its help line: cli.COMMANDS)."""


def add_gpus_argument(p) -> None:
    """`--gpus`, shared by the commands that run many jobs (compare, ablate, sweep)."""
    p.add_argument("--gpus", default="auto", metavar="IDS",
                   help="GPUs to share out, one per job via CUDA_VISIBLE_DEVICES, e.g. 0,1,2,3 (default auto: "
                        "every visible GPU; none on a CPU; 'none': do not assign)")
