"""``hydra/launcher=slurm`` (conf/hydra/launcher/slurm.yaml): hydra-submitit-launcher's SLURM
launcher, with the GPUs of each job from ``trainer.devices`` and requeueing after cnnbench's
own stop.

SLURM sends SIGUSR1 ``signal_delay_s`` before a job's time limit (the YAML sets ``--signal``),
and SIGTERM when it preempts one. While a job trains, cnnbench owns both signals: it saves a
checkpoint at the next step and ends the job with EXIT_STOPPED. Submitit's own handler, which
would requeue the job, never hears of it then, so the job is requeued here, through that very
handler; run again, the job finds its ``checkpoints/last.pt`` and resumes (cnnbench/commands/sweep.py).
A signal outside training reaches submitit's handler directly and requeues the job the same way.

Hydra's plugin scan runs this module on every start (a launcher must be found that way); without
the ``slurm`` extra installed it defines nothing, and nothing else breaks.
"""

import importlib
import signal
from typing import Any, Sequence

from hydra.core.utils import JobReturn
from omegaconf import OmegaConf

from cnnbench.errors import EXIT_STOPPED, UserError
from hydra_plugins.cnnbench_launcher import _worker
from hydra_plugins.cnnbench_launcher._placement import slurm_gpus, swept_keys

# Settings one SLURM array shares: a sweep over them needs one sweep per value.
SHARED = ("trainer.devices", "trainer.accelerator")
# The name of submitit's requeueing signal handler (submitit/core/job_environment.py).
SUBMITIT_HANDLER = "checkpoint_and_try_requeue"


try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
except ImportError:  # the slurm extra is not installed: hydra/launcher=slurm says so when chosen
    SlurmLauncher = None


class CnnbenchSlurmLauncher(SlurmLauncher or object):
    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        # Checked before Hydra writes the sweep folder: a mistake leaves nothing behind.
        trainer = OmegaConf.select(config, "trainer", default=None)
        if trainer is not None and self.params.get("gpus_per_node") == trainer.devices:
            accelerator = getattr(trainer.accelerator, "name", trainer.accelerator)
            self.params["gpus_per_node"] = slurm_gpus(trainer.devices, accelerator)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        swept = swept_keys(job_overrides, SHARED)
        if swept:
            raise UserError(f"{swept[0]} takes one value per SLURM sweep (its jobs share one request); "
                            f"run one sweep per value of {swept[0]}")
        returns = super().launch(job_overrides, initial_job_idx)
        for ret in returns:  # the jobs' outcomes, for the sweep's summary line printed here
            recorded = getattr(ret, "cnnbench_outcomes", None)
            if recorded:
                importlib.import_module(_worker.OUTCOMES_MODULE).OUTCOMES.extend(recorded)
        return returns

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """One job, on its SLURM node."""
        recorded = _worker.outcomes()
        before = len(recorded) if recorded is not None else 0
        try:
            ret = super().__call__(*args, **kwargs)
        except SystemExit as stop:
            if stop.code == EXIT_STOPPED:
                requeue()  # returns only where no submitit handler is there to requeue
            raise
        recorded = _worker.outcomes()
        ret.cnnbench_outcomes = list(recorded[before:]) if recorded is not None else []
        return ret


def requeue() -> None:
    """Requeue this SLURM job with submitit's handler, if it is the one on SIGUSR1 (the job's
    SUBMITIT_PREEMPT_SIGNAL): it resubmits the same call and exits, or raises when the job ran
    out of requeues (max_num_timeout)."""
    handler = signal.getsignal(signal.SIGUSR1)
    if getattr(handler, "__name__", None) == SUBMITIT_HANDLER:
        handler(signal.SIGUSR1, None)
