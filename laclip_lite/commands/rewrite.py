"""`laclip-lite rewrite`: rewrite a caption file with an LLM, EDA, back-translation or the ShapeWorld stand-in.

    laclip-lite rewrite --input captions.txt --out rewrites/ --rewriter llm --model path/to/llama
    laclip-lite rewrite --input train.csv --out rewrites/ --rewriter llm --model M --shard 0/4   # x4 processes
    laclip-lite rewrite --merge rewrites/
    laclip-lite rewrite --input train.csv --out rw/ --rewriter llm --model M --prompt-format laclip \
        --sources chatgpt=my_pairs.tsv --shard 1/4 --device cuda:1      # the release's prompt, your own pairs
    laclip-lite rewrite --input captions.txt --out rewrites_eda/ --rewriter eda --report

Writes `<variant>.txt` (line-aligned with the input), `dataset/` and `report.json` into --out (tar shards: also
`keys.txt`, each line's sample key); a rerun resumes from the batch cache there. One job per --out: a run with
other settings or other input stops naming what differs. Train on it with --set data.rewrites_dir=OUT.
"""
from __future__ import annotations

import json
from pathlib import Path

from laclip_lite.config import Config, ConfigError, apply_overrides
from laclip_lite.folder_lock import folder_lock
from laclip_lite.rewrite import job
from laclip_lite.rewrite.device import rewrite_device
from laclip_lite.rewrite.inputs import read_input
from laclip_lite.rewrite.job import job_settings
from laclip_lite.rewrite.quality import quality_report, write_quality
from laclip_lite.utils import atomic_write_text, parse_shard, stable_hash


def rewrite_config(args):
    """RewriteConfig from the flags (validated, nothing loaded)."""
    cfg = Config()
    r = cfg.rewrite
    r.rewriter, r.model, r.batch_size, r.seed = args.rewriter, args.model, args.batch_size, args.seed
    r.sources = [s for s in args.sources.split(",") if s.strip()]
    if getattr(args, "meta_pairs_dir", ""):
        r.sources = [s if "=" in s else f"{s}={args.meta_pairs_dir}" for s in r.sources]
    r.num_variants, r.max_new_tokens = args.num_variants, args.max_new_tokens
    r.prompt_format, r.device = args.prompt_format, args.device
    r.threads, r.backend = args.threads, args.backend
    apply_overrides(cfg, [o if o.startswith("rewrite.") else f"rewrite.{o}" for o in args.overrides])
    job_settings(r)  # unknown sources, bad sizes: fail now, before reading or loading anything
    return r


def run(args) -> int:
    folder = args.merge or args.out
    if not folder:
        return _run(args)
    with folder_lock(folder, None if args.merge or not args.shard else parse_shard(args.shard)):  # one writer
        return _run(args)


def _run(args) -> int:
    progress = not args.no_progress
    if args.merge:
        if args.input or args.shard:
            raise ConfigError("--merge DIR takes no --input / --shard (it merges the shards already in DIR)")
        rewrites = job.merge(args.merge, args.job)
        _summary(args.merge, rewrites)
        return 0
    if not args.input or not args.out:
        raise ConfigError("rewrite needs --input FILE and --out DIR (or --merge DIR)")
    shard = parse_shard(args.shard) if args.shard else None
    rcfg = rewrite_config(args)

    if rcfg.rewriter in ("llm", "backtranslate"):
        device, why = rewrite_device(rcfg.device, shard)     # fails now when that device is not there
        print(f"rewriting on {device} ({why})")
    read = read_input(args.input, args.column)
    captions = read.texts
    if read.note():
        print(read.note())
    settings = job.job_settings(rcfg)
    job.check_one_job(args.out, stable_hash(list(captions), settings), settings, captions)   # before any output
    if read.keys is not None:         # tar shards: line i of every <variant>.txt belongs to the sample keys[i]
        Path(args.out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.out) / "keys.txt", "".join(k + "\n" for k in read.keys))
    if shard and shard[1] > 1:
        report = job.run_shard(captions, args.out, rcfg, *shard, progress=progress, exclusive=True)
        print(json.dumps(report))
        print(f"shard {args.shard} done; when every shard has finished: laclip-lite rewrite --merge {args.out}")
        return 0
    rewrites = job.rewrite_captions(captions, args.out, rcfg, progress=progress, exclusive=True)
    if args.report:
        report = json.loads((Path(args.out) / "report.json").read_text())
        q = quality_report(captions, rewrites, fallbacks=report.get("fallbacks"))
        write_quality(q, args.out)
        print(q["markdown"])
    _summary(args.out, rewrites)
    return 0


def _summary(out_dir, rewrites) -> None:
    report = json.loads((Path(out_dir) / "report.json").read_text())
    falls = ", ".join(f"{v}={f['total']}" for v, f in report["fallbacks"].items())
    print(f"{report['n_captions']} captions x {len(rewrites)} variants ({', '.join(rewrites)}) -> {out_dir}; "
          f"generation calls this run: {report['generation_calls']} (batches reused: {report['batches_reused']}); "
          f"fallbacks to the original: {falls}")
