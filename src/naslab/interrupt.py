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
from contextlib import contextmanager
from types import FrameType
from typing import Iterator

from naslab.errors import RunInterrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalStop:
    """The handler's state: which signal stopped the run (None while running)."""

    def __init__(self) -> None:
        self.received: str | None = None
        self.pid = os.getpid()

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self.pid:  # a forked DataLoader worker inherited the handler: the run stops it
            return
        if self.received is not None:  # a second Ctrl-C: the user does not want to wait for the cleanup
            os._exit(128 + signum)
        self.received = signal.Signals(signum).name
        raise RunInterrupted(self.received)


@contextmanager
def stop_on_signals() -> Iterator[SignalStop]:
    """Turns SIGINT / SIGTERM into `RunInterrupted` inside the block; the old handlers come back after it,
    unless it was interrupted: then the process is on its way out and a second signal exits at once."""
    stop = SignalStop()
    previous = {sig: signal.signal(sig, stop.handle) for sig in STOP_SIGNALS}
    try:
        yield stop
    finally:
        if stop.received is None:  # after a first signal, a second one must still exit at once during the cleanup
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def exit_code(signal_name: str) -> int:
    """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signal.Signals[signal_name])
