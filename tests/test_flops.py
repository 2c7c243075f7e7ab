"""The analytic FLOP counts of benchmarks/flops.py equal torch's FlopCounterMode on the same forward passes."""
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.flops import flops_per_sample, forward_flops
from laclip_lite.config import ModelConfig
from laclip_lite.models import build_model
from tests.test_models import images, tiny_cfg, tokens
from tests.tiny_models import build_tiny_bert


def _counted_forward_flops(fn, *args):
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:   # math SDPA = counted bmms
        fn(*args)
    return counter.get_total_flops() / args[0].shape[0]


@pytest.mark.parametrize("vision,stem", [("vit", "patch"), ("vit", "conv"), ("resnet", "patch")])
def test_flops_match_torch_flop_counter(vision, stem):
    cfg = tiny_cfg(vision=vision, vision_stem=stem)
    model = build_model(cfg)
    f = forward_flops(cfg)
    assert f["image"] == _counted_forward_flops(model.encode_image, images(2))
    assert f["text"] == _counted_forward_flops(model.encode_text, tokens([12, 12]))
    assert forward_flops(cfg, text_len=5)["text"] == _counted_forward_flops(model.encode_text, tokens([5, 5]))
    assert flops_per_sample(cfg, texts_per_image=3) == 3 * f["image"] + 9 * f["text"]
    # the dense count (every block on every token, as open_clip runs it): the full hidden states
    dense = forward_flops(cfg, pooled=False)
    proj = 2 * cfg.text_width * cfg.embed_dim
    assert dense["text"] - proj == _counted_forward_flops(model.text.hidden_states, tokens([12, 12]))
    assert dense["text"] > f["text"]


def test_flops_paper_configs_on_meta_device():
    for cfg in (ModelConfig(vision="vit", image_size=224, patch_size=16, vision_width=768, vision_layers=12,
                            vision_heads=12, vocab_size=100, embed_dim=512),
                ModelConfig(vision="resnet", image_size=224, vision_width=64, vision_layers=0, vision_heads=32,
                            vocab_size=100, embed_dim=1024)):
        with torch.device("meta"):
            model = build_model(cfg)
            assert forward_flops(cfg)["image"] == _counted_forward_flops(model.visual, torch.empty(1, 3, 224, 224))


def test_flops_hf_text_tower(tmp_path):
    cfg = tiny_cfg(text="hf", text_model=str(build_tiny_bert(tmp_path / "bert")), text_lock=True, vocab_size=99)
    model = build_model(cfg)
    assert forward_flops(cfg)["text"] == _counted_forward_flops(model.encode_text, torch.full((1, 12), 5))
