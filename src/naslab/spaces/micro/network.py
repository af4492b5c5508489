"""Networks built from micro genotypes: the CIFAR and ImageNet skeletons of NASNet/DARTS.

One skeleton serves every use: the stand-alone child, the final network and (later) the
weight-sharing supernet differ only in how an edge is realised, which `EdgeFactory` decides.
Edge modules are keyed by (input, op) inside each node, so swapping a node's two branches gives
the same parameter names: symmetric genotypes load each other's weights unchanged.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from naslab.ops.cnn import FactorizedReduce, Identity, ReLUConvBN, build_op
from naslab.spaces.micro.genotype import NUM_CELL_INPUTS, Cell, MicroGenotype

EdgeFactory = Callable[[str, int, int], nn.Module]  # (op name, channels, stride) -> module


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zeroes whole samples of a branch with probability drop_prob and rescales the rest (DARTS)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.size(0), 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


def edge_key(input_index: int, op: str, taken: set[str]) -> str:
    """Name of an edge module inside its node; order-independent so branch swaps share weights."""
    key = f"in{input_index}_{op}"
    suffix = 1
    while key in taken:
        key = f"in{input_index}_{op}_{suffix}"
        suffix += 1
    taken.add(key)
    return key


def build_stems(
    stem: str, in_channels: int, channels: int, stem_multiplier: int = 3
) -> tuple[nn.Module, nn.Module | None, int]:
    """(stem, second stem or None, output width) of the CIFAR or ImageNet skeleton.

    CIFAR: one 3x3 conv of width `stem_multiplier * channels`. ImageNet: DARTS' stem0 (two stride-2
    convs) and stem1 (a third), 224 -> 28 before the first cell, which then sees a reduced input.
    """
    if stem == "cifar":
        c_stem = stem_multiplier * channels
        return (
            nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem)),
            None,
            c_stem,
        )
    if stem == "imagenet":
        stem0 = nn.Sequential(
            nn.Conv2d(in_channels, channels // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // 2, channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        stem1 = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        return stem0, stem1, channels
    raise ValueError(f"unknown stem '{stem}'; expected 'cifar' or 'imagenet'")


def reduction_cells(cells_per_stage: int) -> tuple[int, int]:
    """Positions of the two reduction cells among the 3N + 2 cells: after each stage of N normal cells."""
    return (cells_per_stage, 2 * cells_per_stage + 1)


def stem_states(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first cell's two inputs: the stem's output twice (CIFAR), or stem0's and stem1's (ImageNet)."""
    s0 = net.stem(x)
    stem1 = getattr(net, "stem1", None)  # registered by build_stems' ImageNet skeleton only
    return (s0, stem1(s0)) if stem1 is not None else (s0, s0)


class MicroCell(nn.Module):
    """A normal or reduction cell realised from its genotype."""

    def __init__(
        self,
        cell: Cell,
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
        edge_factory: EdgeFactory = build_op,
    ):
        super().__init__()
        self.reduction = reduction
        self.concat = cell.concat
        self.multiplier = len(cell.concat)
        # The input two steps back is one resolution larger after a reduction: reduce it too.
        self.preprocess0 = (
            FactorizedReduce(c_prev_prev, channels) if reduction_prev else ReLUConvBN(c_prev_prev, channels, 1, 1, 0)
        )
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0)
        self.nodes = nn.ModuleList()
        self.node_inputs: list[list[tuple[str, int]]] = []
        for node in cell.nodes:
            taken: set[str] = set()
            edges = nn.ModuleDict()
            inputs = []
            for branch in node.branches:
                stride = 2 if reduction and branch.input < NUM_CELL_INPUTS else 1
                key = edge_key(branch.input, branch.op, taken)
                edges[key] = edge_factory(branch.op, channels, stride)
                inputs.append((key, branch.input))
            self.nodes.append(edges)
            self.node_inputs.append(inputs)
        self.drop_prob = 0.0

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for edges, inputs in zip(self.nodes, self.node_inputs):
            total = None
            for key, index in inputs:
                op = edges[key]
                h = op(states[index])
                if self.training and self.drop_prob > 0 and not isinstance(op, Identity):
                    h = drop_path(h, self.drop_prob)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """Auxiliary classifier at 2/3 depth (NASNet/DARTS); pooled to 2x2 so small inputs work too."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    @staticmethod
    def pooled(x: torch.Tensor) -> torch.Tensor:
        """ReLU, then DARTS' pooling of 8x8 (CIFAR) with a 5x5 window, stride 3 -> 2x2; smaller maps go
        straight to 2x2. Both act per channel (the weight-sharing head slices channels after them)."""
        x = F.relu(x)
        x = F.avg_pool2d(x, 5, stride=3) if min(x.shape[-2:]) >= 5 else x
        return F.adaptive_avg_pool2d(x, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.pooled(x)).flatten(1))


class MicroNetwork(nn.Module):
    """Stem, 3 stages of N normal cells with a reduction cell between stages, pooling, classifier.

    `channels` is F (the first stage's cell width), `cells_per_stage` is N: 3N + 2 cells in all
    (DARTS' 20 cells = N 6). `stem="cifar"` is one 3x3 conv of width 3F; `stem="imagenet"` is
    DARTS' two stride-2 stems (224 -> 28 before the first cell).
    """

    def __init__(
        self,
        genotype: MicroGenotype,
        num_classes: int,
        in_channels: int = 3,
        channels: int = 36,
        cells_per_stage: int = 6,
        auxiliary: bool = False,
        stem: Literal["cifar", "imagenet"] = "cifar",
        stem_multiplier: int = 3,
        edge_factory: EdgeFactory = build_op,
    ):
        super().__init__()
        if channels < 2 or channels % 2:
            raise ValueError(f"network channels must be an even number >= 2, got {channels}")
        if cells_per_stage < 1:
            raise ValueError(f"cells_per_stage must be >= 1, got {cells_per_stage}")
        self.genotype = genotype
        self.num_cells = 3 * cells_per_stage + 2
        reduction_layers = reduction_cells(cells_per_stage)
        self.aux_position = reduction_layers[1]
        self.stem, stem1, c_stem = build_stems(stem, in_channels, channels, stem_multiplier)
        if stem1 is not None:
            self.stem1 = stem1
        c_prev_prev, c_prev, reduction_prev = c_stem, c_stem, stem1 is not None
        self.cells = nn.ModuleList()
        c_cell = channels
        c_aux = c_prev
        for i in range(self.num_cells):
            reduction = i in reduction_layers
            if reduction:
                c_cell *= 2
            cell_genotype = genotype.reduce if reduction else genotype.normal
            cell = MicroCell(cell_genotype, c_prev_prev, c_prev, c_cell, reduction, reduction_prev, edge_factory)
            self.cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, cell.multiplier * c_cell
            if i == self.aux_position:
                c_aux = c_prev
        self.auxiliary_head = AuxiliaryHead(c_aux, num_classes) if auxiliary else None
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def set_drop_path(self, prob: float) -> None:
        """Sets the drop-path probability of every cell (scheduled by the training module)."""
        for cell in self.cells:
            cell.drop_prob = prob

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits and, in training mode with an auxiliary head, the auxiliary logits."""
        s0, s1 = stem_states(self, x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == self.aux_position and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pool(s1).flatten(1))
        return logits, aux

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_aux(x)[0]


def count_parameters(model: nn.Module, exclude_auxiliary: bool = True) -> int:
    """Trainable parameters, without the auxiliary head as the papers' tables count them."""
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if p.requires_grad and not (exclude_auxiliary and name.startswith("auxiliary_head."))
    )
