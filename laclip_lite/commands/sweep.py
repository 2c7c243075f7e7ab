"""`laclip-lite sweep`: run a notebook once per grid point with papermill; resume, shard, one table."""
from __future__ import annotations

from pathlib import Path

from laclip_lite.commands import add_gpus_argument
from laclip_lite.course import sweep
from laclip_lite.utils import parse_gpus, parse_shard


def add_arguments(p) -> None:
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


def run(args) -> int:
    if args.aggregate:
        sweep.aggregate(args.out)
        print((Path(args.out) / "sweep.md").read_text())
        return 0
    if args.list:
        fixed, axes, points = sweep.load_grid(args.grid)
        index, count = parse_shard(args.shard)
        for p in sweep.shard(sweep.expand(fixed, axes, points), index, count):
            print(p.name, p.params)
        return 0
    gpus = parse_gpus(args.gpus)
    result = sweep.run_sweep(args.notebook, args.grid, args.out, jobs=args.jobs or len(gpus) or 1,
                             shard_spec=args.shard, kernel=args.kernel, gpus=gpus)
    print((Path(args.out) / "sweep.md").read_text())
    for name, error in result.failed.items():
        print(f"FAILED {name}: {error} (see {Path(args.out) / name / sweep.ERROR})")
    return 1 if result.failed else 0
