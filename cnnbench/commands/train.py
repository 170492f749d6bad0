"""`cnnbench train`: the run folder Hydra made, resuming, and one or several processes."""

from __future__ import annotations

import logging
import logging.config
import os
import signal
from pathlib import Path
from typing import Optional

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.distributed.elastic.multiprocessing.api import SignalException

from cnnbench.commands.resume import checkpoint_to_resume, resumed_config
from cnnbench.config import plain
from cnnbench.engine.checkpoint import load_checkpoint
from cnnbench.engine.distributed import launch
from cnnbench.engine.preemption import Preempted
from cnnbench.engine.train import train
from cnnbench.errors import UserError
from cnnbench.validate import validate

log = logging.getLogger("cnnbench")


def train_command(cfg: DictConfig) -> Optional[float]:
    hydra_cfg = HydraConfig.get()
    model_file = hydra_cfg.runtime.choices.get("model")
    source = f"conf/model/{model_file}.yaml" if model_file else None
    run_dir = Path(hydra_cfg.runtime.output_dir)
    checkpoint = None
    if cfg.trainer.resume:
        checkpoint = load_checkpoint(checkpoint_to_resume(cfg.trainer.resume, run_dir))
        cfg = resumed_config(checkpoint["config"], cfg, list(hydra_cfg.overrides.task))
    validate(cfg)
    devices = process_count(cfg.trainer)
    if devices > 1 and "WORLD_SIZE" not in os.environ:
        # trainer.devices=N: start N workers the way torchrun would; this
        # process owns the run folder and waits for them.
        log_config = OmegaConf.to_container(hydra_cfg.job_logging, resolve=True)
        config = plain(cfg)
        try:
            results = launch(devices, train_worker, config, str(run_dir), source, log_config)[0]
        except SignalException as stop:  # this process was told to stop; the workers saved and stopped
            log.info(f"stopped by {signal_name(stop.sigval)}; continue with: cnnbench train trainer.resume={run_dir}")
            raise SystemExit(0) from None
    else:
        results = train_worker(cfg, str(run_dir), source, checkpoint=checkpoint)
    if results is None:  # preempted: stop the whole command, a sweep's later jobs too
        raise SystemExit(0)
    return results["top1"]  # what a Hydra sweeper optimises


def train_worker(cfg, run_dir: str, source: Optional[str], log_config: Optional[dict] = None,
                 checkpoint: Optional[dict] = None) -> Optional[dict]:
    """One process's training (the only one, or one of several); None when it was stopped."""
    if log_config is not None and os.environ.get("RANK", "0") == "0":
        logging.config.dictConfig(log_config)  # a started worker logs like the Hydra job
    cfg = OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg
    if cfg.trainer.resume and checkpoint is None:  # a started worker reads the checkpoint itself
        checkpoint = load_checkpoint(checkpoint_to_resume(cfg.trainer.resume, Path(run_dir)))
    try:
        return train(cfg, Path(run_dir), source, checkpoint)
    except Preempted as stop:
        log.info(str(stop))
        return None


def signal_name(signum) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def process_count(trainer: DictConfig) -> int:
    if trainer.devices == -1:
        count = torch.cuda.device_count()
        if count == 0:
            raise UserError("trainer.devices=-1 starts one process per GPU, but torch sees no CUDA GPU")
        return count
    return trainer.devices
