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
from laclip_lite.constants import REWRITERS, SOURCES
from laclip_lite.folder_lock import folder_lock
from laclip_lite.rewrite import job
from laclip_lite.rewrite.device import rewrite_device
from laclip_lite.rewrite.inputs import read_input
from laclip_lite.rewrite.job import job_settings
from laclip_lite.rewrite.quality import quality_report, write_quality
from laclip_lite.utils import atomic_write_text, parse_shard, stable_hash


def add_arguments(p) -> None:
    p.add_argument("--input", help="captions: a training source (LaCLIP .csv, tar shards: .tar / folder / glob, "
                                   "HF dataset folder; read with training's skip rules), .txt (one per line) or .jsonl")
    p.add_argument("--out", help="output folder (<variant>.txt, dataset/, report.json, cache/)")
    p.add_argument("--rewriter", choices=REWRITERS, default="shapes",
                   help="llm: in-context rewriting with a causal LM; shapes: the ShapeWorld LLM stand-in")
    p.add_argument("--model", default="", help="llm: causal LM folder or hub name; backtranslate: 'forward,backward'")
    p.add_argument("--sources", default=",".join(SOURCES),
                   help="llm/shapes: meta-pair sources, comma-separated (coco = mscoco; name=pairs.jsonl or "
                        "name=pairs.tsv for your own)")
    p.add_argument("--meta-pairs-dir", default="", metavar="PATH",
                   help="llm: read every source's meta pairs from a local checkout of the LaCLIP release "
                        "(its rewrite/utils.py; parsed, never run, never copied)")
    p.add_argument("--prompt-format", choices=["kit", "laclip"], default="kit",
                   help="llm: kit = this kit's prompt (one line per pair, the default); laclip = the layout of the "
                        "LaCLIP release's llama_rewrite.py (its instruction line, blank-line-separated pairs)")
    p.add_argument("--device", default="auto",
                   help="llm/backtranslate: auto (LOCAL_RANK, else the shard's GPU, else cuda:0 / cpu), cpu, cuda:N")
    p.add_argument("--num-variants", type=int, default=4, help="eda/backtranslate: rewrites per caption")
    p.add_argument("--max-new-tokens", type=int, default=77, help="llm/backtranslate: generation budget")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="do only batches b with b %% N == I, then --merge; 'auto' = RANK/WORLD_SIZE (torchrun)")
    p.add_argument("--merge", default=None, metavar="DIR", help="merge the finished shards in DIR into the outputs")
    p.add_argument("--job", default="", metavar="FINGERPRINT",
                   help="--merge: which job, when DIR holds several (the error lists them)")
    p.add_argument("--batch-size", type=int, default=32, help="captions per generation batch (and per cached batch)")
    p.add_argument("--seed", type=int, default=0, help="rewrites are deterministic for a seed")
    p.add_argument("--column", default="caption", help="caption column / key for .jsonl and HF dataset inputs")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any RewriteConfig field, e.g. --set k_shot=2 --set temperature=0.7")
    p.add_argument("--report", action="store_true",
                   help="also write quality.json + quality.md (diversity, faithfulness)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (a plain line every rewrite.print_every_s seconds instead)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads for generation (0: torch default)")
    p.add_argument("--backend", choices=["auto", "hf", "vllm"], default="auto",
                   help="llm: generation backend (auto: vLLM when installed and CUDA is present, else hf); "
                        "vLLM's GPU memory share: --set rewrite.vllm_gpu_memory=0.5")


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
