"""`cnnbench eval checkpoint=PATH`: evaluate a saved run on its own dataset."""

from __future__ import annotations

import gc
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from cnnbench.engine.distributed import dataloader_worker_death
from cnnbench.engine.evaluate import evaluate_checkpoint
from cnnbench.errors import RunFailed


def eval_command(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    keys = [override.split("=", 1)[0].lstrip("+~") for override in hydra_cfg.overrides.task]
    try:
        results = evaluate_checkpoint(cfg, Path(hydra_cfg.runtime.output_dir), [k for k in keys if k.startswith("eval.")])
    except RuntimeError as err:
        death = dataloader_worker_death(err)
        if death is None:
            raise
    else:
        return results["top1"]
    # As in `cnnbench train`: the error's frames hold the loaders; collected now, they shut
    # their other workers down instead of leaving them for the interpreter's exit to wait on.
    gc.collect()
    raise RunFailed(death)
