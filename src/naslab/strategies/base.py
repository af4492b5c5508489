"""The strategy protocol: propose architectures (`ask`), learn from their results (`tell`).

Strategies never train networks; a search (`naslab.search`) scores what they propose with an
evaluator or with shared weights. The protocol is small on purpose:

* `ask(n)` -> up to n `Proposal`s, each a genotype with `info` (why it was proposed: generation,
  source, predicted score; archived with its record). An empty list means the strategy has finished.
* `tell(results)` -> one `Result` per proposal of the last `ask`: the score (higher is better), the
  measured `extra` (training accuracy, perplexity, ...) and the `error` of a failed trial.
* `state_dict()` / `load_state_dict()` -> everything needed to continue identically after a kill.
* `pop_metrics()` (optional) -> diagnostics since the last call, logged by the search.

Weight sharing asks more of a strategy: which architecture trains the supernet's next step, and
which architectures the final derivation scores. That is the `SharesWeights` role, which a strategy
declares by inheriting it; a strategy without it trains on and derives from its own proposals
(`AskedRole`, through `weight_sharing_role`).

A strategy says which searches it runs in (`search_kinds`) and checks its settings against the
chosen one in `check_search`, which `naslab.stages.build.check_strategy_fits_search` calls on the
composed config (from `naslab.launch` before Hydra writes anything, and again in the pipeline): a
strategy that cannot run with a search fails before anything starts, with one line.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Generic, Mapping, Sequence, TypeVar

from naslab.spaces.base import Space

G = TypeVar("G")

# The searches of naslab.search: ask/tell with any evaluator, shared weights, gradient on a relaxed supernet.
SEARCH_KINDS = ("ask_tell", "shared", "gradient")


@dataclass(frozen=True)
class Proposal(Generic[G]):
    """One architecture to evaluate and why it was proposed (stored in its archive record's `extra`)."""

    genotype: G
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Result(Generic[G]):
    """What the search measured for one proposal: score (higher is better), extras, and the error of a
    failed trial (its score is then the evaluator's failure score, 0)."""

    genotype: G
    score: float
    extra: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None


class Strategy(ABC, Generic[G]):
    """ask / tell proposer over a space."""

    name: str = "strategy"
    # The searches this strategy can drive (naslab.search); DARTS-like strategies own a relaxed supernet instead.
    search_kinds: tuple[str, ...] = ("ask_tell", "shared")

    def __init__(self, space: Space[G]):
        self.space = space

    @classmethod
    def check_search(cls, kind: str, settings: Mapping[str, Any]) -> str | None:
        """Why this strategy, with `settings` (its config node), cannot run in search `kind`; None if it can.

        Called on the composed config, before anything is built. The default accepts `search_kinds`.
        """
        if kind not in cls.search_kinds:
            return f"strategy {cls.name} runs in the {' or '.join(cls.search_kinds)} search, not {kind}"
        return None

    @abstractmethod
    def ask(self, n: int) -> list[Proposal[G]]:
        """Up to `n` proposals to evaluate next; [] means the strategy has finished."""

    @abstractmethod
    def tell(self, results: Sequence[Result[G]]) -> None:
        """The results of the proposals of the last `ask`, in their order."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the search identically (JSON/torch-serialisable)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores `state_dict`."""

    def pop_metrics(self) -> dict[str, float]:
        """Diagnostics gathered since the last call (logged to W&B by the search)."""
        return {}


class SharesWeights(ABC, Generic[G]):
    """The weight-sharing role, declared by inheriting it next to `Strategy`: the strategy decides what
    shared weights train on and what the final derivation scores.

    ENAS needs nothing more than `ask` (its controller's samples do both: `AskedRole`); population methods
    opt in: NAO-WS trains on a member of its pool and derives from its population, EPNAS on its current
    level, evolution on its population.
    """

    @property
    def finished(self) -> bool:
        """Whether the strategy has run its whole course (EPNAS: its last progression): shared training
        then stops instead of training on without a strategy."""
        return False

    @abstractmethod
    def train_on(self) -> G:
        """The architecture of the next shared-weight step."""

    @abstractmethod
    def derive_from(self, n: int) -> list[Proposal[G]]:
        """The proposals the search scores at its end to pick its result (ENAS: `n` samples)."""


class AskedRole(SharesWeights[G]):
    """The default weight-sharing role of a strategy without one: train on and derive from its `ask`."""

    def __init__(self, strategy: Strategy[G]):
        self.strategy = strategy

    def train_on(self) -> G:
        proposals = self.strategy.ask(1)
        if not proposals:
            raise RuntimeError(f"strategy {self.strategy.name} proposed nothing to train the shared weights on")
        return proposals[0].genotype

    def derive_from(self, n: int) -> list[Proposal[G]]:
        return self.strategy.ask(n)


def weight_sharing_role(strategy: Strategy[G]) -> SharesWeights[G]:
    """The strategy itself where it declares the `SharesWeights` role (inherits it), else `AskedRole`."""
    return strategy if isinstance(strategy, SharesWeights) else AskedRole(strategy)


def results_of(proposals: Sequence[Proposal[G]], scores: Sequence[float]) -> list[Result[G]]:
    """Results with only a score each, for the proposals in order (tests and simple drivers)."""
    return [Result(p.genotype, float(s)) for p, s in zip(proposals, scores, strict=True)]
