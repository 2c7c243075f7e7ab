"""The rewrite job: captions -> one rewrite per caption per variant, cached, resumable, shardable.

```python
rewrites = rewrite_captions(captions, out_dir, rcfg)   # dict variant -> list[str], aligned with captions
rewrites = load_rewrites(out_dir)                       # the same, read back from out_dir/<variant>.txt
```

What lands in `out_dir`:

* `<variant>.txt` - one rewrite per line, line *i* rewrites caption *i* (the LaCLIP release layout);
* `dataset/`      - a Hugging Face `save_to_disk` dataset: `caption` + one column per variant;
* `report.json`   - settings, fingerprint, fallbacks per variant and reason, generation calls of this run;
* `cache/<fingerprint>/batch-NNNNNN.json` - finished batches. The fingerprint hashes the captions and every
  setting that changes the output, so a cache is never reused for other input or settings.

**Resuming.** A batch file is written to a temp file and `os.replace`d into place, so after a crash (even
`kill -9`) each batch is either complete or absent. A rerun loads finished batches and generates only the
missing ones: no caption is lost or duplicated and no finished batch is generated again. A second run over the
same input and settings makes zero generation calls (`report.json: generation_calls`).

**Sharding.** `run_shard(..., index=i, count=n)` generates batches b with b % n == i into the same cache;
`merge(out_dir)` checks that every batch is present and writes the outputs. Each batch is seeded from its own
content (never from its position or the process), so sharded + merged output equals a single run's.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from laclip_lite.config import ConfigError, RewriteConfig
from laclip_lite.constants import REWRITERS
from laclip_lite.errors import DataError
from laclip_lite.rewrite.backtranslate import BackTranslator
from laclip_lite.rewrite.base import Rewriter, one_line
from laclip_lite.rewrite.device import check_device_spec, rewrite_device
from laclip_lite.rewrite.eda import EDARewriter, _wordnet
from laclip_lite.rewrite.llm import LLMRewriter
from laclip_lite.rewrite.meta import canonical_sources, meta_file_digest
from laclip_lite.rewrite.models import check_model_name
from laclip_lite.rewrite.prompt import prompt_format
from laclip_lite.rewrite.shapes import STANDIN_MODES, ShapeWorldRewriter, shape_styles
from laclip_lite.utils import atomic_write_text, stable_hash

# Bump when a rewriter's algorithm changes output for the same settings: old caches are then not reused.
ALGORITHM_VERSION = {"llm": 1, "eda": 1, "backtranslate": 1, "shapes": 3}


# --- settings, fingerprint, rewriter ---------------------------------------------------------------------
MAX_VARIANTS = 16      # rewrites per caption a job writes at most (config.validate: data.num_rewrites <= 16)


def job_settings(rcfg: RewriteConfig) -> dict:
    """Every setting that changes the output of `rcfg.rewriter` (and nothing else: a new temperature does not
    invalidate a cache of EDA rewrites). Computed without loading any model."""
    if rcfg.rewriter not in REWRITERS:
        raise ConfigError(f"rewrite.rewriter={rcfg.rewriter!r} is not one of: {', '.join(REWRITERS)}")
    if rcfg.batch_size < 1:
        raise ConfigError(f"rewrite.batch_size must be >= 1, got {rcfg.batch_size}")
    if rcfg.rewriter in ("eda", "backtranslate") and not 1 <= rcfg.num_variants <= MAX_VARIANTS:
        raise ConfigError(f"rewrite.num_variants (--num-variants) must be in 1..{MAX_VARIANTS} (one file per "
                          f"variant; data.num_rewrites uses at most {MAX_VARIANTS}), got {rcfg.num_variants}")
    if rcfg.max_new_tokens < 1 or rcfg.k_shot < 0 or not 0 < rcfg.top_p <= 1 or rcfg.temperature < 0:
        raise ConfigError("rewrite.max_new_tokens must be >= 1, k_shot >= 0, top_p in (0, 1] and temperature >= 0; "
                          f"got {rcfg.max_new_tokens}, {rcfg.k_shot}, {rcfg.top_p}, {rcfg.temperature}")
    s = {"rewriter": rcfg.rewriter, "version": ALGORITHM_VERSION[rcfg.rewriter], "seed": rcfg.seed,
         "batch_size": rcfg.batch_size, "variants": variant_names(rcfg)}
    if rcfg.rewriter == "llm" and not rcfg.model:
        raise ConfigError("rewrite.rewriter=llm needs rewrite.model (a local folder or hub name of a causal LM)")
    if rcfg.rewriter == "backtranslate" and len([p for p in rcfg.model.split(",") if p.strip()]) != 2:
        raise ConfigError("rewrite.rewriter=backtranslate needs rewrite.model='forward_model,backward_model' "
                          f"(e.g. Helsinki-NLP/opus-mt-en-de,Helsinki-NLP/opus-mt-de-en), got {rcfg.model!r}")
    if rcfg.rewriter in ("llm", "backtranslate"):
        check_device_spec(rcfg.device)
        for name in rcfg.model.split(","):
            check_model_name(name.strip())
    if rcfg.rewriter == "llm":
        prompt_format(rcfg.prompt_format)
        s.update(model=rcfg.model, k_shot=rcfg.k_shot, temperature=rcfg.temperature, top_p=rcfg.top_p,
                 max_new_tokens=rcfg.max_new_tokens, trust_remote_code=rcfg.trust_remote_code,
                 prompt_format=rcfg.prompt_format, meta={spec: meta_file_digest(spec) for spec in rcfg.sources})
        if rcfg.backend not in ("auto", "hf", "vllm"):
            raise ConfigError(f"rewrite.backend={rcfg.backend!r} is not one of: auto, hf, vllm")
        if not 0.0 < rcfg.vllm_gpu_memory <= 1.0:
            raise ConfigError(f"rewrite.vllm_gpu_memory must be in (0, 1], got {rcfg.vllm_gpu_memory}")
        if rcfg.backend != "auto":          # the two backends sample differently: a cache is one backend's
            s.update(backend=rcfg.backend)
    elif rcfg.rewriter == "shapes":
        if not 0.0 <= rcfg.error_rate <= 1.0:
            raise ConfigError(f"rewrite.error_rate must be in [0, 1], got {rcfg.error_rate}")
        # the controls enter the fingerprint only when on, so caches of the plain stand-in stay valid
        s.update({k: v for k, v in (("leak_free", rcfg.leak_free), ("error_rate", rcfg.error_rate)) if v})
        if rcfg.standin not in STANDIN_MODES:
            raise ConfigError(f"rewrite.standin must be one of {', '.join(STANDIN_MODES)}, got {rcfg.standin!r}")
        if rcfg.standin != "full":
            s["standin"] = rcfg.standin
    elif rcfg.rewriter == "eda":
        s.update(wordnet=_wordnet() is not None)   # WordNet, when installed, adds synonyms
    elif rcfg.rewriter == "backtranslate":
        s.update(model=rcfg.model, temperature=rcfg.temperature, top_p=rcfg.top_p,
                 max_new_tokens=rcfg.max_new_tokens)
    return s


def variant_names(rcfg: RewriteConfig) -> list[str]:
    """Column names: the meta sources for llm / shapes, eda1..edaM, bt1..btM."""
    if rcfg.rewriter == "shapes":
        return shape_styles(rcfg.sources)
    if rcfg.rewriter == "llm":
        return canonical_sources(rcfg.sources)
    if rcfg.num_variants < 1:
        raise ConfigError(f"rewrite.num_variants must be >= 1, got {rcfg.num_variants}")
    prefix = "eda" if rcfg.rewriter == "eda" else "bt"
    return [f"{prefix}{i}" for i in range(1, rcfg.num_variants + 1)]


def build_rewriter(rcfg: RewriteConfig, shard: tuple[int, int] | None = None) -> Rewriter:
    """The rewriter `rcfg` names, on the device `rcfg.device` resolves to for `shard` (`rewrite.device`).
    Models are loaded lazily, on the first generation call."""
    job_settings(rcfg)  # validates
    if rcfg.rewriter in ("llm", "backtranslate"):
        device = rewrite_device(rcfg.device, shard)[0]
    if rcfg.rewriter == "shapes":
        return ShapeWorldRewriter(rcfg.sources, leak_free=rcfg.leak_free, error_rate=rcfg.error_rate,
                                  mode=rcfg.standin)
    if rcfg.rewriter == "eda":
        return EDARewriter(num_variants=rcfg.num_variants)
    if rcfg.rewriter == "llm":
        return LLMRewriter(rcfg.model, sources=rcfg.sources, k_shot=rcfg.k_shot, temperature=rcfg.temperature,
                           top_p=rcfg.top_p, max_new_tokens=rcfg.max_new_tokens, batch_size=rcfg.batch_size,
                           trust_remote_code=rcfg.trust_remote_code, device=device, backend=rcfg.backend,
                           fmt=prompt_format(rcfg.prompt_format), vllm_gpu_memory=rcfg.vllm_gpu_memory)
    parts = [p.strip() for p in rcfg.model.split(",") if p.strip()]
    return BackTranslator(parts[0], parts[1], num_variants=rcfg.num_variants, temperature=rcfg.temperature,
                          top_p=rcfg.top_p, max_new_tokens=rcfg.max_new_tokens, batch_size=rcfg.batch_size,
                          device=device, trust_remote_code=rcfg.trust_remote_code)


# --- the cache ------------------------------------------------------------------------------------------
@dataclass
class JobState:
    out_dir: Path
    cache: Path                      # out_dir/cache/<fingerprint>
    fingerprint: str
    n_captions: int
    batch_size: int
    variants: list[str]
    calls: int = 0                   # generation calls (one per batch generated) made by this run
    tokens: int = 0                  # tokens generated by this run (LLM rewriters; 0 for the others)
    reused: int = 0                  # finished batches found in the cache and not generated again
    seconds: float = 0.0             # time spent generating in this run
    generated: list[int] = field(default_factory=list)   # batch indices generated by this run

    @property
    def n_batches(self) -> int:
        return -(-self.n_captions // self.batch_size)

    def batch_path(self, b: int) -> Path:
        return self.cache / f"batch-{b:06d}.json"

    def batch_range(self, b: int) -> tuple[int, int]:
        return b * self.batch_size, min((b + 1) * self.batch_size, self.n_captions)


def _open_job(captions: list[str], out_dir: str | Path, rcfg: RewriteConfig, exclusive: bool = False) -> JobState:
    out_dir = Path(out_dir)
    settings = job_settings(rcfg)
    fp = stable_hash(list(captions), settings)
    if exclusive:
        check_one_job(out_dir, fp, settings, captions)
    cache = out_dir / "cache" / fp
    cache.mkdir(parents=True, exist_ok=True)
    state = JobState(out_dir, cache, fp, len(captions), rcfg.batch_size, settings["variants"])
    manifest = {"fingerprint": fp, "n_captions": len(captions), "settings": settings,
                "rcfg": {k: v for k, v in vars(rcfg).items()}}
    if not (cache / "job.json").exists():
        atomic_write_text(cache / "captions.json", json.dumps(list(captions)))
        atomic_write_text(cache / "job.json", json.dumps(manifest, indent=1))
    for tmp in cache.glob(".batch-*"):   # a killed writer's temp file (never a finished batch); a live one
        if time.time() - tmp.stat().st_mtime > 60:   # exists for milliseconds, so another shard's is kept
            tmp.unlink(missing_ok=True)
    return state


def jobs_in(out_dir: str | Path) -> list[dict]:
    """The rewrite jobs whose cache is in `out_dir` (their job.json), oldest first."""
    paths = sorted((Path(out_dir) / "cache").glob("*/job.json"), key=lambda p: p.stat().st_mtime)
    return [_read_json(p) | {"_dir": str(p.parent)} for p in paths]


def check_one_job(out_dir: str | Path, fingerprint: str, settings: dict, captions: list[str]) -> None:
    """One job per output folder (`laclip-lite rewrite`): a job with other settings or other captions than one
    already in `out_dir` stops, naming what differs, before anything is written (its <variant>.txt would
    overwrite the other job's, and `--merge` could not tell them apart)."""
    for job in jobs_in(out_dir):
        if job.get("fingerprint") == fingerprint:
            continue
        old = job.get("settings", {})
        diff = [f"{k}: {old.get(k)!r} -> {settings.get(k)!r}" for k in sorted(set(old) | set(settings))
                if old.get(k) != settings.get(k)]
        if job.get("n_captions") != len(captions):
            diff.append(f"captions: {job.get('n_captions')} -> {len(captions)}")
        elif not diff:
            diff.append(f"captions: same count ({len(captions)}), other text (another --input?)")
        raise DataError(f"--out {out_dir} holds another rewrite job ({job.get('fingerprint')}) with other settings: "
                        f"{'; '.join(diff)}; pass a new --out folder (or delete {out_dir} to start over)")


def _read_batch(state: JobState, b: int) -> dict | None:
    """A finished batch, or None when absent or not a complete batch of this job."""
    path = state.batch_path(b)
    if not path.exists():
        return None
    try:
        row = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    start, end = state.batch_range(b)
    texts = row.get("texts") if isinstance(row, dict) else None
    if not isinstance(texts, dict) or row.get("start") != start or \
            any(len(texts.get(v, [])) != end - start for v in state.variants):
        return None
    return row


def _run_batches(captions: list[str], state: JobState, rcfg: RewriteConfig, batches: list[int],
                 rewriter: Rewriter | None, progress: bool, shard: tuple[int, int] | None = None) -> Rewriter | None:
    todo = [b for b in batches if _read_batch(state, b) is None]
    state.reused += len(batches) - len(todo)
    if not todo:
        return rewriter
    rewriter = rewriter or build_rewriter(rcfg, shard)
    if rcfg.threads:
        torch.set_num_threads(rcfg.threads)
    bar = tqdm(total=len(batches), initial=len(batches) - len(todo), desc=f"rewrite ({rcfg.rewriter})",
               unit="batch", disable=not progress)
    last_line = time.monotonic()
    for i, b in enumerate(todo):
        start, end = state.batch_range(b)
        tokens_before = getattr(rewriter, "generated_tokens", 0)
        t0 = time.perf_counter()
        result = rewriter.rewrite_batch(captions[start:end], seed=rcfg.seed)
        dt = time.perf_counter() - t0
        tokens = getattr(rewriter, "generated_tokens", 0) - tokens_before
        state.calls += 1
        state.seconds += dt
        state.tokens += tokens
        state.generated.append(b)
        texts = {v: [one_line(t) for t in result.texts[v]] for v in state.variants}
        row = {"start": start, "end": end, "texts": texts, "fallbacks": result.fallbacks, "seconds": dt,
               "tokens": tokens}
        atomic_write_text(state.batch_path(b), json.dumps(row))
        bar.update(1)
        if not progress and (time.monotonic() - last_line >= rcfg.print_every_s or i == len(todo) - 1):
            last_line = time.monotonic()
            print(f"rewrite ({rcfg.rewriter}): {i + 1}/{len(todo)} batches of this run; "
                  f"{_rates_line(_generated_rewrites(state), state.tokens, state.seconds)}", file=sys.stderr,
                  flush=True)
    bar.close()
    return rewriter


def _rates(rewrites: int, tokens: int, seconds: float) -> dict:
    """Rewrites and generated tokens per second of generation time (None when nothing was timed)."""
    return {"rewrites_per_s": round(rewrites / seconds, 2) if seconds else None,
            "tokens_per_s": round(tokens / seconds, 1) if seconds and tokens else None}


def _rates_line(rewrites: int, tokens: int, seconds: float) -> str:
    r = _rates(rewrites, tokens, seconds)
    line = f"{rewrites} rewrites in {seconds:.1f} s"
    if r["rewrites_per_s"] is not None:
        line += f", {r['rewrites_per_s']} rewrites/s"
    if r["tokens_per_s"] is not None:
        line += f", {r['tokens_per_s']} tokens/s"
    return line


def _all_batches_rates(state: JobState) -> dict:
    """Rates over every finished batch of the job (all shards, all runs): generation time summed over the
    processes that made them, so rewrites_per_s is one process's rate; a merge of N parallel shards finished
    ~N times faster in wall-clock time."""
    seconds = rewrites = tokens = 0
    for b in range(state.n_batches):
        row = _read_batch(state, b)
        if row is None:
            continue
        seconds += row.get("seconds", 0.0)
        tokens += row.get("tokens", 0) or 0
        rewrites += (row["end"] - row["start"]) * len(state.variants)
    return {"seconds": round(seconds, 3), "rewrites": rewrites, "tokens": tokens, **_rates(rewrites, tokens, seconds)}


# --- public API -----------------------------------------------------------------------------------------
def rewrite_captions(captions: list[str], out_dir: str | Path, rcfg: RewriteConfig, *, progress: bool = True,
                     rewriter: Rewriter | None = None, exclusive: bool = False) -> dict[str, list[str]]:
    """Rewrite every caption (all batches, resuming from the cache) and write the outputs. -> variant -> texts.

    `rewriter` lets a caller pass a ready-built rewriter (e.g. a model already in memory); it must match
    `rcfg`, whose settings key the cache. `exclusive` (the CLI): stop when `out_dir` holds another job
    (`check_one_job`).
    """
    captions = list(captions)
    state = _open_job(captions, out_dir, rcfg, exclusive)
    report = _read_json(state.out_dir / "report.json")
    if report.get("fingerprint") == state.fingerprint and _outputs_complete(state):
        state.reused = state.n_batches
        _write_report(state, captions, rcfg)
        return load_rewrites(state.out_dir)
    _run_batches(captions, state, rcfg, list(range(state.n_batches)), rewriter, progress)
    return _finalize(state, captions, rcfg)


def run_shard(captions: list[str], out_dir: str | Path, rcfg: RewriteConfig, index: int, count: int, *,
              progress: bool = True, rewriter: Rewriter | None = None, exclusive: bool = False) -> dict:
    """Generate this shard's batches (b % count == index) into the shared cache; `merge` writes the outputs.
    -> this shard's report (also written to out_dir/shard-<index>-of-<count>.json)."""
    if not (count >= 1 and 0 <= index < count):
        raise ConfigError(f"shard {index}/{count}: need 0 <= index < count")
    captions = list(captions)
    state = _open_job(captions, out_dir, rcfg, exclusive)
    _run_batches(captions, state, rcfg, list(range(index, state.n_batches, count)), rewriter, progress,
                 (index, count))
    report = {"fingerprint": state.fingerprint, "shard": f"{index}/{count}", "generation_calls": state.calls,
              "batches_reused": state.reused, "batches_generated": state.generated,
              "seconds": round(state.seconds, 3), "tokens": state.tokens,
              **_rates(_generated_rewrites(state), state.tokens, state.seconds)}
    atomic_write_text(state.out_dir / f"shard-{index}-of-{count}.json", json.dumps(report, indent=1))
    return report


def merge(out_dir: str | Path, job: str = "") -> dict[str, list[str]]:
    """Write the outputs of a sharded job once every shard has finished. Fails naming the missing batches.
    A folder holding several jobs is refused unless `job` (a fingerprint, or its first characters) picks one."""
    out_dir = Path(out_dir)
    jobs = jobs_in(out_dir)
    if not jobs:
        raise DataError(f"--merge {out_dir}: no rewrite job found (expected {out_dir}/cache/<fingerprint>/job.json)")
    if job:
        jobs = [j for j in jobs if str(j.get("fingerprint", "")).startswith(job)]
        if len(jobs) != 1:
            raise DataError(f"--merge {out_dir} --job {job}: matches {len(jobs)} jobs (known: "
                            f"{', '.join(str(j.get('fingerprint')) for j in jobs_in(out_dir))})")
    if len(jobs) > 1:
        described = "; ".join(f"{j.get('fingerprint')} ({j.get('settings', {}).get('rewriter')}, {j.get('n_captions')} "
                              f"captions, seed {j.get('settings', {}).get('seed')})" for j in jobs)
        raise DataError(f"--merge {out_dir}: the folder holds {len(jobs)} rewrite jobs: {described}; "
                        "pick one with --job FINGERPRINT")
    job_dir = Path(jobs[0]["_dir"])
    job = _read_json(job_dir / "job.json")
    captions = json.loads((job_dir / "captions.json").read_text())
    rcfg = RewriteConfig(**job["rcfg"])
    state = _open_job(captions, out_dir, rcfg)
    missing = [b for b in range(state.n_batches) if _read_batch(state, b) is None]
    if missing:
        shards = sorted({f"{b % n}/{n}" for n in _shard_counts(out_dir) for b in missing}) or ["?"]
        raise DataError(f"--merge {out_dir}: {len(missing)} of {state.n_batches} batches not finished "
                        f"(first missing: {missing[:5]}; from shard(s) {', '.join(shards)}); rerun those shards")
    state.reused = state.n_batches
    return _finalize(state, captions, rcfg)


def load_rewrites(out_dir: str | Path) -> dict[str, list[str]]:
    """variant -> rewrites read from out_dir/<variant>.txt (the variants report.json lists, else every .txt)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise DataError(f"rewrite folder not found: {out_dir}")
    report = _read_json(out_dir / "report.json")
    names = report.get("variants") or sorted(p.stem for p in out_dir.glob("*.txt"))
    if not names:
        raise DataError(f"{out_dir}: no rewrite files (<variant>.txt) found")
    out, n = {}, report.get("n_captions")
    for v in names:
        path = out_dir / f"{v}.txt"
        if not path.exists():
            raise DataError(f"rewrite file missing: {path} (report.json lists variant {v!r})")
        lines = path.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if n is not None and len(lines) != n:
            raise DataError(f"rewrite file {path} has {len(lines)} lines but report.json says {n} captions")
        out[v] = lines
    lengths = {len(t) for t in out.values()}
    if len(lengths) > 1:
        raise DataError(f"{out_dir}: rewrite files have different line counts: "
                        + ", ".join(f"{v}={len(t)}" for v, t in out.items()))
    return out


# --- outputs --------------------------------------------------------------------------------------------
def _finalize(state: JobState, captions: list[str], rcfg: RewriteConfig) -> dict[str, list[str]]:
    texts: dict[str, list[str]] = {v: [] for v in state.variants}
    for b in range(state.n_batches):
        row = _read_batch(state, b)
        if row is None:
            raise DataError(f"{state.batch_path(b)}: batch missing or incomplete after the run")
        for v in state.variants:
            texts[v].extend(row["texts"][v])
    for v, lines in texts.items():
        atomic_write_text(state.out_dir / f"{v}.txt", "".join(line + "\n" for line in lines))
    _save_dataset(state.out_dir / "dataset", captions, texts)
    _write_report(state, captions, rcfg)
    return texts


def _save_dataset(path: Path, captions: list[str], texts: dict[str, list[str]]) -> None:
    import datasets

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()   # a bar per save would flood notebook logs
    try:
        datasets.Dataset.from_dict({"caption": list(captions), **texts}).save_to_disk(str(tmp))
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def _write_report(state: JobState, captions: list[str], rcfg: RewriteConfig) -> None:
    fallbacks: dict[str, dict[str, int]] = {v: {} for v in state.variants}
    for b in range(state.n_batches):
        row = _read_batch(state, b) or {}
        for v, reasons in (row.get("fallbacks") or {}).items():
            for why, count in reasons.items():
                fallbacks.setdefault(v, {})[why] = fallbacks.setdefault(v, {}).get(why, 0) + count
    old = _read_json(state.out_dir / "report.json")
    runs = old.get("runs", []) if old.get("fingerprint") == state.fingerprint else []
    this_run = {"generation_calls": state.calls, "batches_reused": state.reused,
                "batches_generated": len(state.generated), "seconds": round(state.seconds, 3),
                "tokens": state.tokens, **_rates(_generated_rewrites(state), state.tokens, state.seconds)}
    report = {"fingerprint": state.fingerprint, "rewriter": rcfg.rewriter, "variants": state.variants,
              "n_captions": len(captions), "batch_size": state.batch_size, "n_batches": state.n_batches,
              **this_run, "all_batches": _all_batches_rates(state),
              "fallbacks": {v: {"total": sum(r.values()), **r} for v, r in fallbacks.items()},
              "settings": job_settings(rcfg), "runs": runs + [this_run]}
    atomic_write_text(state.out_dir / "report.json", json.dumps(report, indent=1))


def _generated_rewrites(state: JobState) -> int:
    captions = sum(state.batch_range(b)[1] - state.batch_range(b)[0] for b in state.generated)
    return captions * len(state.variants)


def _outputs_complete(state: JobState) -> bool:
    for v in state.variants:
        path = state.out_dir / f"{v}.txt"
        if not path.exists() or path.read_text(encoding="utf-8").count("\n") != state.n_captions:
            return False
    return (state.out_dir / "dataset").is_dir()


def _shard_counts(out_dir: Path) -> set[int]:
    return {int(p.stem.rsplit("-", 1)[1]) for p in out_dir.glob("shard-*-of-*.json")}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
