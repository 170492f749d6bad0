"""Training on several processes at once with torch DistributedDataParallel (DDP).

One process per device (rank): NCCL between CUDA GPUs, gloo between CPU
processes. Processes are started by ``torchrun`` (which sets RANK,
LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT) or, on one machine, by
:func:`launch`, which starts them the way torchrun does. At world size 1
nothing here creates a process group or wraps a model: a one-process run
is exactly the plain single-device run.

How the data is split among ranks (``shard_positions`` in
``cnnbench.data.loaders``, used by both loaders):

- Training: every rank draws the same global permutation, and the same
  per-sample augmentation draws, from ``epoch_generator(seed, epoch)``; then
  rank r of W, with per-rank batch size B, takes positions
  ``[b*W*B + r*B, b*W*B + (r+1)*B)`` of the permutation as its batch b. So the
  global batch b (the union over ranks) holds exactly the samples, with
  exactly the crops and mirrors, of batch b of a one-process run with batch
  size W*B. The last partial global batch is dropped, so every rank takes
  the same number of steps (a rank with one step more would wait for the
  others' gradients forever).
- Evaluation: rank r takes the contiguous positions
  ``[r*N//W, (r+1)*N//W)`` of the N samples: disjoint, together each sample
  once, no padding and no duplicates. Summing correct counts, loss sums and
  sample counts over ranks (:func:`all_reduce_sum`) gives exactly the
  one-process metrics. Ranks may hold different numbers of batches, so
  nothing collective may run per evaluation batch: evaluate the unwrapped
  model (:func:`unwrap`), not the DDP wrapper.

With the loss a mean over the local batch, DDP's gradient (the mean of the
ranks' gradients) is the gradient of the mean loss over the global batch,
so W ranks with batch B follow the one-process, batch-W*B run step for step
(up to float rounding), except where a layer computes statistics over its
batch: plain BatchNorm normalises over the local batch (use
``sync_batchnorm`` on CUDA for the global one).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import signal
import socket
import tempfile
import threading
import time
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator, List, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cnnbench.engine.device import pick_device
from cnnbench.errors import EXIT_STOPPED, RunFailed, UserError

log = logging.getLogger("cnnbench")


@dataclass(frozen=True)
class DistributedContext:
    """Who this process is among the processes of one run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, writes the run folder and saves checkpoints."""
        return self.rank == 0


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name}={value!r} must be a whole number (torchrun sets it)") from None


def setup(accelerator: str, timeout_s: float) -> DistributedContext:
    """This process's place in the run, from torchrun's environment; joins the process group
    when there is more than one process.

    ``timeout_s`` bounds every collective: a rank that died or hangs makes the
    others fail after that long instead of waiting forever.
    """
    world_size = env_int("WORLD_SIZE", 1)
    rank, local_rank = env_int("RANK", 0), env_int("LOCAL_RANK", 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise UserError(f"RANK={rank} and WORLD_SIZE={world_size} do not fit together; start the run with torchrun")
    device = pick_device(accelerator)
    if device.type == "cuda":
        visible = torch.cuda.device_count()
        if local_rank >= visible:
            raise UserError(
                f"process with LOCAL_RANK={local_rank} needs GPU {local_rank}, but torch sees {visible} CUDA GPU(s); "
                "start at most that many processes per machine"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    ctx = DistributedContext(rank, local_rank, world_size, device)
    if world_size == 1:
        return ctx
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise UserError(f"WORLD_SIZE={world_size} but {' and '.join(missing)} not set; start the run with torchrun")
    if not timeout_s > 0:  # trainer.dist_timeout_s is checked by cnnbench.validate; this guards direct callers
        raise ValueError(f"the distributed timeout must be a positive number of seconds, got {timeout_s}")
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        # CPU ranks on one machine share its cores; without this each would start
        # one thread per core and they would all fight over them.
        local_world = env_int("LOCAL_WORLD_SIZE", world_size)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo", init_method="env://", rank=rank, world_size=world_size,
            timeout=timedelta(seconds=timeout_s),
            # Binds NCCL's communicator to this rank's GPU up front (no guessing which one).
            device_id=device if device.type == "cuda" else None,
        )
    return ctx


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def distributed() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if distributed() else 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place, and return it (unchanged at world size 1).
    Under NCCL the tensor must be on this rank's GPU."""
    if distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (any picklable object); ``obj`` itself at world size 1."""
    if not distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_gather_object(obj: Any) -> List[Any]:
    """Every rank's ``obj`` (any picklable object), by rank, on every rank; ``[obj]`` at world size 1.
    For per-rank state rank 0 saves for all, such as each rank's random streams."""
    if not distributed():
        return [obj]
    gathered: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    if distributed():
        dist.barrier()


def wrap_model(model: nn.Module, ctx: DistributedContext, sync_batchnorm: bool = False) -> nn.Module:
    """``model`` for training on ``ctx``'s ranks: DDP at world size > 1, ``model`` itself at 1.

    ``find_unused_parameters`` stays False: every parameter of our networks
    takes part in each training forward (auxiliary heads run in training mode
    and enter the loss), and the unused-parameter search costs a graph walk
    per step. If a model ever leaves a parameter out, DDP stops with an
    error naming it at the next step rather than training wrongly. With it
    False, DDP passes the forward's output through untouched, so a
    ``ModelOutput`` needs no special handling.
    """
    if ctx.world_size == 1:
        return model
    if sync_batchnorm:
        if ctx.device.type != "cuda":
            raise UserError("sync_batchnorm needs CUDA GPUs (torch's SyncBatchNorm has no CPU version); "
                            "turn it off for CPU runs")
        # Keeps the same parameter and buffer tensors, so an optimizer made before still holds them.
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DDP wrapper (for evaluation, state dicts and attributes such as input_shape)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def broadcast_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics).

    DDP copies rank 0's buffers to the others at the start of each training
    forward, so after the last step each rank holds its own last update. Call
    this before evaluating or saving, so all ranks score the weights rank 0 saves.
    """
    if distributed():
        for buffer in unwrap(model).buffers():
            dist.broadcast(buffer, src=0)


# --------------------------------------------------------------------------- starting processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(n_processes: int, fn: Callable, *args: Any) -> List[Any]:
    """Run ``fn(*args)`` in ``n_processes`` new local processes that form one run, the way
    ``torchrun --nproc-per-node N`` starts them (torch's elastic launcher, no restarts),
    and return their return values by rank.

    ``fn`` and ``args`` must be picklable (``fn`` a module-level function): the
    workers are fresh interpreters. In each, call :func:`setup` to join. When a
    worker fails the launcher stops the others, and this raises a RunFailed
    naming the rank that failed first and why (killed by a signal, its error),
    or a UserError when that error was one.
    """
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if n_processes < 1:
        raise UserError(f"the number of processes must be at least 1, got {n_processes}")
    # The launcher's per-rank error files are read back below; keep them out of the run folder.
    with tempfile.TemporaryDirectory(prefix="cnnbench-launch-") as logs:
        config = LaunchConfig(
            min_nodes=1, max_nodes=1, nproc_per_node=n_processes, run_id=uuid.uuid4().hex,
            rdzv_backend="static", rdzv_endpoint=f"127.0.0.1:{free_port()}", rdzv_configs={"rank": 0},
            max_restarts=0, start_method="spawn", local_addr="127.0.0.1",
            logs_specs=DefaultLogsSpecs(log_dir=logs),
        )
        try:
            with quiet_launcher_logs(), own_signal_handlers():
                results = elastic_launch(config, run_worker)(fn, *args)
        except ChildFailedError as err:
            if all(failure.exitcode == EXIT_STOPPED for failure in err.failures.values()):
                raise WorkersStopped() from None  # every worker saved and stopped on request
            raise worker_error(err, logs) from None
    return [results[rank] for rank in range(n_processes)]


class WorkersStopped(Exception):
    """Every worker of a launch stopped with status EXIT_STOPPED (a stop signal; they saved first)."""


@contextmanager
def own_signal_handlers() -> Iterator[None]:
    """Put back this process's signal handlers after the launcher, which installs its
    own (that raise SignalException) and leaves them behind when it returns."""
    names = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
    saved = {sig: signal.getsignal(sig) for sig in (getattr(signal, n, None) for n in names) if sig is not None}
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in saved.items():
                signal.signal(sig, handler)


CHAINED = "\n\nThe above exception was the direct cause of the following exception:"


class WorkerFailed(RuntimeError):
    """A worker's exception as the launcher records it: "<time> <user|peer|cause> <type>: <message>"."""


def run_worker(fn: Callable, *args: Any) -> Any:
    """A worker's entry point: ``fn(*args)``, its exception re-raised with what :func:`worker_error`
    needs to find the root cause: when it was raised, and whether it was raised inside
    ``torch.distributed`` (a collective that lost its peer or timed out: a consequence of
    another rank's failure, unless no other rank failed), or is a UserError."""
    try:
        return fn(*args)
    except Exception as err:
        frame = traceback.extract_tb(err.__traceback__)[-1].filename if err.__traceback__ else ""
        if isinstance(err, UserError):
            origin = "user"
        elif isinstance(err, RunFailed):
            origin = "failed"
        elif isinstance(err, dist.DistError) or os.path.dirname(dist.__file__) in frame:
            origin = "peer"
        else:
            origin = "cause"
        raise WorkerFailed(f"{time.time():.6f} {origin} {type(err).__name__}: {err}") from err


def worker_error(err, logs: str) -> Exception:
    """One exception for a failed launch, from the root cause: a UserError as itself, anything
    else as a RunFailed naming the rank and why it failed (its traceback in the run's log file).

    The root cause is the first failure that did not happen inside a collective.
    Every rank's error file is read, not only those the launcher reports: once
    one rank has failed it stops the others, and a rank whose own error came
    first may be among those it stopped.
    """
    failures = {}  # rank -> (came from a peer, time, origin, message, traceback)
    for path in Path(logs).glob("*/attempt_0/*/error.json"):  # the launcher's layout: <run>/attempt_<n>/<rank>/
        report = json.loads(path.read_text()).get("message", {})
        fields = report.get("message", "").partition(f"{WorkerFailed.__name__}: ")[2].split(" ", 2)
        if len(fields) == 3:
            stamp, origin, message = fields
            failures[int(path.parent.name)] = (origin == "peer", float(stamp), origin, message.strip(),
                                               report.get("extraInfo", {}).get("py_callstack"))
    for rank, failure in err.failures.items():
        if rank not in failures:  # died without raising: killed, crashed, or called exit
            failures[rank] = (False, float(failure.timestamp), "died", exit_cause(failure.exitcode, hint=False), None)
    rank = min(failures, key=lambda r: failures[r][:2])
    came_from_peer, _, origin, message, callstack = failures[rank]
    if origin == "user":
        return UserError(message.partition(": ")[2])
    if callstack:  # the worker's own traceback, without run_worker's re-raise chained after it
        log_to_files(f"worker rank {rank}:\n{callstack.split(CHAINED)[0].rstrip()}")
    first = message.splitlines()[0] if message else "no message"
    if origin == "failed":  # a RunFailed's own words, without its type
        first = first.partition(": ")[2]
    if origin == "died":
        what = f"was {first}"
    elif came_from_peer:  # every failure was a collective giving up: the rank it waited for hung or died
        what = f"gave up waiting for another rank, which hung or died: {first}"
    else:
        what = f"failed: {first}"
    others = len(failures) - 1
    return RunFailed(f"worker rank {rank} of the distributed run {what}"
                     + (f" (and {others} other rank(s) after it)" if others else "")
                     + (OOM_HINT if origin == "died" and first.endswith("SIGKILL") else ""))


def exit_cause(exitcode: int, hint: bool = True) -> str:
    """How a process that raised nothing ended, from its exit code (negative: the signal)."""
    if exitcode < 0:
        return f"killed by signal {signal_name(-exitcode)}" + (OOM_HINT if hint and -exitcode == signal.SIGKILL else "")
    return f"ended with exit code {exitcode} without an error message"


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"number {number}"


# SIGKILL nobody sent on purpose is most often the kernel's out-of-memory killer.
OOM_HINT = " (if nobody sent it, the machine likely ran out of memory: see `dmesg`; try fewer data.workers)"
# torch.utils.data's words for a DataLoader worker that died, most specific first; the
# signal is given by its description (strsignal): "Killed", "Segmentation fault".
# torch's message when no batch came within the DataLoader's `timeout` (cnnbench.data.folders sets it).
DATALOADER_TIMEOUT = re.compile(r"DataLoader timed out after (?P<seconds>\d+) seconds")
DATALOADER_DEATHS = (
    re.compile(r"DataLoader worker \(pid (?P<pid>\d+)\) is killed by signal: (?P<signal>[^.]+)\."),
    re.compile(r"DataLoader worker \(pid (?P<pid>\d+)\) exited unexpectedly with exit code (?P<code>-?\d+)"),
    re.compile(r"DataLoader worker \(pid\(s\) (?P<pid>[\d, ]+)\) exited unexpectedly"),
)


def dataloader_worker_death(err: BaseException) -> "str | None":
    """One line for an error that says a DataLoader worker process died or hung (anywhere in
    ``err``'s chain of causes): which worker, and the signal or exit code, or how long no batch
    came; None for any other error."""
    messages, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        messages.append(str(err))
        err = err.__cause__ or err.__context__
    descriptions = {signal.strsignal(sig): sig for sig in signal.Signals if signal.strsignal(sig)}
    for message in messages:
        found = DATALOADER_TIMEOUT.search(message)
        if found is not None:
            return (f"DataLoader workers gave no batch in {found['seconds']} s: a worker hung "
                    "(a stalled file system, or a decoder stuck on a file)")
    for pattern in DATALOADER_DEATHS:
        for message in messages:
            found = pattern.search(message)
            if found is None:
                continue
            pid = found["pid"]
            if "signal" in pattern.groupindex:
                sig = descriptions.get(found["signal"].strip())
                cause = exit_cause(-sig) if sig else f"killed by signal {found['signal'].strip()}"
            elif "code" in pattern.groupindex:
                cause = exit_cause(int(found["code"]))
            else:
                cause = "ended unexpectedly"
            return f"DataLoader worker (pid {pid}) was {cause}"
    return None


T = TypeVar("T")


def reporting_worker_deaths(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``; a DataLoader worker that died or hung inside it ends it with a RunFailed of
    one line (:func:`dataloader_worker_death`), the traceback going to the log files.

    Raised once the DataLoader's error is dropped and collected: its frames hold the loaders,
    whose other workers ignore SIGTERM; collected now, the loaders shut them down, where left
    to the interpreter's exit they would be waited for forever."""
    try:
        return fn(*args)
    except RuntimeError as err:
        death = dataloader_worker_death(err)
        if death is None:
            raise
        log_to_files(f"{death}:\n{traceback.format_exc().rstrip()}")
    gc.collect()
    raise RunFailed(death)


def log_to_files(message: str) -> None:
    """Log ``message`` to the log files only (the run's train.log), not to the console: detail
    such as a worker's traceback, for a failure the console reports in one line."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers + log.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


@contextmanager
def quiet_launcher_logs() -> Iterator[None]:
    """Mute torch's launcher loggers: they log each failed worker's traceback and the stopping of
    the others, which :func:`worker_error` reports once, in our words."""
    names = [name for name in logging.Logger.manager.loggerDict
             if name.startswith(("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing"))]
    loggers = [logging.getLogger(name) for name in names]
    before = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, disabled in zip(loggers, before):
            logger.disabled = disabled
