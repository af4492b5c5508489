"""evaluator.bn_recalibration: BatchNorm statistics recomputed from training batches before validation."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch import nn

from naslab.evaluators.standalone import BatchNormRecalibration

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(1)
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += 1
        return self.bn(x)


def test_running_statistics_are_the_mean_over_the_first_batches() -> None:
    """Batch k is all k, so each batch has mean k and variance 0: after 3 batches the statistics are the
    plain average of 0, 1, 2 (cumulative, not momentum 0.1 on stale values), and nothing else changed."""
    net = Net().eval()
    net.bn.running_mean.fill_(7.0)
    net.bn.running_var.fill_(5.0)
    batches = [(torch.full((4, 1, 2, 2), float(k)), torch.zeros(4)) for k in range(5)]
    BatchNormRecalibration(3).on_validation_start(SimpleNamespace(train_dataloader=batches), net)
    assert net.bn.running_mean.item() == pytest.approx(1.0)
    assert net.bn.running_var.item() == pytest.approx(0.0)
    assert net.seen == 3 and not net.training and net.bn.momentum == 0.1


def test_no_training_batches_leaves_the_network_alone() -> None:
    net = Net().eval()
    BatchNormRecalibration(3).on_validation_start(SimpleNamespace(train_dataloader=None), net)
    assert net.seen == 0 and net.bn.running_mean.item() == 0.0


def test_zero_batches_is_a_one_line_error() -> None:
    from naslab.evaluators.standalone import StandaloneEvaluator
    from naslab.spaces import MicroSpace, Task

    with pytest.raises(ValueError, match="evaluator.bn_recalibration must be null or >= 1"):
        StandaloneEvaluator(MicroSpace(1), Task(10, (1, 8, 8)), lambda **_: None, lambda **_: None, bn_recalibration=0)
