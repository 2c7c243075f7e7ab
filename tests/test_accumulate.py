"""accum_mode=global: the gradient of an accumulated step equals the full batch's (one loss over the global
batch), in one process and on 2 gloo ranks, for CLIP and LaCLIP-MT; accum_mode=micro does not."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from laclip_lite.accumulate import accumulate
from laclip_lite.config import build_config
from laclip_lite.schedule import negatives_per_loss
from laclip_lite.train import Trainer

ARMS = {"clip": ["train.policy=clip", "data.augment=none"], "mt": ["train.policy=mt", "data.augment=shapes"]}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LACLIP_LITE_CACHE", str(tmp_path / "cache"))


def _cfg(policy: str, batch: int, accum: int, mode: str):
    return build_config("test", ARMS[policy] + [f"train.batch_size={batch}", f"train.accum_steps={accum}",
                                                f"train.accum_mode={mode}", "train.grad_clip=0", "train.device=cpu"])


def _step_gradients(trainer: Trainer) -> dict:
    """The gradients the optimizer steps on at step 0 (after DDP's all-reduce), and the logged loss."""
    seen = {}
    trainer.optimizer.register_step_pre_hook(lambda *_: seen.update(
        {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}))
    seen["loss"] = torch.tensor(trainer.train_step()["loss"])
    return seen


def _assert_equal_gradients(got: dict, want: dict) -> None:
    assert got.keys() == want.keys() and len(want) > 10
    torch.testing.assert_close(got["loss"], want["loss"], rtol=1e-5, atol=1e-6)
    for name, grad in want.items():
        torch.testing.assert_close(got[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def _full_batch(tmp_path, policy: str) -> dict:
    return _step_gradients(Trainer(_cfg(policy, 16, 1, "micro"), tmp_path / "full", progress=False,
                                   evaluate_at_end=False))


@pytest.mark.parametrize("policy", ["clip", "mt"])
def test_global_accumulation_equals_the_full_batch_in_one_process(tmp_path, policy):
    torch.set_num_threads(1)
    want = _full_batch(tmp_path, policy)
    got = _step_gradients(Trainer(_cfg(policy, 4, 4, "global"), tmp_path / "global", progress=False,
                                  evaluate_at_end=False))
    _assert_equal_gradients(got, want)
    micro = _step_gradients(Trainer(_cfg(policy, 4, 4, "micro"), tmp_path / "micro", progress=False,
                                    evaluate_at_end=False))
    assert micro["loss"] < want["loss"] - 0.1          # 4 samples per loss are easier to tell apart than 16
    with pytest.raises(AssertionError):                 # the check can fail: micro's gradient is another one
        _assert_equal_gradients(micro, want)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, policy: str, out: str, cache: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), LACLIP_LITE_CACHE=cache)
    torch.set_num_threads(1)
    from laclip_lite import distributed as dist
    trainer = Trainer(_cfg(policy, 4, 2, "global"), out, progress=False, evaluate_at_end=False)
    grads = _step_gradients(trainer)
    torch.save(grads, os.path.join(out, f"grads{rank}.pt"))   # the logged loss is this rank's local-loss share
    dist.cleanup(synchronize=True)


@pytest.mark.parametrize("policy", ["clip", "mt"])
def test_global_accumulation_on_two_ranks_equals_the_full_batch(tmp_path, policy):
    """2 gloo ranks x 2 micro-batches of 4 = one process on 16: each loss contrasts all 16 samples."""
    torch.set_num_threads(1)
    want = _full_batch(tmp_path, policy)
    out = tmp_path / "ddp"
    mp.spawn(_worker, args=(2, _free_port(), policy, str(out), os.environ["LACLIP_LITE_CACHE"]), nprocs=2,
             join=True)
    ranks = [torch.load(out / f"grads{r}.pt", weights_only=True) for r in range(2)]
    for name in want:                                   # DDP leaves the same gradient on both ranks
        if name != "loss":
            torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=0)
    _assert_equal_gradients(dict(ranks[0], loss=(ranks[0]["loss"] + ranks[1]["loss"]) / 2), want)


def test_the_logit_scale_gradient_is_counted_once():
    """The scale enters every recompute pass; its gradient must be the full batch's, not accum_steps times it."""
    torch.manual_seed(0)
    from laclip_lite.losses import clip_loss
    x, t = torch.randn(8, 4), torch.randn(8, 4)
    log_scale = torch.zeros((), requires_grad=True)
    w = torch.eye(4, requires_grad=True)

    def features(rows):
        return torch.nn.functional.normalize(x[rows] @ w, dim=-1), torch.nn.functional.normalize(t[rows], dim=-1), \
            log_scale.exp()

    clip_loss(*features(slice(0, 8))).backward()
    want = log_scale.grad.clone(), w.grad.clone()
    log_scale.grad = w.grad = None
    import contextlib
    accumulate("global", features, [slice(0, 4), slice(4, 8)], clip_loss, lambda j: contextlib.nullcontext())
    torch.testing.assert_close(log_scale.grad, want[0])
    torch.testing.assert_close(w.grad, want[1])


def test_negatives_per_loss():
    assert negatives_per_loss("micro", 256, 8, 4) == 2048
    assert negatives_per_loss("global", 256, 8, 4) == 8192
