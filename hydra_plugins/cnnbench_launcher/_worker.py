"""The job's side of the pool launcher: runs in a fresh process, started with the job's
CUDA_VISIBLE_DEVICES and OMP_NUM_THREADS already set, and runs the job exactly as Hydra's
basic launcher would in its own process (``hydra.core.utils.run_job``): the job's folder, its
``.hydra/`` record, its logging, the app's own code. What the job did comes back as one message."""

import functools
import logging
import sys
from typing import Any, Callable, List, Optional

log = logging.getLogger(__name__)

# Jobs of a `cnnbench train` sweep record how they ended in this list (cnnbench/commands/sweep.py),
# which the main process reads for the sweep's summary line and exit status.
OUTCOMES_MODULE = "cnnbench.commands.sweep"


def run_one_job(payload: bytes, reply) -> None:
    """The started process's entry point: ``payload`` (cloudpickle) holds Hydra's global state,
    the task function and the job's composed config; the message on ``reply`` says how it ended:
    ("returned", JobReturn), ("exit", status) for a SystemExit, ("interrupted", None) or
    ("crashed", error), each with the sweep outcomes the job recorded."""
    import cloudpickle
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job

    job = cloudpickle.loads(payload)
    Singleton.set_state(job["state"])
    recorded = outcomes()
    before = len(recorded) if recorded is not None else 0
    status: Any = 0
    try:
        ret = run_job(hydra_context=job["context"], task_function=noted(job["task"], job["note"]),
                      config=job["config"], job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        message = ("returned", ret)
    except SystemExit as stop:  # a command's own exit (a stopped run: 3; a refused sweep folder: 2)
        status = stop.code
        message = ("exit", stop.code)
    except KeyboardInterrupt:
        status = 130
        message = ("interrupted", None)
    except BaseException as err:  # noqa: BLE001 - Hydra's own machinery failed; the sweep hears of it
        status = 1
        message = ("crashed", err)
    recorded = outcomes()
    send(reply, (*message, list(recorded[before:]) if recorded is not None else []))
    logging.shutdown()  # the job's train.log complete before the main process reads the result
    sys.exit(status)


def noted(task: Callable, note: str) -> Callable:
    """``task`` that first writes where the job runs (its GPUs and threads) to the job's log."""

    @functools.wraps(task)
    def run(cfg):
        log.info(note)
        return task(cfg)

    return run


def outcomes() -> Optional[List[Any]]:
    module = sys.modules.get(OUTCOMES_MODULE)
    return getattr(module, "OUTCOMES", None)


def send(reply, message: tuple) -> None:
    """Send ``message``; a return value or error that cannot be pickled is sent as its text."""
    import cloudpickle

    try:
        data = cloudpickle.dumps(message)
    except Exception:  # noqa: BLE001 - any pickling failure: the text still says what happened
        kind, value, recorded = message
        if kind == "returned":
            value.return_value = portable(value._return_value)
        else:
            value = portable(value)
        data = cloudpickle.dumps((kind, value, recorded))
    reply.send_bytes(data)
    reply.close()


def portable(value: Any) -> Any:
    """``value`` if it pickles, else a RuntimeError (for an exception) or a string saying what it was."""
    import cloudpickle

    try:
        cloudpickle.dumps(value)
        return value
    except Exception:  # noqa: BLE001
        if isinstance(value, BaseException):
            return RuntimeError(f"{type(value).__name__}: {value}")
        return repr(value)
