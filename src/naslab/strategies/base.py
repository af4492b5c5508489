"""The strategy interface: propose architectures (ask), learn from their scores (tell).

Strategies never train networks themselves; evaluators score what they propose. Their state
(random generator, controller weights, ...) round-trips through `state_dict` so that a killed
search resumes exactly where it stopped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, Sequence, TypeVar

from naslab.spaces.base import Space

G = TypeVar("G")


class Strategy(ABC, Generic[G]):
    """ask / tell proposer over a space."""

    name: str = "strategy"
    # Set by evaluators whose scores change as the search goes on (weight sharing): population
    # strategies (NAO-WS) then re-score their whole pool each generation instead of trusting old scores.
    scores_drift: bool = False

    def __init__(self, space: Space[G]):
        self.space = space

    @abstractmethod
    def ask(self, n: int) -> list[G]:
        """Up to `n` architectures to evaluate next; [] means the strategy has finished."""

    def sample_for_training(self, n: int) -> list[G]:
        """Architectures to train shared weights on (weight sharing); by default what `ask` proposes.

        Population methods (NAO-WS) train on their current pool instead of their next proposals.
        """
        return self.ask(n)

    def candidates(self, n: int) -> list[G]:
        """The architectures a weight-sharing search scores at the end to pick its result.

        ENAS samples `n` from its controller (the default: `ask`); NAO-WS offers its population.
        """
        return self.ask(n)

    def proposal_info(self, genotype: G) -> dict[str, Any]:
        """Why `genotype` was proposed (generation, predicted score, ...): stored in its archive record."""
        return {}

    def pop_metrics(self) -> dict[str, float]:
        """Diagnostics gathered since the last call (logged to W&B by the search loop)."""
        return {}

    @abstractmethod
    def tell(self, genotypes: Sequence[G], scores: Sequence[float]) -> None:
        """Scores of architectures proposed by `ask` (higher is better)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the search identically (JSON/torch-serialisable)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores `state_dict`."""
