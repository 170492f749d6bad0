"""Shared test helpers: run a command in this process, or the real CLI in a subprocess.

Most tests are about what a run produces (its folder, numbers, console
lines); they run the command in-process with :func:`run_command`, which
composes the config with Hydra's compose API and runs the command function
as a Hydra job (``hydra.core.utils.run_job``, what Hydra's own launcher
calls), so the run sees what a real one does: ``HydraConfig`` with the run
folder, the command line's overrides and the config choices, the ``.hydra/``
record, and the job logging of ``conf/hydra/job_logging`` (the console lines
and ``<run folder>/train.log``). No Python start-up, torch import or Hydra
set-up per run: seconds saved on each.

The CLI proper (exit status, one line on stderr, ``--help``, ``--cfg``,
sweeps, ``python -m cnnbench``) is tested through :func:`run_cli`, a real
subprocess. Every ``UserError`` a command raises in-process is what the CLI
prints as one ``cnnbench <command>: error: ...`` line with exit status 2
(cnnbench/cli.py; tests/test_cli.py checks that contract).
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import signal
import subprocess
import sys
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m cnnbench ARGS...` with no TTY, the way a user's shell would run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYDRA_", "CNNBENCH_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "cnnbench", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def cli(tmp_path):
    """Run the CLI with the current folder set to a fresh temporary folder."""

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return run_cli(*args, cwd=tmp_path, timeout=timeout)

    run.cwd = tmp_path
    return run


@pytest.fixture
def main_cli(tmp_path):
    """The CLI's ``main(argv)`` in this process, from a fresh temporary folder: the exit status it
    returns (or exits with), and what it printed on stdout and stderr. For the batteries of
    one-line errors, which would otherwise start an interpreter and import torch per case;
    what only a real process shows (signals, the console script, ``python -m``) is ``cli``'s."""

    def run(*args: str) -> subprocess.CompletedProcess:
        from cnnbench.cli import main

        stdout, stderr = io.StringIO(), io.StringIO()
        with isolated_process_state(tmp_path), redirect_stdout(stdout), redirect_stderr(stderr):
            try:
                status = main(list(args))
            except SystemExit as exit:  # Hydra ends some errors this way, as the process would
                status = exit.code if isinstance(exit.code, int) else 1
        return subprocess.CompletedProcess(["cnnbench", *args], status, stdout.getvalue(), stderr.getvalue())

    run.cwd = tmp_path
    return run


# --- in-process runs --------------------------------------------------------------------------


@dataclass
class CommandRun:
    """What one in-process command left behind."""

    returned: Any  # the command function's return value (train: the final top-1)
    stdout: str  # what the CLI would print on stdout: the console log lines and print()s
    stderr: str
    run_dir: Path  # hydra.runtime.output_dir: the run folder

    @property
    def results(self) -> dict:
        return json.loads((self.run_dir / "results.json").read_text())


def run_command(command: str, *overrides: str, cwd: Optional[Path] = None) -> CommandRun:
    """`cnnbench COMMAND OVERRIDES...` in this process, from the folder ``cwd`` (default: the
    current one); a UserError (or any error) the command raises is raised here.

    Only plain overrides: no ``-m``, ``--cfg`` or other flags (those are run_cli's).
    """
    from hydra import compose, initialize_config_dir
    from hydra._internal.callbacks import Callbacks
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import run_job
    from hydra.types import HydraContext, RunMode
    from omegaconf import open_dict, read_write

    from cnnbench.cli import COMMANDS, load_task
    from cnnbench.config import CONF_DIR, register_schemas

    flags = [arg for arg in overrides if arg.startswith("-")]
    assert not flags, f"run_command takes overrides only, not {flags}; use the cli fixture"
    task = load_task(COMMANDS[command][1])
    stdout, stderr = io.StringIO(), io.StringIO()
    with isolated_process_state(Path(cwd or os.getcwd())):
        args = list(overrides)
        if command == "train":
            from cnnbench.commands.resume import continue_in_run_folder

            args = continue_in_run_folder(args)  # as the CLI does: a resumed run goes on in its own folder
        register_schemas()
        with initialize_config_dir(config_dir=str(CONF_DIR), job_name=command, version_base=None):
            cfg = compose(config_name=command, overrides=args, return_hydra_config=True)
            with read_write(cfg), open_dict(cfg):
                cfg.hydra.mode = RunMode.RUN
            context = HydraContext(config_loader=GlobalHydra.instance().config_loader(), callbacks=Callbacks(cfg))
            # The job logging's console handler writes to sys.stdout as it is when configured: here, `stdout`.
            with redirect_stdout(stdout), redirect_stderr(stderr):
                job = run_job(task, cfg, "hydra.run.dir", None, context, configure_logging=True)
                returned = job.return_value  # raises what the command raised
    return CommandRun(returned, stdout.getvalue(), stderr.getvalue(), Path(job.hydra_cfg.hydra.runtime.output_dir))


@pytest.fixture
def run(tmp_path, monkeypatch):
    """:func:`run_command` with the current folder a fresh temporary folder (``run.cwd``)."""
    monkeypatch.chdir(tmp_path)

    def run_in_tmp(command: str, *overrides: str) -> CommandRun:
        return run_command(command, *overrides, cwd=tmp_path)

    run_in_tmp.cwd = tmp_path
    return run_in_tmp


STOP_SIGNALS = [getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1")
                if hasattr(signal, name)]


@contextmanager
def isolated_process_state(cwd: Path) -> Iterator[None]:
    """Run from ``cwd``, then put back what a run changes for the whole process: the current
    folder, environment, logging set-up, signal handlers (torch's launcher installs its own),
    torch's thread count (trainer.threads), every global random stream (the run seeds
    them), the cudnn/TF32 switches (set for CUDA runs) and Hydra's global state."""
    import numpy as np
    import torch
    from hydra.core.global_hydra import GlobalHydra

    old_cwd, environ = os.getcwd(), dict(os.environ)
    handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    threads = torch.get_num_threads()
    rng = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    switches = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    GlobalHydra.instance().clear()
    os.chdir(cwd)
    try:
        with logging_restored():
            yield
    finally:
        GlobalHydra.instance().clear()
        os.chdir(old_cwd)
        if dict(os.environ) != environ:
            os.environ.clear()
            os.environ.update(environ)
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)
        torch.set_num_threads(threads)
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = switches


@contextmanager
def logging_restored() -> Iterator[None]:
    """Hydra's job logging (logging.config.dictConfig) replaces the root logger's handlers and
    resets every logger; afterwards close what it made and put every logger back as it was."""
    loggers = [logging.getLogger()] + [logger for logger in logging.Logger.manager.loggerDict.values()
                                       if isinstance(logger, logging.Logger)]
    saved = [(logger, list(logger.handlers), logger.level, logger.propagate, logger.disabled) for logger in loggers]
    try:
        yield
    finally:
        kept = {id(handler) for _, handlers, *_ in saved for handler in handlers}
        for handler in logging.getLogger().handlers:
            if id(handler) not in kept:
                handler.close()  # the run's console and train.log handlers
        for logger, handlers, level, propagate, disabled in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled


# --- markers ------------------------------------------------------------------------------------


def pytest_collection_modifyitems(config, items):
    """`gpu` tests run where torch sees a CUDA GPU, and are skipped elsewhere."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
        for item in gpu_items:
            item.add_marker(skip)
