"""NonFiniteWatch: a NaN loss is caught on the step it happens on a CPU, and within the logging
interval on an accelerator, whose flag stays on the device between reads."""

from __future__ import annotations

import torch

from naslab.train.nonfinite import NonFiniteWatch


def test_cpu_losses_are_read_every_step() -> None:
    watch = NonFiniteWatch()
    assert not watch.diverged(torch.tensor(1.0), 0, every=50)
    assert not watch.diverged(torch.tensor(2.0), 1, every=50)
    assert watch.diverged(torch.tensor(float("nan")), 2, every=50)
    assert watch.window() == "step 2"
    watch.reset()
    assert not watch.diverged(torch.tensor(0.5), 0) and watch.flag is not None and not bool(watch.flag)


class _DeviceLoss(torch.Tensor):
    """A CPU tensor that reports a non-CPU device, to exercise the accelerator path without one."""

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return torch.device("meta")


def test_an_accelerator_reads_the_flag_only_at_the_interval_and_remembers_earlier_steps() -> None:
    watch = NonFiniteWatch()
    losses = [1.0, float("inf"), 1.0, 1.0, 1.0, 1.0]
    seen = []
    for step, value in enumerate(losses):
        loss = torch.tensor(value).as_subclass(_DeviceLoss)
        seen.append(watch.diverged(loss, step, every=4))
        if seen[-1]:
            break
    # steps 0-2 are not read; step 3 (4 steps since the start) reads the inf of step 1 it accumulated
    assert seen == [False, False, False, True]
    assert watch.window() == "one of steps 0-3"
