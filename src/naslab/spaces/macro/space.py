"""The ENAS macro search space (Pham et al. 2018, "Efficient NAS via parameter sharing", Sec. 2.3).

A network is a chain of L layers. Layer i picks one op and a subset of the earlier layers 0..i-1
whose outputs are added to its own (skip connections), so layer i has |ops| * 2**i choices and
the space has prod_i |ops| * 2**i architectures (~1.6e29 for L = 12 and the 6 ENAS ops;
EPNAS, arXiv:1808.00391, quotes ~2e29). The token sequence lists, layer by layer, [op index, one 0/1 per earlier
layer], which is exactly ENAS's arc-string layout (`cifar10_macro_final.sh`) and its controller's
per-position softmax sizes.

Skip indices name the *outputs of earlier layers*, as the paper and EPNAS define S_l subset of
(H_1 .. H_{l-1}). ENAS's released `general_child.py` indexes a list that starts with the stem, so
there bit j of layer i adds the stem (j = 0) or layer j-1's output: an ENAS arc string reads here
with its skips shifted by one and a skip from the stem dropped.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
from torch import nn

from naslab.ops.cnn import op_set as lookup_op_set
from naslab.spaces.base import GenotypeError, Space, Task, parse_genotype_json
from naslab.spaces.macro.network import MACRO_OP_SETS, MACRO_OPS, MACRO_OPS_ENAS, MacroNetwork, reduction_layers

__all__ = ["MACRO_OPS_ENAS", "MacroGenotype", "MacroLayer", "MacroSpace"]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class MacroLayer:
    """One layer: the op it applies to the previous layer's output and the earlier layers it adds."""

    op: str
    skips: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # Lists from JSON or user code become tuples of ints, so every genotype stays hashable.
        if isinstance(self.skips, (list, tuple)):
            object.__setattr__(self, "skips", tuple(int(s) if _is_int(s) else s for s in self.skips))

    def validate(self, index: int, where: str) -> None:
        """Checks the layer as layer `index`; errors name the field as `where`.op / `where`.skips."""
        if not isinstance(self.op, str) or not self.op:
            raise GenotypeError(f"{where}.op must be an op name, got {self.op!r}")
        if not isinstance(self.skips, tuple):
            raise GenotypeError(f"{where}.skips must be a list of layer indices, got {self.skips!r}")
        for s in self.skips:
            if not _is_int(s):
                raise GenotypeError(f"{where}.skips has {s!r}; skips must be int layer indices")
            if not 0 <= s < index:
                earlier = f"earlier layers 0..{index - 1}" if index > 0 else "earlier layers (layer 0 has none)"
                raise GenotypeError(f"{where}.skips has {s}; skips must be {earlier}")
        if list(self.skips) != sorted(set(self.skips)):
            raise GenotypeError(f"{where}.skips={list(self.skips)} must be sorted and without duplicates")

    def __str__(self) -> str:
        return self.op + (f"[+{','.join(map(str, self.skips))}]" if self.skips else "")


@dataclass(frozen=True)
class MacroGenotype:
    """L layers of the macro chain. Validated on construction; frozen and hashable for archives."""

    layers: tuple[MacroLayer, ...]

    def __post_init__(self) -> None:
        if isinstance(self.layers, list):
            object.__setattr__(self, "layers", tuple(self.layers))
        if not isinstance(self.layers, tuple) or not self.layers:
            raise GenotypeError(f"layers must be a non-empty list of layers, got {self.layers!r}")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, MacroLayer):
                raise GenotypeError(f"layers[{i}] must be a MacroLayer, got {layer!r}")
            layer.validate(i, f"layers[{i}]")

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def ops(self) -> list[str]:
        """The op of every layer, in layer order."""
        return [layer.op for layer in self.layers]

    def __str__(self) -> str:
        return " ".join(f"{i}:{layer}" for i, layer in enumerate(self.layers))

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [{"op": layer.op, "skips": list(layer.skips)} for layer in self.layers]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> "MacroGenotype":
        """Reads {"layers": [{"op": ..., "skips": [...]}, ...]}; errors name the offending field."""
        if not isinstance(data, dict) or "layers" not in data:
            raise GenotypeError(f"a macro genotype must be an object with 'layers', got {data!r}")
        if not isinstance(data["layers"], (list, tuple)):
            raise GenotypeError(f"layers must be a list, got {data['layers']!r}")
        layers = []
        for i, item in enumerate(data["layers"]):
            if not isinstance(item, dict) or "op" not in item or "skips" not in item:
                raise GenotypeError(f"layers[{i}] must be an object with 'op' and 'skips', got {item!r}")
            if not isinstance(item["skips"], (list, tuple)):
                raise GenotypeError(f"layers[{i}].skips must be a list of layer indices, got {item['skips']!r}")
            layers.append(MacroLayer(item["op"], tuple(item["skips"])))
        return cls(tuple(layers))

    @classmethod
    def from_json(cls, text: str) -> "MacroGenotype":
        return cls.from_dict(parse_genotype_json(text))


def _lookup_op_set(op_set: str | Sequence[str]) -> tuple[str, ...]:
    """The ops of a named macro op set, or a custom list of MACRO_OPS names (e.g. from a config)."""
    return lookup_op_set(op_set, MACRO_OP_SETS, MACRO_OPS, "macro op set")


class MacroSpace(Space[MacroGenotype]):
    """ENAS macro space: `num_layers` layers, each one op of `op_set` plus skips from earlier layers."""

    name = "macro"

    def __init__(self, num_layers: int = 12, op_set: str | Sequence[str] = "enas_macro"):
        if num_layers < 1:
            raise ValueError(f"macro space needs num_layers >= 1, got {num_layers}")
        self.num_layers = num_layers
        self.ops: tuple[str, ...] = _lookup_op_set(op_set)
        self.op_set_name = op_set if isinstance(op_set, str) else "custom"

    def __repr__(self) -> str:
        ops = f"'{self.op_set_name}'" if self.op_set_name != "custom" else repr(list(self.ops))
        return f"MacroSpace(num_layers={self.num_layers}, op_set={ops})"

    def reduction_layers(self) -> tuple[int, ...]:
        """Layers after which the resolution halves (ENAS pool_layers; after 3 and 7 for L = 12)."""
        return reduction_layers(self.num_layers)

    # --- sampling and counting ---------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> MacroGenotype:
        """Uniform op per layer and an independent fair coin per skip.

        ENAS's controller pulls skips towards a prior density (skip_target 0.4 via a KL penalty);
        uniform sampling over the decisions means probability 0.5, so every genotype is equally likely.
        """
        layers = []
        for i in range(self.num_layers):
            op = self.ops[int(rng.integers(len(self.ops)))]
            bits = rng.integers(2, size=i)
            layers.append(MacroLayer(op, tuple(j for j in range(i) if bits[j])))
        return MacroGenotype(tuple(layers))

    def size(self) -> int:
        return math.prod(len(self.ops) * 2**i for i in range(self.num_layers))

    def enumerate(self) -> Iterator[MacroGenotype]:
        if self.size() > 1_000_000:
            raise NotImplementedError(f"{self!r} has {self.size():,} architectures; too many to enumerate")
        for tokens in itertools.product(*(range(n) for n in self.token_choices())):
            yield self.from_tokens(tokens)

    # --- tokens ----------------------------------------------------------------------------
    def token_choices(self) -> list[int]:
        choices: list[int] = []
        for i in range(self.num_layers):
            choices += [len(self.ops)] + [2] * i
        return choices

    def token_kinds(self) -> list[str]:
        kinds: list[str] = []
        for i in range(self.num_layers):
            kinds += ["op"] + ["skip"] * i
        return kinds

    def to_tokens(self, genotype: MacroGenotype) -> tuple[int, ...]:
        """The token sequence; a partial genotype (fewer layers, progressive search) gives its prefix."""
        self.validate(genotype, partial=True)
        tokens: list[int] = []
        for i, layer in enumerate(genotype.layers):
            tokens.append(self.ops.index(layer.op))
            tokens += [int(j in layer.skips) for j in range(i)]
        return tuple(tokens)

    def from_tokens(self, tokens: Sequence[int]) -> MacroGenotype:
        self.check_tokens(tokens)
        layers = []
        k = 0
        for i in range(self.num_layers):
            op = self.ops[int(tokens[k])]
            bits = tokens[k + 1 : k + 1 + i]
            layers.append(MacroLayer(op, tuple(j for j, b in enumerate(bits) if int(b))))
            k += 1 + i
        return MacroGenotype(tuple(layers))

    # --- equivalences and validation --------------------------------------------------------
    def symmetries(self, genotype: MacroGenotype) -> list[MacroGenotype]:
        """None: every decision changes the network (ops differ, skip sums differ)."""
        return [genotype]

    def canonical(self, genotype: MacroGenotype) -> MacroGenotype:
        return genotype

    def validate(self, genotype: MacroGenotype, partial: bool = False) -> None:
        """A one-line error unless `genotype` is in the space; `partial` also accepts the first l layers."""
        if not isinstance(genotype, MacroGenotype):
            raise GenotypeError(f"expected a MacroGenotype, got {type(genotype).__name__}")
        if partial and genotype.num_layers > self.num_layers:
            raise GenotypeError(f"genotype has {genotype.num_layers} layers; {self!r} has at most {self.num_layers}")
        if not partial and genotype.num_layers != self.num_layers:
            raise GenotypeError(f"genotype has {genotype.num_layers} layers; {self!r} has {self.num_layers}")
        for i, layer in enumerate(genotype.layers):
            if layer.op not in self.ops:
                raise GenotypeError(
                    f"layers[{i}].op='{layer.op}' is not in op set '{self.op_set_name}' ({', '.join(self.ops)})"
                )

    def genotype_from_dict(self, data: Any) -> MacroGenotype:
        return MacroGenotype.from_dict(data)

    # --- progressive search (EPNAS / PNAS, EPNAS arXiv:1808.00391 Sec. 3): one more layer per level ------------
    def level(self, genotype: MacroGenotype) -> int:
        """The complexity level of a (partial) genotype: its number of layers, 1..num_layers."""
        return genotype.num_layers

    def is_complete(self, genotype: MacroGenotype) -> bool:
        return self.level(genotype) == self.max_level()

    def max_level(self) -> int:
        return self.num_layers

    def validate_partial(self, genotype: MacroGenotype) -> None:
        self.validate(genotype, partial=True)

    def expand(self, genotype: MacroGenotype | None) -> list[MacroGenotype]:
        """Every architecture one layer deeper than `genotype` (None: the one-layer architectures).

        Layer l gets each op and each subset of skips from layers 0..l-1: |ops| * 2**l children, all
        distinct. Expanding level by level from None reaches every architecture of the space exactly
        once (each has one parent: itself without its last layer); a full genotype has no children.
        """
        layers: tuple[MacroLayer, ...] = ()
        if genotype is not None:
            self.validate(genotype, partial=True)
            layers = genotype.layers
        i = len(layers)
        if i >= self.num_layers:
            return []
        skip_sets = [s for n in range(i + 1) for s in itertools.combinations(range(i), n)]
        return [MacroGenotype(layers + (MacroLayer(op, skips),)) for op in self.ops for skips in skip_sets]

    def prefix(self, genotype: MacroGenotype, level: int) -> MacroGenotype:
        """The first `level` layers (skips only reach earlier layers, so they stay valid)."""
        if level < 1:
            raise ValueError(f"a prefix has at least one layer (level >= 1), got level {level}")
        self.validate(genotype, partial=True)
        return MacroGenotype(genotype.layers[:level])

    # --- networks and pictures ---------------------------------------------------------------
    def build_child(self, genotype: MacroGenotype, task: Task, channels: int = 16, **_: Any) -> nn.Module:
        """The stand-alone child; cell-space keywords (cells_per_stage, auxiliary, ...) are ignored."""
        unknown = sorted({op for op in genotype.ops() if op not in MACRO_OPS})
        if unknown:
            raise GenotypeError(f"genotype uses unknown macro ops {unknown}; known: {', '.join(MACRO_OPS)}")
        self._check_stem(task)
        return MacroNetwork(genotype, num_classes=task.num_classes, in_channels=task.input_shape[0], channels=channels)

    def build_supernet(self, task: Task, channels: int = 16, **_: Any) -> MacroNetwork:
        """The ENAS weight-sharing network: every op of every layer; forward(x, genotype) runs one path."""
        self._check_stem(task)
        return MacroNetwork(
            None,
            num_classes=task.num_classes,
            in_channels=task.input_shape[0],
            channels=channels,
            num_layers=self.num_layers,
            ops=self.ops,
        )

    def _check_stem(self, task: Task) -> None:
        task.require("image", self.name)
        # The macro chain runs every layer at full input resolution until the first reduction: with
        # no ImageNet stem, a 224px input would silently cost ~50x a CIFAR image, so refuse it.
        if task.stem != "cifar":
            raise ValueError(f"the macro space has only the CIFAR stem (3x3 conv), got stem='{task.stem}'")
