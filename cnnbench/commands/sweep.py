"""`cnnbench train -m ...`: each job of a sweep records how it ended, and a sweep run again
with the same ``hydra.sweep.dir`` goes on where it stopped.

Per job, in its own folder (``<sweep>/<job>/``):

- ``status.json``: ``{"status": "finished" | "failed" | "stopped", "error": ...}``;
- a job that failed (a UserError, or any exception) is recorded and the sweep goes on; a
  job stopped by a signal stops the whole sweep (exit status 3), as a single run does;
- run again, a job whose ``results.json`` has the same config hash is skipped, one with
  ``checkpoints/last.pt`` resumes from it, and one that never started runs; a job folder
  holding a run of another config refuses the whole sweep (it is another sweep's folder).

The sweep ends with one summary line, and exit status 2 when a job failed.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from omegaconf import DictConfig, open_dict

from cnnbench.commands.resume import LAST, note_error_in_log_file
from cnnbench.errors import EXIT_STOPPED, EXIT_USER_ERROR

log = logging.getLogger("cnnbench")
STATUS = "status.json"


@dataclass
class Outcome:
    job: str
    status: str  # finished, skipped (finished before), failed, stopped
    error: Optional[str] = None


# The jobs this process ran, in order (Hydra's basic launcher runs them here, one by one).
OUTCOMES: List[Outcome] = []


def in_multirun() -> bool:
    """Whether the Hydra job running now is one job of a sweep (-m)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def job_folder() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def job_name() -> str:
    from hydra.core.hydra_config import HydraConfig

    return str(HydraConfig.get().job.num)


def run_sweep_job(cfg: DictConfig, task: Callable[[DictConfig], object], prog: str) -> object:
    """Run one job of a sweep with ``task``; a failure is recorded (status.json, train.log, one
    line on stderr) and the sweep goes on; a stop (SystemExit) is recorded and stops the sweep."""
    folder, name = job_folder(), job_name()
    try:
        cfg = continue_job(cfg, folder, name)
        write_record(cfg, folder)
        if cfg is None:
            OUTCOMES.append(Outcome(name, "skipped"))
            return None
        returned = task(cfg)
    except SystemExit as stop:
        if stop.code == EXIT_STOPPED:  # not another sweep's folder refused (status 2): that stays as it was
            write_status(folder, "stopped", None)
            OUTCOMES.append(Outcome(name, "stopped"))
        raise
    except Exception as err:  # noqa: BLE001 - a failing job must not end the sweep
        error = note_error_in_log_file(err)
        print(f"{prog}: error: job {name}: {error}", file=sys.stderr)
        write_status(folder, "failed", error)
        OUTCOMES.append(Outcome(name, "failed", error))
        return None
    write_status(folder, "finished", None)
    OUTCOMES.append(Outcome(name, "finished"))
    return returned


def continue_job(cfg: DictConfig, folder: Path, name: str) -> Optional[DictConfig]:
    """The config job ``name`` runs with in ``folder``: None when it finished before (same config),
    set to resume from its own ``last.pt`` when it has one; refuses another sweep's folder."""
    results, config = folder / "results.json", folder / "config.yaml"
    if not results.is_file() and not (folder / LAST).is_file():
        return cfg
    from cnnbench.config import plain
    from cnnbench.engine.provenance import config_hash

    wanted = config_hash(plain(cfg))
    if results.is_file():
        found = json.loads(results.read_text()).get("config_hash")
    else:
        from omegaconf import OmegaConf

        found = config_hash(plain(OmegaConf.load(config))) if config.is_file() else None
    if found != wanted:
        restore_sweep_record(folder.parent)
        message = (f"{folder} holds a run of another config: the sweep folder holds another sweep; "
                   "choose a new hydra.sweep.dir, or repeat that sweep's command line")
        raise SystemExit(fail_sweep(message))
    if results.is_file():
        log.info(f"job {name}: finished, skipped ({results} has the same config hash)")
        return None
    with open_dict(cfg):
        cfg.trainer.resume = "auto"  # its own folder's checkpoints/last.pt
    log.info(f"job {name}: resuming from {folder / LAST}")
    return cfg


def write_record(cfg: Optional[DictConfig], folder: Path) -> None:
    """Hydra's .hydra/ record of a job that runs anew in a sweep being continued (the CLI set
    ``hydra.output_subdir=null`` so that a finished or resumed job's record stays as it was)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, read_write

    hydra_cfg = HydraConfig.get()
    record = folder / ".hydra"
    if cfg is None or hydra_cfg.output_subdir is not None or cfg.trainer.resume or record.exists():
        return
    hydra_node = OmegaConf.create({"hydra": OmegaConf.to_container(hydra_cfg)})
    with read_write(hydra_node):
        hydra_node.hydra.output_subdir = ".hydra"
    record.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, record / "config.yaml")
    OmegaConf.save(hydra_node, record / "hydra.yaml")
    OmegaConf.save(OmegaConf.create(list(hydra_cfg.overrides.task)), record / "overrides.yaml")


# multirun.yaml of a sweep folder as it was before this command (Hydra rewrites it first thing).
SAVED_RECORD: dict = {}


def save_sweep_record(sweep_dir: Optional[str]) -> None:
    """Keep the multirun.yaml of the sweep folder ``sweep_dir``, put back if the folder is refused."""
    record = Path(sweep_dir) / "multirun.yaml" if sweep_dir else None
    if record is not None and record.is_file():
        SAVED_RECORD[record.resolve()] = record.read_bytes()


def keep_first_sweep_record(hydra_args: List[str]) -> None:
    """After a sweep run again in its old folder: put back the multirun.yaml of the command that
    started it (Hydra rewrote it with this one) and append this command line to
    <sweep>/resume_history.yaml, as a resumed run keeps its .hydra/ and appends its history."""
    from cnnbench.commands.train import record_resume

    for record in list(SAVED_RECORD):
        record.write_bytes(SAVED_RECORD.pop(record))
        if OUTCOMES:  # jobs ran (or were skipped): the sweep was continued, not refused before it began
            record_resume(record.parent, hydra_args)


def restore_sweep_record(sweep_dir: Path) -> None:
    record = (Path(sweep_dir) / "multirun.yaml").resolve()
    if record in SAVED_RECORD:
        record.write_bytes(SAVED_RECORD.pop(record))


def fail_sweep(message: str) -> int:
    print(f"cnnbench train: error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


def write_status(folder: Path, status: str, error: Optional[str]) -> None:
    from cnnbench.engine.checkpoint import write_json

    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / STATUS, {"status": status, "error": error})


def sweep_summary() -> Optional[tuple]:
    """(the summary line, the exit status) of the sweep this process ran; None when it ran none."""
    if not OUTCOMES:
        return None
    done = [o for o in OUTCOMES if o.status in ("finished", "skipped")]
    skipped = [o for o in OUTCOMES if o.status == "skipped"]
    failed = [o for o in OUTCOMES if o.status == "failed"]
    line = f"sweep: {len(done)} finished"
    if skipped:
        line += f" ({len(skipped)} skipped: finished before)"
    if failed:
        line += f", {len(failed)} failed (" + "; ".join(f"job {o.job}: {o.error}" for o in failed) + ")"
    return line, (EXIT_USER_ERROR if failed else 0)
