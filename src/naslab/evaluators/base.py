"""The evaluator interface: how an architecture gets its score."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Generic, Iterator, Sequence, TypeVar

G = TypeVar("G")


@dataclass
class Evaluation:
    """The score of one architecture (higher is better) and its cost."""

    score: float
    params: int | None = None
    epochs: float | None = None
    wall_seconds: float = 0.0
    error: str | None = None  # set when the trial failed (e.g. NaN loss); score is then 0
    extra: dict[str, Any] = field(default_factory=dict)


class Evaluator(ABC, Generic[G]):
    """Scores architectures; the strategy does not know how."""

    name: str = "evaluator"
    # False for evaluators that read their scores from somewhere (a table, a planted function): the
    # pipeline then builds no datamodule, so such searches run where the data is not.
    needs_data: bool = True
    # The search that drives it (naslab.search.SEARCHES): scored one by one, proposals come from ask/tell;
    # `shared` scores with weights that keep training, so the shared-weight search interleaves them.
    search_kind: str = "ask_tell"

    @abstractmethod
    def evaluate(self, genotypes: Sequence[G]) -> list[Evaluation]:
        """One Evaluation per genotype, in order."""

    def evaluate_each(self, genotypes: Sequence[G]) -> Iterator[tuple[int, Evaluation]]:
        """Yields (index into genotypes, evaluation) as each trial finishes, in any order.

        The search loop archives each result the moment it arrives, so a search killed while a batch
        is still being evaluated loses none of the trials that had finished. Evaluators that run
        trials in parallel override this; the default scores them one after another.
        """
        for i, genotype in enumerate(genotypes):
            yield i, self.evaluate([genotype])[0]

    def close(self) -> None:
        """Releases worker processes or cluster connections; a no-op for in-process evaluators."""
