"""NonFiniteWatch: a NaN loss is caught on the step it happens on a CPU, and within the logging
interval on an accelerator, whose flag stays on the device between reads (and at the epoch's end, before
a checkpoint); the non-finite weights of a state dict; a damaged checkpoint refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from naslab.errors import CorruptStateError
from naslab.train.nonfinite import NonFiniteWatch, check_checkpoint, describe_names, nonfinite_tensors


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


def test_read_now_reads_the_unread_steps_at_an_epochs_end() -> None:
    """An accelerator's last steps of an epoch fall before the next interval: read before the checkpoint."""
    watch = NonFiniteWatch()
    for step, value in enumerate([1.0, 1.0, 1.0, 1.0, float("nan")]):
        assert not watch.diverged(torch.tensor(value).as_subclass(_DeviceLoss), step, every=4)  # step 3 read: finite
    assert watch.read_now() and watch.window() == "step 4"
    fresh = NonFiniteWatch()
    assert not fresh.read_now()  # nothing recorded
    assert not fresh.diverged(torch.tensor(1.0), 0) and not fresh.read_now()  # everything already read


def test_nonfinite_tensors_names_the_floating_tensors_with_a_nan_or_an_infinity() -> None:
    state = {
        "a": torch.ones(3),
        "b": torch.tensor([1.0, float("nan")]),
        "steps": torch.tensor(7),  # an integer buffer (num_batches_tracked) is never non-finite
        "c": torch.tensor(float("-inf"), dtype=torch.float64),
        "note": "not a tensor",
    }
    assert nonfinite_tensors(state) == ["b", "c"]
    assert nonfinite_tensors({}) == [] and describe_names(["a", "b", "c", "d", "e"]) == "a, b, c and 2 more"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "is unreadable (EOFError"),
        (b"garbage" * 100, "is unreadable (UnpicklingError"),
        ({"epoch": 0}, "is not a Lightning checkpoint (it has no state_dict)"),
        ({"state_dict": {"w": torch.tensor([float("nan")]), "v": torch.ones(1)}}, "holds non-finite weights (w)"),
    ],
)
def test_check_checkpoint_refuses_a_damaged_file_in_one_line_naming_it(tmp_path: Path, content, reason) -> None:
    path = tmp_path / "search.ckpt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    kept = path.read_bytes()
    with pytest.raises(CorruptStateError) as err:
        check_checkpoint(path, "move it away to start over")
    message = str(err.value)
    assert message.startswith(f"{path} {reason}") and message.endswith("; move it away to start over")
    assert "\n" not in message and path.read_bytes() == kept


def test_check_checkpoint_accepts_a_finite_one(tmp_path: Path) -> None:
    path = tmp_path / "search.ckpt"
    torch.save({"epoch": 1, "state_dict": {"w": torch.ones(2), "n": torch.tensor(3)}}, path)
    check_checkpoint(path, "unused")
