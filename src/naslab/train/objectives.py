"""What a task's loss and search score are: image classification or word-level language modelling.

The weight-sharing search and DARTS train supernets whose loop is the same for every task; only
the loss of a batch and the score of an architecture differ. An `Objective` is that difference:

- `ImageObjective`: cross-entropy; score = accuracy (batch statistics in BatchNorm, because running
  averages of a supernet mix every architecture it trained).
- `TextObjective`: next-word cross-entropy with AWD-LSTM's temporal activation regularisation, the
  hidden state carried from batch to batch of a stream (truncated BPTT); score = `reward_c / ppl`
  on validation windows in eval mode, ENAS' reward (c = 80): higher is better like accuracy, and
  monotone in perplexity, so rankings and every strategy's "best" are the lowest perplexity.
"""

from __future__ import annotations

import math
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from naslab.spaces.base import Task
from naslab.train.layout import laid_out, memory_format

Batch = tuple[torch.Tensor, torch.Tensor]
REWARD_C = 80.0  # ENAS (melodyguan/enas ptb_enas_controller.py): reward = 80 / valid_ppl


@dataclass
class StepLoss:
    """A batch's loss (with any regularisation), its plain cross-entropy, and its hits.

    `correct` (targets predicted right: accuracy, or next-word accuracy) stays a tensor, so a step that
    does not report it costs no device synchronisation.
    """

    loss: torch.Tensor
    nll: torch.Tensor
    correct: torch.Tensor
    count: int


def perplexity(mean_loss: float) -> float:
    """exp(mean next-word cross-entropy); infinite instead of an overflow."""
    return math.exp(mean_loss) if mean_loss < 700 else math.inf


def perplexity_reward(perplexity: float, reward_c: float = REWARD_C) -> float:
    """ENAS' score of a language model: c / perplexity (0 for a diverged one)."""
    return reward_c / perplexity if math.isfinite(perplexity) and perplexity > 0 else 0.0


def reward_perplexity(score: float, reward_c: float = REWARD_C) -> float:
    """The perplexity behind a `perplexity_reward` score."""
    return reward_c / score if score > 0 else math.inf


_MODULES: "weakref.WeakKeyDictionary[nn.Module, tuple[list[nn.Module], list[nn.Module]]]" = weakref.WeakKeyDictionary()


def _modules_and_batch_norms(net: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    """All modules of `net` and its BatchNorm layers, listed once per network: a supernet has thousands
    of modules and a weight-sharing search scores it thousands of times (walking them took ~17 ms a score)."""
    found = _MODULES.get(net)
    if found is None:
        modules = list(net.modules())
        found = (modules, [m for m in modules if isinstance(m, nn.modules.batchnorm._BatchNorm)])
        _MODULES[net] = found
    return found


@contextmanager
def batch_statistics(net: nn.Module) -> Iterator[None]:
    """BatchNorm normalises with the batch's statistics and leaves running statistics untouched.

    The whole network is in training mode inside (as `net.train()` puts it); afterwards every module is
    in the mode it was in before.
    """
    modules, bns = _modules_and_batch_norms(net)
    momenta = [bn.momentum for bn in bns]
    modes = [m.training for m in modules]
    switched = not all(modes)
    if switched:
        net.train()
    for bn in bns:
        bn.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
    try:
        with torch.no_grad():
            yield
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        if switched:
            for m, mode in zip(modules, modes):
                m.training = mode


@contextmanager
def eval_mode_of(net: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients for the block; the previous mode afterwards."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        net.train(was_training)


class Objective:
    """Loss of a batch and score of an architecture for one kind of task."""

    kind = "image"
    metric = "accuracy"
    memory_format = torch.contiguous_format  # the layout the objective gives batches (images: see ImageObjective)

    def lay_out(self, x: torch.Tensor) -> torch.Tensor:
        """The batch in the objective's memory layout, which its networks are in too (`lay_out_network`)."""
        return laid_out(x, self.memory_format)

    def loss(
        self,
        net: nn.Module,
        batch: Batch,
        arch: Any = None,
        stream: str = "train",
        advance: bool = True,
        regularise: bool = True,
    ) -> StepLoss:
        """The batch's loss; `regularise=False` leaves out the task's regularisation (text: AR / TAR)."""
        raise NotImplementedError

    def score(
        self, net: nn.Module, arch: Any, batches: Sequence[Batch], eval_mode: bool = False
    ) -> tuple[float, dict[str, float]]:
        """(score, extras): higher is better; extras name the raw metric (e.g. perplexity).

        `eval_mode=True` scores the network as it is deployed (DARTS' `infer`): running BatchNorm
        statistics; otherwise images use the batch's statistics (shared supernets, see above).
        """
        raise NotImplementedError

    def reset(self, stream: str | None = None) -> None:
        """Forgets carried state (a new epoch of a stream); images carry none."""


class ImageObjective(Objective):
    """Cross-entropy and accuracy; `channels_last` lays every image batch out in NHWC (naslab.train.layout)."""

    def __init__(self, channels_last: bool = True) -> None:
        self.memory_format = memory_format(channels_last)

    def loss(
        self,
        net: nn.Module,
        batch: Batch,
        arch: Any = None,
        stream: str = "train",
        advance: bool = True,
        regularise: bool = True,
    ) -> StepLoss:
        x, y = self.lay_out(batch[0]), batch[1]
        logits = net(x, arch) if arch is not None else net(x)
        loss = F.cross_entropy(logits, y)
        return StepLoss(loss, loss, (logits.detach().argmax(1) == y).sum(), len(y))

    def score(
        self, net: nn.Module, arch: Any, batches: Sequence[Batch], eval_mode: bool = False
    ) -> tuple[float, dict[str, float]]:
        hits: list[torch.Tensor] = []
        total = 0
        with eval_mode_of(net) if eval_mode else batch_statistics(net):
            for x, y in batches:
                x = self.lay_out(x)
                logits = net(x, arch) if arch is not None else net(x)
                hits.append((logits.argmax(1) == y).sum())  # stays on the device: one read per score
                total += len(y)
        correct = int(torch.stack(hits).sum()) if hits else 0
        return correct / max(total, 1), {}


class TextObjective(Objective):
    """Language modelling; `alpha` / `beta` weigh AWD-LSTM's AR and TAR (DARTS: 0 and 1e-3)."""

    kind = "text"
    metric = "perplexity"

    def __init__(self, alpha: float = 0.0, beta: float = 1e-3, reward_c: float = REWARD_C) -> None:
        self.alpha, self.beta, self.reward_c = alpha, beta, reward_c
        self.hidden: dict[str, torch.Tensor] = {}

    def reset(self, stream: str | None = None) -> None:
        if stream is None:
            self.hidden.clear()
        else:
            self.hidden.pop(stream, None)

    def _hidden(self, stream: str, batch_size: int) -> torch.Tensor | None:
        """The stream's carried state, or None (zeros) at its start or when the batch has other columns."""
        h = self.hidden.get(stream)
        return h if h is not None and h.size(0) == batch_size else None

    def loss(
        self,
        net: nn.Module,
        batch: Batch,
        arch: Any = None,
        stream: str = "train",
        advance: bool = True,
        regularise: bool = True,
    ) -> StepLoss:
        x, y = batch
        out = net(x, arch, hidden=self._hidden(stream, x.size(1)))
        if advance:
            self.hidden[stream] = out.hidden.detach()
        logits = out.logits.reshape(-1, out.logits.size(-1))
        nll = F.cross_entropy(logits, y.reshape(-1))
        loss = nll + regularisation(out, self.alpha, self.beta) if regularise and net.training else nll
        return StepLoss(loss, nll, (logits.detach().argmax(1) == y.reshape(-1)).sum(), y.numel())

    def score(
        self, net: nn.Module, arch: Any, batches: Sequence[Batch], eval_mode: bool = False
    ) -> tuple[float, dict[str, float]]:
        """Perplexity over consecutive windows in eval mode, the hidden state from zero at the first."""
        ppl = evaluate_perplexity(net, batches, arch)
        return perplexity_reward(ppl, self.reward_c), {"perplexity": ppl}


def regularisation(out: Any, alpha: float, beta: float) -> torch.Tensor:
    """AWD-LSTM's activation regularisation (alpha, on dropped outputs) and temporal AR (beta, raw outputs)."""
    total = out.logits.new_zeros(())
    if alpha:
        total = total + alpha * out.output.pow(2).mean()
    if beta and out.raw_output.size(0) > 1:
        total = total + beta * (out.raw_output[1:] - out.raw_output[:-1]).pow(2).mean()
    return total


def evaluate_perplexity(net: nn.Module, batches: Sequence[Batch], arch: Any = None) -> float:
    """exp(mean next-word loss) over consecutive windows of one stream, hidden state carried, eval mode."""
    total, count, hidden = 0.0, 0, None
    with eval_mode_of(net):
        for x, y in batches:
            out = net(x, arch, hidden=hidden)
            hidden = out.hidden
            total += float(F.cross_entropy(out.logits.reshape(-1, out.logits.size(-1)), y.reshape(-1), reduction="sum"))
            count += y.numel()
    return perplexity(total / max(count, 1))


def objective_for(task: Task, channels_last: bool = True, **options: Any) -> Objective:
    """The objective of a task's kind; `options` go to the text objective (alpha, beta, reward_c),
    `channels_last` to the image objective (ignored for text)."""
    return TextObjective(**options) if task.kind == "text" else ImageObjective(channels_last)
