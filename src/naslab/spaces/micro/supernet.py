"""The weight-sharing supernet of the micro space (ENAS): one network that contains every child.

Every (cell position, node, input, op) has exactly one set of weights; `forward(x, genotype)` runs
only the sampled path. A cell's output width depends on how many nodes it concatenates, so the
1x1 convolutions that read a cell output (the next cells' preprocessing and the classifier) hold
the weights for every node and use the columns of the nodes actually concatenated, as ENAS does
with `tf.gather`. `child_state_dict(genotype)` cuts those columns out under the stand-alone
child's parameter names, so a `MicroNetwork` given them computes exactly what the supernet does.

`forward(x, genotype)` is the plain path: scores use it (in training mode, for BatchNorm's batch
statistics), so it never drops anything. `forward_with_aux(x, genotype)` is the shared-weight step's
graph of ENAS's search (melodyguan/enas micro_child.py `_model` with `fixed_arc=None`): in training
mode, dropout of `dropout` on the pooled features before the classifier (`--child_keep_prob`) and, once
`add_auxiliary_head` has run, the auxiliary logits of the cell after the second reduction
(`aux_head_indices = [pool_layers[-1] + 1]`). ENAS's search applies no drop-path (`_apply_drop_path`
is called only in `_fixed_layer`), and neither does this supernet.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from naslab.ops.cnn import build_op, pointwise_conv2d
from naslab.spaces.micro.genotype import NUM_CELL_INPUTS, Cell, MicroGenotype
from naslab.spaces.micro.network import AuxiliaryHead, build_stems, edge_key, reduction_cells, stem_states


def _columns(chunks: Sequence[int], width: int) -> torch.Tensor:
    """Input-channel indices of the concatenated chunks (chunk j covers [j*width, (j+1)*width))."""
    return torch.cat([torch.arange(j * width, (j + 1) * width) for j in chunks])


class SlicedConvBN(nn.Module):
    """ReLU -> 1x1 conv over a concatenation of chunks -> BN, for any subset of chunks present."""

    def __init__(self, num_chunks: int, chunk_width: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.chunk_width, self.stride = chunk_width, stride
        self.weight = nn.Parameter(torch.empty(out_channels, num_chunks * chunk_width, 1, 1))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Conv2d's default initialisation
        self.bn = nn.BatchNorm2d(out_channels)

    def weight_for(self, chunks: Sequence[int]) -> torch.Tensor:
        return self.weight[:, _columns(chunks, self.chunk_width)]

    def forward(self, x: torch.Tensor, chunks: Sequence[int]) -> torch.Tensor:
        return self.bn(pointwise_conv2d(F.relu(x), self.weight_for(chunks), self.stride))


class SlicedFactorizedReduce(nn.Module):
    """FactorizedReduce (two offset stride-2 1x1 convs) over a concatenation of chunks."""

    def __init__(self, num_chunks: int, chunk_width: int, out_channels: int):
        super().__init__()
        self.chunk_width = chunk_width
        self.weight_1 = nn.Parameter(torch.empty(out_channels // 2, num_chunks * chunk_width, 1, 1))
        self.weight_2 = nn.Parameter(torch.empty(out_channels // 2, num_chunks * chunk_width, 1, 1))
        for w in (self.weight_1, self.weight_2):
            nn.init.kaiming_uniform_(w, a=5**0.5)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, chunks: Sequence[int]) -> torch.Tensor:
        cols = _columns(chunks, self.chunk_width)
        x = F.relu(x)
        a = pointwise_conv2d(x, self.weight_1[:, cols], 2)
        b = pointwise_conv2d(x[:, :, 1:, 1:], self.weight_2[:, cols], 2)
        return self.bn(torch.cat([a, b], dim=1))


class SlicedAuxiliaryHead(AuxiliaryHead):
    """`AuxiliaryHead` over a concatenation of chunks: its first 1x1 conv reads only the chunks present."""

    def __init__(self, num_chunks: int, chunk_width: int, num_classes: int):
        super().__init__(num_chunks * chunk_width, num_classes)
        self.chunk_width = chunk_width

    def forward(self, x: torch.Tensor, chunks: Sequence[int]) -> torch.Tensor:  # type: ignore[override]
        conv = self.features[0]
        x = F.conv2d(self.pooled(x), conv.weight[:, _columns(chunks, self.chunk_width)])
        return self.classifier(self.features[1:](x).flatten(1))


class SharedCell(nn.Module):
    """All edges of one cell position: per node, one module for every (input, op)."""

    def __init__(
        self,
        num_nodes: int,
        ops: Sequence[str],
        pp: tuple[int, int],
        p: tuple[int, int],
        channels: int,
        reduction: bool,
        reduction_prev: bool,
    ):
        super().__init__()
        self.reduction, self.num_nodes = reduction, num_nodes
        # pp / p: (number of chunks, chunk width) of the two cell inputs
        self.preprocess0 = SlicedFactorizedReduce(*pp, channels) if reduction_prev else SlicedConvBN(*pp, channels)
        self.preprocess1 = SlicedConvBN(*p, channels)
        self.nodes = nn.ModuleList()
        for k in range(num_nodes):
            edges = nn.ModuleDict()
            for i in range(k + NUM_CELL_INPUTS):
                stride = 2 if reduction and i < NUM_CELL_INPUTS else 1
                for op in ops:
                    edges[f"in{i}_{op}"] = build_op(op, channels, stride)
            self.nodes.append(edges)

    def forward(
        self, s0: torch.Tensor, chunks0: Sequence[int], s1: torch.Tensor, chunks1: Sequence[int], cell: Cell
    ) -> tuple[torch.Tensor, list[int]]:
        states = [self.preprocess0(s0, chunks0), self.preprocess1(s1, chunks1)]
        for edges, node in zip(self.nodes, cell.nodes):
            states.append(sum(edges[f"in{b.input}_{b.op}"](states[b.input]) for b in node.branches))
        return torch.cat([states[i] for i in cell.concat], dim=1), [i - NUM_CELL_INPUTS for i in cell.concat]


class MicroSupernet(nn.Module):
    """The CIFAR / ImageNet skeleton of `MicroNetwork` with every op on every edge.

    `dropout` (probability) and `auxiliary` are the search-time regularisers of ENAS's shared training
    (see the module docstring); `search_regularisers` names those this supernet supports.
    """

    search_regularisers = ("dropout", "auxiliary")

    def __init__(
        self,
        num_nodes: int,
        ops: Sequence[str],
        num_classes: int,
        in_channels: int = 3,
        channels: int = 16,
        cells_per_stage: int = 1,
        stem: str = "cifar",
        stem_multiplier: int = 3,
        dropout: float = 0.0,
        auxiliary: bool = False,
    ):
        super().__init__()
        self.num_nodes, self.ops, self.stem_kind = num_nodes, tuple(ops), stem
        self.num_classes = num_classes
        self.num_cells = 3 * cells_per_stage + 2
        self.reduction_layers = reduction_cells(cells_per_stage)
        # ENAS: pool_layers = [N, 2N + 1] of num_layers = 3N (+ 2) layers, the same numbering as
        # reduction_cells; aux_head_indices = [pool_layers[-1] + 1], the first cell of the last stage.
        self.aux_position = self.reduction_layers[1] + 1
        self.dropout = dropout
        self.auxiliary_head: SlicedAuxiliaryHead | None = None
        self.stem, stem1, c_stem = build_stems(stem, in_channels, channels, stem_multiplier)
        if stem1 is not None:
            self.stem1 = stem1
        pp = p = (1, c_stem)
        reduction_prev = stem1 is not None
        self.cells = nn.ModuleList()
        c_cell = channels
        for i in range(self.num_cells):
            reduction = i in self.reduction_layers
            c_cell *= 2 if reduction else 1
            self.cells.append(SharedCell(num_nodes, ops, pp, p, c_cell, reduction, reduction_prev))
            reduction_prev = reduction
            pp, p = p, (num_nodes, c_cell)
        self.classifier_weight = nn.Parameter(torch.empty(num_classes, p[0] * p[1]))
        self.classifier_bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.kaiming_uniform_(self.classifier_weight, a=5**0.5)
        self.classifier_width = p[1]
        self.aux_width = c_cell  # the last stage's node width: the auxiliary cell's chunks
        if auxiliary:
            self.add_auxiliary_head()

    def add_auxiliary_head(self) -> None:
        """ENAS's auxiliary classifier on the output of cell `aux_position` (a no-op if present)."""
        if self.auxiliary_head is None:
            self.auxiliary_head = SlicedAuxiliaryHead(self.num_nodes, self.aux_width, self.num_classes)

    def features(
        self, x: torch.Tensor, genotype: MicroGenotype, with_aux: bool = False
    ) -> tuple[torch.Tensor, list[int], torch.Tensor | None]:
        """(pooled last-cell features, the chunks they hold, auxiliary logits or None)."""
        s0, s1 = stem_states(self, x)
        chunks0 = chunks1 = [0]
        aux = None
        for i, cell in enumerate(self.cells):
            cell_genotype = genotype.reduce if i in self.reduction_layers else genotype.normal
            out, chunks = cell(s0, chunks0, s1, chunks1, cell_genotype)
            s0, chunks0, s1, chunks1 = s1, chunks1, out, chunks
            if with_aux and i == self.aux_position and self.auxiliary_head is not None:
                aux = self.auxiliary_head(s1, chunks1)
        return F.adaptive_avg_pool2d(s1, 1).flatten(1), chunks1, aux

    def classify(self, pooled: torch.Tensor, chunks: Sequence[int]) -> torch.Tensor:
        """The classifier's columns of the concatenated nodes."""
        weight = self.classifier_weight[:, _columns(chunks, self.classifier_width)]
        return F.linear(pooled, weight, self.classifier_bias)

    def forward(self, x: torch.Tensor, genotype: MicroGenotype) -> torch.Tensor:
        pooled, chunks, _ = self.features(x, genotype)
        return self.classify(pooled, chunks)

    def forward_with_aux(self, x: torch.Tensor, genotype: MicroGenotype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight step's logits (dropout before the classifier) and auxiliary logits, in training mode.

        In eval mode: `forward`'s logits and None, as ENAS builds the aux head only `if is_training`.
        """
        if not self.training:
            return self.forward(x, genotype), None
        pooled, chunks, aux = self.features(x, genotype, with_aux=True)
        if self.dropout > 0:
            pooled = F.dropout(pooled, self.dropout, training=True)
        return self.classify(pooled, chunks), aux

    def child_state_dict(self, genotype: MicroGenotype) -> dict[str, torch.Tensor]:
        """The weights of `genotype`'s path under `MicroNetwork`'s parameter and buffer names."""
        state: dict[str, torch.Tensor] = {}
        for name, tensor in self.stem.state_dict().items():
            state[f"stem.{name}"] = tensor
        if self.stem_kind == "imagenet":
            for name, tensor in self.stem1.state_dict().items():
                state[f"stem1.{name}"] = tensor
        chunks0 = chunks1 = [0]
        for i, cell in enumerate(self.cells):
            cell_genotype = genotype.reduce if i in self.reduction_layers else genotype.normal
            prefix = f"cells.{i}"
            pre0, pre1 = cell.preprocess0, cell.preprocess1
            if isinstance(pre0, SlicedFactorizedReduce):
                cols = _columns(chunks0, pre0.chunk_width)
                state[f"{prefix}.preprocess0.conv_1.weight"] = pre0.weight_1[:, cols]
                state[f"{prefix}.preprocess0.conv_2.weight"] = pre0.weight_2[:, cols]
                _copy_bn(state, f"{prefix}.preprocess0.bn", pre0.bn)
            else:
                state[f"{prefix}.preprocess0.1.weight"] = pre0.weight_for(chunks0)
                _copy_bn(state, f"{prefix}.preprocess0.2", pre0.bn)
            state[f"{prefix}.preprocess1.1.weight"] = pre1.weight_for(chunks1)
            _copy_bn(state, f"{prefix}.preprocess1.2", pre1.bn)
            for k, node in enumerate(cell_genotype.nodes):
                taken: set[str] = set()
                for branch in node.branches:
                    key = edge_key(branch.input, branch.op, taken)  # the child's name for this edge
                    shared = cell.nodes[k][f"in{branch.input}_{branch.op}"]
                    for name, tensor in shared.state_dict().items():
                        state[f"{prefix}.nodes.{k}.{key}.{name}"] = tensor
            chunks0, chunks1 = chunks1, [c - NUM_CELL_INPUTS for c in cell_genotype.concat]
        state["classifier.weight"] = self.classifier_weight[:, _columns(chunks1, self.classifier_width)]
        state["classifier.bias"] = self.classifier_bias
        return {name: tensor.detach().clone() for name, tensor in state.items()}


def _copy_bn(state: dict[str, torch.Tensor], prefix: str, bn: nn.BatchNorm2d) -> None:
    for name, tensor in bn.state_dict().items():
        state[f"{prefix}.{name}"] = tensor
