"""NASES's reward and reward pool (Liu's NASES paper, Eq. 1 and Sec. 4.2.2), the parts `strategy=nases` is built on.

- The reward (Eq. 1) is (ACC_val - (ACC_tr - ACC_val))^3 = (2 ACC_val - ACC_tr)^3: validation accuracy
  minus the generalisation gap, cubed, so a child that fits its training data without generalising
  earns less than one with the same validation accuracy and a smaller gap, and the cube stretches the
  differences among good children.
- "We stored the reward in a reward pool in each NASES iteration. Furthermore, we normalized and updated
  the rewards of the reward pool at the end of each iteration": the pool keeps every raw reward with the
  controller's action (the embedding it emitted); `normalise()` recomputes every entry's normalised
  reward from all raw rewards stored so far (zero mean, unit standard deviation), so an early reward is
  judged against everything seen since, not only against its own iteration.
- "we ran random architectures ten times to collect rewards without updating parameters of the
  controller network in the beginning" (`WARMUP_ARCHITECTURES`), "We sampled three architecture examples
  from reward pool to update the controller network in each NASES iteration" (`SAMPLES_PER_UPDATE`,
  `RewardPool.sample`), and "we have 10 % to generate architecture randomly", epsilon-greedy
  (`EPSILON`, `explore`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

WARMUP_ARCHITECTURES = 10  # random architectures scored before the controller's first update
SAMPLES_PER_UPDATE = 3  # pool entries per controller update
EPSILON = 0.1  # probability of a random architecture instead of the controller's
FAILED_REWARD = -1.0  # (2 * 0 - 1) ** 3, Eq. 1's least: a child that failed to train ranks below every trained one


def nases_reward(acc_val: float, acc_train: float) -> float:
    """Eq. 1 of Liu's NASES paper: (2 * acc_val - acc_train) ** 3, for accuracies in [0, 1]."""
    for name, value in (("acc_val", acc_val), ("acc_train", acc_train)):
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"{name} must be an accuracy in [0, 1], got {value}")
    return (2.0 * acc_val - acc_train) ** 3


def explore(rng: np.random.Generator, epsilon: float = EPSILON) -> bool:
    """Epsilon-greedy: True (generate a random architecture) with probability `epsilon`."""
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be a probability in [0, 1], got {epsilon}")
    return bool(rng.random() < epsilon)


@dataclass
class PoolEntry:
    """One scored architecture: the controller's action (embedding), its raw and normalised reward,
    and the state (controller input) the action was taken in, which the policy gradient needs."""

    action: tuple[float, ...]
    reward: float
    normalised: float = 0.0
    state: tuple[float, ...] = ()


class RewardPool:
    """Every (action, reward) of the search; rewards normalised over the whole pool each iteration."""

    def __init__(self) -> None:
        self.entries: list[PoolEntry] = []

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, action: Sequence[float], reward: float, state: Sequence[float] = ()) -> None:
        """Stores a raw reward; its normalised value is set by the next `normalise()`."""
        if not math.isfinite(reward):
            raise ValueError(f"a reward must be finite, got {reward}")
        self.entries.append(
            PoolEntry(tuple(float(a) for a in action), float(reward), state=tuple(float(s) for s in state))
        )

    def normalise(self) -> None:
        """Every entry's reward as a z-score over all raw rewards stored so far (0 for a pool of equal rewards)."""
        if not self.entries:
            return
        raw = np.array([e.reward for e in self.entries])
        std = float(raw.std())
        for entry, value in zip(self.entries, raw):
            entry.normalised = float((value - raw.mean()) / std) if std > 0 else 0.0

    def sample(self, rng: np.random.Generator, n: int = SAMPLES_PER_UPDATE) -> list[PoolEntry]:
        """`n` distinct entries drawn uniformly (all of them when the pool is smaller)."""
        if n < 1:
            raise ValueError(f"sample at least one pool entry, got n={n}")
        if len(self.entries) <= n:
            return list(self.entries)
        return [self.entries[int(i)] for i in rng.choice(len(self.entries), size=n, replace=False)]

    def state_dict(self) -> dict[str, Any]:
        return {"entries": [[list(e.action), e.reward, e.normalised, list(e.state)] for e in self.entries]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Reads entries [action, reward, normalised, state]; ones saved without a state get ()."""
        self.entries = [
            PoolEntry(tuple(e[0]), float(e[1]), float(e[2]), tuple(e[3]) if len(e) > 3 else ())
            for e in state["entries"]
        ]
