"""``hydra/launcher=pool``: the jobs of a sweep, each in a fresh process, several at a time.

Each job gets GPUs of its own (``trainer.devices`` of them; none for ``trainer.accelerator=cpu``)
from a pool, the GPUs ``torch.cuda.device_count()`` sees or ``hydra.launcher.gpus``; the next job
starts when enough GPUs are free, in the sweep's order. Without GPUs, ``hydra.launcher.n_jobs``
jobs run at once. Either way each job's process starts with CUDA_VISIBLE_DEVICES naming its GPUs
and OMP_NUM_THREADS its share of the cores, so it can neither touch another job's GPU nor
oversubscribe the CPU. A job runs as under Hydra's basic launcher (same folder, ``.hydra/``
record, logging, and cnnbench's status.json, skip and resume), and the results come back in the
sweep's order: a failed job is recorded and the others go on.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, configure_log, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.cnnbench_launcher._placement import (
    Slots, cpu_count, gpu_pool, gpus_wanted, parallel_jobs, threads_per_process,
)
from hydra_plugins.cnnbench_launcher._runner import Runner

log = logging.getLogger(__name__)


@dataclass
class PoolLauncherConf:
    _target_: str = "hydra_plugins.cnnbench_launcher.launcher.PoolLauncher"
    # GPU ids to place jobs on (CUDA_VISIBLE_DEVICES values); null: every GPU this process sees.
    gpus: Optional[List[str]] = None
    # Jobs running at once; null: one per GPU, or 1 without GPUs.
    n_jobs: Optional[int] = None
    # CPU threads of one job (split over its trainer.devices processes); null: cores // running jobs.
    threads_per_job: Optional[int] = None


ConfigStore.instance().store(group="hydra/launcher", name="pool", node=PoolLauncherConf, provider="cnnbench")


@dataclass
class Job:
    index: int  # hydra.job.num
    overrides: List[str]
    config: DictConfig  # composed for this job, as the basic launcher composes it
    wanted: int  # GPUs
    processes: int  # trainer.devices: the processes the job starts, which share its threads


class PoolLauncher(Launcher):
    def __init__(self, gpus: Optional[Sequence] = None, n_jobs: Optional[int] = None,
                 threads_per_job: Optional[int] = None) -> None:
        super().__init__()
        self.gpus, self.n_jobs, self.threads_per_job = gpus, n_jobs, threads_per_job
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        # Checked here, before Hydra writes the sweep folder's multirun.yaml: a mistake leaves nothing.
        gpu_pool(None if self.gpus is None else list(self.gpus), None, 0)
        parallel_jobs(self.n_jobs, 0)
        threads_per_process(self.threads_per_job, 1, 1, 1)
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        pool = gpu_pool(None if self.gpus is None else list(self.gpus), os.environ.get("CUDA_VISIBLE_DEVICES"),
                        0 if self.gpus is not None else cuda_device_count())
        parallel = parallel_jobs(self.n_jobs, len(pool))
        where = f"GPUs {','.join(pool)}" if pool else f"{cpu_count()} CPU cores"
        log.info(f"Launching {len(job_overrides)} jobs locally, up to {parallel} at a time on {where}")
        jobs = [self.compose(initial_job_idx + i, list(o), len(pool)) for i, o in enumerate(job_overrides)]
        runner = Runner(self, Slots(pool, parallel), parallel, bool(pool))
        try:
            return runner.run(jobs)
        finally:
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)

    def compose(self, index: int, overrides: List[str], pool_size: int) -> Job:
        """Job ``index``'s config, composed here (as the basic launcher does) to know its GPUs."""
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config):
            config.hydra.job.id = index
            config.hydra.job.num = index
        devices, accelerator = setting(config, "trainer.devices", 1), setting(config, "trainer.accelerator", "auto")
        wanted = gpus_wanted(devices if isinstance(devices, int) else 1, str(accelerator), pool_size)
        processes = devices if isinstance(devices, int) and devices > 0 else max(1, wanted)
        return Job(index, overrides, config, wanted, processes)


def setting(config: DictConfig, key: str, default: Any) -> Any:
    """A job's ``key`` (trainer.devices), or ``default`` when its config has none or cannot say:
    a mistake there is the job's to report, as under the basic launcher."""
    try:
        value = OmegaConf.select(config, key, default=default)
    except Exception:  # noqa: BLE001 - e.g. a broken ${...}; the job itself will refuse it
        return default
    return getattr(value, "name", value)  # an Enum choice as its name


def cuda_device_count() -> int:
    """GPUs torch sees. Whatever counting sets up in this process, the jobs do not inherit it:
    each is a fresh interpreter started with its own CUDA_VISIBLE_DEVICES."""
    import torch

    return torch.cuda.device_count()
