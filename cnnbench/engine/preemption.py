"""SIGTERM / SIGUSR1 (a cluster taking the node back) or SIGINT (Ctrl-C) -> save at the next
step boundary and stop; the command then exits with EXIT_STOPPED (cnnbench/errors.py)."""

from __future__ import annotations

import logging
import re
import shlex
import signal
import threading
from pathlib import Path

log = logging.getLogger("cnnbench")

# Ctrl-C is handled like a preemption: a KeyboardInterrupt mid-step would lose the steps
# since the last checkpoint and print a traceback. A second Ctrl-C interrupts at once.
SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGUSR1") if hasattr(signal, name))


# Characters a Hydra override value may hold unquoted (a space, a quote or a bracket needs quotes).
HYDRA_PLAIN = re.compile(r"[\w./-]+")


def hydra_quoted(value: str) -> str:
    """``value`` as Hydra's override grammar reads it back unchanged: quoted when it must be."""
    if HYDRA_PLAIN.fullmatch(value):
        return value
    # Hydra reads a backslash as an escape only before a quote or the closing quote.
    escaped = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), value)
    return f"'{escaped}'"


def resume_command(run_dir: Path) -> str:
    """The command line that continues the run in ``run_dir``, to paste into a POSIX shell:
    quoted for Hydra (an apostrophe), then for the shell (a space)."""
    return f"cnnbench train {shlex.quote('trainer.resume=' + hydra_quoted(str(run_dir)))}"


class Preempted(Exception):
    """Raised by the loop after it saved a checkpoint on request."""


class PreemptionFlag:
    """While active, the signals set a flag the training loop polls once per step."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C twice: the user does not want to wait for the step to end
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        log.info(f"received {self.signal_name}: saving a checkpoint at the next step, then stopping")

    def __enter__(self) -> "PreemptionFlag":
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
