"""Learning-rate schedules, applied every optimizer step.

The lr of each parameter group is ``optim.lr * group lr_mult * warm-up *
schedule(step) * plateau_scale``. All but the plateau scale are pure
functions of the step, so a resumed run needs only the step count and the
plateau state; changing ``trainer.epochs`` on resume re-plans the rest.

Written by hand rather than with torch's LR schedulers because the papers'
recipes combine pieces (warm-up + any schedule, AlexNet's divide-on-plateau
measured on validation accuracy, Caffe's per-layer lr_mult) that torch only
offers as separate chained schedulers with their own state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from omegaconf import DictConfig

from cnnbench.config import ScheduleName


@dataclass
class ScheduleShape:
    """The factor on the base lr at step ``step`` (before the plateau scale)."""

    name: str
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    step_size: int
    milestones: Sequence[int]
    gamma: float
    power: float
    final_lr_fraction: float
    peak_fraction: float

    def __call__(self, step: int) -> float:
        if self.name == "onecycle":
            return self.one_cycle(step)
        warm = (step + 1) / self.warmup_steps if step < self.warmup_steps else 1.0
        epoch = step // self.steps_per_epoch
        if self.name == "step":
            return warm * self.gamma ** (epoch // self.step_size)
        if self.name == "multistep":
            return warm * self.gamma ** sum(epoch >= m for m in self.milestones)
        progress = min(1.0, max(0, step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        if self.name == "cosine":
            return warm * self.anneal(0.5 * (1.0 + math.cos(math.pi * progress)))
        if self.name == "poly":
            return warm * self.anneal((1.0 - progress) ** self.power)
        return warm  # constant, plateau

    def anneal(self, fraction: float) -> float:
        """From 1 down to final_lr_fraction as ``fraction`` goes from 1 to 0."""
        return self.final_lr_fraction + (1.0 - self.final_lr_fraction) * fraction

    def one_cycle(self, step: int) -> float:
        """Smith & Topin 2019: cosine up from lr/25 to lr over peak_fraction of
        the run, then cosine down to final_lr_fraction."""
        start = 1.0 / 25.0
        peak = max(1, round(self.peak_fraction * self.total_steps))
        if step < peak:
            return start + (1.0 - start) * 0.5 * (1.0 - math.cos(math.pi * step / peak))
        progress = min(1.0, (step - peak) / max(1, self.total_steps - peak))
        return self.anneal(0.5 * (1.0 + math.cos(math.pi * progress)))


class LrSchedule:
    """Sets every parameter group's lr; call ``step()`` after each optimizer
    step and ``end_epoch(val_top1)`` after each evaluation."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, shape: ScheduleShape, cfg: DictConfig):
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.shape = shape
        self.is_plateau = shape.name == "plateau"
        self.patience = cfg.patience
        self.threshold = cfg.threshold
        self.step_count = 0
        self.scale = 1.0
        self.best = -math.inf
        self.bad_epochs = 0
        self.apply()

    def apply(self) -> None:
        factor = self.shape(self.step_count) * self.scale
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr * group.get("lr_mult", 1.0) * factor

    @property
    def lr(self) -> float:
        return self.base_lr * self.shape(self.step_count) * self.scale

    def step(self) -> None:
        self.step_count += 1
        self.apply()

    def end_epoch(self, val_top1: float) -> None:
        """AlexNet section 5: divide the lr by 10 when validation accuracy stops improving."""
        if not self.is_plateau:
            return
        if val_top1 > self.best + self.threshold:
            self.best, self.bad_epochs = val_top1, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                self.scale *= self.shape.gamma
                self.bad_epochs = 0
        self.apply()

    def state_dict(self) -> dict:
        return {"step": self.step_count, "scale": self.scale, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.step_count, self.scale = state["step"], state["scale"]
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]
        self.apply()


def make_schedule(cfg: DictConfig, optimizer: torch.optim.Optimizer, base_lr: float, steps_per_epoch: int) -> LrSchedule:
    """The lr schedule ``cfg.schedule`` describes (its ranges checked by cnnbench.validate.validate)."""
    sched = cfg.schedule
    if sched.name not in ScheduleName.values():
        # ScheduleShape would treat an unknown name as constant: refuse it instead.
        raise ValueError(f"no schedule named {sched.name!r}; choose one of: {', '.join(ScheduleName.values())}")
    shape = ScheduleShape(
        name=sched.name,
        steps_per_epoch=steps_per_epoch,
        total_steps=steps_per_epoch * cfg.trainer.epochs,
        warmup_steps=round(sched.warmup_epochs * steps_per_epoch),
        step_size=sched.step_size,
        milestones=list(sched.milestones),
        gamma=sched.gamma,
        power=sched.power,
        final_lr_fraction=sched.final_lr_fraction,
        peak_fraction=sched.peak_fraction,
    )
    return LrSchedule(optimizer, base_lr, shape, sched)
