"""`trainer.resume`: which checkpoint to continue from, and in which folder.

A resumed run continues in its own run folder: the CLI points Hydra's
``hydra.run.dir`` at it before the run starts, so checkpoints, metrics,
TensorBoard events and the log all carry on where they were.

- ``trainer.resume=PATH``: a checkpoint file (its run folder is two levels
  up) or a run folder (its ``checkpoints/last.pt``);
- ``trainer.resume=auto``: the run folder given with ``hydra.run.dir`` (or
  each job's folder of a sweep given with ``hydra.sweep.dir``), else the
  newest run under ``./outputs`` of the same model on the same data.

A resumed run does not rewrite the run's ``.hydra/`` record (the command
line that started it): the CLI sets ``hydra.output_subdir=null`` for it, and
each resume's command line is appended to ``<run>/resume_history.yaml``.
A command line that is not a resume never trains into a folder that already
holds a run (checkpoints/ or results.json).

The resumed run keeps the run's own config. Only where and how it runs may
change on the resuming command line (``trainer.*``, ``eval.*``, and where
the data lives); any other override must agree with the run, so a run never
ends with settings it did not start with.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import List, Optional

from omegaconf import DictConfig, OmegaConf

from cnnbench.engine.preemption import hydra_quoted
from cnnbench.errors import RunFailed, UserError

LAST = Path("checkpoints") / "last.pt"
# Flags of command lines that start no run, or sweep (each job finds its own folder).
LEAVE_ALONE = {"-m", "--multirun", "--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i"}
# What a resuming command line may change: how and where the run goes on.
# What Hydra writes into a run folder before the command starts (the record and the log).
HYDRA_RECORD, LOG_FILE = ".hydra", "train.log"
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
    """The command line with ``hydra.run.dir`` pointed at the run that ``trainer.resume`` continues,
    and Hydra's record left as the run first wrote it; a new run refused in a folder in use."""
    if any(arg in ("-m", "--multirun") for arg in hydra_args) and continues_sweep(hydra_args):
        # Hydra would rewrite each job's .hydra/ before the job starts; the job writes it when
        # it runs anew (commands/sweep.py), and leaves a finished or resumed job's as it was.
        return [*hydra_args, "hydra.output_subdir=null"]
    if any(arg in LEAVE_ALONE for arg in hydra_args):
        return hydra_args
    run_dir, resume = override_value(hydra_args, "hydra.run.dir"), override_value(hydra_args, "trainer.resume")
    if resume in (None, ""):
        if run_dir is not None and run_folder_in_use(Path(run_dir)):
            raise UserError(folder_in_use_message(Path(run_dir)))
        return hydra_args
    # A resumed run keeps .hydra/ as it was first written (the command line that started it).
    keep_record = "hydra.output_subdir=null"
    if run_dir is not None:
        return [*hydra_args, keep_record] if (Path(run_dir) / LAST).is_file() else hydra_args
    folder = run_folder_of(resume, hydra_args)
    if folder is None:
        return hydra_args  # a checkpoint on its own: the run goes on in a new folder
    return [*hydra_args, f"hydra.run.dir={hydra_quoted(str(folder))}", keep_record]


def continues_sweep(hydra_args: List[str]) -> bool:
    """Whether this ``-m`` command line runs a sweep in the folder of an earlier one (hydra.sweep.dir)."""
    if any(arg in LEAVE_ALONE - {"-m", "--multirun"} for arg in hydra_args):
        return False
    sweep_dir = override_value(hydra_args, "hydra.sweep.dir")
    return sweep_dir is not None and Path(sweep_dir).is_dir() and any(Path(sweep_dir).iterdir())


def run_folder_of(resume: str, hydra_args: List[str]) -> Optional[Path]:
    """The run folder ``trainer.resume=RESUME`` continues; None for a checkpoint kept outside one."""
    if resume == "auto":
        return newest_run_of(*model_and_data(hydra_args))
    path = Path(resume)
    if path.is_dir() and (path / LAST).is_file():
        return path
    if path.is_file() and path.parent.name == LAST.parent.name and (path.parent.parent / "config.yaml").is_file():
        return path.parent.parent  # a checkpoint inside a run folder
    if path.is_file():
        return None
    raise UserError(f"trainer.resume={path}: no such checkpoint file, or run folder with {LAST}")


def override_value(hydra_args: List[str], key: str) -> Optional[str]:
    """The value the last ``key=...`` of the command line gives, as Hydra reads it (quotes
    and escapes undone); None when it is absent, null, or not a plain value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = [arg for arg in hydra_args if arg.split("=", 1)[0].lstrip("+~") == key and "=" in arg]
    if not given:
        return None
    try:
        value = OverridesParser.create().parse_overrides([given[-1]])[0].value()
    except Exception:  # noqa: BLE001 - a malformed override: Hydra reports it in one line later
        return None
    return value if isinstance(value, str) else None


def run_folder_in_use(folder: Path) -> bool:
    """Whether ``folder`` already holds a run, which a new run would overwrite."""
    return (folder / LAST.parent).is_dir() or (folder / "results.json").exists()


def folder_in_use_message(folder: Path) -> str:
    return (f"{folder} already holds a run (checkpoints/ or results.json); continue it with "
            f"trainer.resume={hydra_quoted(str(folder))}, or choose another folder (hydra.run.dir=PATH)")


def discard_job_folder() -> bool:
    """discard_unused_run_folder for the folder of the Hydra job running now."""
    from hydra.core.hydra_config import HydraConfig

    return discard_unused_run_folder(Path(HydraConfig.get().runtime.output_dir))


def discard_unused_run_folder(folder: Path) -> bool:
    """Remove the run folder Hydra made for a run that failed before writing anything (only
    ``.hydra/`` and an empty log), and its parents that this left empty; True if removed."""
    folder = Path(folder)
    if not folder.is_dir() or not set(os.listdir(folder)) <= {HYDRA_RECORD, LOG_FILE}:
        return False
    log_file = folder / LOG_FILE
    if log_file.exists() and log_file.stat().st_size > 0:
        return False
    shutil.rmtree(folder)
    cwd, parent = Path.cwd().resolve(), folder.resolve().parent
    # outputs/<date>/ made for this run alone; never the current folder or above it.
    while parent != cwd and cwd in parent.parents and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent
    return True


def note_error_in_log_file(err: BaseException) -> str:
    """Write ``error: <err's one line>`` to the run's train.log (the console has it on stderr
    already), once: a sweep job's wrapper notes the same error the run noted. Returns the line."""
    error = one_line(err)
    message = f"error: {error}"
    logger = logging.getLogger("cnnbench")
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and not last_line_is(Path(handler.baseFilename), message):
            handler.handle(record)
    return error


def last_line_is(path: Path, message: str) -> bool:
    return path.is_file() and message in (path.read_text(errors="replace").strip().splitlines() or [""])[-1]


def one_line(err: BaseException) -> str:
    """A UserError's or RunFailed's message, or any other error's type and message: its first line."""
    text = str(err) if isinstance(err, (UserError, RunFailed)) else f"{type(err).__name__}: {err}"
    lines = text.strip().splitlines()
    return lines[0] if lines else type(err).__name__


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
        if key.startswith(MAY_CHANGE) or f"{key}." in MAY_CHANGE:  # trainer=cpu: a whole group that may change
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
