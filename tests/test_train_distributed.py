"""The trainer under torch.distributed (gloo, 2 CPU processes) equals one process on the combined batch."""
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from laclip_lite.config import build_config

STEPS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _overrides(policy: str, batch: int) -> list[str]:
    return [f"train.policy={policy}", f"train.batch_size={batch}", f"train.steps={STEPS}", "train.warmup_steps=1",
            "data.augment=shapes", "train.log_every=1", "train.device=cpu"]


def _worker(rank: int, world: int, port: int, policy: str, out: str, cache: str, extra: list[str]) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), LACLIP_LITE_CACHE=cache)
    torch.set_num_threads(1)
    from laclip_lite.train import train
    train(build_config("test", _overrides(policy, 8) + extra), out, progress=False, evaluate_at_end=False)


def _assert_same_weights(single, ddp) -> None:
    a = torch.load(single / "checkpoint.pt", weights_only=True)
    b = torch.load(ddp / "checkpoint.pt", weights_only=True)
    assert b["world_size"] == 2 and a["step"] == b["step"] == STEPS
    # Adam divides by sqrt(v): for a near-zero gradient it amplifies fp32 reduction-order noise, so single
    # elements may differ by ~1e-5. A wrong gradient (no gather, no all-reduce) moves most weights by ~lr (3e-3).
    diffs = torch.cat([(value - b["model"][name]).abs().flatten() for name, value in a["model"].items()])
    assert diffs.max() < 1e-4, diffs.max()
    assert diffs.mean() < 1e-7, diffs.mean()


@pytest.mark.parametrize("policy", ["laclip", "mt"])
def test_two_ranks_equal_one_process_on_the_combined_batch(tmp_path, monkeypatch, policy):
    cache = str(tmp_path / "cache")
    monkeypatch.setenv("LACLIP_LITE_CACHE", cache)
    from laclip_lite.train import train

    torch.set_num_threads(1)
    single = tmp_path / "single"
    train(build_config("test", _overrides(policy, 16)), single, progress=False, evaluate_at_end=False)
    ddp = tmp_path / "ddp"
    mp.spawn(_worker, args=(2, _free_port(), policy, str(ddp), cache, []), nprocs=2, join=True)
    _assert_same_weights(single, ddp)

    def rows(run):
        return (run / "metrics.jsonl").read_text().splitlines()

    assert len(rows(ddp)) == STEPS  # rank 0 alone logs
    # the logged loss is the global batch's (all-reduced), so the curve does not depend on the number of ranks
    for a, b in zip(rows(single), rows(ddp)):
        assert json.loads(b)["loss"] == pytest.approx(json.loads(a)["loss"], rel=1e-5)


def test_two_ranks_on_hf_with_a_rewrites_dir_equal_one_process_and_resume_checks_the_world_size(tmp_path,
                                                                                                monkeypatch):
    """An HF folder with rewrites from `laclip-lite rewrite` (data.rewrites_dir, matched by row): 2 ranks equal one
    process on the combined batch; resuming the 2-rank run in one process stops naming both world sizes."""
    from pathlib import Path

    from laclip_lite.cli import main
    from laclip_lite.errors import DataError

    cache = str(tmp_path / "cache")
    monkeypatch.setenv("LACLIP_LITE_CACHE", cache)
    from laclip_lite.train import train

    torch.set_num_threads(1)
    hf = Path(__file__).resolve().parents[1] / "data_samples" / "hf"
    assert main(["rewrite", "--input", str(hf), "--out", str(tmp_path / "rw"), "--rewriter", "eda",
                 "--no-progress"]) == 0
    extra = [f"data.source={hf}", f"data.rewrites_dir={tmp_path / 'rw'}", "data.augment=eda"]
    single = tmp_path / "single"
    train(build_config("test", _overrides("laclip", 16) + extra), single, progress=False, evaluate_at_end=False)
    ddp = tmp_path / "ddp"
    mp.spawn(_worker, args=(2, _free_port(), "laclip", str(ddp), cache, extra), nprocs=2, join=True)
    _assert_same_weights(single, ddp)
    assert json.loads((ddp / "run.json").read_text())["batch"]["world_size"] == 2
    with pytest.raises(DataError, match=r"world size: 2 -> 1"):
        train(build_config("test", _overrides("laclip", 16) + extra), ddp, resume=True, progress=False)


def test_two_ranks_on_a_dirty_csv_stay_equal_and_count_what_they_replaced(tmp_path, monkeypatch):
    """CC3M-like CSV with a truncated JPEG, a zero-byte file, a missing image and a bad row: each unreadable
    sample is replaced by the same readable one on every rank, so both ranks' batches stay full (gloo would
    abort on unequal all-gathers), the run equals one process on the combined batch, and the skip counts summed
    over ranks equal the one-process counts."""
    from laclip_lite.data.dirty import export_dirty_laclip

    cache = str(tmp_path / "cache")
    monkeypatch.setenv("LACLIP_LITE_CACHE", cache)
    from laclip_lite.train import train

    torch.set_num_threads(1)
    extra = [f"data.source={export_dirty_laclip(tmp_path / 'dirty')}", "data.augment=none",
             f"train.steps={STEPS}"]
    single = tmp_path / "single"
    train(build_config("test", _overrides("laclip", 16) + extra), single, progress=False, evaluate_at_end=False)
    ddp = tmp_path / "ddp"
    mp.spawn(_worker, args=(2, _free_port(), "laclip", str(ddp), cache, extra + ["data.num_workers=1"]),
             nprocs=2, join=True)
    _assert_same_weights(single, ddp)
    one, two = (json.loads((run / "data_info.json").read_text()) for run in (single, ddp))
    assert one["samples_read"] == two["samples_read"] == STEPS * 16
    assert two["samples_replaced"] == one["samples_replaced"] and sum(one["samples_replaced"].values()) >= 1
    print("2-rank dirty CSV:", two["samples_replaced"], "rewrites fallen back:", two["rewrites_fallen_back"])


def _resume_worker(rank: int, world: int, port: int, out: str, cache: str, extra: list[str], mode: str) -> None:
    """mode: "full" trains to the end; "crash" takes 3 steps, saves at step 2, then stops (a kill); "resume"."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), LACLIP_LITE_CACHE=cache)
    torch.set_num_threads(1)
    from laclip_lite import distributed as dist
    from laclip_lite.train import Trainer, train
    if mode != "crash":
        train(build_config("test", extra), out, resume=mode == "resume", progress=False, evaluate_at_end=False)
        return
    trainer = Trainer(build_config("test", extra), out, progress=False, evaluate_at_end=False)
    for _ in range(3):
        trainer.train_step()
        if trainer.step == 2:
            trainer.save()
    dist.cleanup(synchronize=True)


def test_two_ranks_on_tar_shards_with_a_rewrites_dir_resume_exactly(tmp_path, monkeypatch):
    """Tar shards with rewrites from `laclip-lite rewrite` (data.rewrites_dir, matched by sample key) on 2 ranks:
    4 steps straight equal a run killed after its step-2 checkpoint and resumed on 2 ranks (each rank streams its
    own shard; a resumed stream replays to the saved step)."""
    from pathlib import Path

    from laclip_lite.cli import main

    cache = str(tmp_path / "cache")
    monkeypatch.setenv("LACLIP_LITE_CACHE", cache)
    wds = Path(__file__).resolve().parents[1] / "data_samples" / "wds"
    assert main(["rewrite", "--input", str(wds), "--out", str(tmp_path / "rw"), "--rewriter", "eda",
                 "--no-progress"]) == 0
    extra = [f"data.source={wds}", f"data.rewrites_dir={tmp_path / 'rw'}", "data.augment=eda", "train.policy=laclip",
             "train.batch_size=8", "train.warmup_steps=1", "train.log_every=1", "train.device=cpu",
             "train.ckpt_every=0", "train.steps=4"]
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    for out, mode in ((full, "full"), (cut, "crash"), (cut, "resume")):
        mp.spawn(_resume_worker, args=(2, _free_port(), out, cache, extra, mode), nprocs=2, join=True)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 4 and a["world_size"] == b["world_size"] == 2
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    record = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert record["texts"]["per_image"] == 5 and "keys.txt" in record["texts"]["origin_files"]["eda1"]
    assert record["replanned"] == []
