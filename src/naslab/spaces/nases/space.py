"""The NASES macro search space (Liu, "Neural Architecture Search in Embedding Space").

A network is a chain of L = 15 layers described by 4 * L = 60 continuous numbers in the box
[low, high] = [0, 30] (Liu's NASES paper Sec. 3.2.2 and Sec. 4.2.2: "a 15-layer convolutional architecture
by using 60 hyperparameters"; Sec. 4.1.1 samples the architecture space uniformly "at the interval
[0, 30]"). Value 4 * l + k belongs to layer l, in the paper's order k = 0 number of filters,
1 filter size, 2 kernel type, 3 connection coefficient. The child network turns them into a
discrete architecture by fixed rules (Appendix A). The rules are data (`NASESRules`, set from
conf/space/nases.yaml); the defaults, and where the paper leaves a gap, are:

* Binning. A value v falls in bin k of ascending thresholds t_0 < t_1 < ... when
  t_{k-1} < v <= t_k (closed on the right, as the paper's "<= 7", "> 7 or <= 15"), i.e. k is the
  number of thresholds strictly below v. Every value in [low, high] falls in exactly one bin, so
  every vector of the box decodes to a valid network.
* Kernel type (A.1): <= 7 depthwise-separable conv, (7, 15] conv (both from the paper); the paper
  names max and avg pooling but gives no thresholds: here (15, 22] max pool, (22, 30] avg pool
  (bins of width 7, 8, 7, 8, continuing the paper's pattern).
* Filter size (A.1): <= 10 is 3x3 (paper); (10, 20] 5x5 and (20, 30] 7x7 (equal thirds; the paper
  lists the three sizes but only the first threshold). A pool's filter size is its window.
* Number of filters: no rule in the paper. Four equal bins, <= 7.5 / <= 15 / <= 22.5 / <= 30 ->
  64 / 128 / 192 / 256 filters at `channels == reference_channels` (64). Sec. 4.2.3's parameter
  counts (8M, 20.4M after "adding 100 to the number of filters of each layer", 28.4M after adding
  150) fit a mean width of about 167 if parameters grow with width squared: (267/167)^2 * 8M =
  20.4M, (317/167)^2 * 8M = 28.8M; these choices average 160. `build_child(channels=c)` scales every
  count by c / reference_channels (at least 1 channel), so tests and search proxies stay small.
* Skip connections (A.2): "the layers are a connection when the connection coefficient is close to
  three; for example, the layer one and two are a connection when their connection coefficient is
  between two and five". Read here as: layers i < j connect when |c_i - c_j| <= window = 3
  (closed, 1e-9 slack for float rounding), so coefficients 2 and 5 connect and 0 and 3.0001 do
  not. Any pair may connect, adjacent ones included (the paper's own example is layers one and two).
* Layer wiring (A.2, A.3; partly a choice): A.2 says connected layers "were concatenated in the
  channel dimension at the end of the layer", so layer j's output is the concatenation, on the
  channel axis, of its own op's output h_j and the op outputs h_i of every earlier layer i it
  connects to (`skips`). Layer j+1 maps that output with ReLU -> 1x1 conv -> BN to its own filter
  count (A.3: 1x1 convs "change the dimensionality in the filter space", "before the convolution
  layer, except for the first layer"), then applies its op (ReLU -> conv -> BN order; separable
  convs applied twice, A.1; pools at stride 1, so a pool outputs its filter count too). Layer 0
  reads a fixed stem (3x3 conv + BN, image channels -> layer 0's filter count). The last layer's
  concatenated output goes to the classifier. Concatenating h_i (not layer i's own concatenated
  output) keeps widths bounded: layer j's output has filters_j + sum of filters_i over its skips.
* Reductions: the paper does not say where the resolution drops. Here a parameter-free 2x2
  stride-2 pooling (`reduction`, max by default) halves every still-needed output after the layers
  in `reduce_after` (0-based; default None: after layers L // 3 - 1 and 2L // 3 - 1, i.e. 4 and
  9, the 5th and 10th of 15), widths unchanged. Then global average pooling (A.4) and a linear
  classifier. Convolutions are He-initialised (Sec. 4.2.2).

Identity. Many vectors decode to one network; `key` is the decoded architecture (ops, kernels,
filters, skips), so two such vectors share a key. `canonical` snaps each layer's filter, size and
kernel-type values to a fixed representative of their bin (the integer nearest the bin's middle);
connection coefficients are kept as they are, because the set of coefficient vectors giving one
skip pattern is not a box and has no cheap representative. So equal canonicals imply equal keys,
not the converse; `key` is the de-duplication identity.

Tokens. Each value is discretised to its nearest integer (halves round up), low..high: 31 choices
per position, kinds "filters", "filter_size", "kernel_type", "connection", so token-based strategies
(REINFORCE controller, NAO) can drive the space. `from_tokens` gives integer-valued vectors and
`to_tokens(from_tokens(t)) == t`; `from_tokens(to_tokens(g))` is g rounded and may decode
differently when g has a value within 0.5 of a threshold or coefficient differences near 3.

`size()` is an upper bound on distinct decoded architectures: (4 filter counts x 3 sizes x 4 kinds)
per layer times 2 ** C(L, 2) skip patterns (every pair of layers free). Not every skip pattern is
reachable (they are distance-threshold graphs of points in [0, 30]); the exact count is not computed.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from torch import nn

from naslab.spaces.base import GenotypeError, Space, Task, parse_genotype_json
from naslab.spaces.nases.network import NASES_KINDS, NASESNetwork

__all__ = ["FIELDS", "NASESGenotype", "NASESLayer", "NASESRules", "NASESSpace", "PAPER_RULES"]

FIELDS = ("filters", "filter_size", "kernel_type", "connection")  # the 4 values of a layer, paper order
_SLACK = 1e-9  # float rounding allowance of the closeness window (0.1 and 3.1 differ by 3.0000000000000004)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class NASESLayer:
    """One decoded layer: op name (kind + kernel), its output filter count and the skip layers it reads."""

    kind: str  # sep_conv | conv | max_pool | avg_pool
    kernel: int  # 3 | 5 | 7 (window of a pool)
    filters: int  # output channels before the `channels` scaling
    skips: tuple[int, ...] = ()  # earlier layers whose op outputs are concatenated to this layer's output

    @property
    def op(self) -> str:
        return f"{self.kind}_{self.kernel}x{self.kernel}"

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "filters": self.filters, "skips": list(self.skips)}

    def __str__(self) -> str:
        return f"{self.op}/{self.filters}" + (f"[+{','.join(map(str, self.skips))}]" if self.skips else "")


def _floats(values: Any, name: str) -> tuple[float, ...]:
    values = list(values) if not isinstance(values, (str, bytes)) and hasattr(values, "__iter__") else [values]
    if not all(_is_number(v) for v in values):
        raise ValueError(f"{name} must be a list of numbers, got {values!r}")
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class NASESRules:
    """The decoding rules: per field ascending thresholds and one choice per bin, the closeness window."""

    filter_thresholds: tuple[float, ...] = (7.5, 15.0, 22.5)
    filter_choices: tuple[int, ...] = (64, 128, 192, 256)
    size_thresholds: tuple[float, ...] = (10.0, 20.0)
    size_choices: tuple[int, ...] = (3, 5, 7)
    type_thresholds: tuple[float, ...] = (7.0, 15.0, 22.0)
    type_choices: tuple[str, ...] = NASES_KINDS
    connect_window: float = 3.0

    def check(self, low: float, high: float) -> None:
        """ValueError unless every value of [low, high] decodes (each bin non-empty, choices valid)."""
        for field, thresholds, choices in self.fields():
            if len(choices) != len(thresholds) + 1:
                raise ValueError(f"{field}: {len(thresholds)} thresholds need {len(thresholds) + 1} choices")
            if list(thresholds) != sorted(set(thresholds)):
                raise ValueError(f"{field}_thresholds must be strictly ascending, got {list(thresholds)}")
            if thresholds and not (low <= thresholds[0] and thresholds[-1] < high):
                raise ValueError(f"{field}_thresholds must lie in [{low}, {high}), got {list(thresholds)}")
        if not all(isinstance(f, int) and f >= 1 for f in self.filter_choices):
            raise ValueError(f"filter_choices must be positive ints, got {list(self.filter_choices)}")
        if not all(isinstance(k, int) and k >= 1 and k % 2 for k in self.size_choices):
            raise ValueError(f"size_choices must be odd positive ints ('same' padding), got {list(self.size_choices)}")
        unknown = [t for t in self.type_choices if t not in NASES_KINDS]
        if unknown:
            raise ValueError(f"type_choices has unknown kernel types {unknown}; known: {', '.join(NASES_KINDS)}")
        if not self.connect_window >= 0:
            raise ValueError(f"connect_window must be >= 0, got {self.connect_window}")

    def fields(self) -> list[tuple[str, tuple[float, ...], tuple[Any, ...]]]:
        return [
            ("filter", self.filter_thresholds, self.filter_choices),
            ("size", self.size_thresholds, self.size_choices),
            ("type", self.type_thresholds, self.type_choices),
        ]

    def decisions_per_layer(self) -> int:
        return len(self.filter_choices) * len(self.size_choices) * len(self.type_choices)

    def connected(self, a: float, b: float) -> bool:
        return abs(a - b) <= self.connect_window + _SLACK

    def decode(self, values: Sequence[float]) -> tuple[NASESLayer, ...]:
        """The layers of a vector of 4 * L values (assumed in the box; `NASESSpace.validate` checks)."""
        if len(values) % 4:
            raise GenotypeError(f"a NASES vector has 4 values per layer, got {len(values)} values")
        coefficients = values[3::4]
        layers = []
        for j in range(len(values) // 4):
            f, s, t, c = values[4 * j : 4 * j + 4]
            layers.append(
                NASESLayer(
                    kind=self.type_choices[bisect.bisect_left(self.type_thresholds, t)],
                    kernel=self.size_choices[bisect.bisect_left(self.size_thresholds, s)],
                    filters=self.filter_choices[bisect.bisect_left(self.filter_thresholds, f)],
                    skips=tuple(i for i in range(j) if self.connected(coefficients[i], c)),
                )
            )
        return tuple(layers)


PAPER_RULES = NASESRules()  # NASES's rules, completed where the paper is silent (module docstring)


@dataclass(frozen=True)
class NASESGenotype:
    """The 4 * L numbers of a NASES architecture (layer by layer: filters, filter size, kernel type,
    connection coefficient). Frozen and hashable; the box and length are checked by the space."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if isinstance(self.values, np.ndarray):
            object.__setattr__(self, "values", tuple(self.values.tolist()))
        if not isinstance(self.values, (list, tuple)):
            raise GenotypeError(f"values must be a list of numbers, got {self.values!r}")
        for i, v in enumerate(self.values):
            if not _is_number(v):
                raise GenotypeError(f"values[{i}] is {v!r}; values must be numbers")
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))

    @property
    def num_layers(self) -> int:
        return len(self.values) // 4

    def decoded(self, rules: NASESRules | None = None) -> tuple[NASESLayer, ...]:
        """Per layer op, kernel, filters and skips under `rules` (default: the paper's, PAPER_RULES)."""
        return (rules or PAPER_RULES).decode(self.values)

    def __str__(self) -> str:
        return " ".join(f"{v:.4g}" for v in self.values)

    def to_dict(self) -> dict[str, Any]:
        return {"values": list(self.values)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> "NASESGenotype":
        """Reads {"values": [...]}; errors name the offending field."""
        if not isinstance(data, dict) or "values" not in data:
            raise GenotypeError(f"a NASES genotype must be an object with 'values', got {data!r}")
        if not isinstance(data["values"], (list, tuple)):
            raise GenotypeError(f"values must be a list of numbers, got {data['values']!r}")
        return cls(tuple(data["values"]))

    @classmethod
    def from_json(cls, text: str) -> "NASESGenotype":
        return cls.from_dict(parse_genotype_json(text))


class NASESSpace(Space[NASESGenotype]):
    """NASES: `num_layers` layers x 4 numbers in [low, high], decoded by `NASESRules` (module docstring)."""

    name = "nases"

    def __init__(
        self,
        num_layers: int = 15,
        low: int = 0,
        high: int = 30,
        filter_thresholds: Sequence[float] = PAPER_RULES.filter_thresholds,
        filter_choices: Sequence[int] = PAPER_RULES.filter_choices,
        size_thresholds: Sequence[float] = PAPER_RULES.size_thresholds,
        size_choices: Sequence[int] = PAPER_RULES.size_choices,
        type_thresholds: Sequence[float] = PAPER_RULES.type_thresholds,
        type_choices: Sequence[str] = PAPER_RULES.type_choices,
        connect_window: float = PAPER_RULES.connect_window,
        reduce_after: Sequence[int] | None = None,
        reduction: str = "max",
        reference_channels: int = 64,
    ):
        if num_layers < 1:
            raise ValueError(f"nases space needs num_layers >= 1, got {num_layers}")
        if not (isinstance(low, int) and isinstance(high, int) and low < high):
            raise ValueError(f"nases space needs integer bounds low < high (tokens are integers), got {low}, {high}")
        self.num_layers = int(num_layers)
        self.low, self.high = low, high
        self.rules = NASESRules(
            filter_thresholds=_floats(filter_thresholds, "filter_thresholds"),
            filter_choices=tuple(int(f) for f in filter_choices),
            size_thresholds=_floats(size_thresholds, "size_thresholds"),
            size_choices=tuple(int(k) for k in size_choices),
            type_thresholds=_floats(type_thresholds, "type_thresholds"),
            type_choices=tuple(str(t) for t in type_choices),
            connect_window=float(connect_window),
        )
        self.rules.check(low, high)
        if reduce_after is None:  # thirds, as ENAS' macro pool_layers: after layers 4 and 9 of 15
            thirds = (self.num_layers // 3 - 1, 2 * self.num_layers // 3 - 1)
            reduce_after = [r for r in thirds if 0 <= r < self.num_layers - 1]
        self.reduce_after = tuple(sorted({int(r) for r in reduce_after}))
        if any(not 0 <= r < self.num_layers for r in self.reduce_after):
            raise ValueError(f"reduce_after must name layers 0..{self.num_layers - 1}, got {list(reduce_after)}")
        if reduction not in ("max", "avg"):
            raise ValueError(f"reduction must be 'max' or 'avg', got {reduction!r}")
        self.reduction = reduction
        if reference_channels < 1:
            raise ValueError(f"reference_channels must be >= 1, got {reference_channels}")
        self.reference_channels = int(reference_channels)

    def __repr__(self) -> str:
        r = self.rules
        return (
            f"NASESSpace(num_layers={self.num_layers}, low={self.low}, high={self.high}, "
            f"filter_thresholds={list(r.filter_thresholds)}, filter_choices={list(r.filter_choices)}, "
            f"size_thresholds={list(r.size_thresholds)}, size_choices={list(r.size_choices)}, "
            f"type_thresholds={list(r.type_thresholds)}, type_choices={list(r.type_choices)}, "
            f"connect_window={r.connect_window}, reduce_after={list(self.reduce_after)}, "
            f"reduction='{self.reduction}', reference_channels={self.reference_channels})"
        )

    @property
    def num_values(self) -> int:
        return 4 * self.num_layers

    def field(self, position: int) -> str:
        """'layer l <field>' of a value position, for error messages."""
        return f"layer {position // 4} {FIELDS[position % 4]}"

    # --- sampling, decoding and counting ----------------------------------------------------
    def sample(self, rng: np.random.Generator) -> NASESGenotype:
        """Every value uniform in [low, high), independently (the NASES paper's uniform space, Sec. 4.1.1)."""
        return NASESGenotype(tuple(rng.uniform(self.low, self.high, size=self.num_values).tolist()))

    def decode(self, genotype: NASESGenotype) -> tuple[NASESLayer, ...]:
        """The discrete architecture of `genotype` under this space's rules."""
        self.validate(genotype)
        return self.rules.decode(genotype.values)

    def size(self) -> int:
        """Upper bound on distinct decoded architectures (module docstring): choices x free skip pairs."""
        pairs = self.num_layers * (self.num_layers - 1) // 2
        return self.rules.decisions_per_layer() ** self.num_layers * 2**pairs

    # --- tokens ----------------------------------------------------------------------------
    def token_choices(self) -> list[int]:
        return [self.high - self.low + 1] * self.num_values

    def token_kinds(self) -> list[str]:
        return list(FIELDS) * self.num_layers

    def to_tokens(self, genotype: NASESGenotype) -> tuple[int, ...]:
        """Each value rounded to the nearest integer (halves up), as an offset from `low`."""
        self.validate(genotype)
        return tuple(min(math.floor(v + 0.5), self.high) - self.low for v in genotype.values)

    def from_tokens(self, tokens: Sequence[int]) -> NASESGenotype:
        self.check_tokens(tokens)
        return NASESGenotype(tuple(float(int(t) + self.low) for t in tokens))

    # --- identity and validation ---------------------------------------------------------------
    def _representative(self, value: float, thresholds: tuple[float, ...]) -> float:
        """The integer nearest the middle of `value`'s bin (the middle itself if the bin holds no integer)."""
        k = bisect.bisect_left(thresholds, value)
        lo = thresholds[k - 1] if k > 0 else self.low
        hi = thresholds[k] if k < len(thresholds) else self.high
        inside = [n for n in range(math.ceil(lo), math.floor(hi) + 1) if bisect.bisect_left(thresholds, n) == k]
        middle = (lo + hi) / 2
        return float(min(inside, key=lambda n: (abs(n - middle), n))) if inside else middle

    def canonical(self, genotype: NASESGenotype) -> NASESGenotype:
        """Filter, size and kernel-type values snapped to their bin's representative; coefficients kept."""
        self.validate(genotype)
        r = self.rules
        thresholds = (r.filter_thresholds, r.size_thresholds, r.type_thresholds)
        values = [
            v if i % 4 == 3 else self._representative(v, thresholds[i % 4]) for i, v in enumerate(genotype.values)
        ]
        return NASESGenotype(tuple(values))

    def key(self, genotype: NASESGenotype) -> str:
        """The decoded architecture as JSON: vectors that decode to the same network share a key."""
        return json.dumps([layer.to_dict() for layer in self.decode(genotype)], sort_keys=True)

    def validate(self, genotype: NASESGenotype) -> None:
        """A one-line GenotypeError naming the offending position unless `genotype` is in the box."""
        if not isinstance(genotype, NASESGenotype):
            raise GenotypeError(f"expected a NASESGenotype, got {type(genotype).__name__}")
        n = len(genotype.values)
        if n != self.num_values:
            raise GenotypeError(
                f"genotype has {n} values; space=nases needs {self.num_values} "
                f"({self.num_layers} layers x {', '.join(FIELDS)})"
            )
        for i, v in enumerate(genotype.values):
            if not math.isfinite(v):
                raise GenotypeError(f"values[{i}] ({self.field(i)}) is {v}; values must be finite numbers")
            if not self.low <= v <= self.high:
                raise GenotypeError(f"values[{i}] ({self.field(i)}) is {v}; must be in [{self.low}, {self.high}]")

    def genotype_from_dict(self, data: Any) -> NASESGenotype:
        return NASESGenotype.from_dict(data)

    def describe(self, genotype: NASESGenotype) -> str:
        """Decoded layers, e.g. '0:conv_3x3/64 1:sep_conv_5x5/128 2:max_pool_3x3/64[+0]'."""
        return " ".join(f"{i}:{layer}" for i, layer in enumerate(self.decode(genotype)))

    # --- networks and pictures ---------------------------------------------------------------
    def widths(self, genotype: NASESGenotype, channels: int | None = None) -> list[int]:
        """Each layer's output channels: decoded filters x channels / reference_channels, at least 1."""
        scale = 1.0 if channels is None else channels / self.reference_channels
        return [max(1, round(layer.filters * scale)) for layer in self.decode(genotype)]

    def build_child(self, genotype: NASESGenotype, task: Task, channels: int | None = None, **_: Any) -> nn.Module:
        """The stand-alone child; `channels` (None: reference_channels) scales every filter count.

        Cell-space keywords (cells_per_stage, auxiliary, ...) are ignored.
        """
        task.require("image", self.name)
        # Fifteen layers run at full input resolution until the first reduction: with no ImageNet
        # stem, a 224px input would cost ~50x a CIFAR image, so refuse it as space=macro does.
        if task.stem != "cifar":
            raise ValueError(f"the nases space has only the CIFAR stem (3x3 conv), got stem='{task.stem}'")
        if channels is not None and channels < 1:
            raise ValueError(f"network channels must be >= 1, got {channels}")
        return NASESNetwork(
            self.decode(genotype),
            self.widths(genotype, channels),
            num_classes=task.num_classes,
            in_channels=task.input_shape[0],
            reduce_after=self.reduce_after,
            reduction=self.reduction,
        )
