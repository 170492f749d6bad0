"""Where a job runs: which GPUs it gets and how many CPU threads. Plain functions and one small
bookkeeping class, no processes, so the policy can be tested with any number of fake GPUs."""

import os
from typing import Any, Dict, List, Optional, Sequence

from cnnbench.errors import UserError


def gpu_pool(option: Optional[Sequence], visible: Optional[str], device_count: int) -> List[str]:
    """The GPU ids jobs are placed on, as CUDA_VISIBLE_DEVICES spells them.

    ``option`` (the launcher's ``gpus``) wins; else the GPUs this process may use: the entries of
    its own CUDA_VISIBLE_DEVICES (``visible``; ids or UUIDs, kept as written so a job sees the
    same physical GPU), else ``0 .. device_count-1``.
    """
    if option is not None:
        pool = [str(gpu).strip() for gpu in option]
        if any(not gpu for gpu in pool) or len(set(pool)) != len(pool):
            raise UserError(f"hydra.launcher.gpus={list(option)} must list distinct GPU ids, e.g. [0,1,2,3]")
        return pool
    if visible is not None and visible.strip():
        return [gpu.strip() for gpu in visible.split(",") if gpu.strip()][:device_count]
    return [str(index) for index in range(device_count)]


def gpus_wanted(devices: int, accelerator: str, pool_size: int) -> int:
    """How many GPUs a job with ``trainer.devices`` and ``trainer.accelerator`` takes.

    A CPU job takes none; ``devices=-1`` (one process per GPU) takes the whole pool; a job that
    wants more than the pool has gets the whole pool and reports the shortage itself, as it would
    under Hydra's basic launcher.
    """
    if pool_size == 0 or str(accelerator) == "cpu":
        return 0
    if devices == -1:
        return pool_size
    return max(1, min(int(devices), pool_size))


def cpu_count() -> int:
    """The cores this process may run on (a cluster's CPU set, not the whole machine's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def parallel_jobs(n_jobs: Optional[int], pool_size: int) -> int:
    """How many jobs run at once: ``n_jobs`` when set, else one per GPU (1 without GPUs)."""
    if n_jobs is not None:
        if n_jobs < 1:
            raise UserError(f"hydra.launcher.n_jobs must be at least 1 (or null), got {n_jobs}")
        return n_jobs
    return max(1, pool_size)


def threads_per_process(threads_per_job: Optional[int], parallel: int, processes: int, cores: int) -> int:
    """OMP_NUM_THREADS for each of a job's ``processes`` (trainer.devices): the job's share of the
    cores, ``cores // parallel`` unless ``threads_per_job`` says, split over its processes, so
    that the jobs running together never ask for more threads than there are cores."""
    if threads_per_job is not None and threads_per_job < 1:
        raise UserError(f"hydra.launcher.threads_per_job must be at least 1 (or null), got {threads_per_job}")
    share = threads_per_job if threads_per_job is not None else max(1, cores // max(1, parallel))
    return max(1, share // max(1, processes))


def job_environment(gpus: Optional[List[str]], threads: int) -> Dict[str, str]:
    """The variables a job's process starts with. ``gpus`` None: a machine without GPUs, where
    CUDA_VISIBLE_DEVICES is left as it is; an empty list hides every GPU from a CPU job."""
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    return env


class Slots:
    """The free GPUs and free job places of the pool. Jobs are placed in their order (first in,
    first out: a job that does not fit yet holds back those after it, so a job wanting many GPUs
    is never starved by small ones), each on the lowest free GPU ids."""

    def __init__(self, gpus: Sequence[str], parallel: int) -> None:
        self.free = list(gpus)
        self.order = {gpu: index for index, gpu in enumerate(gpus)}
        self.places = parallel

    def take(self, wanted: int) -> Optional[List[str]]:
        """The GPUs for a job that wants ``wanted`` of them, now taken; None when it must wait."""
        if self.places == 0 or wanted > len(self.free):
            return None
        self.free.sort(key=self.order.__getitem__)
        taken, self.free = self.free[:wanted], self.free[wanted:]
        self.places -= 1
        return taken

    def give_back(self, gpus: Sequence[str]) -> None:
        self.free.extend(gpus)
        self.places += 1


def plan(wanted: Sequence[int], gpus: Sequence[str], parallel: int, finish_order: Sequence[int]) -> List[tuple]:
    """Replay a sweep on paper: the (job, GPUs) starts, in the order they happen, when the jobs
    wanting ``wanted`` GPUs end in ``finish_order`` (job indices; a job not yet started is skipped
    until it has). What the launcher does, without processes."""
    slots, pending, running, starts = Slots(gpus, parallel), list(range(len(wanted))), {}, []
    finishing = list(finish_order)
    while pending or running:
        while pending and (taken := slots.take(wanted[pending[0]])) is not None:
            job = pending.pop(0)
            running[job] = taken
            starts.append((job, taken))
        done = next((job for job in finishing if job in running), None)
        if done is None:
            raise ValueError(f"finish_order {list(finish_order)} ends no running job of {sorted(running)}")
        finishing.remove(done)
        slots.give_back(running.pop(done))
    return starts


def slurm_gpus(devices: Any, accelerator: str) -> Optional[int]:
    """GPUs a SLURM job asks for (gpus_per_node) for ``trainer.devices``: none on the CPU; a
    count, since ``devices=-1`` (every GPU it sees) means nothing before the job has a node."""
    if str(accelerator) == "cpu":
        return None
    if devices is None or int(devices) < 1:
        raise UserError(f"trainer.devices={devices} cannot size a SLURM job; give the number of GPUs, "
                        "e.g. trainer.devices=4")
    return int(devices)


def swept_keys(job_overrides: Sequence[Sequence[str]], keys: Sequence[str]) -> List[str]:
    """Those of ``keys`` whose value differs between the jobs of a sweep."""
    values: Dict[str, set] = {key: set() for key in keys}
    for overrides in job_overrides:
        for override in overrides:
            key, _, value = override.lstrip("+~").partition("=")
            if key in values:
                values[key].add(value)
    return [key for key, seen in values.items() if len(seen) > 1]
