"""Two gloo processes on CPU, each with half the batch, reproduce one process on the whole batch.

Each rank runs ONE forward/backward of a tiny CLIP under DDP with ClipLoss(local_loss=True,
gather_with_grad=True) on its own B pairs. The loss averaged over ranks and DDP's averaged gradients must equal
a single process on the combined 2B batch, for the CLIP loss and the LaCLIP-MT loss (K=3 texts per image).
"""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from laclip_lite.config import ModelConfig
from laclip_lite.losses import ClipLoss
from laclip_lite.models import build_model

WORLD, B, K, CONTEXT, VOCAB = 2, 3, 3, 8, 30
CASES = [("clip", True), ("mt", True), ("clip", False)]        # (loss, local_loss)


def _cfg() -> ModelConfig:
    return ModelConfig(image_size=16, patch_size=8, vision_width=16, vision_layers=1, vision_heads=2, text_width=16,
                       text_layers=1, text_heads=2, context_length=CONTEXT, vocab_size=VOCAB, embed_dim=8)


def _model():
    torch.manual_seed(0)
    return build_model(_cfg())


def _batch():
    """2B images and [2B, K, CONTEXT] right-padded tokens; identical in every process."""
    g = torch.Generator().manual_seed(1)
    images = torch.randn(WORLD * B, 3, 16, 16, generator=g)
    tokens = torch.randint(3, VOCAB, (WORLD * B, K, CONTEXT), generator=g)
    lengths = torch.randint(2, CONTEXT + 1, (WORLD * B, K), generator=g)
    tokens[torch.arange(CONTEXT) >= lengths[..., None]] = 0       # pad after each caption
    return images, tokens


def _step(model, images, tokens, loss_fn, multi):
    toks = tokens if multi else tokens[:, 0]
    img, txt, scale = model(images, toks.flatten(0, 1) if multi else toks)
    if multi:
        txt = txt.view(images.shape[0], K, -1)
    loss = loss_fn(img, txt, scale)
    loss.backward()
    return loss


def _worker(rank: int, port: int, out_dir: str) -> None:
    from torch.nn.parallel import DistributedDataParallel

    from laclip_lite import distributed as dist

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    assert dist.init_from_env("cpu") == (rank, WORLD)
    images, tokens = _batch()
    mine = slice(rank * B, (rank + 1) * B)
    results = {}
    for name, local in CASES:
        model = _model()
        ddp = DistributedDataParallel(model)                        # averages gradients over the ranks
        loss_fn = ClipLoss(local_loss=local, gather_with_grad=True, rank=rank, world_size=WORLD,
                           multi_text=name == "mt")
        loss = _step(ddp, images[mine], tokens[mine], loss_fn, name == "mt")
        results[(name, local)] = {"loss": dist.all_reduce_mean(loss.item()),
                                  "grads": {n: p.grad.clone() for n, p in model.named_parameters()}}
    assert dist.all_reduce_mean(float(rank)) == 0.5
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.cleanup(synchronize=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize("name,local", CASES)
def test_two_ranks_equal_one_process_on_the_combined_batch(ranks, name, local):
    images, tokens = _batch()
    model = _model()
    loss = _step(model, images, tokens, ClipLoss(multi_text=name == "mt"), name == "mt")
    for r in range(WORLD):
        got = ranks[r][(name, local)]
        assert got["loss"] == pytest.approx(loss.item(), abs=1e-5)
        assert got["grads"].keys() == {n for n, _ in model.named_parameters()}
        for n, p in model.named_parameters():
            torch.testing.assert_close(got["grads"][n], p.grad, rtol=1e-4, atol=1e-5,
                                       msg=lambda m, r=r, n=n: f"rank {r}: {n}: {m}")
    # the halves really differ from the whole: a per-rank loss without the gather would not match
    half = ClipLoss(multi_text=name == "mt")
    img, txt, s = model(images[:B], tokens[:B].flatten(0, 1) if name == "mt" else tokens[:B, 0])
    txt = txt.view(B, K, -1) if name == "mt" else txt
    assert abs(half(img, txt, s).item() - loss.item()) > 1e-3
