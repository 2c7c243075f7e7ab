"""The open_clip exporter without open_clip: names, config, refusals. (Loading it in open_clip and comparing the
features is `make -f Makefile.bench openclip-export-check`, in the benchmark environment.)"""
from __future__ import annotations

import json

import pytest
import torch

from laclip_lite.config import ModelConfig
from laclip_lite.errors import DataError
from laclip_lite.models.clip import build_model
from laclip_lite.models.open_clip_export import WEIGHTS, open_clip_config, open_clip_name, open_clip_state_dict

TINY = dict(image_size=16, patch_size=8, vision_stem="patch", vision_width=16, vision_layers=1, vision_heads=2,
            text_width=16, text_layers=1, text_heads=2, context_length=8, vocab_size=40, embed_dim=8)


def test_names_follow_open_clip():
    got = open_clip_name("text.transformer.resblocks.0.attn.in_proj.weight")
    assert got == "transformer.resblocks.0.attn.in_proj_weight"
    assert open_clip_name("text.token_embedding.weight") == "token_embedding.weight"
    assert open_clip_name("visual.conv1.weight") == "visual.conv1.weight"
    assert open_clip_name("visual.layer2.0.downsample.1.weight") == "visual.layer2.0.downsample.0.weight"
    assert open_clip_name("visual.layer2.0.downsample.2.running_mean") == "visual.layer2.0.downsample.1.running_mean"


def test_state_dict_keeps_every_tensor_under_a_unique_name():
    model = build_model(ModelConfig(**TINY))
    state = open_clip_state_dict(model)
    assert len(state) == len(model.state_dict())
    assert {"logit_scale", "text_projection", "visual.proj", "ln_final.weight", "positional_embedding"} <= set(state)
    assert not any(k.startswith("text.") for k in state)
    torch.testing.assert_close(state["token_embedding.weight"], model.text.token_embedding.weight)


def test_config_and_refusals():
    cfg = open_clip_config(ModelConfig(**TINY), eos_id=2)
    assert cfg["vision_cfg"] == {"image_size": 16, "layers": 1, "width": 16, "head_width": 8, "patch_size": 8,
                                 "mlp_ratio": 4.0}
    assert cfg["text_cfg"]["pool_type"] == "eos" and cfg["text_cfg"]["eos_id"] == 2 and cfg["quick_gelu"] is False
    with pytest.raises(DataError, match="vision_stem='conv': open_clip's ViT has only the linear patch embedding"):
        open_clip_config(ModelConfig(**{**TINY, "vision_stem": "conv"}), eos_id=2)
    with pytest.raises(DataError, match="model.text='hf'"):
        open_clip_config(ModelConfig(**{**TINY, "text": "hf", "text_model": "x"}), eos_id=2)


def test_export_cli_writes_config_and_weights(tmp_path, capsys):
    from laclip_lite.cli import main
    from laclip_lite.config import build_config
    from laclip_lite.train import train

    run = tmp_path / "run"
    train(build_config("test", {"model.vision_stem": "patch", "train.steps": 1, "train.device": "cpu"}), run,
          progress=False, evaluate_at_end=False)
    assert main(["export", "--format", "open_clip", "--checkpoint", str(run), "--out", str(tmp_path / "oc"),
                 "--name", "tiny-test"]) == 0
    assert "create_model_and_transforms('tiny-test'" in capsys.readouterr().out
    config = json.loads((tmp_path / "oc" / "tiny-test.json").read_text())
    local = json.loads((tmp_path / "oc" / "open_clip_config.json").read_text())
    assert local["model_cfg"] == config and local["preprocess_cfg"]["resize_mode"] == "shortest"
    state = torch.load(tmp_path / "oc" / WEIGHTS, weights_only=True)
    assert state["logit_scale"].shape == () and "visual.conv1.weight" in state
    cfg = build_config("test", {"train.steps": 1, "train.device": "cpu"})          # the conv stem: refused
    train(cfg, tmp_path / "conv", progress=False, evaluate_at_end=False)
    assert main(["export", "--format", "open_clip", "--checkpoint", str(tmp_path / "conv"),
                 "--out", str(tmp_path / "oc2")]) == 2
    assert "vision_stem='conv'" in capsys.readouterr().err


def test_the_docs_say_which_presets_export():
    """docs/evaluation.md's table of presets matches what the exporter accepts (every preset named once)."""
    import re
    from pathlib import Path

    from laclip_lite.config import PRESETS, preset

    doc = (Path(__file__).resolve().parents[1] / "docs" / "evaluation.md").read_text()
    table = doc[doc.index("| preset | exports to open_clip |"):].split("\n\n")[0].splitlines()[2:]
    said = {}
    for row in table:
        cells = [c.strip() for c in row.strip("|").split("|")]
        for name in re.findall(r"`([^`]+)`", cells[0]):
            said[name] = cells[1] == "yes"
    assert sorted(said) == sorted(PRESETS)
    for name, exports in said.items():
        try:
            open_clip_config(preset(name).model, eos_id=1)
            accepted = True
        except DataError:
            accepted = False
        assert accepted == exports, name
