"""Task objectives: the loss a supernet trains on and the score a strategy sees, for images and text."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from naslab.spaces.base import Task
from naslab.spaces.rnn.network import LMOutput
from naslab.spaces.rnn.space import RNNSpace
from naslab.train.objectives import (
    ImageObjective,
    TextObjective,
    evaluate_perplexity,
    objective_for,
    perplexity_reward,
    reward_perplexity,
)

TEXT = Task(20, (), "text", "text")


class Uniform(nn.Module):
    """A language model that predicts every word with probability 1 / vocabulary."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def forward(self, x: torch.Tensor, arch=None, hidden=None) -> LMOutput:
        logits = torch.zeros(*x.shape, self.vocab)
        state = torch.zeros(x.size(1), 1)
        return LMOutput(logits, state, state.expand(x.size(0), -1, -1), state.expand(x.size(0), -1, -1))


def windows(n: int, length: int = 5, batch: int = 3, vocab: int = 20, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    stream = torch.randint(vocab, (n * length + 1, batch), generator=g)
    return [(stream[i * length : (i + 1) * length], stream[i * length + 1 : (i + 1) * length + 1]) for i in range(n)]


def test_uniform_model_has_perplexity_equal_to_the_vocabulary() -> None:
    assert evaluate_perplexity(Uniform(20), windows(4)) == pytest.approx(20.0, rel=1e-6)
    score, extras = TextObjective().score(Uniform(20), None, windows(4))
    assert extras["perplexity"] == pytest.approx(20.0, rel=1e-6) and score == pytest.approx(80.0 / 20.0)


def test_reward_is_enas_c_over_perplexity_and_monotone() -> None:
    assert perplexity_reward(80.0) == 1.0 and perplexity_reward(160.0) == 0.5
    assert perplexity_reward(math.inf) == 0.0 and perplexity_reward(math.nan) == 0.0
    assert reward_perplexity(perplexity_reward(57.3)) == pytest.approx(57.3)
    assert perplexity_reward(60.0) > perplexity_reward(61.0)  # lower perplexity, higher score


def test_text_loss_carries_hidden_state_per_stream_and_advance_false_does_not_move_it() -> None:
    space = RNNSpace(2)
    torch.manual_seed(0)
    net = space.build_child(space.sample(np.random.default_rng(0)), TEXT, emb_size=8).eval()
    batches = windows(2)
    objective = TextObjective(beta=0.0)
    first = objective.loss(net, batches[0], stream="train")
    carried = objective.hidden["train"].clone()
    objective.loss(net, batches[0], stream="valid")
    assert torch.equal(objective.hidden["train"], carried)  # streams do not mix
    objective.loss(net, batches[1], stream="train", advance=False)
    assert torch.equal(objective.hidden["train"], carried)
    second = objective.loss(net, batches[1], stream="train")
    fresh = TextObjective(beta=0.0).loss(net, batches[1], stream="train")
    assert not torch.allclose(second.loss, fresh.loss)  # the carried state changes the second window's loss
    assert first.count == batches[0][1].numel() and 0 <= first.correct <= first.count
    objective.reset("train")
    assert "train" not in objective.hidden and "valid" in objective.hidden


def test_text_loss_adds_temporal_activation_regularisation_only_in_training() -> None:
    space = RNNSpace(2)
    torch.manual_seed(0)
    net = space.build_child(space.sample(np.random.default_rng(1)), TEXT, emb_size=8)
    batch = windows(1)[0]
    net.eval()
    plain = TextObjective(beta=0.0).loss(net, batch).loss
    assert torch.allclose(TextObjective(beta=10.0).loss(net, batch).loss, plain)
    net.train()
    torch.manual_seed(1)
    without = TextObjective(beta=0.0).loss(net, batch).loss
    torch.manual_seed(1)
    with_tar = TextObjective(beta=10.0).loss(net, batch).loss
    assert with_tar > without


def test_image_objective_scores_accuracy_and_the_factory_picks_by_task_kind() -> None:
    net = nn.Linear(4, 3)
    x = torch.randn(10, 4)
    y = net(x).argmax(1)
    score, extras = ImageObjective().score(net, None, [(x, y)])
    assert score == 1.0 and extras == {}
    assert isinstance(objective_for(TEXT), TextObjective)
    assert isinstance(objective_for(Task(10, (1, 8, 8))), ImageObjective)


def test_batch_statistics_scores_with_the_batchs_statistics_and_leaves_everything_as_it_was() -> None:
    """Inside: every module in training mode, BatchNorm on the batch's statistics, no gradient; after:
    running statistics, momenta and each module's mode as before (also when called many times, as a
    weight-sharing search does, with the module list cached)."""
    from torch import nn

    from naslab.train.objectives import batch_statistics

    net = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3, momentum=0.3), nn.Dropout(0.5), nn.BatchNorm2d(3))
    net[3].eval()  # a submodule in eval mode while the network trains
    x = torch.randn(4, 2, 5, 5) * 3 + 1
    before = [b.running_mean.clone() for b in (net[1], net[3])]
    for _ in range(3):
        with batch_statistics(net):
            assert all(m.training for m in net.modules()) and not torch.is_grad_enabled()
            out = net[1](net[0](x))
            torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)  # batch stats
        assert net.training and not net[3].training and net[1].momentum == 0.3
        assert all(torch.equal(b.running_mean, r) for b, r in zip((net[1], net[3]), before))
    net.eval()
    with batch_statistics(net):
        assert all(m.training for m in net.modules())
    assert not any(m.training for m in net.modules())
