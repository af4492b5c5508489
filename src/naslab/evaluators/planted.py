"""A planted (synthetic) score: instant, exact and known, for testing and comparing strategies.

NAO's Fig. 2 experiments and the strategy tests need thousands of scored architectures; training
them is out of reach on a CPU, and the question they ask (does the method find what scores well?)
needs a score whose optimum is known. The score here is a fixed random function of the
architecture, drawn from `seed`, shaped like real accuracies (mostly which ops a cell uses and how
deep it is wired, a little of where), and respecting the space's symmetries (twins score the same):

- micro cells, per branch: an op weight a[cell, op], an input weight b[cell, input is a cell input
  or a node], and a small position-specific term 0.3 * u[cell, node, input, op]; per node an op-pair
  interaction `interaction` * v[op_left, op_right] (symmetric in the two ops), so swapping the
  branches of a node changes nothing;
- other spaces, over the canonical token sequence: a weight per (token kind, token), 0.3 * a weight
  per (position, token) and `interaction` * a weight per adjacent token pair.

The raw sum is standardised over uniformly sampled architectures and squashed to (0.5, 0.95), an accuracy-like range.
A progressive space's partial architecture (fewer layers or blocks) is standardised against the same
samples cut to its level (`space.prefix`): a shallow network is judged among shallow ones, as its
measured accuracy would be, and its score predicts its descendants' (the full sum extends its sum).
`noise` adds Gaussian noise per architecture (deterministic: the same architecture, the same noise).
"""

from __future__ import annotations

import time
import zlib
from typing import Any, Sequence

import numpy as np

from naslab.evaluators.base import Evaluation, Evaluator, G
from naslab.spaces.base import Progressive, Space
from naslab.spaces.micro.space import MicroSpace


class PlantedEvaluator(Evaluator[G]):
    """`evaluator=planted`: a seeded synthetic score; no training, no data."""

    name = "planted"
    needs_data = False

    def __init__(self, space: Space[G], seed: int = 0, noise: float = 0.0, interaction: float = 0.5, **_: Any):
        self.space, self.seed, self.noise, self.interaction = space, seed, noise, interaction
        rng = np.random.default_rng(seed)
        if isinstance(space, MicroSpace):
            ops, inputs = len(space.ops), space.num_nodes + 1
            self.op_weight = rng.normal(size=(2, ops))
            self.input_weight = rng.normal(size=(2, 2))
            self.position = rng.normal(size=(2, space.num_nodes, inputs, ops))
            pair = rng.normal(size=(ops, ops))
            self.pair = (pair + pair.T) / np.sqrt(2)
        else:
            choices, kinds = space.token_choices(), space.token_kinds()
            width = max(choices)
            self.kinds = {k: i for i, k in enumerate(dict.fromkeys(kinds))}
            self.kind_of = [self.kinds[k] for k in kinds]
            self.op_weight = rng.normal(size=(len(self.kinds), width))
            self.position = rng.normal(size=(len(choices), width))
            self.pair = rng.normal(size=(max(len(choices) - 1, 1), width, width))
        # Standardise over uniformly sampled architectures, so that scores spread over the range.
        reference = np.random.default_rng([seed, 1])
        self._reference = [space.sample(reference) for _ in range(256)]
        self.center, self.scale = self._moments(self._reference)
        # A progressive space's partial architectures are standardised among their own level (`Progressive`).
        self.progressive = space if isinstance(space, Progressive) else None
        top = self.progressive.max_level() if self.progressive is not None else 1
        self._level_moments: dict[int, tuple[float, float]] = {top: (self.center, self.scale)}

    def _moments(self, genotypes: Sequence[G]) -> tuple[float, float]:
        raws = [self.raw(g) for g in genotypes]
        return float(np.mean(raws)), float(np.std(raws)) or 1.0

    def _level_center_scale(self, genotype: G) -> tuple[float, float]:
        if self.progressive is None:
            return self.center, self.scale
        level = self.progressive.level(genotype)
        if level not in self._level_moments:
            self._level_moments[level] = self._moments([self.progressive.prefix(g, level) for g in self._reference])
        return self._level_moments[level]

    def raw(self, genotype: G) -> float:
        """The unsquashed score: a sum of standard-normal weights over the architecture's decisions."""
        if isinstance(self.space, MicroSpace):
            total = 0.0
            for c, cell in enumerate((genotype.normal, genotype.reduce)):  # type: ignore[attr-defined]
                for k, node in enumerate(cell.nodes):
                    ops = [self.space.ops.index(b.op) for b in node.branches]
                    for branch, op in zip(node.branches, ops):
                        total += self.op_weight[c, op] + self.input_weight[c, int(branch.input >= 2)]
                        total += 0.3 * self.position[c, k, branch.input, op]
                    total += self.interaction * self.pair[ops[0], ops[1]]
            return float(total)
        tokens = self.space.to_tokens(self.space.canonical(genotype))
        total = sum(self.op_weight[self.kind_of[i], t] + 0.3 * self.position[i, t] for i, t in enumerate(tokens))
        total += self.interaction * sum(self.pair[i, a, b] for i, (a, b) in enumerate(zip(tokens, tokens[1:])))
        return float(total)

    def standardised(self, genotype: G) -> float:
        """How many standard deviations above a uniformly random architecture of its level (no squashing, no noise)."""
        center, scale = self._level_center_scale(genotype)
        return (self.raw(genotype) - center) / scale

    def score(self, genotype: G) -> float:
        z = self.standardised(genotype)
        if self.noise:
            key = zlib.crc32(self.space.key(genotype).encode())
            z += self.noise * np.random.default_rng([self.seed, key]).normal()
        return float(0.5 + 0.45 / (1 + np.exp(-2 * z)))

    def evaluate(self, genotypes: Sequence[G]) -> list[Evaluation]:
        out = []
        for g in genotypes:
            start = time.perf_counter()
            out.append(Evaluation(self.score(g), None, None, time.perf_counter() - start))
        return out
