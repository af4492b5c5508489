"""The strategy interface: propose architectures (ask), learn from their scores (tell).

Strategies never train networks themselves; evaluators score what they propose. Their state
(random generator, controller weights, ...) round-trips through `state_dict` so that a killed
search resumes exactly where it stopped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Generic, Mapping, Sequence, TypeVar

from naslab.spaces.base import Space

if TYPE_CHECKING:  # search.py imports this module
    from naslab.search import SearchResult

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

    @property
    def finished(self) -> bool:
        """Whether the strategy has run its whole course (EPNAS: its last progression).

        Most strategies can always propose more (False); one with a natural end says so, and weight
        sharing then stops training the supernet instead of training it on without a strategy.
        """
        return False

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

    def tell_with_details(
        self, genotypes: Sequence[G], scores: Sequence[float], details: Sequence[Mapping[str, Any]]
    ) -> None:
        """`tell`, with each evaluation's measured extras (its archive record's `extra`, plus its `error`:
        None, or why the trial failed) alongside.

        The search loop calls this; most strategies learn from the score alone (the default). NASES
        overrides it: its reward needs the child's training accuracy as well (Liu's NASES paper, Eq. 1).
        """
        self.tell(genotypes, scores)

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the search identically (JSON/torch-serialisable)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores `state_dict`."""


class GradientStrategy(ABC, Generic[G]):
    """A strategy that owns a continuous relaxation of the space and searches it by gradient (DARTS).

    It has no ask / tell: it trains its own supernet and derives genotypes from its architecture
    parameters, so the pipeline hands it the data and the Trainer factory instead of an evaluator.
    Each derivation it makes is archived like an evaluated architecture (score: the supernet's
    validation accuracy when it was derived), so search curves and resume work as for the others.
    """

    name: str = "gradient"

    def __init__(self, space: Space[G]):
        self.space = space

    @abstractmethod
    def search(
        self,
        task: Any,
        datamodule_factory: Any,
        trainer_factory: Any,
        run_dir: Any,
        resume: bool = False,
        logger: Any = None,
    ) -> SearchResult[G]:
        """Runs the search in `run_dir`: the derivations in its archive, the chosen genotype as best."""
