"""The recurrent cell space of ENAS, NAO, DARTS and the search-phase study (Sciuto et al. arXiv:1902.08142, Sec. 4.2).

The cell reads x_t and h_{t-1}. Node 0 is fixed: a highway over both inputs, s0 = h + c0 * (tanh(h0) - h)
with (c0, h0) = W0 [x; h]. Each of the `num_nodes` chosen nodes i = 1..n picks one earlier node j < i
and an activation f from tanh / relu / identity / sigmoid, and computes its own highway on s_j:
s_i = s_j + sigmoid(c) * (f(h) - s_j) with (c, h) = W_i s_j. The new hidden state is the average of the
loose ends (nodes no later node reads; ENAS) or of all chosen nodes (DARTS, NAO).

Node i has i input choices and 4 activations, so the space has n! * 4^n cells, the count of arXiv:1902.08142:
32 for n = 2 (its exhaustive study), about 2.6e9 for n = 8 (its "around 2 billion"). ENAS and NAO call their
cell "12 nodes" counting node 0 (11 chosen here: NAO's 27.3M parameters need exactly 11 node matrices);
DARTS' 8 nodes are 8 chosen ones. The genotype is DARTS' `recurrent=[(activation, input), ...]` list
with an explicit output rule instead of `concat`.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from naslab.spaces.base import GenotypeError, Space, Task, parse_genotype_json

ACTIVATIONS: tuple[str, ...] = ("tanh", "relu", "identity", "sigmoid")  # ENAS's order
OUTPUTS = ("loose_ends", "all")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class RNNNode:
    """One chosen node: the activation of its highway and the earlier node it reads (0 = the input node)."""

    activation: str
    input: int

    def __str__(self) -> str:
        return f"{self.activation}({self.input})"


@dataclass(frozen=True)
class RNNGenotype:
    """The chosen nodes 1..n in order, and which of them the cell averages into h_t."""

    nodes: tuple[RNNNode, ...]
    output: str = "loose_ends"

    def __post_init__(self) -> None:
        if isinstance(self.nodes, list):
            object.__setattr__(self, "nodes", tuple(self.nodes))
        if not isinstance(self.nodes, tuple) or not self.nodes:
            raise GenotypeError(f"nodes must be a non-empty list of (activation, input), got {self.nodes!r}")
        if self.output not in OUTPUTS:
            raise GenotypeError(f"output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")
        for i, node in enumerate(self.nodes, start=1):
            if not isinstance(node, RNNNode):
                raise GenotypeError(f"nodes[{i - 1}] must be an RNNNode, got {node!r}")
            if not isinstance(node.activation, str) or not node.activation:
                raise GenotypeError(f"node {i}: activation must be a name, got {node.activation!r}")
            if not _is_int(node.input) or not 0 <= node.input < i:
                raise GenotypeError(f"node {i}: input must be an earlier node 0..{i - 1}, got {node.input!r}")

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    def output_nodes(self) -> tuple[int, ...]:
        """Nodes (1-based) averaged into the new hidden state."""
        every = range(1, self.num_nodes + 1)
        if self.output == "all":
            return tuple(every)
        read = {node.input for node in self.nodes}
        return tuple(i for i in every if i not in read)

    def __str__(self) -> str:
        return " ".join(str(n) for n in self.nodes) + f" -> avg{list(self.output_nodes())}"

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": [[n.activation, n.input] for n in self.nodes], "output": self.output}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> "RNNGenotype":
        """Reads {"nodes": [[activation, input], ...], "output": "loose_ends" | "all"}."""
        if not isinstance(data, dict) or "nodes" not in data:
            raise GenotypeError(f"an rnn genotype must be an object with 'nodes', got {data!r}")
        if not isinstance(data["nodes"], (list, tuple)):
            raise GenotypeError(f"nodes must be a list of [activation, input], got {data['nodes']!r}")
        nodes = []
        for i, item in enumerate(data["nodes"]):
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise GenotypeError(f"nodes[{i}] must be [activation, input], got {item!r}")
            nodes.append(RNNNode(item[0], item[1]))
        return cls(tuple(nodes), data.get("output", "loose_ends"))

    @classmethod
    def from_json(cls, text: str) -> "RNNGenotype":
        return cls.from_dict(parse_genotype_json(text))


class RNNSpace(Space[RNNGenotype]):
    """`num_nodes` chosen nodes, each (input j < i, activation); tokens per node: [input, activation]."""

    name = "rnn"

    def __init__(
        self, num_nodes: int = 11, activations: Sequence[str] = ACTIVATIONS, output: str = "loose_ends"
    ) -> None:
        if num_nodes < 1:
            raise ValueError(f"rnn space needs num_nodes >= 1, got {num_nodes}")
        unknown = [a for a in activations if a not in ACTIVATIONS]
        if unknown or not activations:
            raise ValueError(f"unknown rnn activations {unknown}; known: {', '.join(ACTIVATIONS)}")
        if output not in OUTPUTS:
            raise ValueError(f"rnn output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        self.num_nodes, self.activations, self.output = num_nodes, tuple(activations), output

    # --- sampling and counting ---------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> RNNGenotype:
        nodes = [
            RNNNode(self.activations[int(rng.integers(len(self.activations)))], int(rng.integers(i)))
            for i in range(1, self.num_nodes + 1)
        ]
        return RNNGenotype(tuple(nodes), self.output)

    def size(self) -> int:
        return math.factorial(self.num_nodes) * len(self.activations) ** self.num_nodes

    def enumerate(self) -> Iterator[RNNGenotype]:
        if self.size() > 1_000_000:
            raise NotImplementedError(f"{self!r} has {self.size():,} architectures; too many to enumerate")
        for tokens in itertools.product(*(range(n) for n in self.token_choices())):
            yield self.from_tokens(tokens)

    # --- tokens ----------------------------------------------------------------------------
    def token_choices(self) -> list[int]:
        return [n for i in range(1, self.num_nodes + 1) for n in (i, len(self.activations))]

    def token_kinds(self) -> list[str]:
        return ["input", "activation"] * self.num_nodes

    def to_tokens(self, genotype: RNNGenotype) -> tuple[int, ...]:
        self.validate(genotype)
        return tuple(t for node in genotype.nodes for t in (node.input, self.activations.index(node.activation)))

    def from_tokens(self, tokens: Sequence[int]) -> RNNGenotype:
        self.check_tokens(tokens)
        pairs = zip(tokens[0::2], tokens[1::2])
        return RNNGenotype(tuple(RNNNode(self.activations[int(a)], int(j)) for j, a in pairs), self.output)

    # --- validation --------------------------------------------------------------------------
    def validate(self, genotype: RNNGenotype) -> None:
        if not isinstance(genotype, RNNGenotype):
            raise GenotypeError(f"expected an RNNGenotype, got {type(genotype).__name__}")
        if genotype.num_nodes != self.num_nodes:
            raise GenotypeError(f"genotype has {genotype.num_nodes} nodes; {self!r} has {self.num_nodes}")
        if genotype.output != self.output:
            raise GenotypeError(f"genotype averages {genotype.output}; {self!r} averages {self.output}")
        for i, node in enumerate(genotype.nodes, start=1):
            if node.activation not in self.activations:
                raise GenotypeError(f"node {i}: activation '{node.activation}' is not one of {self.activations}")

    def genotype_from_dict(self, data: Any) -> RNNGenotype:
        return RNNGenotype.from_dict(data)

    # --- networks ----------------------------------------------------------------------------
    def _check_task(self, task: Task) -> None:
        task.require("text", self.name)

    def build_child(self, genotype: RNNGenotype, task: Task, **network: Any) -> nn.Module:
        """The stand-alone language model around the cell (`rnn.network.RNNLanguageModel`)."""
        from naslab.spaces.rnn.network import RNNCell, RNNLanguageModel

        self._check_task(task)
        unknown = sorted({n.activation for n in genotype.nodes if n.activation not in ACTIVATIONS})
        if unknown:
            raise GenotypeError(f"genotype uses unknown activations {unknown}; known: {', '.join(ACTIVATIONS)}")
        sizes = _lm_sizes(network)
        return RNNLanguageModel(RNNCell(genotype, sizes["emb_size"], sizes["hidden_size"]), task.num_classes, **sizes)

    def build_supernet(self, task: Task, **network: Any) -> nn.Module:
        """ENAS' shared weights: one matrix per (node, input) pair; `forward(x, genotype, hidden)` runs one cell."""
        from naslab.spaces.rnn.network import RNNLanguageModel, SharedRNNCell

        self._check_task(task)
        sizes = _lm_sizes(network)
        cell = SharedRNNCell(self.num_nodes, sizes["emb_size"], sizes["hidden_size"])
        return RNNLanguageModel(cell, task.num_classes, **sizes)

    def build_mixed_supernet(self, task: Task, **network: Any) -> nn.Module:
        """DARTS' recurrent search cell: every node a softmax mixture over (input, activation or none)."""
        from naslab.spaces.rnn.mixed import MixedRNNCell, MixedRNNLanguageModel

        self._check_task(task)
        if self.output != "all":
            raise ValueError("strategy=darts relaxes the rnn cell with every node averaged: use space.output=all")
        sizes = _lm_sizes(network)
        cell = MixedRNNCell(self.num_nodes, sizes["emb_size"], sizes["hidden_size"], self.activations)
        return MixedRNNLanguageModel(cell, task.num_classes, **sizes)

    def derive(self, alphas: Mapping[str, torch.Tensor]) -> RNNGenotype:
        from naslab.spaces.rnn.mixed import derive_rnn

        return derive_rnn(alphas, self.num_nodes, self.activations)


LM_SIZE_KEYS = ("emb_size", "hidden_size", "dropout", "dropout_h", "dropout_x", "dropout_i", "dropout_e", "tie_weights")


def _lm_sizes(network: Mapping[str, Any]) -> dict[str, Any]:
    """The language-model keywords of `network` (cell-space keywords such as channels are ignored)."""
    sizes = {k: network[k] for k in LM_SIZE_KEYS if k in network and network[k] is not None}
    sizes.setdefault("emb_size", 32)
    sizes.setdefault("hidden_size", sizes["emb_size"])
    return sizes
