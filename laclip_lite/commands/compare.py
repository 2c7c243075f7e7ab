"""`laclip-lite compare`: CLIP vs LaCLIP vs LaCLIP-MT on equal budgets over several seeds -> table + chart."""
from __future__ import annotations

from pathlib import Path

from laclip_lite.commands import add_gpus_argument
from laclip_lite.constants import EXPERIMENT_PRESET, POLICIES, REWRITERS
from laclip_lite.experiments import compare, write_compare_contrasts
from laclip_lite.stats import read_rows
from laclip_lite.utils import parse_gpus


def add_arguments(p) -> None:
    p.add_argument("--policies", default=",".join(POLICIES),
                   help="comma list of policy[:augment], e.g. clip,laclip,mt,laclip:eda "
                        "(augment defaults to --augment)")
    p.add_argument("--augment", default="shapes", help=f"rewrite cache for laclip/mt arms: {', '.join(REWRITERS)}")
    p.add_argument("--seeds", default="0,1,2", help="comma list of seeds")
    p.add_argument("--worlds", default=None, help="comma list of data.world_seed values (new images, captions, "
                                                 "val and test sets; default: the preset's); runs pair by "
                                                 "(world, seed)")
    p.add_argument("--preset", default=EXPERIMENT_PRESET,
                   help=f"preset every run starts from (default: {EXPERIMENT_PRESET}, the data-scarce regime sized "
                        "so 3 policies x 3 seeds fit 10 minutes on 2 cores)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per run; finished runs are skipped)")
    p.add_argument("--contrasts-only", action="store_true",
                   help="recompute contrasts.csv/.md from OUT/runs.csv (committed per-seed results) and exit")
    p.add_argument("--jobs", type=int, default=0,
                   help="runs in parallel, each with cores/jobs threads (0: auto: one per GPU of --gpus, else one "
                        "per core on a CPU)")
    add_gpus_argument(p)


def run(args) -> int:
    if args.contrasts_only:
        source = Path(args.out) / "runs.csv"
        if not source.is_file():
            raise FileNotFoundError(f"--contrasts-only: {source} not found (run compare into --out first)")
        write_compare_contrasts(read_rows(source), Path(args.out), append_summary=False)
        print((Path(args.out) / "contrasts.md").read_text())
        return 0

    compare(args.policies, args.seeds, args.out, args.preset, args.overrides, args.augment, jobs=args.jobs,
            worlds=args.worlds, gpus=parse_gpus(args.gpus))
    print((Path(args.out) / "summary.md").read_text())
    return 0
