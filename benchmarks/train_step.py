"""One CLIP training step, laclip_lite vs open_clip, on the same architecture and the same batch.

    python benchmarks/train_step.py                       # in .venv-bench: make -f Makefile.bench bench
    python benchmarks/train_step.py --text-len 6-24       # captions of 6..24 tokens (padded to the context)
    python benchmarks/train_step.py --ours-only           # no open_clip needed

A step = forward of both towers + CLIP loss + backward + AdamW step (+ the logit-scale clamp), fp32 on CPU,
bf16 autocast on CUDA. The two implementations alternate over several rounds in one process (so that load
from other processes hits both alike); we print the median samples/s of each, the ratio, our training FLOPs
per sample and the achieved FLOP/s as a fraction of this machine's fp32 matmul rate, measured here.

Before timing, open_clip's model is loaded with our weights and must give the same features: proof that the
two models are the same function, not just the same sizes.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository root: `benchmarks.flops`

from benchmarks.flops import flops_per_sample  # noqa: E402  (after the path insertion above)
from laclip_lite.config import ModelConfig
from laclip_lite.losses import ClipLoss
from laclip_lite.models import build_model, count_params, param_groups
from laclip_lite.models.open_clip_export import copy_weights, import_open_clip  # the exporter's name mapping


@dataclass
class Bench:
    image_size: int = 64        # input resolution
    patch_size: int = 16        # ViT patch (64 / 16 -> 16 patches + class token)
    vision_width: int = 256     # ViT width
    vision_layers: int = 4      # ViT blocks
    vision_heads: int = 4       # ViT heads (head width 64)
    text_width: int = 256       # text Transformer width
    text_layers: int = 4        # text Transformer blocks
    text_heads: int = 4         # text heads
    context_length: int = 77    # tokens per caption (CLIP's)
    vocab_size: int = 49408     # CLIP's BPE vocabulary
    embed_dim: int = 256        # joint embedding
    batch_size: int = 64        # pairs per step
    text_len: str = "full"      # "full" (every caption fills the context) or "A-B" (lengths uniform in A..B)
    rounds: int = 12            # alternating rounds (ours, open_clip / open_clip, ours)
    steps: int = 1              # timed steps per implementation per round
    warmup: int = 2             # untimed steps per implementation before the first round
    threads: int = 1            # torch threads; 1 is stable on a shared 2-core box (0 = torch default)
    lr: float = 1e-4            # AdamW learning rate (both)
    optimizer: str = "trainer"  # ours: "trainer" (laclip_lite.train.build_optimizer), "plain" (open_clip's), "fused"
    seed: int = 0               # weights and batch


def parse_args(argv=None) -> tuple[Bench, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, default in vars(Bench()).items():
        p.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    p.add_argument("--ours-only", action="store_true", help="time laclip_lite alone (no open_clip)")
    a = p.parse_args(argv)
    bench = Bench(**{k: getattr(a, k) for k in vars(Bench())})
    return bench, a


def model_config(b: Bench) -> ModelConfig:
    return ModelConfig(vision="vit", image_size=b.image_size, patch_size=b.patch_size, vision_width=b.vision_width,
                       vision_layers=b.vision_layers, vision_heads=b.vision_heads, text_width=b.text_width,
                       text_layers=b.text_layers, text_heads=b.text_heads, context_length=b.context_length,
                       vocab_size=b.vocab_size, pad_id=0, embed_dim=b.embed_dim)


def make_batch(b: Bench, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and right-padded tokens [sot, words..., eot, 0...]. EOT is the largest id, so open_clip's
    argmax pooling and our last-non-pad pooling pick the same position."""
    g = torch.Generator().manual_seed(b.seed + 1)
    images = torch.randn(b.batch_size, 3, b.image_size, b.image_size, generator=g)
    L, V = b.context_length, b.vocab_size
    if b.text_len == "full":
        lengths = torch.full((b.batch_size,), L)
    else:
        lo, hi = (int(x) for x in b.text_len.split("-"))
        if not 2 <= lo <= hi <= L:
            raise SystemExit(f"--text-len {b.text_len}: need 2 <= A <= B <= context_length={L}")
        lengths = torch.randint(lo, hi + 1, (b.batch_size,), generator=g)
    tokens = torch.randint(3, V - 1, (b.batch_size, L), generator=g)
    tokens[:, 0] = 1
    tokens[torch.arange(b.batch_size), lengths - 1] = V - 1
    tokens[torch.arange(L) >= lengths[:, None]] = 0
    return images.to(device), tokens.to(device)


# ---------------------------------------------------------------------------------------------------------
def build_open_clip(b: Bench):
    open_clip = import_open_clip()
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(layers=b.vision_layers, width=b.vision_width, head_width=b.vision_width // b.vision_heads,
                           patch_size=b.patch_size, image_size=b.image_size, mlp_ratio=4.0)
    text = CLIPTextCfg(context_length=b.context_length, vocab_size=b.vocab_size, width=b.text_width,
                       heads=b.text_heads, layers=b.text_layers, pad_id=0)
    return open_clip.model.CLIP(b.embed_dim, vision, text, quick_gelu=False), open_clip


def open_clip_param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """open_clip_train's split: no decay on ndim < 2, bn / ln / bias and logit_scale."""
    def exclude(n, p):
        return p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [{"params": [p for n, p in named if not exclude(n, p)], "weight_decay": weight_decay},
            {"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0}]


# ---------------------------------------------------------------------------------------------------------
def our_optimizer(model: torch.nn.Module, b: Bench, device: torch.device) -> torch.optim.Optimizer:
    """"trainer": exactly what `laclip-lite train` builds; "plain": torch's default AdamW, as open_clip_train
    builds it (a model-only comparison); "fused": the single-kernel AdamW (also on CPU)."""
    if b.optimizer == "trainer":
        from laclip_lite.config import Config
        from laclip_lite.train import build_optimizer
        cfg = Config()
        cfg.train.lr, cfg.train.betas, cfg.train.eps, cfg.train.weight_decay = b.lr, [0.9, 0.98], 1e-6, 0.1
        return build_optimizer(model, cfg, device)[0]
    if b.optimizer not in ("plain", "fused"):
        raise SystemExit(f"--optimizer {b.optimizer!r}: use trainer, plain or fused")
    fused = b.optimizer == "fused" or device.type == "cuda"
    return torch.optim.AdamW(param_groups(model, 0.1), lr=b.lr, betas=(0.9, 0.98), eps=1e-6, fused=fused)


class Runner:
    """model + loss + AdamW; `step()` is one training step on the fixed batch."""

    def __init__(self, name, model, loss_fn, optimizer, images, tokens, device):
        self.name, self.model, self.loss_fn = name, model.to(device).train(), loss_fn
        self.images, self.tokens, self.device = images, tokens, device
        self.opt = optimizer
        self.amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None
        self.times: list[float] = []

    def step(self) -> float:
        self.opt.zero_grad(set_to_none=True)
        if self.amp is not None:
            with self.amp:
                img, txt, scale = self.model(self.images, self.tokens)[:3]
        else:
            img, txt, scale = self.model(self.images, self.tokens)[:3]
        loss = self.loss_fn(img.float(), txt.float(), scale.float())
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            self.model.logit_scale.clamp_(max=math.log(100))
        return loss.item()                                   # also a device sync

    def timed(self, steps: int) -> None:
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.times.append((time.perf_counter() - t0) / steps)


def matmul_flops(device: torch.device, n: int = 1024, seconds: float = 0.3, repeats: int = 3) -> float:
    """Best-of-`repeats` fp32 (bf16 on CUDA) matmul rate in FLOP/s: the denominator of the MFU."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, c = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ c
    best = 0.0
    for _ in range(repeats):
        iters, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / repeats:
            a @ c
            iters += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n ** 3 * iters / (time.perf_counter() - t0))
    return best


def main(argv=None) -> int:
    b, args = parse_args(argv)
    if b.threads:
        torch.set_num_threads(b.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(b.seed)
    cfg = model_config(b)
    ours = build_model(cfg)
    images, tokens = make_batch(b, device)
    ours.to(device)
    runners = [Runner("laclip_lite", ours, ClipLoss(), our_optimizer(ours, b, device), images, tokens, device)]

    if not args.ours_only:
        try:
            theirs, open_clip = build_open_clip(b)
        except ImportError as e:
            print(f"open_clip is not installed in this Python ({sys.executable}): {e}.\n"
                  "Create the benchmark environment and run there:  make -f Makefile.bench bench\n"
                  "(or pass --ours-only to time laclip_lite alone).", file=sys.stderr)
            return 2
        copy_weights(ours, theirs)
        theirs.to(device).eval(), ours.eval()
        with torch.no_grad():
            a, t_a, _ = ours(images, tokens)
            o = theirs(images, tokens)
            diff = max((a - o[0]).abs().max().item(), (t_a - o[1]).abs().max().item())
        if diff > 1e-4:
            raise SystemExit(f"open_clip with our weights gives different features (max |diff| {diff:.2e})")
        print(f"open_clip {open_clip.__version__} loaded with our weights: same features (max |diff| {diff:.1e})")
        opt = torch.optim.AdamW(open_clip_param_groups(theirs, 0.1), lr=b.lr, betas=(0.9, 0.98), eps=1e-6,
                                fused=device.type == "cuda")     # as open_clip_train builds it (+ fused on CUDA)
        runners.append(Runner("open_clip", theirs, open_clip.loss.ClipLoss(), opt, images, tokens, device))

    n_params = count_params(ours)
    print(f"device {device} ({torch.get_num_threads()} threads), torch {torch.__version__}, "
          f"{'bf16 autocast' if device.type == 'cuda' else 'fp32'}; {n_params / 1e6:.2f}M params; batch "
          f"{b.batch_size}; ViT {b.vision_width}x{b.vision_layers} patch {b.patch_size} @ {b.image_size}px; text "
          f"{b.text_width}x{b.text_layers} context {b.context_length}, lengths {b.text_len}; our AdamW: "
          f"{b.optimizer} (fused={runners[0].opt.defaults.get('fused')})")
    for r in runners:
        for _ in range(b.warmup):
            r.step()
    peaks = []
    for i in range(b.rounds):
        for r in (runners if i % 2 == 0 else runners[::-1]):
            r.timed(b.steps)
        peaks.append(matmul_flops(device, seconds=0.3, repeats=3))  # sampled between rounds: load varies

    real_len = int((tokens != 0).sum(-1).max())             # what our text tower computes after trimming
    peak = max(peaks)
    rows = []
    for r in runners:
        sps, best = b.batch_size / statistics.median(r.times), b.batch_size / min(r.times)
        # FLOPs of the work each one does: ours trims padding and pools before the last block's per-token work
        ours_impl = r.name == "laclip_lite"
        fps = flops_per_sample(cfg, text_len=real_len if ours_impl else b.context_length, pooled=ours_impl)
        rows.append((r.name, sps, best, fps, sps * fps))
    dense = flops_per_sample(cfg, pooled=False)
    print(f"\nmatmul peak on this machine ({'bf16' if device.type == 'cuda' else 'fp32'} 1024^3, best between rounds): "
          f"{peak / 1e9:.1f} GFLOP/s; dense model FLOPs {dense / 1e9:.3f} GFLOP/sample (fwd+bwd)")
    print(f"{'impl':<12} {'samples/s':>10} {'best':>7} {'step ms':>8} {'GFLOP/sample':>13} {'GFLOP/s':>8} {'MFU':>6}")
    for name, sps, best, fps, rate in rows:
        print(f"{name:<12} {sps:>10.1f} {best:>7.1f} {1e3 * b.batch_size / sps:>8.1f} {fps / 1e9:>13.3f} "
              f"{rate / 1e9:>8.1f} {rate / peak:>6.1%}")
    print("(samples/s: median over rounds; best: fastest round; GFLOP/sample: the work each implementation does; "
          "MFU: achieved GFLOP/s / matmul peak)")
    if len(runners) == 2:
        per_round = sorted(t2 / t1 for t1, t2 in zip(runners[0].times, runners[1].times))
        print(f"\nspeed-up laclip_lite / open_clip: {statistics.median(per_round):.2f}x (median of per-round ratios; "
              f"range {per_round[0]:.2f}..{per_round[-1]:.2f}); {rows[0][2] / rows[1][2]:.2f}x best vs best; "
              f"{dense / flops_per_sample(cfg, text_len=real_len):.2f}x fewer FLOPs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
