"""The GPU check: everything worth measuring the day a GPU is lent, in one run, into one JSON file.

    bash benchmarks/gpu_check.sh                          # on the GPU machine (<= 8 min on one H100/H200)
    bash benchmarks/gpu_check.sh --dry-run                # every part on the CPU at tiny sizes (~1 min)
    python benchmarks/gpu_check.py --out gpu_check.json --parts train_step,rewrite

Parts (each writes its entry as soon as it finishes, so a run cut short keeps what it measured; a part that
fails records its error and the rest still run):

* ``tests``      - the test suite (`pytest`) with CUDA visible, so `device=auto` paths run on the GPU;
* ``train_step`` - the `vit-b16` preset's model (ViT-B/16 + 12-layer text tower, batch 256 per GPU, bf16
                   autocast): samples/s and MFU, eager and `torch.compile`d, timed by `benchmarks/train_step.py`'s
                   `Runner`; MFU against a measured bf16 matmul rate and against the GPU's nominal dense bf16 peak;
* ``data``       - images/s the training loader delivers from JPEG tar shards at 224 px per worker count
                   (`benchmarks/data_loading.py`);
* ``rewrite``    - LLM rewriting batched vs one at a time on a ~95M-parameter random Llama built from a config
                   (`benchmarks/rewrite_speed.py`), and through vLLM when it is installed.

Nothing is downloaded: the models are random, the images are generated, the tokenizers are trained here.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for _key, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                     "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_key, _value)

PARTS = ("tests", "train_step", "data", "rewrite")
# Dense bf16 tensor-core peaks from NVIDIA's data sheets (FLOP/s, without sparsity), matched in this order
# against torch.cuda.get_device_name(); a GPU not listed gets MFU against the measured matmul rate only.
NOMINAL_BF16 = (("H100 PCIe", 756e12), ("H100", 989.4e12), ("H200", 989.4e12), ("A100", 312e12))

# What each part runs: the GPU sizes, and the dry run's tiny ones (same code paths, CPU, ~1 min in all).
SIZES = {
    "full": {
        "tests": {"args": ["tests", f"--ignore={Path('tests') / 'test_gpu_check.py'}"], "timeout": 270},
        "train_step": {"preset": "vit-b16", "batch_size": 256, "warmup": 3, "rounds": 5, "steps": 4,
                       "compile_backend": "inductor", "matmul_n": 8192},
        "data": {"images": 4096, "shards": 32, "jpeg_px": 256, "image_px": 224, "batch_size": 128, "batches": 24,
                 "workers": [0, 4, 8, 16]},
        "rewrite": {"captions": 128, "batch_size": 64, "max_new_tokens": 77,
                    "model": {"hidden_size": 768, "layers": 16, "heads": 12}},
    },
    "dry": {
        "tests": {"args": [str(Path("tests") / "test_losses.py")], "timeout": 120},
        "train_step": {"preset": "vit-b16", "batch_size": 8, "warmup": 1, "rounds": 2, "steps": 1,
                       "compile_backend": "aot_eager", "matmul_n": 256,
                       "model": {"image_size": 32, "vision_width": 32, "vision_layers": 1, "vision_heads": 2,
                                 "text_width": 32, "text_layers": 1, "text_heads": 2, "context_length": 16,
                                 "embed_dim": 32, "vocab_size": 300}},
        "data": {"images": 64, "shards": 4, "jpeg_px": 40, "image_px": 32, "batch_size": 8, "batches": 3,
                 "workers": [0, 2]},
        "rewrite": {"captions": 8, "batch_size": 4, "max_new_tokens": 8, "model": {}},
    },
}


# --- parts ---------------------------------------------------------------------------------------------
def run_tests(size: dict, dry: bool) -> dict:
    """pytest in a subprocess (CUDA hidden in the dry run); the counts of its closing line."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *size["args"]]
    env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": ""} if dry else {})}
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=size["timeout"])
        output, code, timed_out = proc.stdout + proc.stderr, proc.returncode, False
    except subprocess.TimeoutExpired as e:
        output = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        code, timed_out = None, True
    counts = {k: 0 for k in ("passed", "failed", "skipped", "errors", "deselected", "xfailed", "xpassed")}
    tail = [line for line in output.strip().splitlines() if line.strip()][-1:] or [""]
    for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)", tail[0]):
        counts["errors" if word.startswith("error") else word] = int(n)
    return {"command": " ".join(cmd[2:]), "returncode": code, "timed_out": timed_out,
            "seconds": time.perf_counter() - start, **counts, "last_line": tail[0][-300:]}


def train_step(size: dict, device) -> dict:
    """The preset's model, eager then compiled: samples/s (median over rounds) and MFU."""
    import torch

    from benchmarks.flops import flops_per_sample
    from benchmarks.train_step import Bench, Runner, make_batch, matmul_flops, our_optimizer
    from laclip_lite.config import build_config
    from laclip_lite.losses import ClipLoss
    from laclip_lite.models import build_model, count_params

    cfg = build_config(size["preset"]).model
    for key, value in {"vocab_size": 49408, **size.get("model", {})}.items():
        setattr(cfg, key, value)
    cfg.pad_id = 0
    b = Bench(image_size=cfg.image_size, patch_size=cfg.patch_size, context_length=cfg.context_length,
              vocab_size=cfg.vocab_size, batch_size=size["batch_size"], text_len="full", optimizer="trainer")
    images, tokens = make_batch(b, device)
    fps = flops_per_sample(cfg, text_len=cfg.context_length, pooled=True)   # the work our model does
    measured = matmul_flops(device, n=size["matmul_n"], seconds=1.0 if device.type == "cuda" else 0.2)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    nominal = next((f for key, f in NOMINAL_BF16 if key in name), None) if device.type == "cuda" else None
    out = {"preset": size["preset"], "device": name, "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
           "batch_size": b.batch_size, "image_size": cfg.image_size, "context_length": cfg.context_length,
           "gflop_per_sample": fps / 1e9, "matmul_tflops_measured": measured / 1e12,
           "nominal_bf16_tflops": nominal / 1e12 if nominal else None}
    for mode in ("eager", "compiled"):
        torch.manual_seed(0)
        model = build_model(cfg).to(device)
        out["params"] = count_params(model)
        forward = torch.compile(model, backend=size["compile_backend"]) if mode == "compiled" else model
        runner = Runner(mode, forward, ClipLoss(), our_optimizer(model, b, device), images, tokens, device)
        start = time.perf_counter()
        for _ in range(size["warmup"]):
            runner.step()
        warmup_s = time.perf_counter() - start
        for _ in range(size["rounds"]):
            runner.timed(size["steps"])
        sps = b.batch_size / statistics.median(runner.times)
        row = {"samples_per_s": sps, "step_ms": 1e3 * statistics.median(runner.times), "warmup_seconds": warmup_s,
               "mfu_vs_measured_matmul": sps * fps / measured}
        if nominal:
            row["mfu_vs_nominal_peak"] = sps * fps / nominal
        if mode == "compiled":
            row["backend"] = size["compile_backend"]
        if device.type == "cuda":
            row["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
            torch.cuda.reset_peak_memory_stats(device)
        out[mode] = row
        del runner, forward, model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    out["compile_speedup"] = out["compiled"]["samples_per_s"] / out["eager"]["samples_per_s"]
    return out


def data_loading(size: dict, tmp: Path) -> dict:
    """Images/s from JPEG tar shards per DataLoader worker count (decode, crop to image_px, tokenise)."""
    from benchmarks.data_loading import loader_images_per_s, write_jpeg_shards
    from laclip_lite.config import build_config

    start = time.perf_counter()
    shards = write_jpeg_shards(tmp / "jpeg-shards", size["images"], size=size["jpeg_px"], shards=size["shards"])
    jpeg_bytes = sum(p.stat().st_size for p in shards.glob("*.tar"))
    out = {"format": "wds tar shards, {key}.jpg + {key}.txt", "images": size["images"], "shards": size["shards"],
           "jpeg_px": size["jpeg_px"], "image_px": size["image_px"], "batch_size": size["batch_size"],
           "kb_per_image": jpeg_bytes / size["images"] / 1024, "write_seconds": time.perf_counter() - start,
           "cpu_count": os.cpu_count(), "rows": []}
    for workers in size["workers"]:
        cfg = build_config("vit-b16", [f"data.source={shards}", "data.format=wds", "data.bpe_vocab_size=1000",
                                       f"data.num_workers={workers}", f"model.image_size={size['image_px']}",
                                       f"train.batch_size={size['batch_size']}", "train.policy=clip"])
        rate = loader_images_per_s(cfg, size["batches"])
        out["rows"].append({"workers": workers, "images_per_s": rate,
                            "images_per_s_per_worker": rate / max(workers, 1)})
    return out


def rewrite(size: dict, device) -> dict:
    from benchmarks.rewrite_speed import llm_speed

    return llm_speed(size["captions"], size["batch_size"], size["max_new_tokens"], model=size["model"],
                     device=str(device), with_vllm=device.type == "cuda")


# --- driver --------------------------------------------------------------------------------------------
def environment(device) -> dict:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
           "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(), "cpu_count": os.cpu_count(),
           "host": platform.node()}
    if torch.cuda.is_available():
        env.update(gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count(),
                   gpu_memory_gib=torch.cuda.get_device_properties(0).total_memory / 2 ** 30)
    for module in ("transformers", "tokenizers", "vllm"):
        try:
            env[module] = __import__(module).__version__
        except ImportError:
            env[module] = None
    return env


def missing_modules() -> list[str]:
    """The kit's imports that this Python lacks (a bare GPU machine may have torch and nothing else)."""
    import importlib.util

    needed = ("torch", "numpy", "PIL", "yaml", "tqdm", "tokenizers", "transformers", "datasets", "pytest")
    return [m for m in needed if importlib.util.find_spec(m) is None]


def write(result: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, allow_nan=True))
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="every part on the CPU at tiny sizes (~1 min)")
    ap.add_argument("--out", default="gpu_check.json", help="the JSON file to write")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    args = ap.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown part(s) {unknown}; known: {', '.join(PARTS)}")
    missing = missing_modules()
    if missing:
        print(f"gpu_check: this Python ({sys.executable}) lacks {', '.join(missing)}; install the kit's "
              f"dependencies first (offline: pip install --no-index --find-links WHEELS -e '.[dev]')", file=sys.stderr)
        return 2
    import torch

    sizes = SIZES["dry" if args.dry_run else "full"]
    device = torch.device("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda")
    if args.dry_run:
        torch.set_num_threads(1)
    out = Path(args.out).resolve()
    result = {"schema": 1, "dry_run": args.dry_run, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "environment": environment(device), "sizes": {p: sizes[p] for p in parts}}
    if not args.dry_run and device.type != "cuda":
        result["note"] = "no CUDA device: full sizes on the CPU (slow; use --dry-run here)"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        os.environ["LACLIP_LITE_CACHE"] = str(Path(tmp) / "cache")     # tokenizers trained here stay here
        for part in parts:
            t0 = time.perf_counter()
            print(f"gpu_check: {part} ...", flush=True)
            try:
                if part == "tests":
                    result[part] = run_tests(sizes[part], args.dry_run)
                elif part == "train_step":
                    result[part] = train_step(sizes[part], device)
                elif part == "data":
                    result[part] = data_loading(sizes[part], Path(tmp))
                else:
                    result[part] = rewrite(sizes[part], device)
            except Exception as e:                                       # record, go on with the next part
                result[part] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
            result[part]["part_seconds"] = time.perf_counter() - t0
            result["seconds"] = time.perf_counter() - start
            write(result, out)
            print(f"gpu_check: {part} done in {result[part]['part_seconds']:.1f} s"
                  + (f" - ERROR {result[part]['error']}" if "error" in result[part] else ""), flush=True)
    failed = [p for p in parts if "error" in result[p] or (p == "tests" and result[p].get("returncode") != 0)]
    print(f"gpu_check: wrote {out} in {result['seconds']:.0f} s" + (f"; failed: {', '.join(failed)}" if failed else ""))
    print(summary(result))
    return 1 if failed else 0


def summary(result: dict) -> str:
    """A few lines for the log (the JSON has everything)."""
    lines = []
    t = result.get("tests", {})
    if "passed" in t:
        lines.append(f"tests: {t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped "
                     f"({t['seconds']:.0f} s{', TIMED OUT' if t['timed_out'] else ''})")
    s = result.get("train_step", {})
    for mode in ("eager", "compiled"):
        if mode in s:
            r = s[mode]
            mfu = r.get("mfu_vs_nominal_peak", r["mfu_vs_measured_matmul"])
            lines.append(f"train step {s['preset']} {mode}: {r['samples_per_s']:.1f} samples/s, MFU {mfu:.1%}")
    for row in result.get("data", {}).get("rows", []):
        lines.append(f"data: {row['workers']} workers {row['images_per_s']:.0f} images/s")
    r = result.get("rewrite", {})
    if "speedup" in r:
        lines.append(f"rewrite ({r['params'] / 1e6:.0f}M random Llama): batched {r['batched']['rewrites_per_s']:.1f}/s,"
                     f" one at a time {r['one_at_a_time']['rewrites_per_s']:.1f}/s ({r['speedup']:.1f}x)")
    return "\n".join(lines)


def finite_numbers(obj) -> bool:
    """True when every number in a JSON-like object is finite (the dry run's test)."""
    if isinstance(obj, dict):
        return all(finite_numbers(v) for v in obj.values())
    if isinstance(obj, list):
        return all(finite_numbers(v) for v in obj)
    return not isinstance(obj, float) or math.isfinite(obj)


if __name__ == "__main__":
    sys.exit(main())
