"""REINFORCE over a space's decision sequence: the ENAS controller (also Zoph & Le, MLPNAS).

An LSTM emits the space's tokens one position at a time, with one softmax head per position whose
size comes from `space.token_choices()`; the token just emitted is embedded and fed back. Logits
are shaped as in ENAS (Pham et al. 2018; the NAS overview, file 004): divided by a temperature,
then squashed by `tanh_constant * tanh(.)`. Training is REINFORCE on the evaluator's score with an
entropy bonus in the reward, an exponential moving-average baseline and Adam (ENAS micro:
lr 0.0035, entropy weight 1e-4, baseline decay 0.99, temperature 5, tanh constant 1.1; the
hidden size is 100 here, as the issue asks).

MLPNAS (file 004, Sec. 4.2 "Accuracy predictor") adds an optional accuracy predictor: "a single dense
layer which will share weights with the LSTM layer", fed with the true validation accuracies of sampled
architectures, so that the LSTM's hidden states learn what separates good architectures
from bad ones. `predictor=True` builds it as in the authors' Keras code: a Linear(hidden, 1) + sigmoid on
the LSTM's state after the last token (one more LSTM step reads the last position's embedding, so the
prediction sees the whole sequence), trained jointly with REINFORCE on the told scores by MSE; the loss
is REINFORCE + `predictor_weight` * MSE (the code's loss weights are 1 and 1). Each update here sees the
batch just told; file 004 retrains the controller after every controller epoch on "a new dataset that
collects the architectures sampled since the first epoch" (`updates_per_tell` > 1 repeats the step).
The paper calls the pair adversarial ("the controller ... will try to ... generate architectures not
easily predictable by the predictor"), but the code, followed here, simply minimises the sum; the
predictor's gradient reaches the shared LSTM, embeddings and start input. Its sigmoid predicts scores
in (0, 1): accuracies. The predictor head is created after every other module and reads no random
numbers while sampling, so with it on or off a seeded controller starts from the same weights and
samples the same first proposals.

MLPNAS also decays the controller's lr (Sec. 5.1: "Adam ... 0.01 ... for the controller ... The
controller uses a learning rate decay of 0.1"): Keras' optimizer `decay`, lr_t = lr / (1 + decay * t)
with t the number of optimizer steps taken; `lr_decay=0` (the default) keeps it constant.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from naslab.spaces.base import Space
from naslab.strategies.base import G, Strategy


@dataclass
class Sampled:
    """Token sequences with their log-probabilities and entropies (summed over positions)."""

    tokens: torch.Tensor  # (n, positions) int64
    log_prob: torch.Tensor  # (n,)
    entropy: torch.Tensor  # (n,)
    predicted: torch.Tensor | None = None  # (n,) in (0, 1): the accuracy predictor's output, when it has one


class Controller(nn.Module):
    """An LSTM cell that emits one token per position of the space's token table."""

    def __init__(
        self,
        token_choices: Sequence[int],
        hidden: int = 100,
        temperature: float | None = 5.0,
        tanh_constant: float | None = 1.1,
        predictor: bool = False,
    ):
        super().__init__()
        if not token_choices or min(token_choices) < 1:
            raise ValueError(f"the controller needs a non-empty token table of positive sizes, got {token_choices}")
        self.token_choices = list(token_choices)
        self.temperature, self.tanh_constant = temperature, tanh_constant
        self.start = nn.Parameter(torch.zeros(1, hidden))  # learned input at the first position
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in self.token_choices)
        self.embeddings = nn.ModuleList(nn.Embedding(n, hidden) for n in self.token_choices)
        nn.init.uniform_(self.start, -0.1, 0.1)
        # Last, so that the weights above (and the parameter order) are those of a controller without it.
        self.predictor = nn.Linear(hidden, 1) if predictor else None

    def _logits(self, position: int, h: torch.Tensor) -> torch.Tensor:
        logits = self.heads[position](h)
        if self.temperature:
            logits = logits / self.temperature
        if self.tanh_constant:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    def forward(self, n: int, tokens: torch.Tensor | None = None, generator: torch.Generator | None = None) -> Sampled:
        """Samples `n` sequences, or scores the given `tokens` (n, positions) when passed."""
        x = self.start.expand(n, -1)
        state = None
        chosen, log_prob, entropy = [], torch.zeros(n), torch.zeros(n)
        for position in range(len(self.token_choices)):
            h, c = self.lstm(x, state)
            state = (h, c)
            log_p = torch.log_softmax(self._logits(position, h), dim=-1)
            if tokens is None:
                token = torch.multinomial(log_p.exp(), 1, generator=generator).squeeze(1)
            else:
                token = tokens[:, position]
            log_prob = log_prob + log_p.gather(1, token.unsqueeze(1)).squeeze(1)
            entropy = entropy - (log_p.exp() * log_p).sum(dim=1)
            chosen.append(token)
            x = self.embeddings[position](token)
        predicted = None
        if self.predictor is not None:  # one more step reads the last token: the state has seen them all
            h, _ = self.lstm(x, state)
            predicted = torch.sigmoid(self.predictor(h)).squeeze(1)
        return Sampled(torch.stack(chosen, dim=1), log_prob, entropy, predicted)


class ReinforceStrategy(Strategy[G]):
    """Samples architectures from the controller and trains it by REINFORCE on their scores.

    With `predictor=True` the controller also learns to predict the told scores (MLPNAS's accuracy
    predictor): `predict` queries it and each proposal's prediction is archived (`proposal_info`).
    `lr_decay` > 0 decays Adam's lr per optimizer step as Keras does: lr / (1 + lr_decay * step).
    """

    name = "reinforce"

    def __init__(
        self,
        space: Space[G],
        seed: int = 0,
        hidden: int = 100,
        temperature: float | None = 5.0,
        tanh_constant: float | None = 1.1,
        lr: float = 0.0035,
        entropy_weight: float = 1e-4,
        baseline_decay: float = 0.99,
        updates_per_tell: int = 1,
        predictor: bool = False,
        predictor_weight: float = 1.0,
        lr_decay: float = 0.0,
    ):
        super().__init__(space)
        if lr_decay < 0:
            raise ValueError(f"lr_decay must be >= 0, got {lr_decay}")
        torch.manual_seed(seed)  # controller initialisation is part of the seeded run
        self.controller = Controller(space.token_choices(), hidden, temperature, tanh_constant, predictor)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=lr)
        self.lr_decay = lr_decay
        # Keras' inverse-time decay, stepped once per optimizer step; with lr_decay=0 the factor is 1.0 exactly.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: 1.0 / (1.0 + lr_decay * step))
        self.generator = torch.Generator().manual_seed(seed)
        self.entropy_weight, self.baseline_decay = entropy_weight, baseline_decay
        self.updates_per_tell = updates_per_tell
        self.predictor_weight = predictor_weight
        self.baseline: float | None = None
        self._asked_predictions: dict[str, float] = {}  # the last ask's predictions, for proposal_info
        self._mse: list[float] = []  # the predictor's error on each tell since pop_metrics
        self._told_since_pop = False

    @property
    def has_predictor(self) -> bool:
        return self.controller.predictor is not None

    def ask(self, n: int) -> list[G]:
        with torch.no_grad():
            sampled = self.controller(n, generator=self.generator)
        genotypes = [self.space.from_tokens(t.tolist()) for t in sampled.tokens]
        if sampled.predicted is not None:  # computed with the samples anyway: proposal_info needs no forward
            self._asked_predictions = {
                self.space.key(g): p for g, p in zip(genotypes, sampled.predicted.tolist(), strict=True)
            }
        return genotypes

    def _tokens(self, genotypes: Sequence[G]) -> torch.Tensor:
        return torch.tensor([self.space.to_tokens(g) for g in genotypes], dtype=torch.long)

    def predict(self, genotypes: Sequence[G]) -> list[float]:
        """The accuracy predictor's scores for `genotypes` (in (0, 1)); needs `predictor=True`."""
        if not self.has_predictor:
            raise RuntimeError("this ReinforceStrategy has no accuracy predictor: build it with predictor=True")
        if not genotypes:
            return []
        with torch.no_grad():
            predicted = self.controller(len(genotypes), tokens=self._tokens(genotypes)).predicted
        assert predicted is not None
        return predicted.tolist()

    def proposal_info(self, genotype: G) -> dict[str, Any]:
        """The predictor's score for `genotype` when it was asked (archived under "reinforce")."""
        if not self.has_predictor:
            return {}
        predicted = self._asked_predictions.get(self.space.key(genotype))
        if predicted is None:  # not from the last ask: one forward pass now
            predicted = self.predict([genotype])[0]
        return {self.name: {"predicted": predicted}}

    def tell(self, genotypes: Sequence[G], scores: Sequence[float]) -> None:
        """One REINFORCE step (per `updates_per_tell`) on the told batch.

        Log-probabilities are recomputed from the genotypes' tokens, so any genotypes can be told
        (a resumed search re-tells archived ones). With the predictor, the loss adds
        `predictor_weight` * MSE(predicted, scores); `pop_metrics` reports that MSE as it was before
        the tell's first update, on architectures the predictor had not yet been told.
        """
        if not genotypes:
            return
        tokens = self._tokens(genotypes)
        scores_t = torch.tensor(list(scores), dtype=torch.float32)
        self._told_since_pop = True
        for update in range(self.updates_per_tell):
            scored = self.controller(len(genotypes), tokens=tokens)
            rewards = scores_t + self.entropy_weight * scored.entropy.detach()
            for reward in rewards.tolist():  # ENAS: baseline <- decay * baseline + (1 - decay) * reward
                self.baseline = (
                    reward
                    if self.baseline is None
                    else (self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward)
                )
            advantage = rewards - self.baseline
            loss = -(scored.log_prob * advantage).mean()
            if scored.predicted is not None:
                mse = torch.nn.functional.mse_loss(scored.predicted, scores_t)
                if update == 0:
                    self._mse.append(mse.item())
                loss = loss + self.predictor_weight * mse
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()

    def pop_metrics(self) -> dict[str, float]:
        """Since the last call: the predictor's mean MSE (`predictor_mse`) and, with lr decay, the lr of
        the next update (`lr`); {} when neither applies or nothing was told."""
        metrics: dict[str, float] = {}
        if self._mse:
            metrics["predictor_mse"] = float(sum(self._mse) / len(self._mse))
        if self.lr_decay and self._told_since_pop:
            metrics["lr"] = float(self.optimizer.param_groups[0]["lr"])
        self._mse, self._told_since_pop = [], False
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """A snapshot (deep copy): torch's state dicts reference live tensors that later steps change."""
        return copy.deepcopy(
            {
                "controller": self.controller.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "generator": self.generator.get_state(),
                "baseline": self.baseline,
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores `state_dict`, also one written before the predictor and lr decay existed.

        Such a checkpoint has no "scheduler" (the decay then counts from this point on) and, when
        loaded with `predictor=True`, no predictor head: the head keeps its fresh weights and fresh Adam
        moments while everything else continues from the checkpoint.
        """
        controller_state, optimizer_state = state["controller"], state["optimizer"]
        fresh = self.controller.state_dict()
        head = {k: v for k, v in fresh.items() if k.startswith("predictor.")}
        if head and not head.keys() & controller_state.keys():  # a checkpoint from a controller without it
            controller_state = {**controller_state, **head}
            # the head's parameters come last in the optimizer's only group: give them ids, with no Adam state
            group = optimizer_state["param_groups"][0]
            ids = list(group["params"]) + list(range(len(group["params"]), len(list(self.controller.parameters()))))
            optimizer_state = {**optimizer_state, "param_groups": [{**group, "params": ids}]}
        self.controller.load_state_dict(controller_state)
        self.optimizer.load_state_dict(optimizer_state)
        if "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        self.baseline = state["baseline"]
        self._asked_predictions, self._mse, self._told_since_pop = {}, [], False
