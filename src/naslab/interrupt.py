"""Ctrl-C and SIGTERM: stop within seconds, keep every finished evaluation, say how to resume.

The first SIGINT or SIGTERM raises `RunInterrupted` where the run is (a BaseException, so a trial's
`except Exception` does not record the interrupted trial as failed: it is simply not in the archive
and is evaluated again on resume). Everything a run has recorded is already on disk, written as it
finished (archive lines, checkpoints, atomic state files), so stopping anywhere loses at most the
trial or epoch in progress, as a kill -9 would, and the exception unwinds through the `finally`
blocks that close process pools and the logger. A second signal exits at once.

Lightning composes its own SIGTERM handler with the one found when `fit` starts (this one), and
lets a BaseException from a training step propagate after its teardown, so this works inside
training loops too.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Any, Iterator

from naslab.errors import RunInterrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
RETRY_SIGNAL = signal.SIGUSR2  # re-raises a stop that was lost (see SignalStop.retry)


class SignalStop:
    """The handler's state: which signal stopped the run (None while running), and whether the stop
    reached the run's own handling (`acknowledge`)."""

    def __init__(self) -> None:
        self.received: str | None = None
        self.pid = os.getpid()
        self.acknowledged = False

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self.pid:  # a forked DataLoader worker inherited the handler: the run stops it
            return
        if self.received is not None:  # a second Ctrl-C: the user does not want to wait for the cleanup
            os._exit(128 + signum)
        self.received = signal.Signals(signum).name
        self._retry_later()
        raise RunInterrupted(self.received)

    def retry(self, signum: int, frame: FrameType | None) -> None:
        """An exception raised where Python ignores it (a `__del__` running when the signal came) is lost;
        until the run has acknowledged the stop, it is raised again every second."""
        if os.getpid() != self.pid or self.acknowledged or self.received is None:
            return
        self._retry_later()
        raise RunInterrupted(self.received)

    def _retry_later(self) -> None:
        timer = threading.Timer(1.0, self._poke)
        timer.daemon = True
        timer.start()

    def _poke(self) -> None:
        if not self.acknowledged:
            os.kill(self.pid, RETRY_SIGNAL)


_active: list[SignalStop] = []


def _quiet_about_stops(hook: Any) -> Any:
    def unraisable(info: Any) -> None:
        if not isinstance(info.exc_value, RunInterrupted):
            hook(info)

    return unraisable


def acknowledge() -> None:
    """Called where the run handles its RunInterrupted: no more retries (its cleanup runs undisturbed)."""
    for stop in _active:
        stop.acknowledged = True


@contextmanager
def stop_on_signals() -> Iterator[SignalStop]:
    """Turns SIGINT / SIGTERM into `RunInterrupted` inside the block; the old handlers come back after it,
    unless it was interrupted: then the process is on its way out and a second signal exits at once."""
    stop = SignalStop()
    previous = {sig: signal.signal(sig, stop.handle) for sig in STOP_SIGNALS}
    previous[RETRY_SIGNAL] = signal.signal(RETRY_SIGNAL, stop.retry)
    _active.append(stop)
    hook = sys.unraisablehook
    sys.unraisablehook = _quiet_about_stops(hook)  # a stop lost in a `__del__` is retried, not reported
    try:
        yield stop
    finally:
        sys.unraisablehook = hook
        _active.remove(stop)
        stop.acknowledged = True
        if stop.received is None:  # after a first signal, a second one must still exit at once during the cleanup
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def exit_code(signal_name: str) -> int:
    """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signal.Signals[signal_name])
