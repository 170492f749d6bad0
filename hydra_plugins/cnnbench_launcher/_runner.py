"""The pool launcher's main loop: start the jobs that fit, wait for one to end, give its GPUs
back, start the next; then the JobReturns in the sweep's order."""

import importlib
import logging
import multiprocessing
import os
import signal
import threading
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any, Dict, Iterator, List, Optional

from hydra.core.utils import JobReturn, JobStatus, filter_overrides

from cnnbench.errors import EXIT_STOPPED
from hydra_plugins.cnnbench_launcher._placement import Slots, cpu_count, job_environment, threads_per_process
from hydra_plugins.cnnbench_launcher import _worker

log = logging.getLogger("hydra_plugins.cnnbench_launcher.launcher")

# Forwarded to the running jobs. SIGINT is not: Ctrl-C reaches every process of the terminal's
# process group already, and a second one would interrupt a job that is saving its checkpoint.
FORWARDED = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name))


@dataclass
class Running:
    job: Any  # launcher.Job
    gpus: List[str]
    process: Any
    reply: Any  # the read end of the job's pipe; None once the job closed it
    message: Optional[tuple] = None


@dataclass
class StopRequest:
    """A stop signal the main process got while jobs ran: no new job starts after it."""

    signal: Optional[int] = None
    running: Dict[int, Running] = field(default_factory=dict)


class Runner:
    def __init__(self, launcher, slots: Slots, parallel: int, has_gpus: bool) -> None:
        self.launcher, self.slots, self.parallel, self.has_gpus = launcher, slots, parallel, has_gpus
        self.context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited CUDA or threads
        self.state = None

    def run(self, jobs: List[Any]) -> List[JobReturn]:
        pending, stop, finished = deque(jobs), StopRequest(), {}
        with stop_signals(stop):
            while pending or stop.running:
                if stop.signal is None and not any(halts(done.message) for done in finished.values()):
                    self.start_fitting(pending, stop.running)
                if not stop.running:
                    break
                for done in self.wait_any(stop.running):
                    finished[done.job.index] = done
        return results(jobs, finished, stop)

    def start_fitting(self, pending: deque, running: Dict[int, Running]) -> None:
        """Start jobs from the head of the queue while their GPUs (and a place) are free."""
        while pending:
            gpus = self.slots.take(pending[0].wanted)
            if gpus is None:
                return
            job = pending.popleft()
            running[job.index] = self.start(job, gpus)

    def start(self, job, gpus: List[str]) -> Running:
        import cloudpickle
        from hydra.core.singleton import Singleton

        threads = threads_per_process(self.launcher.threads_per_job, self.parallel, job.processes, cpu_count())
        env = job_environment(gpus if self.has_gpus else None, threads)
        shown = " ".join(f"{key}={env[key]}" for key in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS") if key in env)
        if self.state is None:
            self.state = Singleton.get_state()  # the ConfigStore, resolvers, ...: what the job's process needs
        payload = cloudpickle.dumps({
            "state": self.state, "context": self.launcher.hydra_context, "task": self.launcher.task_function,
            "config": job.config, "note": f"launcher: job {job.index} runs with {shown}",
        })
        receive, reply = self.context.Pipe(duplex=False)
        process = self.context.Process(target=_worker.run_one_job, args=(payload, reply), name=f"hydra-job-{job.index}")
        with environment(env):  # a spawned process takes this process's environment when it starts
            process.start()
        reply.close()  # the job holds the write end now; its end shows as end-of-file here
        log.info(f"\t#{job.index} : {' '.join(filter_overrides(job.overrides))} ({shown})")
        return Running(job, gpus, process, receive)

    def wait_any(self, running: Dict[int, Running]) -> List[Running]:
        """Wait until a job ends; the jobs that ended, their GPUs given back."""
        handles = {}
        for item in running.values():
            handles[item.process.sentinel] = item
            if item.reply is not None:
                handles[item.reply] = item
        ended = []
        for handle in wait(list(handles)):
            item = handles[handle]
            if handle is item.reply:
                receive(item)
            elif item not in ended:
                ended.append(item)
        for item in ended:
            if item.reply is not None:
                receive(item)  # a message sent just before the end, or end-of-file
            item.process.join()
            running.pop(item.job.index)
            self.slots.give_back(item.gpus)
        return ended


def receive(item: Running) -> None:
    import cloudpickle

    try:
        item.message = cloudpickle.loads(item.reply.recv_bytes())
    except EOFError:  # the job ended without a word: killed, or crashed in the interpreter
        pass
    item.reply.close()
    item.reply = None


def halts(message: Optional[tuple]) -> bool:
    """Whether a job's end stops the sweep, as it would under the basic launcher (a SystemExit,
    Ctrl-C, Hydra itself failing); a job's own failure does not."""
    return message is not None and message[0] in ("exit", "interrupted", "crashed")


def results(jobs: List[Any], finished: Dict[int, Running], stop: StopRequest) -> List[JobReturn]:
    """The jobs' JobReturns in the sweep's order, or what ended the sweep raised here."""
    returns, recorded, ending = [], [], []
    for job in jobs:
        done = finished.get(job.index)
        if done is None:
            continue  # never started: the sweep was stopped first
        kind, value, outcomes = done.message or ("died", None, [])
        recorded += outcomes
        if kind == "returned":
            returns.append(value)
        elif kind == "died":
            returns.append(died(job, done.process.exitcode, stop.signal is not None))
        else:
            ending.append((kind, value))
    if recorded:  # the sweep's summary line and exit status, printed by this process
        importlib.import_module(_worker.OUTCOMES_MODULE).OUTCOMES.extend(recorded)
    for kind, value in ending:  # the first in the sweep's order wins, as it would one job at a time
        if kind == "interrupted":
            raise KeyboardInterrupt
        raise SystemExit(value) if kind == "exit" else value
    if stop.signal is not None and (len(returns) < len(jobs) or any(r.status == JobStatus.FAILED for r in returns)):
        raise SystemExit(EXIT_STOPPED)  # rerunning the sweep with its hydra.sweep.dir goes on
    return returns


def died(job, exitcode: Optional[int], stopping: bool) -> JobReturn:
    how = f"killed by {signal.Signals(-exitcode).name}" if exitcode and exitcode < 0 else f"exit status {exitcode}"
    error = RuntimeError(f"job {job.index} ended without a result ({how})")
    if not stopping:
        log.error(str(error))
    ret = JobReturn(overrides=job.overrides, cfg=job.config, hydra_cfg=job.config, working_dir=os.getcwd(),
                    task_name=str(job.config.hydra.job.name), status=JobStatus.FAILED)
    ret.return_value = error
    return ret


@contextmanager
def stop_signals(stop: StopRequest) -> Iterator[None]:
    """While jobs run: SIGTERM and SIGUSR1 (a cluster taking the node back) are passed on to the
    running jobs, which save and stop; those and Ctrl-C start no new job."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def handle(signum, frame) -> None:
        stop.signal = stop.signal or signum
        if signum in FORWARDED:
            for item in list(stop.running.values()):
                try:
                    os.kill(item.process.pid, signum)
                except ProcessLookupError:
                    pass

    previous = {signum: signal.signal(signum, handle) for signum in (*FORWARDED, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def environment(env: Dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
