"""Distributed training on the CPU (gloo, 2 processes): sharding, DDP equivalence, metrics, failures.

The promise checked here: W ranks with batch B see, step for step, the
samples and augmentation of one process with batch W*B, reach its weights,
and report its evaluation metrics.
"""

from __future__ import annotations

import json
import os
import signal
import time
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from cnnbench.data.datasets import InMemoryDataset
from cnnbench.data.folders import EpochSampler
from cnnbench.data.loaders import DeviceLoader, shard_positions
from cnnbench.engine.distributed import (
    DistributedContext, all_gather_object, all_reduce_sum, barrier, broadcast_buffers, broadcast_object,
    dataloader_worker_death, launch, setup, teardown, unwrap, worker_error, wrap_model,
)
from cnnbench.engine.metrics import topk_correct
from cnnbench.errors import RunFailed, UserError
from cnnbench.models import build_model, classification_loss, main_logits

CPU = torch.device("cpu")
WORLD, BATCH = 2, 4  # per-rank batch; the global batch is 8
# 44 = 5 global batches of 8 and 4 left over (dropped); 23 validation samples split 11 + 12.
N_TRAIN, N_VAL, EVAL_BATCH = 44, 23, 5
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]

# conv -> aux head (a GoogLeNet-style side classifier) -> conv -> linear: in training mode the
# model returns a ModelOutput, which has to pass through DDP. No BatchNorm or dropout: those
# legitimately differ between one batch of 8 and two of 4.
TINY_MODEL = """
name: tiny_aux
layers:
  - [conv, {out: 4, kernel: 3, padding: 1, as: stem}]
  - [aux_head, {from: stem, weight: 0.3, layers: [gap, flatten, [linear, {out: 3}]]}]
  - relu
  - [conv, {out: 6, kernel: 3, stride: 2}]
  - relu
  - flatten
  - [linear, {out: 3}]
"""


def dataset(n: int, split: str, seed: int, labels: torch.Tensor = None) -> InMemoryDataset:
    """Random 3x8x8 uint8 images with no zero pixels, so crop padding shows."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(1, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=generator)
    return InMemoryDataset("test", split, images, torch.arange(n) % 3 if labels is None else labels)


def train_loader(data, batch_size, rank=0, world_size=1, seed=7) -> DeviceLoader:
    # The cifar augmentation: zero-padded random crops and mirrors.
    return DeviceLoader(data, batch_size, CPU, MEAN, STD, train=True, seed=seed, crop_padding=2, hflip=True,
                        rank=rank, world_size=world_size)


def val_loader(data, rank=0, world_size=1) -> DeviceLoader:
    return DeviceLoader(data, EVAL_BATCH, CPU, MEAN, STD, train=False, rank=rank, world_size=world_size)


# --------------------------------------------------------------------------- sharding (no processes needed)


def test_training_shards_make_up_the_one_process_batches_with_the_same_augmentation():
    data = dataset(N_TRAIN, "train", seed=1, labels=torch.arange(N_TRAIN))  # label = sample index
    for epoch in (0, 1):
        one = train_loader(data, WORLD * BATCH)
        ranks = [train_loader(data, BATCH, rank, WORLD) for rank in range(WORLD)]
        for loader in [one, *ranks]:
            loader.set_epoch(epoch)
        assert len(one) == N_TRAIN // (WORLD * BATCH) == 5
        assert all(len(loader) == len(one) and loader.batch_size == BATCH for loader in ranks)
        for b, ((images, labels), *shards) in enumerate(zip(one, *ranks)):
            assert torch.equal(torch.cat([shard_labels for _, shard_labels in shards]), labels)
            # Same pixels: the same crop offset and mirror for each sample, on every rank.
            assert torch.equal(torch.cat([shard_images for shard_images, _ in shards]), images)
            assert all(len(shard_labels) == BATCH for _, shard_labels in shards)
        # Not vacuous: 40 distinct samples an epoch (4 left over), and crops and mirrors that change pixels.
        assert len(torch.cat([labels for _, labels in one]).unique()) == 40
        images, labels = next(iter(one))
        unaugmented = (data.images[labels].float() - one.shift) * one.scale
        assert not torch.equal(images, unaugmented)


def test_evaluation_shards_are_contiguous_disjoint_and_cover_every_sample_once():
    data = dataset(N_VAL, "val", seed=2, labels=torch.arange(N_VAL))
    parts = [torch.cat([labels for _, labels in val_loader(data, rank, WORLD)]) for rank in range(WORLD)]
    assert [len(part) for part in parts] == [11, 12]
    assert torch.equal(torch.cat(parts), torch.arange(N_VAL))  # in order, each once, no padding
    images = torch.cat([images for rank in range(WORLD) for images, _ in val_loader(data, rank, WORLD)])
    assert torch.equal(images, torch.cat([images for images, _ in val_loader(data)]))
    # More ranks than samples: some ranks get nothing, none gets a duplicate.
    tiny = [shard_positions(3, 2, rank, 5, train=False).tolist() for rank in range(5)]
    assert sorted(sum(tiny, [])) == [0, 1, 2] and [] in tiny
    with pytest.raises(ValueError, match="rank 2 is not one of the 2 ranks"):
        shard_positions(10, 2, rank=2, world_size=2)


def test_folder_sampler_shards_follow_the_same_rule():
    one = EpochSampler(45, seed=3, shuffle=True)  # one process: every key; its DataLoader drops the last 5
    ranks = [EpochSampler(45, seed=3, shuffle=True, batch_size=BATCH, rank=rank, world_size=WORLD) for rank in range(2)]
    for sampler in [one, *ranks]:
        sampler.set_epoch(2)
    keys, shards = list(one), [list(sampler) for sampler in ranks]
    assert len(one) == 45 and all(len(shard) == 20 == len(sampler) for shard, sampler in zip(shards, ranks))
    for b in range(5):
        global_batch = keys[b * 2 * BATCH:(b + 1) * 2 * BATCH]  # (index, augmentation seed) pairs
        assert shards[0][b * BATCH:(b + 1) * BATCH] + shards[1][b * BATCH:(b + 1) * BATCH] == global_batch
    evaluation = [list(EpochSampler(45, 0, shuffle=False, rank=rank, world_size=WORLD)) for rank in range(2)]
    assert evaluation[0] + evaluation[1] == [(index, 0) for index in range(45)]


# --------------------------------------------------------------------------- DDP on 2 processes


def train_and_evaluate(ctx: DistributedContext, batch_size: int) -> dict:
    """A few SGD steps on rank ``ctx.rank``'s shard, then all-reduced evaluation totals.

    The same function runs as the one-process reference (world size 1: no
    DDP, no-op reductions) and inside each launched worker.
    """
    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    spec = OmegaConf.to_container(OmegaConf.create(TINY_MODEL))
    model = wrap_model(build_model(spec, (3, 8, 8)), ctx, sync_batchnorm=False)
    initial = {name: value.clone() for name, value in unwrap(model).state_dict().items()}
    optimizer = torch.optim.SGD(unwrap(model).parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loader = train_loader(dataset(N_TRAIN, "train", seed=1), batch_size, ctx.rank, ctx.world_size)
    outputs = []
    for epoch in range(2):
        loader.set_epoch(epoch)
        for images, labels in loader:
            output = model(images)
            outputs.append(type(output).__name__)
            loss = classification_loss(output, labels)  # the mean over the local batch
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    model.eval()
    totals = torch.zeros(4, dtype=torch.float64)  # top-1 correct, top-2 correct, loss sum, count
    with torch.no_grad():
        for images, labels in val_loader(dataset(N_VAL, "val", seed=2), ctx.rank, ctx.world_size):
            logits = main_logits(unwrap(model)(images))
            totals[:2] += topk_correct(logits, labels, [1, 2]).double()
            totals[2] += F.cross_entropy(logits, labels, reduction="sum").double()
            totals[3] += len(labels)
    all_reduce_sum(totals)
    return {"initial": initial, "final": unwrap(model).state_dict(), "totals": totals, "outputs": outputs,
            "steps": len(outputs), "run_dir": broadcast_object(f"outputs/run-of-rank-{ctx.rank}")}


def ddp_worker() -> dict:
    ctx = setup("cpu", timeout_s=60)
    try:
        assert ctx.world_size == WORLD and ctx.is_main == (ctx.rank == 0)
        torch.set_num_threads(1)
        result = train_and_evaluate(ctx, BATCH)
        norm = torch.nn.BatchNorm1d(2)
        norm.running_mean.fill_(ctx.rank + 1.0)  # as if each rank's last local batch had updated it
        broadcast_buffers(norm)
        result["running_mean"] = norm.running_mean
        result["gathered"] = all_gather_object(("rank", ctx.rank))
        barrier()
        return result
    finally:
        teardown()


def test_two_ranks_reach_the_one_process_weights_and_metrics():
    reference = train_and_evaluate(DistributedContext(), WORLD * BATCH)
    ranks = launch(WORLD, ddp_worker)
    assert reference["steps"] == 10 and set(reference["outputs"]) == {"ModelOutput"}
    for result in ranks:
        assert result["steps"] == 10 and set(result["outputs"]) == {"ModelOutput"}
        assert result["run_dir"] == "outputs/run-of-rank-0"  # rank 0's choice reaches every rank
        assert torch.equal(result["running_mean"], torch.ones(2))  # rank 0's buffers
        assert result["gathered"] == [("rank", 0), ("rank", 1)]
    for name, weight in reference["final"].items():
        assert not torch.allclose(weight, reference["initial"][name], atol=1e-3), f"{name} did not train"
        assert torch.equal(ranks[0]["final"][name], ranks[1]["final"][name])  # DDP keeps the ranks in step
        torch.testing.assert_close(ranks[0]["final"][name], weight, rtol=0, atol=1e-6, msg=name)
    # Counts add up exactly; the loss sum up to float rounding (other batch boundaries).
    one, two = reference["totals"], ranks[0]["totals"]
    assert torch.equal(two, ranks[1]["totals"])
    assert two[3] == N_VAL and torch.equal(two[:2], one[:2]) and 0 < one[0] < N_VAL
    torch.testing.assert_close(two[2], one[2], rtol=1e-6, atol=0)


def failing_worker(error: str) -> None:
    ctx = setup("cpu", timeout_s=60)
    try:
        if ctx.rank == 1:
            if error == "SIGKILL":  # what the kernel's out-of-memory killer does: no exception, no clean-up
                os.kill(os.getpid(), signal.SIGKILL)
            raise UserError("data.root is wrong") if error == "UserError" else ValueError("rank 1 gives up")
        barrier()  # rank 0 waits here for a rank that will never come: the launcher must stop it
    finally:
        teardown()


@pytest.mark.parametrize("error, raised, message", [
    ("ValueError", RunFailed, "^worker rank 1 of the distributed run failed: ValueError: rank 1 gives up"),
    ("UserError", UserError, "^data.root is wrong$"),
    ("SIGKILL", RunFailed, r"^worker rank 1 of the distributed run was killed by signal SIGKILL \(and 1 other rank"),
])
def test_a_failing_worker_fails_the_launch(error, raised, message):
    with pytest.raises(raised, match=message) as failed:
        launch(WORLD, failing_worker, error)
    assert len(str(failed.value).splitlines()) == 1
    if error == "SIGKILL":
        assert str(failed.value).endswith("see `dmesg`; try fewer data.workers)")


class FakeLaunchFailure:
    """What torch's launcher raises (ChildFailedError) when the first rank it saw fail did not raise."""

    def __init__(self, rank: int, exitcode: int):
        self.failures = {rank: SimpleNamespace(exitcode=exitcode, timestamp=time.time())}


def test_a_rank_that_hung_is_reported_by_the_rank_that_gave_up_waiting(tmp_path):
    # Rank 0's collective timed out (its error file); rank 1, stopped, was killed by the launcher.
    report = tmp_path / "run" / "attempt_0" / "0" / "error.json"
    report.parent.mkdir(parents=True)
    worker_failed = f"WorkerFailed: {time.time():.6f} peer DistBackendError: Timed out waiting 60000ms for recv"
    report.write_text(json.dumps({"message": {"message": worker_failed, "extraInfo": {"py_callstack": "Traceback"}}}))
    error = worker_error(FakeLaunchFailure(0, 1), str(tmp_path))
    assert isinstance(error, RunFailed)
    assert str(error) == ("worker rank 0 of the distributed run gave up waiting for another rank, which hung or died: "
                          "DistBackendError: Timed out waiting 60000ms for recv")
    assert str(worker_error(FakeLaunchFailure(1, -int(signal.SIGSEGV)), str(tmp_path / "none"))) == (
        "worker rank 1 of the distributed run was killed by signal SIGSEGV")


def test_a_dataloader_worker_death_is_one_line():
    killed = RuntimeError("DataLoader worker (pid(s) 4242) exited unexpectedly")
    killed.__cause__ = RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. ")
    assert dataloader_worker_death(killed).startswith("DataLoader worker (pid 4242) was killed by signal SIGKILL (")
    crashed = RuntimeError("DataLoader worker (pid 7) exited unexpectedly with exit code 1. Details are lost due to "
                           "multiprocessing. Rerunning with num_workers=0 may give better error trace.")
    assert dataloader_worker_death(crashed) == (
        "DataLoader worker (pid 7) was ended with exit code 1 without an error message")
    assert dataloader_worker_death(RuntimeError("CUDA out of memory")) is None


class StuckDataset(torch.utils.data.Dataset):
    """Every item takes longer than the loader's timeout: a hung worker."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        time.sleep(30)
        return index


def test_a_hung_dataloader_worker_is_one_line():
    """torch's own timeout message, as a DataLoader with `timeout` raises it (the folder loader
    sets one), becomes one line; a changed wording in torch would fail here."""
    loader = torch.utils.data.DataLoader(StuckDataset(), num_workers=1, timeout=1)
    with pytest.raises(RuntimeError) as caught:
        next(iter(loader))
    assert dataloader_worker_death(caught.value) == (
        "DataLoader workers gave no batch in 1 s: a worker hung (a stalled file system, or a decoder "
        "stuck on a file)")


def test_one_process_needs_no_process_group(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    ctx = setup("cpu", timeout_s=1)
    assert (ctx.rank, ctx.world_size, ctx.device, ctx.is_main) == (0, 1, CPU, True)
    assert not torch.distributed.is_initialized()
    model = torch.nn.Linear(2, 2)
    assert wrap_model(model, ctx, sync_batchnorm=True) is model
    assert torch.equal(all_reduce_sum(torch.tensor([3.0])), torch.tensor([3.0]))
    assert broadcast_object({"a": 1}) == {"a": 1} and all_gather_object(5) == [5]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(UserError, match="MASTER_ADDR and MASTER_PORT not set"):
        setup("cpu", timeout_s=1)
