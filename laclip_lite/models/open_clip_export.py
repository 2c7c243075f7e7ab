"""Hand a trained model to open_clip (and so to CLIP_benchmark and the rest of the CLIP ecosystem).

Our ViT / ResNet image towers and causal text Transformer are CLIP's modules under the same names; only the text
tower sits under `text.` here (open_clip keeps it at the top level) and attention keeps q, k, v in one Linear
(`attn.in_proj.weight`; open_clip's `nn.MultiheadAttention` calls it `attn.in_proj_weight`). `export_open_clip`
writes, into one folder:

* `<name>.json`                  the model config, for `open_clip.add_model_config(<name>.json)` and then
                                 `open_clip.create_model_and_transforms(name, pretrained=<weights file>)`;
* `open_clip_config.json`        the same config with its preprocessing, for
                                 `open_clip.create_model_and_transforms("local-dir:<folder>")`;
* `open_clip_pytorch_model.bin`  the state dict under open_clip's names.

The text tower pools at the end-of-text token: open_clip's `pool_type="eos"` with our tokenizer's `eos_id`, which is
the same position ours reads (the last non-pad token) because our tokenizer always ends a text with one EOT.
open_clip's own tokenizer is not ours: feed the exported model the token ids of the run's tokenizer
(`laclip_lite.data.tokenizer.load_tokenizer(run)`); given the same ids and images it gives the same features
(`benchmarks/openclip_export_check.py`). Not exportable (a clear error): the conv stem (`model.vision_stem=conv`,
open_clip's ViT has only the linear patch embedding), a Hugging Face text tower, and mixed GELU / QuickGELU towers.
"""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import torch

from laclip_lite.data.transforms import CLIP_MEAN, CLIP_STD
from laclip_lite.errors import DataError
from laclip_lite.files import atomic_write_text
from laclip_lite.models.vision import resnet_layers
from laclip_lite.runs import load_run
from laclip_lite.utils import torch_save_atomic

WEIGHTS = "open_clip_pytorch_model.bin"
LOCAL_CONFIG = "open_clip_config.json"


def import_open_clip():
    """import open_clip. PyPI's torchvision wheel is built against CUDA torch: with the CPU torch wheel its C++
    ops fail to load (libtorch_cuda.so missing), and the import then dies registering meta kernels for those
    missing ops ("operator torchvision::nms does not exist"). open_clip uses only torchvision's Python image
    transforms, never its C++ ops, so in that case we skip the meta-kernel module and import again."""

    try:
        import open_clip
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
        for name in [m for m in sys.modules if m.split(".")[0] in ("torchvision", "open_clip", "timm")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
        import open_clip
        print("note: torchvision's C++ ops are unavailable with this CPU torch (its wheel targets CUDA); "
              "open_clip's model does not use them", file=sys.stderr)
    return open_clip


def open_clip_name(ours: str) -> str:
    """One of our parameter / buffer names -> open_clip's (text tower at the top level, packed attention)."""
    name = ours.replace("attn.in_proj.weight", "attn.in_proj_weight").replace("attn.in_proj.bias", "attn.in_proj_bias")
    # ResNet shortcut: ours is Sequential(pool, conv, bn) = 0, 1, 2; open_clip names them "-1", "0", "1"
    name = name.replace(".downsample.1.", ".downsample.0.").replace(".downsample.2.", ".downsample.1.")
    return name[len("text."):] if name.startswith("text.") else name


def _activation(cfg) -> bool:
    """-> open_clip's `quick_gelu` flag (one for both towers)."""
    acts = {getattr(cfg, "vision_act", "gelu"), getattr(cfg, "text_act", "gelu")}
    if len(acts) > 1:
        raise DataError(f"open_clip uses one activation for both towers; this model has vision_act / text_act {acts}")
    return acts.pop() == "quickgelu"


def open_clip_config(cfg, eos_id: int) -> dict:
    """Our ModelConfig -> open_clip's model config (`embed_dim`, `vision_cfg`, `text_cfg`, `quick_gelu`)."""
    if cfg.text != "transformer":
        raise DataError(f"model.text={cfg.text!r}: only the kit's causal text Transformer maps onto open_clip's "
                        "text tower (a Hugging Face text tower would need open_clip's HFTextEncoder)")
    if cfg.vision == "vit":
        if cfg.vision_stem != "patch":
            raise DataError(f"model.vision_stem={cfg.vision_stem!r}: open_clip's ViT has only the linear patch "
                            "embedding; train with model.vision_stem=patch to export to open_clip")
        vision = {"image_size": cfg.image_size, "layers": cfg.vision_layers, "width": cfg.vision_width,
                  "head_width": cfg.vision_width // cfg.vision_heads, "patch_size": cfg.patch_size, "mlp_ratio": 4.0}
    else:
        vision = {"image_size": cfg.image_size, "layers": list(resnet_layers(cfg.vision_layers)),
                  "width": cfg.vision_width, "head_width": cfg.vision_width * 32 // cfg.vision_heads}
    text = {"context_length": cfg.context_length, "vocab_size": cfg.vocab_size, "width": cfg.text_width,
            "heads": cfg.text_heads, "layers": cfg.text_layers, "mlp_ratio": 4.0, "pad_id": cfg.pad_id,
            "pool_type": "eos", "eos_id": int(eos_id)}
    return {"embed_dim": cfg.embed_dim, "quick_gelu": _activation(cfg), "vision_cfg": vision, "text_cfg": text}


def open_clip_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our model's state dict under open_clip's names (tensors detached, on the CPU)."""
    return {open_clip_name(k): v.detach().cpu().clone() for k, v in model.state_dict().items()}


def copy_weights(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    """Load our weights into an open_clip model of the same architecture; a name or shape that differs raises."""
    mine = open_clip_state_dict(ours)
    target = {k: v for k, v in theirs.state_dict().items() if k != "attn_mask"}
    if mine.keys() != target.keys():
        raise DataError(f"architectures differ: only ours {sorted(mine.keys() - target.keys())[:8]}, "
                        f"only open_clip {sorted(target.keys() - mine.keys())[:8]}")
    bad = [k for k in mine if mine[k].shape != target[k].shape]
    if bad:
        raise DataError(f"architectures differ at {bad[0]}: {tuple(mine[bad[0]].shape)} vs "
                        f"{tuple(target[bad[0]].shape)}")
    theirs.load_state_dict(mine, strict=False)


def export_open_clip(run_dir: str | Path, out_dir: str | Path, name: str | None = None) -> dict[str, Path]:
    """A run folder -> an open_clip model folder (see the module docstring); -> {"config", "local_config",
    "weights"} paths. `name` (default `laclip-lite-<run folder name>`) is the model name open_clip registers."""
    model, tokenizer, cfg = load_run(run_dir, device="cpu")
    config = open_clip_config(cfg.model, tokenizer.eot_id)
    name = name or f"laclip-lite-{Path(run_dir).resolve().name}"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"config": out / f"{name}.json", "local_config": out / LOCAL_CONFIG, "weights": out / WEIGHTS}
    atomic_write_text(paths["config"], json.dumps(config, indent=2) + "\n")
    preprocess = {"mean": list(CLIP_MEAN), "std": list(CLIP_STD), "interpolation": "bicubic",
                  "resize_mode": "shortest", "size": cfg.model.image_size}
    atomic_write_text(paths["local_config"],
                      json.dumps({"model_cfg": config, "preprocess_cfg": preprocess}, indent=2) + "\n")
    torch_save_atomic(open_clip_state_dict(model), paths["weights"])
    return paths
