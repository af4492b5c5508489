"""Architectures as fixed-length vectors in a box: what strategy=nases' autoencoder reads and writes.

NASES (Liu, "Neural Architecture Search in Embedding Space") needs each architecture as a vector of
`num_values` numbers in the box [low, high]^num_values: the autoencoder is pretrained on uniform draws
from the box, the controller reads a vector, and the frozen decoder writes one. An adapter maps
between a space's genotypes and that box:

* `NASESVectors` (space=nases): the identity. The genotype *is* its 4 * L numbers in [low, high]
  (`NASESGenotype(values)`), so a NASES search is unchanged by the adapter.
* `ScaledTokens` (`encoding="scaled"`): any space whose architectures are fixed-length token vectors
  (`Space.token_choices()`, `to_tokens`, `from_tokens`). One value per token position in [0, 1]:
  position i with n_i choices reads token min(floor(v * n_i), n_i - 1) (n_i equal bins), and a token t
  is written as its bin's middle (t + 0.5) / n_i. Compact, but it orders the choices: neighbouring
  tokens (e.g. two ops that happen to be listed next to each other) are neighbouring values.
* `OneHotTokens` (`encoding="onehot"`): sum(n_i) values in [0, 1], a group of n_i per position; the
  position's token is the argmax of its group (ties: the lowest token), a token is written as the
  group's one-hot vector. No order among the choices, at the price of a longer vector.

`decode` is total: every vector of the box (and any other finite vector, clamped into it first; NaN
reads as `low`) is a valid genotype, so whatever the decoder writes is an architecture.
`decode(encode(g)) == g` for every genotype the space's `from_tokens` can produce.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

from naslab.spaces.base import Space
from naslab.spaces.nases.space import NASESGenotype, NASESSpace

__all__ = ["ENCODINGS", "ArchitectureVectors", "NASESVectors", "OneHotTokens", "ScaledTokens", "architecture_vectors"]

ENCODINGS = ("onehot", "scaled")


class ArchitectureVectors(ABC):
    """Genotypes of `space` <-> vectors of `num_values` numbers in [low, high]."""

    encoding: str = "vectors"

    def __init__(self, space: Space[Any], num_values: int, low: float, high: float) -> None:
        self.space, self.num_values, self.low, self.high = space, int(num_values), low, high

    def clamped(self, values: Sequence[float]) -> np.ndarray:
        """`values` as a float64 array inside the box (NaN -> low); one-line ValueError on a wrong length."""
        array = np.asarray(values, dtype=np.float64).reshape(-1)
        if array.size != self.num_values:
            raise ValueError(f"{self.describe()} needs {self.num_values} values, got {array.size}")
        return np.clip(np.nan_to_num(array, nan=self.low), self.low, self.high)

    @abstractmethod
    def decode(self, values: Sequence[float]) -> Any:
        """The genotype of a vector (clamped into the box first): always valid."""

    @abstractmethod
    def encode(self, genotype: Any) -> list[float]:
        """A vector of the box that decodes to `genotype`."""

    def describe(self) -> str:
        return f"space={self.space.name} (strategy.encoding={self.encoding})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.space!r}, {self.num_values} values in [{self.low}, {self.high}])"


class NASESVectors(ArchitectureVectors):
    """space=nases: the genotype's own 4 * L numbers in the space's box [low, high]."""

    encoding = "nases"

    def __init__(self, space: NASESSpace) -> None:
        super().__init__(space, space.num_values, space.low, space.high)

    def decode(self, values: Sequence[float]) -> NASESGenotype:
        return NASESGenotype(tuple(self.clamped(values).tolist()))

    def encode(self, genotype: NASESGenotype) -> list[float]:
        return list(genotype.values)

    def describe(self) -> str:
        return f"space={self.space.name}"


class _TokenVectors(ArchitectureVectors):
    """A token space: the vector is made of per-position pieces, each read back as one token."""

    def __init__(self, space: Space[Any], choices: Sequence[int], num_values: int) -> None:
        super().__init__(space, num_values, 0.0, 1.0)
        self.choices = [int(n) for n in choices]

    def decode(self, values: Sequence[float]) -> Any:
        return self.space.from_tokens(self.tokens(self.clamped(values)))

    def encode(self, genotype: Any) -> list[float]:
        return self.vector(self.space.to_tokens(genotype))

    @abstractmethod
    def tokens(self, values: np.ndarray) -> list[int]:
        """The token sequence of a vector already inside the box."""

    @abstractmethod
    def vector(self, tokens: Sequence[int]) -> list[float]:
        """The vector of a token sequence."""


class ScaledTokens(_TokenVectors):
    """One value per position in [0, 1]: token min(floor(v * n), n - 1); token t -> (t + 0.5) / n."""

    encoding = "scaled"

    def __init__(self, space: Space[Any], choices: Sequence[int]) -> None:
        super().__init__(space, choices, len(choices))

    def tokens(self, values: np.ndarray) -> list[int]:
        return [min(math.floor(v * n), n - 1) for v, n in zip(values.tolist(), self.choices)]

    def vector(self, tokens: Sequence[int]) -> list[float]:
        return [(int(t) + 0.5) / n for t, n in zip(tokens, self.choices, strict=True)]


class OneHotTokens(_TokenVectors):
    """sum(n_i) values in [0, 1], n_i per position: token = argmax of its group (ties: lowest); one-hot back."""

    encoding = "onehot"

    def __init__(self, space: Space[Any], choices: Sequence[int]) -> None:
        super().__init__(space, choices, sum(int(n) for n in choices))
        self.starts = np.cumsum([0, *self.choices])[:-1].tolist()

    def tokens(self, values: np.ndarray) -> list[int]:
        return [int(np.argmax(values[s : s + n])) for s, n in zip(self.starts, self.choices)]

    def vector(self, tokens: Sequence[int]) -> list[float]:
        out = [0.0] * self.num_values
        for s, t in zip(self.starts, tokens, strict=True):
            out[s + int(t)] = 1.0
        return out


def architecture_vectors(space: Space[Any], encoding: str = "onehot") -> ArchitectureVectors:
    """The adapter for `space`: its own numbers for space=nases (`encoding` unused), else its tokens, encoded."""
    if encoding not in ENCODINGS:
        raise ValueError(f"strategy.encoding must be one of {', '.join(ENCODINGS)}; got {encoding!r}")
    if isinstance(space, NASESSpace):
        return NASESVectors(space)
    try:
        choices = [int(n) for n in space.token_choices()]
    except NotImplementedError:
        choices = []
    if not choices or min(choices) < 1:
        raise ValueError(
            f"strategy=nases (strategy.encoding={encoding}) needs architectures that are fixed-length token "
            f"vectors; space={space.name} ({type(space).__name__}) has none: use a token space or space=nases"
        )
    return OneHotTokens(space, choices) if encoding == "onehot" else ScaledTokens(space, choices)
