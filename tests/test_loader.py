import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from laclip_lite.data.loader import EpochOrder, InMemoryPairs, draw_text_index, select_texts, texts_per_image
from laclip_lite.data.transforms import normalize, random_resized_crop
from laclip_lite.utils import step_generator


def test_short_rewrites_fall_back_to_original():
    assert texts_per_image("a red circle", ["crimson disc shown", "disc", ""]) == \
        ["a red circle", "crimson disc shown", "a red circle", "a red circle"]


def test_laclip_draws_are_uniform():
    """Chi-square over 50k draws of K=5: the text index is uniform over {original, 4 rewrites}."""
    counts = np.zeros(5)
    for step in range(200):
        idx = draw_text_index("laclip", 250, 5, step_generator(0, step))
        counts += np.bincount(idx.numpy(), minlength=5)
    assert counts.sum() == 50_000
    assert chisquare(counts).pvalue > 1e-3
    assert abs(counts / counts.sum() - 0.2).max() < 0.01


def test_policies_select_the_right_texts():
    tokens = torch.arange(4 * 3 * 2).view(4, 3, 2)
    g = step_generator(0, 0)
    assert torch.equal(select_texts(tokens, "clip", g), tokens[:, 0])
    assert torch.equal(select_texts(tokens, "mt", g), tokens)
    drawn = select_texts(tokens, "laclip", g)
    assert drawn.shape == (4, 2) and all(any(torch.equal(drawn[i], tokens[i, k]) for k in range(3)) for i in range(4))
    with pytest.raises(ValueError, match="policy"):
        select_texts(tokens, "lacip", g)


def test_epoch_order_covers_each_sample_once_per_epoch_across_ranks():
    orders = [EpochOrder(40, 5, seed=3, rank=r, world_size=2) for r in range(2)]
    seen = torch.cat([o.indices(s) for s in range(4) for o in orders])
    assert sorted(seen.tolist()) == list(range(40))
    assert not torch.equal(orders[0].indices(0), orders[0].indices(4))  # a new permutation next epoch


def test_batches_are_a_function_of_step():
    images = torch.randint(0, 255, (32, 3, 8, 8), dtype=torch.uint8)
    tokens = torch.randint(0, 50, (32, 3, 6))
    a, b = InMemoryPairs(images, tokens, "laclip", 8, 0), InMemoryPairs(images, tokens, "laclip", 8, 0)
    for s in (5, 0, 9):
        assert torch.equal(a.batch(s).tokens, b.batch(s).tokens) and torch.equal(a.batch(s).images, b.batch(s).images)


def test_batch_larger_than_data_is_a_clear_error():
    with pytest.raises(ValueError, match="lower train.batch_size"):
        EpochOrder(10, 16, 0)


def test_random_resized_crop_full_scale_is_identity_and_flip_flips():
    images = torch.randint(0, 255, (4, 3, 16, 16), dtype=torch.uint8)
    out = random_resized_crop(images, scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=step_generator(0, 0))
    assert torch.allclose(out, images.float(), atol=1e-3)
    g = torch.Generator().manual_seed(1)
    flipped = random_resized_crop(images, scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=g, hflip=True)
    for a, b in zip(flipped, images.float()):
        assert torch.allclose(a, b, atol=1e-3) or torch.allclose(a, b.flip(-1), atol=1e-3)
    assert any(not torch.allclose(a, b, atol=1e-3) for a, b in zip(flipped, images.float()))
    crops = random_resized_crop(images, scale=(0.3, 0.5), generator=step_generator(0, 1))
    assert crops.shape == images.shape and crops.min() >= 0 and crops.max() <= 255
    assert not torch.allclose(crops, images.float())


def test_normalize_matches_clip_constants():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    y = normalize(x)
    assert torch.allclose(y[0, :, 0, 0], torch.tensor([(1 - 0.48145466) / 0.26862954, (1 - 0.4578275) / 0.26130258,
                                                       (1 - 0.40821073) / 0.27577711]))


def test_trim_padding_is_exact_for_the_text_tower():
    from laclip_lite.config import ModelConfig
    from laclip_lite.models.clip import build_model
    from laclip_lite.models.text import trim_padding

    cfg = ModelConfig(vocab_size=50, context_length=12, text_width=32, text_layers=1, text_heads=2,
                      vision_width=32, vision_layers=1, vision_heads=2, embed_dim=16)
    model = build_model(cfg).eval()
    tokens = torch.zeros(3, 12, dtype=torch.long)
    for i, n in enumerate((4, 7, 5)):
        tokens[i, :n] = torch.randint(4, 50, (n,))
    trimmed = trim_padding(tokens, 0)
    assert trimmed.shape == (3, 7)
    assert torch.allclose(model.encode_text(tokens), model.encode_text(trimmed), atol=1e-6)
    assert trim_padding(tokens.view(3, 1, 12), 0).shape == (3, 1, 7)
