"""DARTS' recurrent search cell and its derivation (Liu et al. 2019, Sec. 2.1 / 2.4; rnn/model_search.py).

Every chosen node i = 1..n reads *every* earlier state j < i, and on each edge mixes the highways
s_j + sigmoid(c) * (f(h) - s_j) of every activation f, weighted by one softmax row per edge; the
zero op `none` contributes nothing (its weight only says how strongly the edge should be absent).
As in the authors' search model:

- node i has one (H, 2H) matrix W_i shared by all of its incoming edges ((c, h) = W_i s_j for each j),
  so the supernet has exactly the parameters of one stand-alone child;
- one BatchNorm1d without affine parameters normalises s0 and every node output (a single module,
  shared, as DARTS' `self.bn`: in training it uses batch statistics, so sharing only pools the running
  statistics used in eval);
- h_t is the mean of all n nodes (the space must average "all").

Rows of the "recurrent" alpha matrix go node by node, and for node i its inputs 0..i-1: n(n+1)/2 rows,
36 for DARTS' 8 nodes; columns are ("none",) + the space's activations.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from naslab.spaces.base import GenotypeError
from naslab.spaces.rnn.network import ACTIVATION_FNS, CellBase, RNNLanguageModel, _uniform
from naslab.spaces.rnn.space import ACTIVATIONS, RNNGenotype, RNNNode

ZERO_OP = "none"
ALPHA_KEY = "recurrent"


def rnn_edges(num_nodes: int) -> list[tuple[int, int]]:
    """(node, input) of every edge, in alpha row order: (1, 0), (2, 0), (2, 1), (3, 0), ..."""
    return [(i, j) for i in range(1, num_nodes + 1) for j in range(i)]


def rnn_op_names(activations: Sequence[str]) -> tuple[str, ...]:
    """The alpha columns: the zero op first (DARTS' PRIMITIVES order), then the activations."""
    return (ZERO_OP,) + tuple(activations)


class MixedRNNCell(CellBase):
    """DARTS' `RNNModelSearch` cell: `nodes(s0, h_mask, {"recurrent": weights})` mixes every (input, op)."""

    def __init__(
        self, num_nodes: int, emb_size: int, hidden_size: int, activations: Sequence[str] = ACTIVATIONS
    ) -> None:
        super().__init__(emb_size, hidden_size)
        if num_nodes < 1:
            raise ValueError(f"the mixed rnn cell needs num_nodes >= 1, got {num_nodes}")
        unknown = [a for a in activations if a not in ACTIVATION_FNS]
        if unknown or not activations:
            raise ValueError(f"unknown rnn activations {unknown}; known: {', '.join(ACTIVATION_FNS)}")
        self.num_nodes, self.activations = num_nodes, tuple(activations)
        self.op_names = rnn_op_names(self.activations)
        edges = rnn_edges(num_nodes)
        self.alpha_shapes: dict[str, tuple[int, int]] = {ALPHA_KEY: (len(edges), len(self.op_names))}
        self.edge_labels: dict[str, list[str]] = {ALPHA_KEY: [f"{i}<-{j}" for i, j in edges]}
        self.weights = nn.ParameterList([_uniform(hidden_size, 2 * hidden_size) for _ in range(num_nodes)])
        self.bn = nn.BatchNorm1d(hidden_size, affine=False)

    def _check_weights(self, arch: Any) -> torch.Tensor:
        shape = self.alpha_shapes[ALPHA_KEY]
        if not isinstance(arch, Mapping) or ALPHA_KEY not in arch:
            raise ValueError(f"the mixed rnn cell runs on {{'{ALPHA_KEY}': weights of shape {shape}}}, got {arch!r}")
        weights = arch[ALPHA_KEY]
        if tuple(weights.shape) != shape:
            raise ValueError(f"weights['{ALPHA_KEY}'] has shape {tuple(weights.shape)}, expected {shape}")
        return weights

    def nodes(self, s0: torch.Tensor, h_mask: torch.Tensor | None, arch: Any) -> torch.Tensor:
        """h_t from node 0's output: every node the weighted sum over its inputs and activations."""
        weights = self._check_weights(arch)
        states = self.bn(s0).unsqueeze(0)  # (1, B, H); grows to (n + 1, B, H)
        offset = 0
        for i, w_i in enumerate(self.weights, start=1):
            masked = states * h_mask if h_mask is not None else states
            c, h = (masked @ w_i).chunk(2, dim=-1)  # every input j < i at once, (i, B, H) each
            c = torch.sigmoid(c)
            rows = weights[offset : offset + i]  # (i, ops)
            s = torch.zeros_like(s0)
            for k, name in enumerate(self.op_names):
                if name == ZERO_OP:
                    continue
                unweighted = states + c * (ACTIVATION_FNS[name](h) - states)
                s = s + (rows[:, k, None, None] * unweighted).sum(0)
            states = torch.cat([states, self.bn(s).unsqueeze(0)])
            offset += i
        return states[1:].mean(0)


class MixedRNNLanguageModel(RNNLanguageModel):
    """The language model around a `MixedRNNCell`, exposing its alpha contract (`ops.mixed.MixedSupernet`)."""

    cell: MixedRNNCell

    def __init__(self, cell: MixedRNNCell, vocab_size: int, **sizes: Any) -> None:
        if not isinstance(cell, MixedRNNCell):
            raise TypeError(f"MixedRNNLanguageModel wraps a MixedRNNCell, got {type(cell).__name__}")
        super().__init__(cell, vocab_size, **sizes)

    @property
    def alpha_shapes(self) -> dict[str, tuple[int, int]]:
        return self.cell.alpha_shapes

    @property
    def edge_labels(self) -> dict[str, list[str]]:
        return self.cell.edge_labels

    @property
    def op_names(self) -> tuple[str, ...]:
        return self.cell.op_names


def derive_rnn(alphas: Mapping[str, torch.Tensor], num_nodes: int, activations: Sequence[str]) -> RNNGenotype:
    """DARTS' `_parse`: per node the (input, activation) of largest softmax weight, `none` never chosen."""
    if not isinstance(alphas, Mapping) or ALPHA_KEY not in alphas:
        found = list(alphas) if isinstance(alphas, Mapping) else type(alphas).__name__
        raise GenotypeError(f"rnn alphas need an entry '{ALPHA_KEY}'; got {found}")
    ops = rnn_op_names(activations)
    edges = rnn_edges(num_nodes)
    raw = torch.as_tensor(alphas[ALPHA_KEY]).detach().float().cpu()
    if tuple(raw.shape) != (len(edges), len(ops)):
        raise GenotypeError(
            f"alphas['{ALPHA_KEY}'] of shape {tuple(raw.shape)}; {num_nodes} nodes over {len(ops)} ops "
            f"({', '.join(ops)}) need {(len(edges), len(ops))}"
        )
    weights = torch.softmax(raw, dim=-1)[:, 1:]  # column 0 is `none`
    nodes = []
    offset = 0
    for i in range(1, num_nodes + 1):
        best = int(weights[offset : offset + i].flatten().argmax())  # first maximum: lowest input, then op order
        j, k = divmod(best, len(activations))
        nodes.append(RNNNode(ops[1 + k], j))
        offset += i
    return RNNGenotype(tuple(nodes), "all")
