"""Zero-shot evaluation speed: images/s read from a CLIP_benchmark webdataset folder and from an ImageFolder
(DataLoader workers decoding), against the model forward alone on images already in memory, side by side.

    python benchmarks/eval_speed.py                      # tiny preset, 4,000 ShapeWorld images, 2 workers
    python benchmarks/eval_speed.py --checkpoint RUN --image-side 64 --n 2000

The same images (ShapeWorld test images, PNG, written once by the kit's exporters into a temporary folder) are
scored three ways per round, in rotating order over several rounds: "forward" (uint8 tensors in memory ->
`encode_images` + the zero-shot classifier and logits: the model's work alone), "imagefolder" and "webdataset"
(`evaluate` of a `FileSet` on each layout: listing, reading, PNG decoding, resize + centre crop in `--workers`
DataLoader workers, then the same forward). The data share of a layout is 1 - forward time / its time (median
over rounds). Wall times on a shared machine are noisy: CPU seconds of this process and its workers are printed
beside them.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children (the DataLoader workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def build(args):
    """(model, tokenizer, cfg): a run's, or an untrained tiny-preset model with a tokenizer of ShapeWorld captions
    (speed does not depend on the weights)."""
    from laclip_lite.config import build_config
    from laclip_lite.runs import load_run

    if args.checkpoint:
        return load_run(args.checkpoint, device="cpu")
    from laclip_lite.data.dataset import shapeworld_split
    from laclip_lite.data.tokenizer import build_tokenizer
    from laclip_lite.models.clip import build_model

    cfg = build_config(args.preset, {"train.device": "cpu"})
    tok = build_tokenizer(cfg.data, cfg.model, list(shapeworld_split(cfg, "train").captions))
    cfg.model.vocab_size, cfg.model.pad_id = tok.vocab_size, tok.pad_id
    return build_model(cfg.model).eval(), tok, cfg


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="a run folder (default: an untrained --preset model)")
    p.add_argument("--preset", default="tiny", help="model preset when no --checkpoint (default tiny)")
    p.add_argument("--n", type=int, default=4000, help="images")
    p.add_argument("--image-side", type=int, default=0, help="side of the written images (0 = the model's input)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers decoding images")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    p.add_argument("--shards", type=int, default=8, help="webdataset shards (several, so every worker has some)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the three measurements")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from laclip_lite.data.export import export_clip_benchmark, export_imagefolder
    from laclip_lite.data.shapeworld import ShapeWorld
    from laclip_lite.data.vocab import classnames
    from laclip_lite.evaluate import FileSet, evaluate, metrics_of
    from laclip_lite.metrics import encode_images, topk_accuracy, zero_shot_classifier
    from laclip_lite.templates import get_templates

    model, tok, cfg = build(args)
    side = args.image_side or cfg.model.image_size
    split = ShapeWorld(seed=cfg.data.world_seed, image_size=side).split("test", args.n)
    task = "color_shape"
    with tempfile.TemporaryDirectory(prefix="eval-speed-") as tmp:
        root = Path(tmp)
        export_imagefolder(split, root / "imagefolder", task)
        export_clip_benchmark(split, root / "webdataset", task, samples_per_shard=-(-args.n // args.shards))
        # the forward-alone baseline gets the images decoded and resized already, with their labels
        from laclip_lite.data.eval_layouts import batches, open_eval_set
        read = list(batches(open_eval_set(str(root / "imagefolder")), "test", cfg.model.image_size, progress=False))
        memory = torch.cat([b for b, _ in read])
        labels = torch.tensor([t for _, targets in read for t in targets])
        templates = get_templates(None)

        def forward():
            classifier = zero_shot_classifier(model, tok, classnames(task), templates)
            return topk_accuracy(encode_images(model, memory, args.batch_size) @ classifier, labels)

        def layout(name):
            def go():
                s = FileSet(str(root / name))
                return metrics_of(evaluate(model, tok, [s], batch_size=args.batch_size, num_workers=args.workers), s)
            return go

        runs = {"forward": forward, "imagefolder": layout("imagefolder"), "webdataset": layout("webdataset")}
        wall = {k: [] for k in runs}
        cpu = {k: [] for k in runs}
        forward()                                   # warm-up (allocations, first-call costs)
        names = list(runs)
        for r in range(args.rounds):
            for name in names[r % 3:] + names[:r % 3]:
                c0, t0 = cpu_seconds(), time.perf_counter()
                out = runs[name]()
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(cpu_seconds() - c0)
                if name != "forward":
                    assert out["n_images"] == args.n and out["skipped"] == 0, out
    med = {k: statistics.median(v) for k, v in wall.items()}
    print(f"Zero-shot evaluation of {args.n} ShapeWorld images ({side}x{side} PNG -> {cfg.model.image_size}px), "
          f"preset {args.preset if not args.checkpoint else args.checkpoint}, {len(classnames(task))} classes x "
          f"{len(templates)} templates, batch {args.batch_size}, {args.workers} workers, torch threads "
          f"{torch.get_num_threads()}; median of {args.rounds} rounds (wall), CPU s = this process + workers.\n")
    print("| source | images/s | wall s | CPU s | data share |")
    print("|---|---:|---:|---:|---:|")
    for name in runs:
        share = "-" if name == "forward" else f"{100 * (1 - med['forward'] / med[name]):.0f}%"
        cpu_s = statistics.median(cpu[name])
        print(f"| {name} | {args.n / med[name]:,.0f} | {med[name]:.2f} | {cpu_s:.2f} | {share} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
