import pytest

from laclip_lite.config import PRESETS, Config, ConfigError, build_config, preset


def test_overrides_parse_types():
    cfg = build_config("tiny", ["model.vision=resnet", "train.steps=500", "train.lr=1e-4",
                                "data.sources=chatgpt,human", "model.text_lock=true", "data.crop_scale=[0.5, 1.0]"])
    assert cfg.model.vision == "resnet" and cfg.train.steps == 500 and cfg.train.lr == 1e-4
    assert cfg.data.sources == ["chatgpt", "human"] and cfg.model.text_lock is True
    assert cfg.data.crop_scale == [0.5, 1.0]


@pytest.mark.parametrize("override, words", [
    ("train.stepz=3", ["train.stepz", "unknown"]),
    ("trian.steps=3", ["trian.steps", "unknown"]),
    ("train.steps=abc", ["train.steps", "int"]),
    ("train.steps=1.5", ["train.steps", "int"]),
    ("model.text_lock=maybe", ["model.text_lock", "bool"]),
    ("train.lr=fast", ["train.lr", "float"]),
    ("model.vision=foo", ["model.vision", "vit"]),
    ("train.policy=mtt", ["train.policy", "laclip"]),
    ("steps", ["key=value"]),
])
def test_bad_overrides_name_the_key(override, words):
    with pytest.raises(ConfigError) as e:
        build_config("tiny", [override])
    for w in words:
        assert w in str(e.value)


def test_yaml_round_trip(tmp_path):
    cfg = build_config("vit-b16", ["train.policy=mt", "data.augment=shapes"])
    cfg.save(tmp_path / "c.yaml")
    assert Config.load(tmp_path / "c.yaml") == cfg


def test_presets_validate():
    for name in PRESETS:
        preset(name).validate()
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("vit-h14")


def test_patch_divisibility_checked():
    with pytest.raises(ConfigError, match="patch_size"):
        build_config("tiny", ["model.patch_size=7"])


def test_config_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  steps: 7\n  lr: 0.01\n")
    cfg = build_config("tiny", ["train.lr=0.02"], f)
    assert cfg.train.steps == 7 and cfg.train.lr == 0.02
    f.write_text("train:\n  stepz: 7\n")
    with pytest.raises(ConfigError, match="train.stepz"):
        build_config("tiny", None, f)


def test_is_shapeworld_by_source_or_format():
    from laclip_lite.config import DataConfig
    assert DataConfig().is_shapeworld and DataConfig(source="x", format="shapeworld").is_shapeworld
    assert not DataConfig(source="data/train.csv").is_shapeworld
    assert "is_shapeworld" not in DataConfig().__dict__          # derived, never written to config.yaml


@pytest.mark.parametrize("name", ["tiny-rich", "tiny-2k", "tiny-scarce"])
def test_course_presets_build_and_train_a_step_at_test_size(tmp_path, name):
    """The lesson-01 (data-rich) and compare (data-scarce: now and before) presets: their model builds and
    trains; only the data sizes and steps are shrunk here (their timing is measured in docs/results, never in
    tests)."""
    from laclip_lite.train import train

    small = {"data.train_size": 48, "data.val_size": 16, "data.test_size": 48, "data.bpe_vocab_size": 300,
             "train.steps": 1, "train.batch_size": 16, "train.warmup_steps": 1, "train.ckpt_every": 0}
    cfg = build_config(name, small)
    full = preset(name)
    assert (cfg.model.vision, cfg.model.vision_stem, cfg.model.text_layers) == \
           (full.model.vision, full.model.vision_stem, full.model.text_layers)
    assert cfg.data.hflip == full.data.hflip
    final = train(cfg, tmp_path / name, progress=False)
    assert final["step"] == 1 and "test/shape_top1" in final


def test_experiment_preset_is_the_default_of_compare_and_ablate_and_never_flips():
    """ShapeWorld captions name left/right: a flipped image would keep a caption that names the wrong side."""
    from laclip_lite.cli import build_parser
    from laclip_lite.constants import EXPERIMENT_PRESET

    assert preset(EXPERIMENT_PRESET).data.hflip is False
    for command in ("compare", "ablate"):
        assert build_parser().parse_args([command, "--out", "x"]).preset == EXPERIMENT_PRESET
