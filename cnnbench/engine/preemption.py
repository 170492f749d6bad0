"""SIGTERM / SIGUSR1 (a cluster taking the node back) -> save at the next step boundary and stop."""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger("cnnbench")

SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s is not None)


class Preempted(Exception):
    """Raised by the loop after it saved a checkpoint on request."""


class PreemptionFlag:
    """While active, the signals set a flag the training loop polls once per step."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
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
