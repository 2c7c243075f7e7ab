"""`laclip-lite ablate`: the paper's five ablations and the controls over seeds -> ablations.csv/.md + figures."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from laclip_lite.ablations import ablate, full_grid, label, read_rows, write_contrasts
from laclip_lite.utils import parse_gpus, parse_seeds


def _names(text: str) -> list[str] | str:
    items = [t.strip() for t in text.split(",") if t.strip()]
    return "all" if items == ["all"] else items


def run(args) -> int:
    ablations, controls = _names(args.ablations), _names(args.controls)
    skip = [t.strip() for t in args.skip.split(",") if t.strip()]
    if args.list:
        points, skipped = full_grid(args.policy, args.llm_model, args.bt_models, ablations, controls, skip)
        for pt in points:
            print(f"{pt.ablation}\t{label(pt)}\t{pt.arm}\t{pt.overrides}")
        for a, v, why in skipped:
            print(f"{a}\t{v}\tskipped: {why}")
        return 0

    if args.contrasts_only:
        source = Path(args.out) / "ablations.csv"
        if not source.is_file():
            raise FileNotFoundError(f"--contrasts-only: {source} not found (run ablate into --out first)")
        write_contrasts(read_rows(source), args.out)
        print((Path(args.out) / "contrasts.md").read_text())
        return 0
    seeds = parse_seeds(args.seeds)
    worlds = parse_seeds(args.worlds, "--worlds") if args.worlds.strip() else []
    ablate(seeds, args.out, ablations, controls, args.preset, args.overrides, args.policy, args.llm_model,
           args.bt_models, args.jobs, command="laclip-lite " + shlex.join(sys.argv[1:]), skip=skip, worlds=worlds,
           gpus=parse_gpus(args.gpus))
    print((Path(args.out) / "ablations.md").read_text())
    return 0
