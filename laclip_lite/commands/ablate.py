"""`laclip-lite ablate`: the paper's five ablations and the controls over seeds -> ablations.csv/.md + figures."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from laclip_lite.ablations import ablate, full_grid, label, read_rows, write_contrasts
from laclip_lite.commands import add_gpus_argument
from laclip_lite.constants import EXPERIMENT_PRESET
from laclip_lite.utils import parse_gpus, parse_seeds


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="output folder (runs/ inside; finished runs are reused)")
    p.add_argument("--seeds", default="0,1,2", help="comma list of seeds (3 or more for intervals)")
    p.add_argument("--worlds", default="0", help="comma list of data.world_seed values: runs pair by (world, seed); "
                                                 "tables per world and pooled")
    p.add_argument("--contrasts-only", action="store_true",
                   help="recompute contrasts.csv/.md from OUT/ablations.csv (committed per-seed results) and exit")
    p.add_argument("--ablations", default="all",
                   help="comma list of augment, num_rewrites, source, backbone, text_tower; 'all'; '' for none")
    p.add_argument("--controls", default="", help="comma list of leak, faithfulness, data_size, steps, "
                                                   "data_epochs, policy, standin, rewrite_subsets; or 'all'")
    p.add_argument("--policy", default="laclip", choices=["laclip", "mt"], help="text policy of the augmented arms")
    p.add_argument("--preset", default=EXPERIMENT_PRESET,
                   help=f"preset every run starts from (default: {EXPERIMENT_PRESET}, compare's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every run")
    p.add_argument("--llm-model", default="", help="causal LM for augment=llm (empty: that value is skipped)")
    p.add_argument("--bt-models", default="", help="'forward,backward' translation models for augment=backtranslate "
                                                   "(empty: that value is skipped)")
    p.add_argument("--skip", default="", metavar="ABLATION=VALUE,...",
                   help="grid values to leave out, e.g. text_tower=minilm-unlocked (~1 h a run on one CPU thread)")
    p.add_argument("--jobs", type=int, default=0, help="runs in parallel (0: auto, from --gpus, the cores and device)")
    add_gpus_argument(p)
    p.add_argument("--list", action="store_true", help="print the grid's points and exit")


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
