"""Every range and cross-key rule of a composed config, checked in one place.

Hydra and the schema (cnnbench/config.py) already refuse unknown keys,
wrong types and unknown choices while composing; :func:`validate` holds
what a type cannot say (ranges, keys that must agree). It runs before any
folder, dataset or model is touched, so a mistake costs nothing.
"""

from __future__ import annotations

from omegaconf import DictConfig

from cnnbench.errors import UserError


def validate(cfg: DictConfig) -> None:
    """Raise UserError, in one line naming the key, for the first rule ``cfg`` breaks."""
    trainer = cfg.trainer
    if trainer.epochs < 1:
        raise UserError(f"trainer.epochs must be at least 1, got {trainer.epochs}")
    if cfg.data.batch_size < 1:
        raise UserError(f"data.batch_size must be at least 1, got {cfg.data.batch_size}")
    if trainer.log_every_n_steps < 1:
        raise UserError(f"trainer.log_every_n_steps must be at least 1, got {trainer.log_every_n_steps}")
    if trainer.threads is not None and trainer.threads < 1:
        raise UserError(f"trainer.threads must be at least 1 (or null for torch's default), got {trainer.threads}")
    if not 0 <= cfg.regularization.label_smoothing < 1:
        raise UserError(f"regularization.label_smoothing must be in [0, 1), got {cfg.regularization.label_smoothing}")
    if trainer.checkpoint_every_n_steps < 0:
        raise UserError(f"trainer.checkpoint_every_n_steps must be >= 0, got {trainer.checkpoint_every_n_steps}")
    if trainer.devices != -1 and trainer.devices < 1:
        raise UserError(f"trainer.devices must be a number of processes (>= 1) or -1 (one per GPU), got {trainer.devices}")
