"""The continuous relaxation of DARTS, independent of what the ops are (convolutions or RNN activations).

A mixed op is the softmax(alpha)-weighted sum of every candidate op on one edge (Liu et al. 2019,
Eqn. 1). Nothing here knows about cells: a space's mixed-op supernet puts one `MixedOp` per edge and
takes one row of weights per edge, so the CNN cell and the recurrent cell share this module and the
architect in `strategies/darts/architect.py`.

The supernet contract `strategy=darts` relies on (see `MixedSupernet`): `alpha_shapes` names the
architecture-weight matrices (e.g. "normal" and "reduce", each edges x ops), `edge_labels` and
`op_names` label their rows and columns for pictures, and `forward(x, weights)` takes the already
normalised weights, so other relaxations (Gumbel-softmax, hard sampling) can reuse the same net.
"""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn


class MixedOp(nn.Module):
    """sum_o w_o * o(x) over the candidate ops of one edge (every op runs: DARTS' memory cost).

    Two savings keep the numbers of the plain sum and cut what the backward pass stores: an op with
    `always_zero` (DARTS' `none`) is left out (w * 0 adds nothing and its weight's gradient is 0
    either way), and ops that start with a ReLU (`forward_relued`, the convolutions) share one
    rectified copy of the input instead of each keeping its own. Fixed weights (no gradient) that are
    exactly 0 skip their op too: a discrete architecture as one-hot weights (`relaxed_weights` of a `Relaxable` space)
    then costs what its own ops cost, not every candidate's.
    """

    def __init__(self, ops: Sequence[nn.Module]):
        super().__init__()
        if not ops:
            raise ValueError("a mixed op needs at least one candidate op")
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if weights.shape != (len(self.ops),):
            raise ValueError(f"mixed op over {len(self.ops)} ops got weights of shape {tuple(weights.shape)}")
        total: torch.Tensor | None = None
        relued: torch.Tensor | None = None
        # reading the weights is free on the CPU; on an accelerator it would sync once per edge, so there every op runs
        fixed = not weights.requires_grad and weights.device.type == "cpu"
        zero = [v == 0.0 for v in weights.tolist()] if fixed else [False] * len(self.ops)
        for w, op, is_zero in zip(weights, self.ops, zero):
            if is_zero or getattr(op, "always_zero", False):
                continue
            if hasattr(op, "forward_relued"):
                relued = F.relu(x) if relued is None else relued
                out = op.forward_relued(relued)
            else:
                out = op(x)
            term = w * out
            total = term if total is None else total + term
        if total is None:  # every op is a zero op
            return weights.sum() * self.ops[0](x)
        return total


@runtime_checkable
class MixedSupernet(Protocol):
    """What a space's `build_mixed_supernet` returns (an nn.Module with these attributes)."""

    alpha_shapes: dict[str, tuple[int, int]]  # name -> (edges, ops)
    edge_labels: dict[str, list[str]]  # name -> one readable label per edge (row)
    op_names: tuple[str, ...]  # the ops of every row, in column order

    def __call__(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor]) -> torch.Tensor: ...
