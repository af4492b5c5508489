"""A space with some decisions fixed: the search-phase study's "amount of sharing" experiment.

"Evaluating the Search Phase of Neural Architecture Search" (Sciuto, Yu, Jaggi, Musat, Salzmann,
arXiv:1902.08142, Sec. 4.3) fixes the earlier nodes of the cell and searches only the last one, so that fewer
architectures share the supernet's weights, and measures how the weight-sharing ranking changes.
`SubSpace(base, fixed={position: token})` is that for any space: the fixed token positions have one
choice (token 0 means the fixed token), sampling and enumeration run over the free decisions only,
and genotypes, keys, networks and supernets are the base space's, so a ground-truth table of the base
space answers for the subspace too.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from torch import nn

from naslab.spaces.base import G, GenotypeError, Space, Task


class SubSpace(Space[G]):
    """`base` with the token at each position of `fixed` pinned (positions of `base.token_choices()`)."""

    def __init__(self, base: Space[G], fixed: Mapping[int, int]) -> None:
        self.base = base
        choices = base.token_choices()
        self.fixed = {int(p): int(t) for p, t in fixed.items()}
        for p, t in self.fixed.items():
            if not 0 <= p < len(choices):
                raise ValueError(f"fixed position {p} is outside 0..{len(choices) - 1} of {base!r}")
            if not 0 <= t < choices[p]:
                raise ValueError(f"fixed token {t} at position {p} is outside 0..{choices[p] - 1}")
        self.name = base.name

    def __repr__(self) -> str:
        return f"SubSpace({self.base!r}, fixed={dict(sorted(self.fixed.items()))})"

    # --- tokens: a fixed position has the single token 0, meaning the pinned base token --------------
    def token_choices(self) -> list[int]:
        return [1 if p in self.fixed else n for p, n in enumerate(self.base.token_choices())]

    def token_kinds(self) -> list[str]:
        return self.base.token_kinds()

    def to_tokens(self, genotype: G) -> tuple[int, ...]:
        self.validate(genotype)
        return tuple(0 if p in self.fixed else t for p, t in enumerate(self.base.to_tokens(genotype)))

    def from_tokens(self, tokens: Sequence[int]) -> G:
        self.check_tokens(tokens)
        return self.base.from_tokens([self.fixed.get(p, int(t)) for p, t in enumerate(tokens)])

    # --- sampling and counting over the free decisions ---------------------------------------------
    def sample(self, rng: np.random.Generator) -> G:
        return self.from_tokens([int(rng.integers(n)) for n in self.token_choices()])

    def size(self) -> int:
        return math.prod(self.token_choices())

    def enumerate(self) -> Iterator[G]:
        if self.size() > 1_000_000:
            raise NotImplementedError(f"{self!r} has {self.size():,} architectures; too many to enumerate")
        for tokens in itertools.product(*(range(n) for n in self.token_choices())):
            yield self.from_tokens(tokens)

    # --- everything else is the base space's -------------------------------------------------------
    def validate(self, genotype: G) -> None:
        self.base.validate(genotype)
        tokens = self.base.to_tokens(genotype)
        for p, t in self.fixed.items():
            if tokens[p] != t:
                raise GenotypeError(f"token {p} is {tokens[p]}, but {self!r} fixes it to {t}")

    def canonical(self, genotype: G) -> G:
        return self.base.canonical(genotype)

    def symmetries(self, genotype: G) -> list[G]:
        return [g for g in self.base.symmetries(genotype) if self._fits(g)]

    def _fits(self, genotype: G) -> bool:
        tokens = self.base.to_tokens(genotype)
        return all(tokens[p] == t for p, t in self.fixed.items())

    def key(self, genotype: G) -> str:
        return self.base.key(genotype)

    def genotype_from_dict(self, data: Any) -> G:
        return self.base.genotype_from_dict(data)

    def to_dict(self, genotype: G) -> dict[str, Any]:
        return self.base.to_dict(genotype)

    def describe(self, genotype: G) -> str:
        return self.base.describe(genotype)

    def build_child(self, genotype: G, task: Task, **network: Any) -> nn.Module:
        return self.base.build_child(genotype, task, **network)

    def build_supernet(self, task: Task, **network: Any) -> nn.Module:
        return self.base.build_supernet(task, **network)
