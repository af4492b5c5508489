"""The MLPNAS space: multi-layer perceptrons of variable depth (the NAS overview by Minutoli et al., Sec. 4-5).

MLPNAS searches a chain of dense layers, each a (width, activation) pair with widths 8..512 (powers of
two) and activations sigmoid / tanh / ReLU / ELU, optionally followed by dropout at a fixed rate of
0.2, at most 10 layers, then an output layer sized by the task (the NAS overview, Sec. 5.1). Its controller
emits one token per layer from a vocabulary of (width, activation) pairs and an end token.

Tokens here: one position per layer slot (`max_layers` of them, all of kind "layer"). Token t < V,
V = |widths| * |activations| * (2 with dropout, else 1), is the layer `vocabulary()[t]`, ordered
width-major: t = (width index * |activations| + activation index) * D + dropout bit. Token V is
"stop": the network has as many hidden layers as tokens before the first stop, and every token after
it is ignored. The first `min_layers` slots have no stop token (V choices), the others V + 1. The
stop token is the last entry rather than 0 so that a token means the same layer at every position:
NAO and the EPNAS surrogate embed tokens of one kind in one vocabulary, sized by the largest position.
`from_tokens` accepts any sequence; `to_tokens` writes the canonical one (stops after the last
layer), so token sequences that differ only after their first stop give the same genotype and `key`.
MLPNAS's separate dropout token becomes a per-layer bit (dropout after that layer's activation).

`size()` counts architectures (sum over depths n of V**n), not token sequences, and `sample` draws a
depth uniformly from min_layers..max_layers, then each layer uniformly: uniform tokens would stop
with probability 1 / (V + 1) per slot and almost always give max_layers layers.

Networks flatten their input, so digits' (1, 8, 8) images and wine's (13,) feature vectors both fit;
they refuse text tasks. Cell-space keywords (channels, cells_per_stage, auxiliary) are ignored.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
from torch import nn

from naslab.spaces.base import GenotypeError, Space, Task, parse_genotype_json

__all__ = ["ACTIVATIONS", "MLP_WIDTHS", "MLPGenotype", "MLPLayer", "MLPNetwork", "MLPSpace"]

# The MLPNAS choices (Minutoli et al.'s NAS overview, Sec. 5.1).
MLP_WIDTHS = (8, 16, 32, 64, 128, 256, 512)
ACTIVATIONS: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}
TASK_KINDS = ("image", "tabular")  # classification tasks whose inputs can be flattened into feature vectors


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class MLPLayer:
    """One hidden layer: Linear(-> width), its activation, then dropout if `dropout`."""

    width: int
    activation: str
    dropout: bool = False

    def __post_init__(self) -> None:
        if _is_int(self.width):  # numpy ints from a sampler become plain ints (JSON, hashing)
            object.__setattr__(self, "width", int(self.width))

    def validate(self, where: str) -> None:
        """Structural checks; errors name the field as `where`.width / `where`.activation / ..."""
        if not _is_int(self.width) or self.width < 1:
            raise GenotypeError(f"{where}.width must be a positive int, got {self.width!r}")
        if not isinstance(self.activation, str) or not self.activation:
            raise GenotypeError(f"{where}.activation must be an activation name, got {self.activation!r}")
        if not isinstance(self.dropout, bool):
            raise GenotypeError(f"{where}.dropout must be true or false, got {self.dropout!r}")

    def __str__(self) -> str:
        return f"{self.width} {self.activation}" + (" (dropout)" if self.dropout else "")


@dataclass(frozen=True)
class MLPGenotype:
    """The hidden layers of an MLP, input to output (the output layer is sized by the task).

    Validated structurally on construction; frozen and hashable for archives. No layers is a linear
    classifier (only in a space with min_layers=0).
    """

    layers: tuple[MLPLayer, ...]

    def __post_init__(self) -> None:
        if isinstance(self.layers, list):
            object.__setattr__(self, "layers", tuple(self.layers))
        if not isinstance(self.layers, tuple):
            raise GenotypeError(f"layers must be a list of layers, got {self.layers!r}")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, MLPLayer):
                raise GenotypeError(f"layers[{i}] must be an MLPLayer, got {layer!r}")
            layer.validate(f"layers[{i}]")

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def __str__(self) -> str:
        return " -> ".join([str(layer) for layer in self.layers] + ["linear"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [
                {"width": layer.width, "activation": layer.activation, "dropout": layer.dropout}
                for layer in self.layers
            ]
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> "MLPGenotype":
        """Reads {"layers": [{"width": 64, "activation": "relu", "dropout": false}, ...]} ("dropout" optional)."""
        if not isinstance(data, dict) or "layers" not in data:
            raise GenotypeError(f"an mlp genotype must be an object with 'layers', got {data!r}")
        if not isinstance(data["layers"], (list, tuple)):
            raise GenotypeError(f"layers must be a list, got {data['layers']!r}")
        layers = []
        for i, item in enumerate(data["layers"]):
            if not isinstance(item, dict) or "width" not in item or "activation" not in item:
                raise GenotypeError(f"layers[{i}] must be an object with 'width' and 'activation', got {item!r}")
            unknown = sorted(set(item) - {"width", "activation", "dropout"})
            if unknown:
                raise GenotypeError(f"layers[{i}] has unknown fields {unknown}; known: width, activation, dropout")
            layers.append(MLPLayer(item["width"], item["activation"], item.get("dropout", False)))
        return cls(tuple(layers))

    @classmethod
    def from_json(cls, text: str) -> "MLPGenotype":
        return cls.from_dict(parse_genotype_json(text))


class MLPNetwork(nn.Module):
    """Flatten -> [Linear -> activation (-> Dropout)] per hidden layer -> Linear(num_classes)."""

    def __init__(self, genotype: MLPGenotype, in_features: int, num_classes: int, dropout: float = 0.2):
        super().__init__()
        modules: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for layer in genotype.layers:
            modules += [nn.Linear(width, layer.width), ACTIVATIONS[layer.activation]()]
            if layer.dropout:
                modules.append(nn.Dropout(dropout))
            width = layer.width
        self.body = nn.Sequential(*modules)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.classifier(self.body(x))


class MLPSpace(Space[MLPGenotype]):
    """MLPNAS: min_layers..max_layers hidden layers, each a width x activation (x dropout or not)."""

    name = "mlp"

    def __init__(
        self,
        max_layers: int = 10,
        widths: Sequence[int] = MLP_WIDTHS,
        activations: Sequence[str] = tuple(ACTIVATIONS),
        dropout: float | None = 0.2,
        min_layers: int = 1,
    ):
        if not _is_int(max_layers) or max_layers < 1:
            raise ValueError(f"mlp space needs max_layers >= 1, got {max_layers!r}")
        if not _is_int(min_layers) or not 0 <= min_layers <= max_layers:
            raise ValueError(f"mlp space needs 0 <= min_layers <= max_layers={max_layers}, got {min_layers!r}")
        widths, activations = tuple(widths), tuple(activations)
        if not widths or not all(_is_int(w) and w >= 1 for w in widths) or len(set(widths)) != len(widths):
            raise ValueError(f"mlp space widths must be distinct positive ints, got {list(widths)}")
        unknown = [a for a in activations if a not in ACTIVATIONS]
        if not activations or unknown or len(set(activations)) != len(activations):
            raise ValueError(
                f"mlp space activations must be distinct names from {', '.join(ACTIVATIONS)}, got {list(activations)}"
            )
        if dropout is not None and not 0.0 < float(dropout) < 1.0:
            raise ValueError(f"mlp space dropout must be a rate in (0, 1) or null (no dropout choice), got {dropout}")
        self.max_layers, self.min_layers = int(max_layers), int(min_layers)
        self.widths: tuple[int, ...] = tuple(int(w) for w in widths)
        self.activations: tuple[str, ...] = tuple(str(a) for a in activations)
        self.dropout: float | None = None if dropout is None else float(dropout)

    def __repr__(self) -> str:
        return (
            f"MLPSpace(max_layers={self.max_layers}, min_layers={self.min_layers}, widths={list(self.widths)}, "
            f"activations={list(self.activations)}, dropout={self.dropout})"
        )

    # --- the layer vocabulary ----------------------------------------------------------------
    def vocabulary(self) -> list[MLPLayer]:
        """Every layer one slot may hold, in token order (width-major, then activation, then dropout)."""
        bits = (False, True) if self.dropout is not None else (False,)
        return [MLPLayer(w, a, d) for w in self.widths for a in self.activations for d in bits]

    @property
    def stop_token(self) -> int:
        """The token that ends the network (the last entry, so layer tokens mean the same everywhere)."""
        return len(self.vocabulary())

    def _layer_token(self, layer: MLPLayer) -> int:
        d = 2 if self.dropout is not None else 1
        return (
            self.widths.index(layer.width) * len(self.activations) + self.activations.index(layer.activation)
        ) * d + (int(layer.dropout) if d == 2 else 0)

    # --- sampling and counting ---------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> MLPGenotype:
        """A depth uniform over min_layers..max_layers, then each layer uniform over the vocabulary."""
        vocabulary = self.vocabulary()
        depth = int(rng.integers(self.min_layers, self.max_layers + 1))
        return MLPGenotype(tuple(vocabulary[int(rng.integers(len(vocabulary)))] for _ in range(depth)))

    def size(self) -> int:
        """Distinct architectures, sum over depths n of V**n (token sequences are more: tokens after a stop)."""
        v = len(self.vocabulary())
        return sum(v**n for n in range(self.min_layers, self.max_layers + 1))

    def enumerate(self) -> Iterator[MLPGenotype]:
        """Shallow to deep, each depth in token order."""
        if self.size() > 1_000_000:
            raise NotImplementedError(f"{self!r} has {self.size():,} architectures; too many to enumerate")
        vocabulary = self.vocabulary()
        for depth in range(self.min_layers, self.max_layers + 1):
            for layers in itertools.product(vocabulary, repeat=depth):
                yield MLPGenotype(tuple(layers))

    # --- tokens ----------------------------------------------------------------------------
    def token_choices(self) -> list[int]:
        v = len(self.vocabulary())
        return [v if i < self.min_layers else v + 1 for i in range(self.max_layers)]

    def token_kinds(self) -> list[str]:
        return ["layer"] * self.max_layers

    def to_tokens(self, genotype: MLPGenotype) -> tuple[int, ...]:
        """The canonical token sequence: one token per layer, then stops up to max_layers."""
        self.validate(genotype)
        tokens = [self._layer_token(layer) for layer in genotype.layers]
        return tuple(tokens + [self.stop_token] * (self.max_layers - len(tokens)))

    def from_tokens(self, tokens: Sequence[int]) -> MLPGenotype:
        """The layers before the first stop token; whatever follows it is ignored."""
        self.check_tokens(tokens)
        vocabulary, layers = self.vocabulary(), []
        for t in tokens:
            if int(t) == self.stop_token:
                break
            layers.append(vocabulary[int(t)])
        return MLPGenotype(tuple(layers))

    def canonical_tokens(self, tokens: Sequence[int]) -> tuple[int, ...]:
        """`tokens` with every position after the first stop set to stop (same genotype, same key)."""
        return self.to_tokens(self.from_tokens(tokens))

    # --- validation ----------------------------------------------------------------------------
    def validate(self, genotype: MLPGenotype) -> None:
        """A one-line GenotypeError unless `genotype` is in the space."""
        if not isinstance(genotype, MLPGenotype):
            raise GenotypeError(f"expected an MLPGenotype, got {type(genotype).__name__}")
        if not self.min_layers <= genotype.num_layers <= self.max_layers:
            raise GenotypeError(
                f"genotype has {genotype.num_layers} layers; {self!r} allows {self.min_layers}..{self.max_layers}"
            )
        for i, layer in enumerate(genotype.layers):
            if layer.width not in self.widths:
                raise GenotypeError(
                    f"layers[{i}].width={layer.width} is not allowed; widths: {', '.join(map(str, self.widths))}"
                )
            if layer.activation not in self.activations:
                raise GenotypeError(
                    f"layers[{i}].activation='{layer.activation}' is not allowed; "
                    f"activations: {', '.join(self.activations)}"
                )
            if layer.dropout and self.dropout is None:
                raise GenotypeError(f"layers[{i}] has dropout, but the space has none (dropout=null)")

    def genotype_from_dict(self, data: Any) -> MLPGenotype:
        return MLPGenotype.from_dict(data)

    # --- networks and text ---------------------------------------------------------------------
    def build_child(self, genotype: MLPGenotype, task: Task, **_: Any) -> MLPNetwork:
        """The MLP for `task` (inputs flattened); cell-space keywords (channels, ...) are ignored."""
        self.validate(genotype)
        if task.kind not in TASK_KINDS:
            raise ValueError(
                f"space={self.name} builds classifiers of feature vectors (tabular data or flattened images), "
                f"but the dataset is {task.kind} data: use dataset=wine or an image dataset (digits, ...)"
            )
        in_features = math.prod(task.input_shape)
        return MLPNetwork(genotype, in_features, task.num_classes, self.dropout if self.dropout is not None else 0.0)

    def describe(self, genotype: MLPGenotype) -> str:
        """E.g. "64 relu -> 32 tanh (dropout 0.2) -> linear" (the output layer is sized by the task)."""
        rate = f" (dropout {self.dropout:g})" if self.dropout is not None else " (dropout)"
        parts = [f"{layer.width} {layer.activation}" + (rate if layer.dropout else "") for layer in genotype.layers]
        return " -> ".join(parts + ["linear"])
