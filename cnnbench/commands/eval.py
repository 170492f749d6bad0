"""`cnnbench eval checkpoint=PATH`: evaluate a saved run on its own dataset."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from cnnbench.engine.evaluate import evaluate_checkpoint


def eval_command(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    keys = [override.split("=", 1)[0].lstrip("+~") for override in hydra_cfg.overrides.task]
    results = evaluate_checkpoint(cfg, Path(hydra_cfg.runtime.output_dir), [k for k in keys if k.startswith("eval.")])
    return results["top1"]
