"""Optimizer and learning-rate schedule from the `optim`, `schedule` and `regularization` groups."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from cnnbench.errors import UserError

OPTIMIZERS = ("sgd",)
SCHEDULES = ("cosine", "step")


def make_optimizer(cfg: DictConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum and L2 weight decay (coupled, as in AlexNet/Caffe) from `regularization`."""
    reg = cfg.regularization
    if cfg.optim.name not in OPTIMIZERS:
        raise UserError(f"optim.name '{cfg.optim.name}' is unknown; choose one of: {', '.join(OPTIMIZERS)}")
    if cfg.optim.lr <= 0:
        raise UserError(f"optim.lr must be positive, got {cfg.optim.lr}")
    if not 0 <= reg.momentum < 1:
        raise UserError(f"regularization.momentum must be in [0, 1), got {reg.momentum}")
    if reg.weight_decay < 0:
        raise UserError(f"regularization.weight_decay must be >= 0, got {reg.weight_decay}")
    if cfg.optim.nesterov and reg.momentum == 0:
        raise UserError("optim.nesterov=true needs regularization.momentum > 0")
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.optim.lr,
        momentum=reg.momentum,
        weight_decay=reg.weight_decay,
        nesterov=cfg.optim.nesterov,
    )


@dataclass
class LrMultiplier:
    """The factor on optim.lr at a given optimizer step (a picklable LambdaLR function)."""

    name: str
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    step_size: int
    gamma: float
    final_lr_fraction: float

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.name == "step":
            return self.gamma ** (step // (self.step_size * self.steps_per_epoch))
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return self.final_lr_fraction + (1.0 - self.final_lr_fraction) * cosine


def make_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """A per-step LambdaLR: call ``scheduler.step()`` after every optimizer step."""
    sched = cfg.schedule
    if sched.name not in SCHEDULES:
        raise UserError(f"schedule.name '{sched.name}' is unknown; choose one of: {', '.join(SCHEDULES)}")
    if sched.name == "step" and sched.step_size < 1:
        raise UserError(f"schedule.step_size must be at least 1 epoch, got {sched.step_size}")
    multiplier = LrMultiplier(
        name=sched.name,
        steps_per_epoch=steps_per_epoch,
        total_steps=steps_per_epoch * cfg.trainer.epochs,
        warmup_steps=round(sched.warmup_epochs * steps_per_epoch),
        step_size=sched.step_size,
        gamma=sched.gamma,
        final_lr_fraction=sched.final_lr_fraction,
    )

    # A plain function, not the dataclass itself: LambdaLR saves a callable
    # object's fields in its state_dict and restores them on resume, which
    # would keep the old run's length when a resumed run trains longer.
    def lr_factor(step: int) -> float:
        return multiplier(step)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
