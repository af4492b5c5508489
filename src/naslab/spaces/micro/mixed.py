"""The DARTS search network of the micro space: every edge of every cell is a mixed op.

The skeleton is `MicroNetwork`'s (`build_stems`, 3N + 2 cells, reductions after N and 2N + 1
cells; DARTS' 8-cell search network is N = 2, reductions at cells 2 and 5), with the search-time
details of the authors' `model_search.py`: BatchNorm without affine parameters in the ops and the
preprocessing (an affine scale would let weights undo the alphas), a BatchNorm after every pooling
op (so pools are on the scale of the convolutions), and every intermediate node concatenated at
the output. Each node k reads every earlier state, so a cell has 2 + 3 + ... + (k + 2) edges, in
the row order of `micro.derive.micro_edges` (which derives the genotype from the same rows).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from naslab.ops.cnn import FactorizedReduce, ReLUConvBN, build_op
from naslab.ops.mixed import MixedOp
from naslab.spaces.micro.derive import TIED_ALPHA, micro_edges
from naslab.spaces.micro.genotype import NUM_CELL_INPUTS
from naslab.spaces.micro.network import build_stems, reduction_cells, stem_states

CELL_KINDS = ("normal", "reduce")


def search_op(name: str, channels: int, stride: int) -> nn.Module:
    """A candidate op as DARTS searches it: no affine BN; pools followed by a non-affine BN."""
    op = build_op(name, channels, stride, affine=False)
    if "pool" in name:
        return nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
    return op


def edge_label(node: int, source: int) -> str:
    """Readable name of the edge from state `source` into intermediate node `node` (0-based)."""
    names = ("c_{k-2}", "c_{k-1}")
    src = names[source] if source < NUM_CELL_INPUTS else f"node {source - NUM_CELL_INPUTS}"
    return f"{src} -> node {node}"


class MixedCell(nn.Module):
    """One searched cell: `num_nodes` nodes, each the sum of mixed ops on all earlier states."""

    def __init__(
        self,
        num_nodes: int,
        ops: Sequence[str],
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
    ):
        super().__init__()
        self.reduction, self.num_nodes = reduction, num_nodes
        self.preprocess0 = (
            FactorizedReduce(c_prev_prev, channels, affine=False)
            if reduction_prev
            else ReLUConvBN(c_prev_prev, channels, 1, 1, 0, affine=False)
        )
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList()
        for _, source in micro_edges(num_nodes):
            stride = 2 if reduction and source < NUM_CELL_INPUTS else 1
            self.edges.append(MixedOp([search_op(op, channels, stride) for op in ops]))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        row = 0
        for _ in range(self.num_nodes):
            node = sum(self.edges[row + j](h, weights[row + j]) for j, h in enumerate(states))
            row += len(states)
            states.append(node)  # type: ignore[arg-type]
        return torch.cat(states[NUM_CELL_INPUTS:], dim=1)


class MicroMixedSupernet(nn.Module):
    """DARTS' `Network` (search model): alpha rows "normal" and "reduce", each (edges, ops).

    `tied=True` (a tied space: the reduction cell is the normal cell with strides) has one alpha
    matrix, "cell", that every cell reads, so the derived cell is one cell as the space's genotypes are.
    """

    def __init__(
        self,
        num_nodes: int,
        ops: Sequence[str],
        num_classes: int,
        in_channels: int = 3,
        channels: int = 16,
        cells_per_stage: int = 2,
        stem: str = "cifar",
        stem_multiplier: int = 3,
        tied: bool = False,
    ):
        super().__init__()
        if channels < 2 or channels % 2:
            raise ValueError(f"supernet channels must be an even number >= 2, got {channels}")
        self.op_names = tuple(ops)
        num_edges = len(micro_edges(num_nodes))
        self.tied = tied
        kinds = (TIED_ALPHA,) if tied else CELL_KINDS
        self.alpha_shapes = {kind: (num_edges, len(self.op_names)) for kind in kinds}
        self.edge_labels = {kind: [edge_label(k, j) for k, j in micro_edges(num_nodes)] for kind in kinds}
        self.stem, stem1, c_stem = build_stems(stem, in_channels, channels, stem_multiplier)
        if stem1 is not None:
            self.stem1 = stem1
        self.reduction_layers = reduction_cells(cells_per_stage)
        c_prev_prev, c_prev, reduction_prev = c_stem, c_stem, stem1 is not None
        c_cell = channels
        self.cells = nn.ModuleList()
        for i in range(3 * cells_per_stage + 2):
            reduction = i in self.reduction_layers
            c_cell *= 2 if reduction else 1
            self.cells.append(MixedCell(num_nodes, ops, c_prev_prev, c_prev, c_cell, reduction, reduction_prev))
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, num_nodes * c_cell
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits; `weights[kind]` is the normalised (softmax) alpha matrix of that cell kind."""
        for kind, shape in self.alpha_shapes.items():
            if tuple(weights[kind].shape) != shape:
                raise ValueError(f"weights['{kind}'] has shape {tuple(weights[kind].shape)}, expected {shape}")
        s0, s1 = stem_states(self, x)
        for cell in self.cells:
            kind = TIED_ALPHA if self.tied else "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell(s0, s1, weights[kind])
        return self.classifier(self.global_pool(s1).flatten(1))
