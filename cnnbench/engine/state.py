"""Where a training run is, in one object that saves and restores itself.

:class:`TrainState` holds the position (finished epochs, steps into the
current one), the best epoch, the per-epoch history, the running sums of
the epoch in progress and, in its checkpoint form, every process's random
streams. With the weights, optimizer, schedule and scaler, that is all a
run needs to go on exactly where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List, Optional

import torch

from cnnbench.engine.checkpoint import restore_rng, rng_state
from cnnbench.engine.distributed import all_gather_object, all_reduce_sum
from cnnbench.engine.metrics import topk_correct
from cnnbench.errors import UserError


class EpochSums:
    """Training loss and top-1 of an epoch, accumulated on the device (no host sync per step)."""

    def __init__(self, device: torch.device, saved: Optional[dict] = None):
        saved = saved or {}
        self.loss = saved.get("loss", torch.zeros((), dtype=torch.float64)).to(device)
        self.correct = saved.get("correct", torch.zeros((), dtype=torch.long)).to(device)
        self.seen = saved.get("seen", 0)

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.loss += loss.double() * len(labels)
        self.correct += topk_correct(logits, labels, [1])[0]
        self.seen += len(labels)

    def state(self) -> dict:
        return {"loss": self.loss.cpu(), "correct": self.correct.cpu(), "seen": self.seen}

    def result(self) -> dict:
        """The epoch's mean loss and top-1 over every process's samples."""
        loss, correct = all_reduce_sum(self.loss.clone()), all_reduce_sum(self.correct.clone())
        seen = int(all_reduce_sum(torch.tensor(self.seen, device=self.loss.device)).item())
        return {"loss": loss.item() / max(seen, 1), "top1": 100.0 * correct.item() / max(seen, 1)}


@dataclass
class TrainState:
    epoch: int = 0  # finished epochs
    step: int = 0  # optimizer steps done in the current epoch
    best_top1: float = -1.0
    best_epoch: Optional[int] = None
    history: List[dict] = field(default_factory=list)  # one record per finished epoch
    sums: Optional[EpochSums] = None  # the epoch in progress
    resumed_from: Optional[str] = None
    # Seconds the earlier segments of a resumed run took (up to their last checkpoint), so
    # results.json's wall time is the whole run's, not the last segment's.
    previous_wall_time_s: float = 0.0
    # Not saved: when this process's segment of the run started (time.perf_counter()),
    # and what the epoch in progress started with, in this process's life.
    started: float = field(default_factory=time.perf_counter)
    epoch_lr: float = 0.0
    segment_start: tuple = (0.0, 0)  # (time, step) this process began the epoch at
    _saved_sums: Optional[dict] = None

    @property
    def metrics(self) -> dict:
        """The last finished epoch's validation metrics."""
        return self.history[-1]["val"] if self.history else {}

    def wall_time(self) -> float:
        """Seconds the whole run has taken so far, every segment of a resumed run counted."""
        return self.previous_wall_time_s + time.perf_counter() - self.started

    def start_epoch(self, device: torch.device, lr: float) -> None:
        self.sums = EpochSums(device, self._saved_sums)
        self._saved_sums = None
        self.epoch_lr = lr
        self.segment_start = (time.perf_counter(), self.step)

    def finish_epoch(self, record: dict) -> bool:
        """Record a finished epoch; True if its val top-1 is the best so far."""
        is_best = record["val"]["top1"] > self.best_top1
        if is_best:
            self.best_top1, self.best_epoch = record["val"]["top1"], record["epoch"]
        self.history.append(record)
        self.epoch, self.step, self.sums = record["epoch"], 0, None
        return is_best

    def state_dict(self) -> dict:
        """The checkpoint's part of the state. Collective: every process hands in its
        random streams and running sums (call it on all of them)."""
        ranks = all_gather_object({"rng": rng_state(), "sums": self.sums.state() if self.sums is not None else None})
        progress = {"epoch": self.epoch, "step": self.step, "best_top1": self.best_top1,
                    "best_epoch": self.best_epoch, "history": self.history, "wall_time_s": self.wall_time()}
        return {"epoch": self.epoch, "metrics": self.metrics, "progress": progress, "ranks": ranks}

    def load_state_dict(self, checkpoint: dict, rank: int, world_size: int) -> None:
        """Go on from ``checkpoint``: its position, sums and this process's random streams."""
        if "progress" not in checkpoint:
            raise UserError(f"{checkpoint['path']} was written by an older cnnbench and cannot be resumed; start a new run")
        progress = checkpoint["progress"]
        self.epoch, self.step = progress["epoch"], progress["step"]
        self.best_top1, self.best_epoch = progress["best_top1"], progress["best_epoch"]
        self.history = list(progress["history"])
        self.previous_wall_time_s = float(progress.get("wall_time_s", 0.0))
        ranks = checkpoint["ranks"]
        if len(ranks) != world_size and self.step > 0:
            raise UserError(
                f"{checkpoint['path']} was taken mid-epoch by {len(ranks)} process(es); resume it with "
                f"trainer.devices={len(ranks)}, or from an end-of-epoch checkpoint"
            )
        mine = ranks[min(rank, len(ranks) - 1)]
        self._saved_sums = mine["sums"]
        restore_rng(mine["rng"])
        self.resumed_from = checkpoint["path"]
