"""`cnnbench eval checkpoint=PATH`: evaluate a saved run on its own dataset."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from cnnbench.engine.distributed import reporting_worker_deaths
from cnnbench.engine.evaluate import evaluate_checkpoint


def eval_command(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    keys = [override.split("=", 1)[0].lstrip("+~") for override in hydra_cfg.overrides.task]
    eval_keys = [k for k in keys if k.startswith("eval.")]
    results = reporting_worker_deaths(evaluate_checkpoint, cfg, Path(hydra_cfg.runtime.output_dir), eval_keys)
    return results["top1"]
