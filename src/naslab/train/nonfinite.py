"""Noticing a NaN or infinite training loss without stalling an accelerator at every step.

`if not torch.isfinite(loss)` copies a flag from the device to the host, which on a GPU waits for
every queued kernel: one stall per step. `NonFiniteWatch` keeps an "any step was non-finite" flag
on the loss's device and reads it every step on a CPU (where reading costs nothing) and every
`every` steps on an accelerator (the Trainer's logging interval). A diverged network stays diverged
(its weights are NaN after the update), so at most `every - 1` wasted steps separate the divergence
from the error, and the error names the window it happened in.
"""

from __future__ import annotations

import lightning as L
import torch


def log_interval(module: L.LightningModule) -> int:
    """The attached Trainer's `log_every_n_steps` (1 for a module used without a Trainer)."""
    trainer = module._trainer
    return int(trainer.log_every_n_steps) if trainer is not None else 1


class NonFiniteWatch:
    """Accumulates `~isfinite(loss)` on the device; `diverged(step)` says when it has been seen."""

    def __init__(self) -> None:
        self.flag: torch.Tensor | None = None
        self.last_read = -1  # the step at which the flag was last read
        self.window_start = 0  # the first step the flag read last covers

    def diverged(self, loss: torch.Tensor, step: int, every: int = 1) -> bool:
        """Records this step's loss; True once a non-finite loss has been recorded and the flag is read."""
        bad = ~torch.isfinite(loss.detach())
        self.flag = bad if self.flag is None or self.flag.device != bad.device else self.flag | bad
        if loss.device.type != "cpu" and step - self.last_read < max(every, 1):
            return False
        self.window_start, self.last_read = self.last_read + 1, step
        return bool(self.flag)

    def window(self) -> str:
        """The steps the last read covered: "step 7", or "one of steps 3-7" on an accelerator."""
        if self.window_start >= self.last_read:
            return f"step {self.last_read}"
        return f"one of steps {self.window_start}-{self.last_read}"

    def reset(self) -> None:
        """Forget the flag (a new epoch's step numbers start again from 0)."""
        self.flag, self.last_read, self.window_start = None, -1, 0
