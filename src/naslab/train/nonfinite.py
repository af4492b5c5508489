"""Noticing a NaN or infinite training loss without stalling an accelerator at every step.

`if not torch.isfinite(loss)` copies a flag from the device to the host, which on a GPU waits for
every queued kernel: one stall per step. `NonFiniteWatch` keeps an "any step was non-finite" flag
on the loss's device and reads it every step on a CPU (where reading costs nothing) and every
`every` steps on an accelerator (the Trainer's logging interval). A diverged network stays diverged
(its weights are NaN after the update), so at most `every - 1` wasted steps separate the divergence
from the error, and the error names the window it happened in. `read_now` reads the flag whatever the
interval, at an epoch's end, so no checkpoint is written after an unread divergence.

What a diverged loop leaves behind must be what it had before it diverged, so

* `nonfinite_tensors` names the non-finite weights of a state dict: a checkpoint holding one is refused
  when written (the previous one stays) and when a resume reads it;
* `check_checkpoint` is the test a resumed search or training puts its checkpoint to before Lightning
  loads it: a truncated, garbage or non-finite file is one `CorruptStateError` line naming the file and
  what moving it away restarts, instead of a page of torch traceback or a silent start from scratch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import lightning as L
import torch

from naslab.errors import CorruptStateError


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
        self.last_step = -1  # the last step recorded

    def diverged(self, loss: torch.Tensor, step: int, every: int = 1) -> bool:
        """Records this step's loss; True once a non-finite loss has been recorded and the flag is read."""
        bad = ~torch.isfinite(loss.detach())
        self.flag = bad if self.flag is None or self.flag.device != bad.device else self.flag | bad
        self.last_step = step
        if loss.device.type != "cpu" and step - self.last_read < max(every, 1):
            return False
        self.window_start, self.last_read = self.last_read + 1, step
        return bool(self.flag)

    def read_now(self) -> bool:
        """Reads the flag now, whatever the interval: True when a step not yet read was non-finite.

        Called at an epoch's end, before anything is scored or checkpointed: the last `every - 1` steps of
        an epoch on an accelerator are otherwise never read (the next epoch's `reset` forgets them), and the
        diverged weights would be saved as the epoch's checkpoint.
        """
        if self.flag is None or self.last_step <= self.last_read:
            return False
        self.window_start, self.last_read = self.last_read + 1, self.last_step
        return bool(self.flag)

    def window(self) -> str:
        """The steps the last read covered: "step 7", or "one of steps 3-7" on an accelerator."""
        if self.window_start >= self.last_read:
            return f"step {self.last_read}"
        return f"one of steps {self.window_start}-{self.last_read}"

    def reset(self) -> None:
        """Forget the flag (a new epoch's step numbers start again from 0)."""
        self.flag, self.last_read, self.window_start, self.last_step = None, -1, 0, -1


def nonfinite_tensors(state: Mapping[str, Any]) -> list[str]:
    """The names of the floating-point tensors of a state dict that hold a NaN or an infinity.

    The flags of tensors on one device are read in one transfer (one sync on an accelerator, not one per tensor).
    """
    named = [(k, v) for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    if not named:
        return []
    flags = [~torch.isfinite(v).all() for _, v in named]
    bad = torch.stack(flags).tolist() if len({f.device for f in flags}) == 1 else [bool(f) for f in flags]
    return [name for (name, _), flag in zip(named, bad) if flag]


def describe_names(names: list[str], shown: int = 3) -> str:
    """`a, b, c and 4 more`: a few names for a one-line message."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def check_checkpoint(path: Path, restart: str) -> None:
    """Refuses a checkpoint a resume cannot continue from, in one line naming `path` and ending in `restart`
    (what to do, and what moving the file away restarts).

    Refused: a file torch cannot read (truncated, overwritten, not a checkpoint), one without a state dict,
    and one holding non-finite weights (a diverged training; naslab refuses to write those, so it came from
    elsewhere). The weights of a search or a training cannot be rebuilt without training them again, so
    nothing is replaced or reset here: the user moves the file away and resumes. Read once more than
    Lightning reads it, on resume only.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - torch raises pickle, zip, EOF and runtime errors for a damaged file
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        first = lines[0].split(". ")[0] if lines else ""  # torch's zip errors go on with advice for its own developers
        reason = f"{type(err).__name__}: {first}" if first else type(err).__name__
        reason = reason if len(reason) <= 160 else reason[:157] + "..."
        raise CorruptStateError(f"{path} is unreadable ({reason}); {restart}") from None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise CorruptStateError(f"{path} is not a Lightning checkpoint (it has no state_dict); {restart}")
    bad = nonfinite_tensors(state)
    if bad:
        raise CorruptStateError(f"{path} holds non-finite weights ({describe_names(bad)}); {restart}")
