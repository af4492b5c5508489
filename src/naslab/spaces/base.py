"""The search-space interface shared by every space (micro, macro, rnn, mlp, ...).

A space knows what an architecture is and nothing about how it is chosen or scored: strategies
talk to it through `sample`, the token table and `symmetries`; evaluators and final training
through `build_child`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Iterator, Mapping, Protocol, Sequence, TypeVar, runtime_checkable

import numpy as np
import torch
from torch import nn

from naslab.errors import GenotypeError

__all__ = ["GenotypeError", "Progressive", "Relaxable", "Space", "Task", "parse_genotype_json"]

G = TypeVar("G")


def parse_genotype_json(text: str, source: str = "genotype") -> Any:
    """JSON text of a genotype (of any space) as data; malformed JSON is a one-line GenotypeError."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise GenotypeError(f"{source} is not valid JSON: {err}") from None


@dataclass(frozen=True)
class Task:
    """What a network must fit: derived from the datamodule, so the space never sees the data."""

    num_classes: int  # classes, or the vocabulary size of a language-modelling task
    input_shape: tuple[int, ...]  # (C, H, W) of an image; () for token streams
    stem: str = "cifar"  # network skeleton family: "cifar" (small images), "imagenet" or "text"
    kind: str = "image"  # "image" or "tabular" (classification, accuracy), "text" (language modelling, perplexity)

    def require(self, kind: str, space: str) -> None:
        """One-line error when a space is asked to build a network for the wrong kind of data."""
        if self.kind != kind:
            hints = {"text": "dataset=ptb or dataset=wikitext2", "tabular": "dataset=wine (or space=mlp)"}
            hint = hints.get(kind, "an image dataset (digits, cifar10, ...)")
            raise ValueError(f"space={space} builds {kind} networks, but the dataset is {self.kind} data: use {hint}")


class Space(ABC, Generic[G]):
    """A search space: genotypes, their sampling, tokens and networks."""

    name: str = "space"

    def __repr__(self) -> str:
        """Class and simple settings: identifies the space in resume checks and logs."""
        settings = ", ".join(
            f"{k}={v!r}" for k, v in sorted(vars(self).items()) if isinstance(v, (int, float, str, bool, tuple))
        )
        return f"{type(self).__name__}({settings})"

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> G:
        """One architecture drawn uniformly over the decisions, reproducibly from `rng`."""

    @abstractmethod
    def size(self) -> int:
        """Number of distinct decision sequences in the space."""

    def enumerate(self) -> Iterator[G]:
        """Every architecture; only small spaces support it."""
        raise NotImplementedError(f"space '{self.name}' is too large to enumerate")

    @abstractmethod
    def token_choices(self) -> list[int]:
        """Number of valid tokens at each position (controller softmax sizes, decoder masks)."""

    def valid_tokens(self, position: int) -> range:
        return range(self.token_choices()[position])

    def token_kinds(self) -> list[str]:
        """What each position decides ("input", "op", ...): positions of one kind share a vocabulary.

        NAO's encoder embeds token t at a position of kind k as vocabulary entry (k, t), so an op
        means the same thing wherever it appears. The default treats every position alike.
        """
        return ["token"] * len(self.token_choices())

    @abstractmethod
    def to_tokens(self, genotype: G) -> tuple[int, ...]:
        """The decision sequence of a genotype; token t at position i is in valid_tokens(i)."""

    @abstractmethod
    def from_tokens(self, tokens: Sequence[int]) -> G:
        """The genotype of a decision sequence (inverse of to_tokens)."""

    def check_tokens(self, tokens: Sequence[int]) -> None:
        """Raises a one-line GenotypeError unless `tokens` fits the token table (from_tokens' guard)."""
        choices = self.token_choices()
        if len(tokens) != len(choices):
            raise GenotypeError(f"expected {len(choices)} tokens for {self!r}, got {len(tokens)}")
        for i, (t, n) in enumerate(zip(tokens, choices)):
            if not 0 <= int(t) < n:
                raise GenotypeError(f"token {i} is {t}; valid tokens at this position are 0..{n - 1}")

    def canonical(self, genotype: G) -> G:
        """One fixed representative of `genotype`'s symmetry class (for de-duplication)."""
        return genotype

    def symmetries(self, genotype: G) -> list[G]:
        """Genotypes that denote the same network (including `genotype` itself)."""
        return [genotype]

    def random_symmetry(self, genotype: G, rng: np.random.Generator) -> G:
        """One of `symmetries(genotype)` drawn uniformly (NAO's data augmentation).

        Spaces with many symmetric variants override this to avoid listing them all.
        """
        variants = self.symmetries(genotype)
        return variants[int(rng.integers(len(variants)))]

    def key(self, genotype: G) -> str:
        """Identity of an architecture up to the space's symmetries: equal keys, same network."""
        return json.dumps(self.to_dict(self.canonical(genotype)), sort_keys=True)

    @abstractmethod
    def validate(self, genotype: G) -> None:
        """Raises a one-line error if `genotype` does not belong to this space."""

    def is_complete(self, genotype: G) -> bool:
        """Whether `genotype` is a whole architecture of the space (a progressive space also has partial ones)."""
        return True

    def validate_partial(self, genotype: G) -> None:
        """`validate`, also accepting the partial genotypes of a progressive space (searches call this)."""
        self.validate(genotype)

    @abstractmethod
    def genotype_from_dict(self, data: Any) -> G:
        """Reads a genotype from its JSON data (validated structurally, not against the space)."""

    @abstractmethod
    def build_child(self, genotype: G, task: Task, **network: Any) -> nn.Module:
        """The stand-alone network of a genotype, sized by the keyword arguments."""

    def build_supernet(self, task: Task, **network: Any) -> nn.Module:
        """The weight-sharing network of the whole space: `forward(x, genotype)` runs one path."""
        raise NotImplementedError(f"space '{self.name}' has no weight-sharing supernet")

    def describe(self, genotype: G) -> str:
        return str(genotype)

    def to_dict(self, genotype: G) -> dict[str, Any]:
        return genotype.to_dict()  # type: ignore[attr-defined]

    def save_genotype(self, genotype: G, path: Path, **extra: Any) -> None:
        """Writes genotype.json: the space name, the genotype data, its readable string, and `extra`
        (the pipeline adds the config choices it was found with, so `genotype=<run dir>` rebuilds it)."""
        payload = {"space": self.name, "genotype": self.to_dict(genotype), "readable": self.describe(genotype), **extra}
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")


# --- capabilities: what some spaces can do beyond the core, checked by the strategies that need them ---------
@runtime_checkable
class Progressive(Protocol[G]):
    """A space that grows an architecture level by level (EPNAS / PNAS, `groundtruth.levels`): micro, macro."""

    def expand(self, genotype: G | None) -> list[G]:
        """Every architecture one level larger than `genotype` (None: the simplest ones); [] when full."""

    def level(self, genotype: G) -> int:
        """How far `genotype` has grown (1 .. max_level)."""

    def max_level(self) -> int:
        """The level of a complete architecture."""

    def prefix(self, genotype: G, level: int) -> G:
        """`genotype`'s ancestor at `level` (its first `level` layers or blocks): what a progressive search
        measured on the way to it."""


@runtime_checkable
class Relaxable(Protocol[G]):
    """A space with DARTS' continuous relaxation: every decision a softmax-weighted mixture (`ops.mixed`): micro
    and the recurrent cell. The micro space also has `relaxed_weights(genotype)`, the one-hot weights that
    let a trained relaxed supernet score a discrete architecture (`search.rank_all`)."""

    def build_mixed_supernet(self, task: Task, **network: Any) -> nn.Module:
        """A `MixedSupernet`: `forward(x, weights)` with one weight matrix per name of its `alpha_shapes`."""

    def derive(self, alphas: Mapping[str, torch.Tensor]) -> G:
        """The discrete genotype that the architecture weights select."""
