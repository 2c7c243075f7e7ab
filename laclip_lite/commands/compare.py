"""`laclip-lite compare`: CLIP vs LaCLIP vs LaCLIP-MT on equal budgets over several seeds -> table + chart."""
from __future__ import annotations

from pathlib import Path

from laclip_lite.experiments import compare, write_compare_contrasts
from laclip_lite.stats import read_rows
from laclip_lite.utils import parse_gpus


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
