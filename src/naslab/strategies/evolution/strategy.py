"""Regularized (aging) evolution: tournament selection where the oldest member dies, not the worst.

"Regularized Evolution for Image Classifier Architecture Search", Real, Aggarwal, Huang, Le,
arXiv:1802.01548 (AAAI 2019), Algorithm 1: the population starts with P random architectures; each
cycle draws S members at random, the best of them is the parent, its mutation (the child) is evaluated
and appended, and the OLDEST member is removed. Removing by age rather than by score is the
regularisation: an architecture survives only through descendants that keep scoring well, so one lucky
evaluation cannot dominate the population (paper, "Aging Evolution" and its discussion of why aging helps).

Defaults (conf/strategy/evolution.yaml cites the same):
* population_size P = 100, sample_size S = 25: the paper's CIFAR-10 search experiments (Sec.
  "Experiments", setup of the evolution runs, which stop at 20,000 models).
* identity_prob = 0.05: besides its "hidden state mutation" and "op mutation" (Sec. "Search Space",
  Fig. 2) the paper allows the "identity" mutation, the child unchanged. 0.05 is the probability that
  re-implementations of the paper use for it; 0 turns it off.
* hidden state and op mutation equally likely; each picks the normal or reduction cell, a pairwise
  combination and one of its two elements uniformly and replaces the hidden state (op) by a different
  valid one (Sec. "Search Space", Fig. 2).

Deviations, all deliberate:
* Mutations act on the space's token sequence (`space.to_tokens` / `from_tokens`), so every naslab
  space evolves: a uniformly chosen kind of decision (`space.token_kinds()`), then a uniform position
  of that kind with more than one valid token, then a different valid token there. On the micro space
  the kinds are "input" and "op", which is the paper's hidden-state / op mutation at 1/2 each with a
  uniform cell, node and branch. On the macro space the kinds are "op" and "skip" (1/2 each, rather than
  12 in 78 for a uniform position of 12 layers); spaces of one kind (mlp) mutate a uniform position.
  A mutation that gives the parent's architecture back (`space.key`: up to symmetries, e.g. an mlp
  token after its stop) is drawn again, at most `max_tries` times.
* Sampling (not a deviation by default): Algorithm 1 and the authors' colab
  (google-research/google-research evolution/regularized_evolution_algorithm/regularized_evolution.ipynb,
  `random.choice(list(population))` per sample slot) draw the S members with replacement, the default;
  `with_replacement=False` draws S distinct members (the usual tournament selection).
* Batches: the search asks `search.batch_size` proposals at once, as the paper's asynchronous workers
  do; a child is bred from the members told so far, and the first P proposals are random (a batch that
  straddles P breeds from the partial population). Random proposals avoid architectures already in
  the population or pending.
* Repeats: naslab's search scores an architecture once (the archive); an identity child or a repeated
  child joins the population again, young, with its archived score instead of a fresh noisy one.
* A failed trial joins with its score (the evaluator's failure score, 0) like any other: it ages out.

Weight sharing (evaluator=shared): the shared weights train on a uniform member of the current
population (a random architecture before any is told), and the search's derivation scores the best
members, as NAO-WS does with its pool.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from naslab.spaces.base import Space
from naslab.strategies.base import G, Proposal, Result, SharesWeights, Strategy


@dataclass
class Member:
    """One architecture of the population: its score, birth number (order told, 0-based) and generation."""

    genotype: Any
    score: float
    born: int
    generation: int


def _rank(score: float) -> float:
    """Score for selection: NaN ranks below everything, so a broken evaluation never becomes a parent."""
    return score if not math.isnan(score) else -math.inf


class RegularizedEvolution(Strategy[G], SharesWeights[G]):
    """Aging evolution over any space with a token table (see the module docstring)."""

    name = "evolution"

    def __init__(
        self,
        space: Space[G],
        seed: int = 0,
        population_size: int = 100,
        sample_size: int = 25,
        identity_prob: float = 0.05,
        with_replacement: bool = True,
        max_tries: int = 100,
    ):
        super().__init__(space)
        if int(population_size) != population_size or population_size < 2:
            raise ValueError(f"strategy.population_size must be an integer >= 2, got {population_size}")
        if int(sample_size) != sample_size or not 1 <= sample_size <= population_size:
            raise ValueError(
                f"strategy.sample_size must be an integer in 1..strategy.population_size={population_size}, "
                f"got {sample_size}"
            )
        if not 0.0 <= identity_prob < 1.0:
            raise ValueError(f"strategy.identity_prob must be in [0, 1), got {identity_prob}")
        if int(max_tries) != max_tries or max_tries < 1:
            raise ValueError(f"strategy.max_tries must be an integer >= 1, got {max_tries}")
        self.population_size, self.sample_size = int(population_size), int(sample_size)
        self.identity_prob = float(identity_prob)
        self.with_replacement, self.max_tries = bool(with_replacement), int(max_tries)
        self.rng = np.random.default_rng(seed)
        # Weight sharing draws its training architectures from its own stream, so the proposals do not
        # depend on how many shared-weight steps ran between two asks.
        self.train_rng = np.random.default_rng([seed, 1])
        self.population: deque[Member] = deque(maxlen=self.population_size)  # age order: oldest first
        self.pending: list[tuple[str, int]] = []  # (space.key, generation) of proposals not told yet
        self.proposed = 0
        self.told = 0

    # --- ask / tell ------------------------------------------------------------------------------
    def ask(self, n: int) -> list[Proposal[G]]:
        """n proposals: random ones until P have been proposed (or while nothing is told), then children."""
        proposals = []
        for _ in range(n):
            if self.proposed < self.population_size or not self.population:
                proposal = self._random()
            else:
                proposal = self._child()
            self.pending.append((self.space.key(proposal.genotype), int(proposal.info["evolution"]["generation"])))
            self.proposed += 1
            proposals.append(proposal)
        return proposals

    def tell(self, results: Sequence[Result[G]]) -> None:
        """Each result joins the population as its youngest member; past P members the oldest dies."""
        for result in results:
            key = self.space.key(result.genotype)
            # Results come in the order of the proposals; matching by key also accepts any other order,
            # and a result that was never asked for (a warm start) joins as generation 0.
            at = next((i for i, (k, _) in enumerate(self.pending) if k == key), None)
            generation = self.pending.pop(at)[1] if at is not None else 0
            self.population.append(Member(result.genotype, float(result.score), self.told, generation))
            self.told += 1

    def pop_metrics(self) -> dict[str, float]:
        """The population as it stands: best and mean score, and the age span (births) it covers."""
        if not self.population:
            return {}
        scores = [m.score for m in self.population]
        return {
            "population_best": max(scores, key=_rank),
            "population_mean": float(np.mean(scores)),
            "oldest_born": float(self.population[0].born),
        }

    # --- proposals -------------------------------------------------------------------------------
    def _random(self) -> Proposal[G]:
        """A random architecture, redrawn (up to max_tries) while it is in the population or pending."""
        taken = {k for k, _ in self.pending} | {self.space.key(m.genotype) for m in self.population}
        genotype = self.space.sample(self.rng)
        for _ in range(self.max_tries - 1):
            if self.space.key(genotype) not in taken:
                break
            genotype = self.space.sample(self.rng)
        return Proposal(genotype, {"evolution": {"source": "random", "generation": 0}})

    def _child(self) -> Proposal[G]:
        """Tournament: the best of S members drawn uniformly is the parent; the proposal is its mutation."""
        members = list(self.population)
        size = self.sample_size if self.with_replacement else min(self.sample_size, len(members))
        drawn = self.rng.choice(len(members), size=size, replace=self.with_replacement)
        parent = max((members[int(i)] for i in drawn), key=lambda m: _rank(m.score))  # ties: first drawn
        child, mutation, position = self._mutate(parent.genotype)
        info: dict[str, Any] = {
            "source": "mutation",
            "generation": parent.generation + 1,
            "parent": parent.born,
            "mutation": mutation,
        }
        if position is not None:
            info["position"] = position
        return Proposal(child, {"evolution": info})

    def _mutate(self, genotype: G) -> tuple[G, str, int | None]:
        """(child, kind of the mutated token or "identity", its position): one token changed.

        A kind of decision first (the paper's hidden state or op mutation at 1/2 each on the micro
        space), then a position of that kind, then a different valid token there.
        """
        if self.rng.random() < self.identity_prob:
            return genotype, "identity", None
        tokens = [int(t) for t in self.space.to_tokens(genotype)]
        choices, kinds = self.space.token_choices(), self.space.token_kinds()
        by_kind: dict[str, list[int]] = {}
        for position, n in enumerate(choices):
            if n > 1:
                by_kind.setdefault(kinds[position], []).append(position)
        if not by_kind:  # a space of one architecture: nothing to mutate
            return genotype, "identity", None
        parent_key = self.space.key(genotype)
        groups = list(by_kind.values())
        for _ in range(self.max_tries):
            positions = groups[int(self.rng.integers(len(groups)))]
            position = positions[int(self.rng.integers(len(positions)))]
            token = int(self.rng.integers(choices[position] - 1))
            if token >= tokens[position]:  # uniform over the other valid tokens
                token += 1
            child = self.space.from_tokens([*tokens[:position], token, *tokens[position + 1 :]])
            if self.space.key(child) != parent_key:
                return child, kinds[position], position
        return genotype, "identity", None  # every try gave the parent back (a tiny or degenerate space)

    # --- the weight-sharing role -------------------------------------------------------------------
    finished = False  # aging evolution has no natural end: the search's budget stops it

    def train_on(self) -> G:
        """A uniform member of the current population (a random architecture before any is told)."""
        if not self.population:
            return self.space.sample(self.train_rng)
        return self.population[int(self.train_rng.integers(len(self.population)))].genotype

    def derive_from(self, n: int) -> list[Proposal[G]]:
        """The best `n` distinct architectures of the population (random ones if it is empty)."""
        best: dict[str, Member] = {}
        for member in sorted(self.population, key=lambda m: _rank(m.score), reverse=True):
            best.setdefault(self.space.key(member.genotype), member)
        chosen = list(best.values())[:n]
        if not chosen:
            return [self._random() for _ in range(n)]
        # Where each came from (generation 0: the random start), so a derivation's record keeps the
        # provenance of the architecture it re-scores (results.json search.provenance names the best's).
        return [
            Proposal(
                m.genotype,
                {
                    "evolution": {
                        "source": "random" if m.generation == 0 else "mutation",
                        "generation": m.generation,
                        "born": m.born,
                    }
                },
            )
            for m in chosen
        ]

    # --- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "train_rng": self.train_rng.bit_generator.state,
            "proposed": self.proposed,
            "told": self.told,
            "population": [
                {
                    "genotype": self.space.to_dict(m.genotype),
                    "score": m.score,
                    "born": m.born,
                    "generation": m.generation,
                }
                for m in self.population
            ],
            "pending": [[key, generation] for key, generation in self.pending],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        population = state["population"]
        if len(population) > self.population_size:
            raise ValueError(
                f"the saved population has {len(population)} members, more than "
                f"strategy.population_size={self.population_size}"
            )
        self.rng.bit_generator.state = state["rng"]
        self.train_rng.bit_generator.state = state["train_rng"]
        self.proposed, self.told = int(state["proposed"]), int(state["told"])
        self.population = deque(
            (
                Member(
                    self.space.genotype_from_dict(m["genotype"]),
                    float(m["score"]),
                    int(m["born"]),
                    int(m["generation"]),
                )
                for m in population
            ),
            maxlen=self.population_size,
        )
        self.pending = [(str(key), int(generation)) for key, generation in state["pending"]]
