"""Random search: the baseline every NAS method must beat (Sciuto, Yu, Jaggi, Musat, Salzmann, arXiv:1902.08142).

Samples uniformly over the space's decisions and never proposes the same network twice
(duplicates are recognised up to the space's symmetries via `space.canonical`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from naslab.spaces.base import Space
from naslab.strategies.base import G, Proposal, Result, Strategy


class RandomStrategy(Strategy[G]):
    """Uniform sampling without repeats; `tell` only records what was seen."""

    name = "random"

    def __init__(self, space: Space[G], seed: int = 0, max_tries: int = 1000):
        super().__init__(space)
        self.rng = np.random.default_rng(seed)
        self.max_tries = max_tries
        self.seen: set[str] = set()

    def ask(self, n: int) -> list[Proposal[G]]:
        proposals: list[Proposal[G]] = []
        keys = set(self.seen)
        for _ in range(n):
            for _ in range(self.max_tries):
                genotype = self.space.sample(self.rng)
                key = self.space.key(genotype)
                if key not in keys:
                    break
            else:
                raise RuntimeError(
                    f"random search found no unseen architecture in {self.max_tries} draws: space exhausted?"
                )
            keys.add(key)
            proposals.append(Proposal(genotype))
        return proposals

    def tell(self, results: Sequence[Result[G]]) -> None:
        self.seen.update(self.space.key(r.genotype) for r in results)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "seen": sorted(self.seen)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.seen = set(state["seen"])
