"""The pool launcher (hydra/launcher=pool): where jobs go (pure functions, any number of fake
GPUs), what the sweep hears back from its job processes, and a real two-job sweep in parallel.
The SLURM launcher (hydra/launcher=slurm): its config, the job it would submit, and its requeue,
without a cluster (skipped where hydra-submitit-launcher is not installed)."""

from __future__ import annotations

import datetime
import json
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from cnnbench.errors import UserError
from hydra_plugins.cnnbench_launcher import _runner
from hydra_plugins.cnnbench_launcher._placement import (
    Slots, cpu_count, gpu_pool, gpus_wanted, job_environment, parallel_jobs, plan, slurm_gpus, swept_keys,
    threads_per_process,
)
from tests.conftest import isolated_process_state

FOUR = ["0", "1", "2", "3"]


# --- placement ----------------------------------------------------------------------------------


def test_four_gpus_jobs_wanting_1_1_2_1_fill_the_pool_then_refill_as_jobs_end():
    # Jobs 0-2 take all four GPUs; job 3 waits and takes the first GPU given back (job 1's).
    assert plan([1, 1, 2, 1], FOUR, 4, finish_order=[1, 0, 2, 3]) == [
        (0, ["0"]), (1, ["1"]), (2, ["2", "3"]), (3, ["1"]),
    ]
    # Job 2 ending first gives back GPUs 2 and 3: job 3 takes the lower one.
    assert plan([1, 1, 2, 1], FOUR, 4, finish_order=[2, 0, 1, 3])[3] == (3, ["2"])


def test_jobs_start_in_order_and_a_big_job_is_not_overtaken():
    # Job 1 wants both GPUs: job 2 (one GPU) waits behind it rather than starve it.
    assert plan([1, 2, 1], ["0", "1"], 2, finish_order=[0, 1, 2]) == [(0, ["0"]), (1, ["0", "1"]), (2, ["0"])]
    slots = Slots(FOUR, parallel=4)
    assert slots.take(4) == FOUR and slots.take(1) is None
    slots.give_back(["2", "0", "3", "1"])
    assert slots.take(3) == ["0", "1", "2"]


def test_without_gpus_n_jobs_run_at_once():
    assert plan([0, 0, 0], [], 2, finish_order=[1, 0, 2]) == [(0, []), (1, []), (2, [])]
    slots = Slots([], parallel=2)
    assert slots.take(0) == [] and slots.take(0) == [] and slots.take(0) is None


def test_the_gpu_pool_and_what_a_job_takes_from_it():
    assert gpu_pool(None, None, 4) == FOUR
    assert gpu_pool(None, "GPU-a1,GPU-b2", 2) == ["GPU-a1", "GPU-b2"]  # this process's own GPUs, as written
    assert gpu_pool([0, 3], "5,6", 8) == ["0", "3"]
    assert gpu_pool(None, None, 0) == []
    with pytest.raises(UserError, match="distinct GPU ids"):
        gpu_pool([1, 1], None, 4)
    assert [gpus_wanted(d, "auto", 4) for d in (1, 2, -1, 8)] == [1, 2, 4, 4]
    assert gpus_wanted(2, "cpu", 4) == 0 and gpus_wanted(2, "auto", 0) == 0
    assert parallel_jobs(None, 4) == 4 and parallel_jobs(None, 0) == 1 and parallel_jobs(3, 0) == 3
    with pytest.raises(UserError, match="n_jobs must be at least 1"):
        parallel_jobs(0, 0)


def test_threads_are_split_so_the_jobs_never_ask_for_more_than_the_cores():
    assert threads_per_process(None, parallel=4, processes=1, cores=16) == 4
    assert threads_per_process(None, parallel=4, processes=2, cores=16) == 2  # trainer.devices=2 shares its 4
    assert threads_per_process(None, parallel=8, processes=1, cores=2) == 1
    assert threads_per_process(6, parallel=2, processes=4, cores=2) == 1
    assert job_environment(["2", "3"], 4) == {"CUDA_VISIBLE_DEVICES": "2,3", "OMP_NUM_THREADS": "4",
                                              "MKL_NUM_THREADS": "4"}
    assert job_environment([], 1)["CUDA_VISIBLE_DEVICES"] == ""  # a CPU job on a GPU machine sees none
    assert "CUDA_VISIBLE_DEVICES" not in job_environment(None, 1)  # no GPUs here: left as it is


# --- what comes back from the jobs ---------------------------------------------------------------


def finished(index: int, message) -> _runner.Running:
    job = SimpleNamespace(index=index, overrides=[f"seed={index}"],
                          config=OmegaConf.create({"hydra": {"job": {"name": "train"}}}))
    return _runner.Running(job, [], SimpleNamespace(exitcode=-9), None, message)


def returned(value) -> JobReturn:
    ret = JobReturn(overrides=[], status=JobStatus.COMPLETED)
    ret.return_value = value
    return ret


def test_results_come_back_in_the_sweeps_order_with_the_jobs_outcomes(monkeypatch):
    from cnnbench.commands import sweep

    monkeypatch.setattr(sweep, "OUTCOMES", [])
    jobs = [finished(i, None).job for i in range(3)]
    done = {2: finished(2, ("returned", returned(0.5), [sweep.Outcome("2", "finished")])),
            0: finished(0, ("returned", returned(0.9), [sweep.Outcome("0", "failed", "boom")])),
            1: finished(1, None)}  # died without a word (killed)
    rets = _runner.results(jobs, done, _runner.StopRequest())
    assert [ret.status for ret in rets] == [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.COMPLETED]
    assert rets[0].return_value == 0.9 and rets[2].return_value == 0.5
    assert "job 1 ended without a result (killed by SIGKILL)" in str(rets[1]._return_value)
    assert [o.job for o in sweep.OUTCOMES] == ["0", "2"]  # the sweep's summary line counts them
    assert sweep.sweep_summary()[1] == 2


def test_a_stopped_job_stops_the_sweep_as_under_the_basic_launcher(monkeypatch):
    from cnnbench.commands import sweep

    monkeypatch.setattr(sweep, "OUTCOMES", [])
    jobs = [finished(i, None).job for i in range(3)]
    done = {0: finished(0, ("returned", returned(1.0), [])), 1: finished(1, ("exit", 3, []))}
    with pytest.raises(SystemExit) as stop:
        _runner.results(jobs, done, _runner.StopRequest())
    assert stop.value.code == 3
    assert _runner.halts(("exit", 3, [])) and not _runner.halts(("returned", None, []))
    with pytest.raises(SystemExit) as stop:  # a stop signal came before job 1 started
        _runner.results(jobs, {0: done[0]}, _runner.StopRequest(signal=signal.SIGTERM))
    assert stop.value.code == 3


# --- a real sweep -------------------------------------------------------------------------------


def log_times(log: Path) -> tuple:
    stamps = [line[1:24] for line in log.read_text().splitlines() if line.startswith("[")]
    first, last = (datetime.datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f") for s in (stamps[0], stamps[-1]))
    return first, last


@pytest.mark.slow
def test_two_jobs_run_at_once_each_on_its_own_gpus_and_threads(tmp_path, capfd):
    from cnnbench.cli import main
    from cnnbench.commands import sweep

    # GPU ids 5 and 7 need not exist: on a machine without them the jobs see no GPU and train on
    # the CPU, but each still starts with its own CUDA_VISIBLE_DEVICES.
    args = ["train", "-m", "hydra/launcher=pool", "hydra.launcher.gpus=[5,7]", "hydra.launcher.n_jobs=2",
            "model=lenet5", "trainer.epochs=1", "data.batch_size=512", "trainer.progress_bar=false", "seed=0,1"]
    saved = list(sweep.OUTCOMES)
    try:
        with isolated_process_state(tmp_path):
            status = main(args)
    finally:
        sweep.OUTCOMES[:] = saved
    out = capfd.readouterr().out
    assert status == 0, out
    assert "sweep: 2 finished" in out
    (folder,) = tmp_path.glob("outputs/multirun/*/*")  # one sweep folder for both jobs
    threads = max(1, cpu_count() // 2)
    for job, gpu in (("0", "5"), ("1", "7")):
        assert json.loads((folder / job / "status.json").read_text())["status"] == "finished"
        results = json.loads((folder / job / "results.json").read_text())
        assert results["seed"] == int(job)
        assert results["device"].endswith(f", {threads} threads)")
        assert f"launcher: job {job} runs with CUDA_VISIBLE_DEVICES={gpu} OMP_NUM_THREADS={threads}" in (
            folder / job / "train.log").read_text()
        assert (folder / job / ".hydra" / "overrides.yaml").is_file()
    (start0, end0), (start1, end1) = log_times(folder / "0" / "train.log"), log_times(folder / "1" / "train.log")
    assert start0 < end1 and start1 < end0  # they ran at the same time


def test_a_mistake_in_the_launchers_options_is_one_line_and_leaves_no_folder(tmp_path, capsys):
    from cnnbench.cli import main

    with isolated_process_state(tmp_path):
        status = main(["train", "-m", "hydra/launcher=pool", "hydra.launcher.n_jobs=0", "seed=0,1"])
    assert status == 2
    assert capsys.readouterr().err == "cnnbench train: error: hydra.launcher.n_jobs must be at least 1 (or null), got 0\n"
    assert not (tmp_path / "outputs").exists()


# --- SLURM ----------------------------------------------------------------------------------------


def test_slurm_asks_for_trainer_devices_gpus_and_one_value_per_sweep():
    assert slurm_gpus(4, "auto") == 4 and slurm_gpus(2, "cpu") is None
    with pytest.raises(UserError, match="trainer.devices=-1 cannot size a SLURM job"):
        slurm_gpus(-1, "cuda")
    assert swept_keys([["trainer.devices=1", "seed=0"], ["trainer.devices=2", "seed=0"]],
                      ["trainer.devices", "seed"]) == ["trainer.devices"]


def slurm_config(*overrides: str):
    from hydra import compose, initialize_config_dir

    from cnnbench.cli import register_resolvers
    from cnnbench.config import CONF_DIR, register_schemas

    register_schemas()
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), job_name="train", version_base=None):
        return compose("train", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True)


def test_the_slurm_config_composes_with_the_jobs_gpus_and_cnnbenchs_stop_signal(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    with isolated_process_state(tmp_path):
        launcher = OmegaConf.to_container(slurm_config("trainer.devices=2").hydra.launcher, resolve=True)
    assert launcher["_target_"] == "hydra_plugins.cnnbench_launcher.slurm.CnnbenchSlurmLauncher"
    assert launcher["gpus_per_node"] == 2 and launcher["tasks_per_node"] == 1
    assert launcher["additional_parameters"] == {"signal": "USR1@120", "requeue": True}
    assert launcher["max_num_timeout"] == 3
    assert "export SUBMITIT_PREEMPT_SIGNAL=USR1" in launcher["setup"]


@pytest.mark.slow
def test_a_slurm_sweep_submits_each_job_with_its_gpus_and_requeue_settings(tmp_path, monkeypatch):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    import submitit

    from cnnbench.cli import main
    from hydra_plugins.cnnbench_launcher.slurm import CnnbenchSlurmLauncher

    submitted = {}

    def map_array(executor, fn, *iterables):  # what sbatch would get, instead of running sbatch
        submitted.update(fn=fn, args=list(zip(*iterables)),
                         sbatch=executor._executor._make_submission_file_text("RUN", "uid"))
        return [SimpleNamespace(results=lambda: [returned(None)]) for _ in submitted["args"]]

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", map_array)
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", staticmethod(lambda: 1))  # as if srun were here
    with isolated_process_state(tmp_path):
        assert main(["train", "-m", "hydra/launcher=slurm", "trainer.devices=2", "seed=0,1",
                     "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=240"]) == 0
    assert isinstance(submitted["fn"], CnnbenchSlurmLauncher)
    assert [(list(args[0]), args[2]) for args in submitted["args"]] == [(["trainer.devices=2", "seed=0"], 0),
                                                                        (["trainer.devices=2", "seed=1"], 1)]
    sbatch = submitted["sbatch"]
    for line in ("#SBATCH --gpus-per-node=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --signal=USR1@120",
                 "#SBATCH --requeue", "#SBATCH --partition=gpu", "#SBATCH --time=240",
                 "export SUBMITIT_PREEMPT_SIGNAL=USR1"):
        assert line in sbatch.splitlines(), sbatch


def test_a_job_cnnbench_stopped_is_requeued_by_submitits_handler(monkeypatch):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra_plugins.cnnbench_launcher import slurm as _slurm

    calls = []

    def checkpoint_and_try_requeue(signum, frame):  # stands for submitit's handler on the job's node
        calls.append(signum)
        raise SystemExit(-1)  # submitit requeues, then exits

    previous = signal.signal(signal.SIGUSR1, checkpoint_and_try_requeue)
    try:
        monkeypatch.setattr(_slurm.SlurmLauncher, "__call__", lambda self, *a, **k: sys.exit(3))
        launcher = _slurm.CnnbenchSlurmLauncher.__new__(_slurm.CnnbenchSlurmLauncher)
        with pytest.raises(SystemExit) as stop:
            launcher()
        assert stop.value.code == -1 and calls == [signal.SIGUSR1]
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)  # not in a submitit job: the stop stays a stop
        with pytest.raises(SystemExit) as stop:
            launcher()
        assert stop.value.code == 3 and calls == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, previous)
