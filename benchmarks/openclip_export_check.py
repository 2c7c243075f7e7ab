"""The open_clip hand-off, checked: export a run, load it with open_clip, compare the features.

    make -f Makefile.bench openclip-export-check                 # two small run folders (ViT, ResNet)
    .venv-bench/bin/python benchmarks/openclip_export_check.py --checkpoint RUN [--checkpoint RUN2 ...]

For each run: `laclip-lite export --format open_clip` (`laclip_lite.models.open_clip_export.export_open_clip`),
then open_clip loads it the two documented ways, `add_model_config` + `create_model_and_transforms(name,
pretrained=weights)` and `create_model_and_transforms("local-dir:FOLDER")`, and both models encode the same
images (the run's ShapeWorld test split, CLIP-normalised) and the same token ids (the run's own tokenizer: open_clip's
tokenizer is a different vocabulary). Prints the max |difference| of image and text features; fails above 1e-5.
Also prints how far open_clip's own preprocessing of a PNG is from ours (resize + centre-crop + normalise), which is
information, not part of the check. Runs in .venv-bench (open_clip needs torchvision), never in `make test`.
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

from laclip_lite.data.export import png_bytes
from laclip_lite.data.transforms import pil_to_uint8

TOLERANCE = 1e-5


def make_run(out: Path, overrides: dict) -> Path:
    """A run folder of a `test`-preset model (random weights: every tensor distinct, so a misplaced one shows),
    written the way the trainer writes it (config.yaml, the tokenizer, checkpoint.pt), without training: the
    benchmark environment lacks the trainer's data dependencies (the rewrite cache's `datasets`)."""
    from laclip_lite.config import build_config
    from laclip_lite.data.dataset import shapeworld_split
    from laclip_lite.data.tokenizer import build_tokenizer
    from laclip_lite.models.clip import build_model

    cfg = build_config("test", {"train.device": "cpu", **overrides})
    tok = build_tokenizer(cfg.data, cfg.model, list(shapeworld_split(cfg, "train").captions))
    cfg.model.vocab_size, cfg.model.pad_id = tok.vocab_size, tok.pad_id
    model = build_model(cfg.model)
    with torch.no_grad():
        model.logit_scale.fill_(3.0)                  # not the init value, so a dropped tensor would show
    out.mkdir(parents=True)
    cfg.save(out / "config.yaml")
    tok.save(out)
    torch.save({"model": model.state_dict()}, out / "checkpoint.pt")
    return out


def check(run: Path, work: Path) -> float:
    from laclip_lite.data.dataset import shapeworld_split
    from laclip_lite.data.transforms import normalize
    from laclip_lite.models.open_clip_export import export_open_clip, import_open_clip
    from laclip_lite.runs import load_run

    open_clip = import_open_clip()
    ours, tokenizer, cfg = load_run(run, device="cpu")
    paths = export_open_clip(run, work / run.name)
    data = shapeworld_split(cfg, "test")
    images = normalize(data.images[:64])
    tokens = tokenizer(list(data.captions[:64]))
    open_clip.add_model_config(paths["config"])
    loaded = {"add_model_config": open_clip.create_model_and_transforms(paths["config"].stem,
                                                                       pretrained=str(paths["weights"])),
              "local-dir": open_clip.create_model_and_transforms(f"local-dir:{paths['weights'].parent}")}
    worst = 0.0
    with torch.no_grad():
        want_img, want_txt = ours.encode_image(images, normalize=False), ours.encode_text(tokens, normalize=False)
        for how, (theirs, _, _) in loaded.items():
            theirs.eval()
            d_img = (theirs.encode_image(images) - want_img).abs().max().item()
            d_txt = (theirs.encode_text(tokens) - want_txt).abs().max().item()
            d_scale = abs(theirs.logit_scale.item() - ours.logit_scale.item())
            worst = max(worst, d_img, d_txt, d_scale)
            print(f"{run.name:>8} [{cfg.model.vision}] via {how:<16} max |diff| image {d_img:.1e}, text {d_txt:.1e}, "
                  f"logit_scale {d_scale:.1e}")
        pil = Image.open(io.BytesIO(png_bytes(data.images[0]))).convert("RGB").resize((48, 40))
        preprocess = loaded["local-dir"][2]
        pre_diff = (preprocess(pil) - normalize(pil_to_uint8(pil, cfg.model.image_size)[None])[0]).abs().max().item()
        print(f"{'':>8} preprocessing (information): open_clip's vs ours on a 48x40 PNG, max |diff| {pre_diff:.3f} "
              "(normalised units)")
    return worst


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", action="append", default=[], help="run folder(s) to check (default: train two)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="openclip-export-") as tmp:
        work = Path(tmp)
        runs = [Path(c) for c in args.checkpoint] or [
            make_run(work / "vit", {"model.vision_stem": "patch"}),
            make_run(work / "resnet", {"model.vision": "resnet", "model.vision_width": 16, "model.vision_layers": 1,
                                       "model.vision_heads": 2}),
        ]
        worst = max(check(run, work / "export") for run in runs)
    ok = worst <= TOLERANCE
    print(f"open_clip round trip: max feature difference {worst:.1e} ({'ok' if ok else 'FAILED'}, "
          f"tolerance {TOLERANCE:.0e})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
