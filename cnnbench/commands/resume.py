"""`trainer.resume`: which checkpoint to continue from, and in which folder.

A resumed run continues in its own run folder: the CLI points Hydra's
``hydra.run.dir`` at it before the run starts, so checkpoints, metrics,
TensorBoard events and the log all carry on where they were.

- ``trainer.resume=PATH``: a checkpoint file (its run folder is two levels
  up) or a run folder (its ``checkpoints/last.pt``);
- ``trainer.resume=auto``: the run folder given with ``hydra.run.dir`` (or
  each job's folder of a sweep given with ``hydra.sweep.dir``), else the
  newest run under ``./outputs`` of the same model on the same data.

The resumed run keeps the run's own config. Only where and how it runs may
change on the resuming command line (``trainer.*``, ``eval.*``, and where
the data lives); any other override must agree with the run, so a run never
ends with settings it did not start with.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

from omegaconf import DictConfig, OmegaConf

from cnnbench.errors import UserError

LAST = Path("checkpoints") / "last.pt"
# Flags of command lines that start no run, or sweep (each job finds its own folder).
LEAVE_ALONE = {"-m", "--multirun", "--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i"}
# What a resuming command line may change: how and where the run goes on.
MAY_CHANGE = ("trainer.", "eval.", "data.root", "data.download", "data.workers", "data.gpu_decode",
              "data.on_corrupt", "data.eval_batch_size")


def checkpoint_to_resume(resume: str, run_dir: Path) -> Path:
    """The checkpoint a training run continues from (the run folder's own for `auto`)."""
    if resume == "auto":
        if not (run_dir / LAST).is_file():
            raise UserError(f"trainer.resume=auto: {run_dir} has no {LAST} to continue from")
        return run_dir / LAST
    return Path(resume)


def continue_in_run_folder(hydra_args: List[str]) -> List[str]:
    """The command line with ``hydra.run.dir`` pointed at the run that ``trainer.resume`` continues."""
    if any(arg in LEAVE_ALONE or arg.startswith("hydra.run.dir=") for arg in hydra_args):
        return hydra_args
    values = [arg.split("=", 1)[1] for arg in hydra_args if arg.startswith("trainer.resume=")]
    value = values[-1].strip("'\"") if values else ""
    if value in ("", "null"):
        return hydra_args
    if value == "auto":
        folder = newest_run_of(*model_and_data(hydra_args))
    else:
        path = Path(value)
        if path.is_dir() and (path / LAST).is_file():
            folder = path
        elif path.is_file() and path.parent.name == LAST.parent.name and (path.parent.parent / "config.yaml").is_file():
            folder = path.parent.parent  # a checkpoint inside a run folder
        elif path.is_file():
            return hydra_args  # a checkpoint on its own: the run goes on in a new folder
        else:
            raise UserError(f"trainer.resume={path}: no such checkpoint file, or run folder with {LAST}")
    quoted = str(folder).replace("\\", "\\\\").replace("'", "\\'")
    return [*hydra_args, f"hydra.run.dir='{quoted}'"]


def resumed_config(run_config: dict, new: DictConfig, overrides: List[str]) -> DictConfig:
    """The config a resumed run goes on with: the run's own, plus what the
    command line may change (MAY_CHANGE); another override that disagrees
    with the run is refused."""
    config = OmegaConf.create(run_config)
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key.startswith("hydra"):
            continue
        new_value = OmegaConf.select(new, key, default=None)
        if key.startswith(MAY_CHANGE):
            OmegaConf.update(config, key, new_value, force_add=True)
            continue
        old_value = OmegaConf.select(config, key, default=None)
        as_plain = lambda v: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v  # noqa: E731
        if as_plain(new_value) != as_plain(old_value):
            raise UserError(
                f"{override} changes the run being resumed (it has {key}={as_plain(old_value)!r}); a resumed "
                f"run keeps its settings, only trainer.*, eval.* and where the data lives may change; "
                f"start a new run to change it"
            )
    config.trainer.resume = new.trainer.resume  # set on this command line, perhaps as hydra.run.dir's `auto`
    return config


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
