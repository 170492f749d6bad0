"""`trainer.resume`: which checkpoint to continue from, and in which folder.

A resumed run continues in its own run folder: the CLI points Hydra's
``hydra.run.dir`` at it before the run starts, so checkpoints, metrics,
TensorBoard events and the log all carry on where they were.

- ``trainer.resume=PATH``: a checkpoint file (its run folder is two levels
  up) or a run folder (its ``checkpoints/last.pt``);
- ``trainer.resume=auto``: the run folder given with ``hydra.run.dir`` (or
  each job's folder of a sweep given with ``hydra.sweep.dir``), else the
  newest run under ``./outputs`` of the same model on the same data.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from omegaconf import OmegaConf

from cnnbench.errors import UserError

LAST = Path("checkpoints") / "last.pt"
# Command lines that start no run, or say themselves where it goes.
LEAVE_ALONE = ("-m", "--multirun", "--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i", "hydra.run.dir=")


def checkpoint_to_resume(resume: str, run_dir: Path) -> Path:
    """The checkpoint a training run continues from (the run folder's own for `auto`)."""
    if resume == "auto":
        if not (run_dir / LAST).is_file():
            raise UserError(f"trainer.resume=auto: {run_dir} has no {LAST} to continue from")
        return run_dir / LAST
    return Path(resume)


def continue_in_run_folder(hydra_args: List[str]) -> List[str]:
    """The command line with ``hydra.run.dir`` pointed at the run that ``trainer.resume`` continues."""
    if any(arg.startswith(LEAVE_ALONE) for arg in hydra_args):
        return hydra_args
    values = [arg.split("=", 1)[1] for arg in hydra_args if arg.startswith("trainer.resume=")]
    if not values or values[-1] in ("", "null"):
        return hydra_args
    if values[-1] == "auto":
        folder = newest_run_of(*model_and_data(hydra_args))
    else:
        path = Path(values[-1])
        if path.is_file():
            folder = path.parent.parent
        elif (path / LAST).is_file():
            folder = path
        else:
            raise UserError(f"trainer.resume={path}: no such checkpoint file or run folder with {LAST}")
    return [*hydra_args, f"hydra.run.dir='{folder}'"]


def model_and_data(hydra_args: List[str]) -> tuple:
    """model.name and data.name of the run this command line describes (composed, not run)."""
    from hydra import compose, initialize_config_dir

    from cnnbench.config import CONF_DIR

    overrides = [arg for arg in hydra_args if not arg.startswith(("hydra.", "trainer.resume="))]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="train", overrides=overrides)
    return cfg.model.name, cfg.data.name


def newest_run_of(model: str, data: str, outputs: Path = Path("outputs")) -> Path:
    candidates = []
    for last in outputs.glob(f"**/{LAST}"):
        folder = last.parent.parent
        config = folder / "config.yaml"
        if config.is_file():
            cfg = OmegaConf.load(config)
            if cfg.model.name == model and cfg.data.name == data:
                candidates.append((last.stat().st_mtime, folder))
    if not candidates:
        raise UserError(f"trainer.resume=auto found no run of model {model} on data {data} with {LAST} under ./{outputs}")
    return max(candidates)[1]
