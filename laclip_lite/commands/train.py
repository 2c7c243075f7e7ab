"""`laclip-lite train`: train CLIP / LaCLIP / LaCLIP-MT from a preset, a YAML file and `--set` overrides."""
from __future__ import annotations

import json

from laclip_lite.constants import POLICIES

HELP = "train a CLIP / LaCLIP / LaCLIP-MT model (writes checkpoint.pt, config.yaml, metrics.jsonl)"


def add_arguments(p) -> None:
    p.add_argument("--preset", default="tiny", help="named preset: tiny (CPU minutes), test, vit-b16, vit-b32, rn50")
    p.add_argument("--config", default=None, help="a YAML file of config values (applied after the preset)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set train.policy=laclip --set model.vision=resnet")
    p.add_argument("--policy", choices=POLICIES, default=None, help="shortcut for --set train.policy=...")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from laclip_lite.config import Config, build_config

    overrides = list(args.overrides) + ([f"train.policy={args.policy}"] if args.policy else [])
    if args.resume:
        from pathlib import Path
        saved = Path(args.out) / "config.yaml"
        if not saved.exists():
            raise FileNotFoundError(f"--resume: no run at {args.out} (missing {saved})")
        cfg = Config.load(saved)
        from laclip_lite.config import apply_overrides
        apply_overrides(cfg, overrides).validate()
    else:
        cfg = build_config(args.preset, overrides, args.config)
    from laclip_lite.train import train

    final = train(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    print(json.dumps(final))
    return 0
