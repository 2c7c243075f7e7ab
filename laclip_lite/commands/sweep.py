"""`laclip-lite sweep`: run a notebook once per grid point with papermill; resume, shard, one table."""
from __future__ import annotations

from pathlib import Path

from laclip_lite.course import sweep
from laclip_lite.utils import parse_gpus, parse_shard


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
