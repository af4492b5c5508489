"""REINFORCE over a space's decision sequence: the ENAS controller (also Zoph & Le, MLPNAS).

An LSTM emits the space's tokens one position at a time, with one softmax head per position whose
size comes from `space.token_choices()`; the token just emitted is embedded and fed back. Logits
are shaped as in ENAS (Pham et al. 2018; the NAS overview, file 004): divided by a temperature,
then squashed by `tanh_constant * tanh(.)`. Training is REINFORCE on the evaluator's score with an
entropy bonus in the reward, an exponential moving-average baseline and Adam (ENAS micro:
lr 0.0035, entropy weight 1e-4, baseline decay 0.99, temperature 5, tanh constant 1.1; the
hidden size is 100 here, as the issue asks).
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


class Controller(nn.Module):
    """An LSTM cell that emits one token per position of the space's token table."""

    def __init__(
        self,
        token_choices: Sequence[int],
        hidden: int = 100,
        temperature: float | None = 5.0,
        tanh_constant: float | None = 1.1,
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
        return Sampled(torch.stack(chosen, dim=1), log_prob, entropy)


class ReinforceStrategy(Strategy[G]):
    """Samples architectures from the controller and trains it by REINFORCE on their scores."""

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
    ):
        super().__init__(space)
        torch.manual_seed(seed)  # controller initialisation is part of the seeded run
        self.controller = Controller(space.token_choices(), hidden, temperature, tanh_constant)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.entropy_weight, self.baseline_decay = entropy_weight, baseline_decay
        self.updates_per_tell = updates_per_tell
        self.baseline: float | None = None

    def ask(self, n: int) -> list[G]:
        with torch.no_grad():
            sampled = self.controller(n, generator=self.generator)
        return [self.space.from_tokens(t.tolist()) for t in sampled.tokens]

    def tell(self, genotypes: Sequence[G], scores: Sequence[float]) -> None:
        """One REINFORCE step (per `updates_per_tell`) on the told batch.

        Log-probabilities are recomputed from the genotypes' tokens, so any genotypes can be told
        (a resumed search re-tells archived ones).
        """
        if not genotypes:
            return
        tokens = torch.tensor([self.space.to_tokens(g) for g in genotypes], dtype=torch.long)
        scores_t = torch.tensor(list(scores), dtype=torch.float32)
        for _ in range(self.updates_per_tell):
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
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        """A snapshot (deep copy): torch's state dicts reference live tensors that later steps change."""
        return copy.deepcopy(
            {
                "controller": self.controller.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(),
                "baseline": self.baseline,
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.baseline = state["baseline"]
