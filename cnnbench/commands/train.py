"""`cnnbench train`: the run folder Hydra made, resuming, and one or several processes."""

from __future__ import annotations

import datetime
import json
import logging
import logging.config
import os
import shlex
import sys
import threading
from pathlib import Path
from typing import List, Optional, Tuple

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from torch.distributed.elastic.multiprocessing.api import SignalException
from tqdm import tqdm

from cnnbench.commands.resume import (
    LAST, checkpoint_to_resume, discard_unused_run_folder, folder_in_use_message, note_error_in_log_file,
    resumed_config, run_folder_in_use,
)
from cnnbench.config import plain
from cnnbench.data.folders import complete_folder_config
from cnnbench.engine.checkpoint import load_checkpoint, write_json, write_text
from cnnbench.engine.distributed import WorkersStopped, launch, reporting_worker_deaths
from cnnbench.engine.knobs import check_knobs_take_effect
from cnnbench.engine.preemption import Preempted, hydra_quoted
from cnnbench.engine.train import check_unfinished, train
from cnnbench.errors import EXIT_STOPPED, UserError
from cnnbench.validate import validate

log = logging.getLogger("cnnbench")
# Each resume's command line, oldest first; .hydra/ keeps the command line that started the run.
RESUME_HISTORY = "resume_history.yaml"


def train_command(cfg: DictConfig) -> Optional[float]:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    # A sweep's job folder stays, failed or not: it holds the job's status.json (commands/sweep.py).
    keep_folder = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        cfg, checkpoint = prepare_run(cfg, hydra_cfg, run_dir)
    except Exception:
        if not keep_folder:
            discard_unused_run_folder(run_dir)  # refused before training: leave no trace
        raise
    try:
        results = run_processes(cfg, hydra_cfg, run_dir, checkpoint)
    except Exception as err:
        if keep_folder or not discard_unused_run_folder(run_dir):
            # The console shows the error (stderr); the run's own record must say why it ended too.
            note_error_in_log_file(err)
        raise
    if results is None:  # stopped by a signal: stop the whole command, a sweep's later jobs too
        raise SystemExit(EXIT_STOPPED)
    record_job(run_dir, cfg, list(hydra_cfg.overrides.task))
    return results["top1"]  # what a Hydra sweeper optimises


def record_job(run_dir: Path, cfg: DictConfig, overrides: List[str]) -> None:
    """Add the run's seed and command-line overrides (a sweep job's own values) to results.json."""
    path = run_dir / "results.json"
    if not path.is_file():
        return
    results = json.loads(path.read_text())
    results.update(seed=cfg.seed, overrides=[o for o in overrides if not o.startswith("hydra.")])
    write_json(path, results)


def prepare_run(cfg: DictConfig, hydra_cfg, run_dir: Path) -> Tuple[DictConfig, Optional[dict]]:
    """The config the run goes on with and the checkpoint it resumes from, every refusal made
    before anything is written."""
    checkpoint = None
    if cfg.trainer.resume:
        checkpoint = load_checkpoint(checkpoint_to_resume(cfg.trainer.resume, run_dir))
        cfg = resumed_config(checkpoint["config"], cfg, list(hydra_cfg.overrides.task))
    elif run_folder_in_use(run_dir):  # e.g. a sweep's job folder, or two runs started in the same second
        raise UserError(folder_in_use_message(run_dir))
    validate(cfg)
    # A folder dataset's null class count and mean/std, found once here, before the model
    # is built for the knob check and before several processes would each compute them.
    complete_folder_config(cfg)
    if checkpoint is None:  # a resumed run was checked when it started
        check_knobs_take_effect(cfg, list(hydra_cfg.overrides.task), hydra_cfg.runtime.choices.get("experiment"))
    if checkpoint is not None:
        check_unfinished(checkpoint["progress"]["epoch"], cfg, run_dir, checkpoint["path"])
        if (run_dir / LAST).is_file():
            record_resume(run_dir, resume_overrides(hydra_cfg, run_dir))
    return cfg, checkpoint


def run_processes(cfg: DictConfig, hydra_cfg, run_dir: Path, checkpoint: Optional[dict]) -> Optional[dict]:
    """The run's results, from this process or the trainer.devices it starts; None when stopped."""
    model_file = hydra_cfg.runtime.choices.get("model")
    source = f"conf/model/{model_file}.yaml" if model_file else None
    devices = process_count(cfg.trainer)
    if devices > 1 and "WORLD_SIZE" not in os.environ:
        # trainer.devices=N: start N workers the way torchrun would; this
        # process owns the run folder and waits for them.
        log_config = OmegaConf.to_container(hydra_cfg.job_logging, resolve=True)
        try:
            return launch(devices, train_worker, plain(cfg), str(run_dir), source, log_config)[0]
        except (SignalException, WorkersStopped):
            # The workers got the signal too (from the process group, or passed on by the
            # launcher); the first one saved and printed the stop line with the resume command.
            return None
    return train_worker(cfg, str(run_dir), source, checkpoint=checkpoint)


def resume_overrides(hydra_cfg, run_dir: Path) -> List[str]:
    """The overrides of the command line that resumed the run. A job of a continued sweep is
    resumed by the sweep (commands/sweep.py), not by its overrides: they get the
    ``trainer.resume`` that does the same for the job alone."""
    overrides = list(hydra_cfg.overrides.task)
    if hydra_cfg.mode == RunMode.MULTIRUN and not any(o.startswith("trainer.resume=") for o in overrides):
        overrides.append(f"trainer.resume={hydra_quoted(str(run_dir))}")
    return overrides


def record_resume(run_dir: Path, overrides: List[str]) -> None:
    """Append this resume's command line to <run>/resume_history.yaml (.hydra/ keeps the first one's)."""
    history = run_dir / RESUME_HISTORY
    entries = OmegaConf.to_container(OmegaConf.load(history)) if history.is_file() else []
    entries.append({
        "at": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["cnnbench", "train", *(shlex.quote(o) for o in overrides)]),
        "overrides": overrides,
    })
    write_text(history, OmegaConf.to_yaml(OmegaConf.create(entries)))


def train_worker(cfg, run_dir: str, source: Optional[str], log_config: Optional[dict] = None,
                 checkpoint: Optional[dict] = None) -> Optional[dict]:
    """One process's training (the only one, or one of several); None when it was stopped.
    A DataLoader worker that died or hung ends it with a RunFailed saying which and how."""
    if log_config is not None:
        # tqdm's default lock is a multiprocessing one, a named semaphore in a started (spawned)
        # worker, which a killed worker leaves for the resource tracker to warn about; no other
        # process shares this one's progress bar, so a thread lock does.
        tqdm.set_lock(threading.RLock())
        if os.environ.get("RANK", "0") == "0":
            logging.config.dictConfig(log_config)  # a started worker logs like the Hydra job
    cfg = OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg
    if cfg.trainer.resume and checkpoint is None:  # a started worker reads the checkpoint itself
        checkpoint = load_checkpoint(checkpoint_to_resume(cfg.trainer.resume, Path(run_dir)))
    try:
        return reporting_worker_deaths(train, cfg, Path(run_dir), source, checkpoint)
    except Preempted as stop:
        log.info(str(stop))
        if log_config is not None:
            exit_stopped_worker()
        return None


def exit_stopped_worker() -> None:
    """End a started worker that saved and stopped, now. Returning would leave it waiting
    for the launcher to collect its result, which a launcher that is itself stopping never
    does: it waits 30 s, past a cluster's usual kill grace period, then kills the worker.
    A normal interpreter exit is no better: torch's native clean-up can take as long."""
    import multiprocessing.util

    logging.shutdown()  # flush the log files first: os._exit skips every clean-up
    sys.stdout.flush()
    sys.stderr.flush()
    # What a multiprocessing child runs before its own os._exit: the finalizers that unlink the
    # named semaphores this process made (tqdm's lock, DataLoader queues), which would otherwise
    # outlive it and make the resource tracker warn about "leaked semaphore objects".
    multiprocessing.util._exit_function()
    os._exit(EXIT_STOPPED)


def process_count(trainer: DictConfig) -> int:
    if trainer.devices == -1:
        count = torch.cuda.device_count()
        if count == 0:
            raise UserError("trainer.devices=-1 starts one process per GPU, but torch sees no CUDA GPU")
        return count
    return trainer.devices
