"""DARTS' derivation: a discrete micro genotype from the architecture weights of a mixed-op cell.

For every intermediate node, DARTS (Liu et al. 2019, Sec. 2.4) keeps the two incoming edges whose
strongest non-zero op has the largest softmax weight, and on each kept edge that op. The zero op
`none` is never chosen: it only says how strongly an edge should be absent.

Edges are ordered node by node, and for node k (0-based) its inputs 0..k+1 (the two cell inputs,
then the earlier nodes): 2 + 3 + 4 + 5 = 14 edges for DARTS' 4 nodes. `alphas` has one row per edge
and one column per op of `ops` (the supernet's op list, `none` included).
"""

from __future__ import annotations

from typing import Sequence

import torch

from naslab.spaces.base import GenotypeError
from naslab.spaces.micro.genotype import NUM_CELL_INPUTS, Branch, MicroGenotype, Node
from naslab.spaces.micro.space import MicroSpace

ZERO_OP = "none"
TIED_ALPHA = "cell"  # the one alpha matrix of a tied space's supernet (normal = reduction cell)


def micro_edges(num_nodes: int) -> list[tuple[int, int]]:
    """(node, input) of every edge of a cell with `num_nodes` intermediate nodes, in alpha row order."""
    return [(k, j) for k in range(num_nodes) for j in range(k + NUM_CELL_INPUTS)]


def derive_cell_nodes(alphas: torch.Tensor, ops: Sequence[str], space: MicroSpace) -> list[Node]:
    """The nodes of one cell, chosen from its alphas (two different inputs per node, lower input left)."""
    edges = micro_edges(space.num_nodes)
    if tuple(alphas.shape) != (len(edges), len(ops)):
        raise GenotypeError(
            f"alphas of shape {tuple(alphas.shape)}; {space.num_nodes} nodes over {len(ops)} ops need "
            f"{(len(edges), len(ops))}"
        )
    candidates = [i for i, op in enumerate(ops) if op != ZERO_OP]
    missing = [ops[i] for i in candidates if ops[i] not in space.ops]
    if missing:
        raise GenotypeError(f"alpha ops {missing} are not in {space!r}")
    weights = torch.softmax(alphas.detach().float(), dim=-1)[:, candidates]
    strength, best = weights.max(dim=-1)  # strongest non-zero op per edge
    nodes: list[Node] = []
    start = 0
    for k in range(space.num_nodes):
        rows = range(start, start + k + NUM_CELL_INPUTS)
        kept = sorted(rows, key=lambda r: float(strength[r]), reverse=True)[:2]
        branches = [  # by input index: a stable, readable order
            Branch(edges[row][1], ops[candidates[int(best[row])]]) for row in sorted(kept, key=lambda r: edges[r][1])
        ]
        nodes.append(Node(*branches))
        start += len(rows)
    return nodes


def derive_micro_genotype(
    space: MicroSpace, normal: torch.Tensor, reduce: torch.Tensor, ops: Sequence[str] | None = None
) -> MicroGenotype:
    """The DARTS genotype of a normal and a reduction cell's alphas (ops default to the space's)."""
    ops = tuple(ops or space.ops)
    normal_cell = space._cell(derive_cell_nodes(normal, ops, space))
    # a tied space passes its one alpha matrix as both: derived once
    reduce_cell = normal_cell if reduce is normal else space._cell(derive_cell_nodes(reduce, ops, space))
    genotype = MicroGenotype(normal_cell, reduce_cell)
    space.validate(genotype)
    return genotype


def one_hot_weights(space: MicroSpace, genotype: MicroGenotype) -> dict[str, torch.Tensor]:
    """The mixed supernet's weights that compute exactly `genotype`: the inverse of derivation.

    Row (node k, input j) holds 1 at each op of a branch of node k that reads j (two, when both
    branches read j) and 0 elsewhere, so that node k sums exactly its two branches and every other
    edge contributes nothing. `space.derive(one_hot_weights(space, g)) == g` for a cell of two
    different inputs per node. Keys as the space's supernet names its alphas.
    """
    space.validate(genotype)
    ops, edges = space.mixed_ops, micro_edges(space.num_nodes)

    def cell_weights(nodes: Sequence[Node]) -> torch.Tensor:
        weights = torch.zeros(len(edges), len(ops))
        for row, (k, j) in enumerate(edges):
            for branch in nodes[k].branches:
                if branch.input == j:
                    weights[row, ops.index(branch.op)] += 1.0
        return weights

    if space.tied:
        return {TIED_ALPHA: cell_weights(genotype.normal.nodes)}
    return {"normal": cell_weights(genotype.normal.nodes), "reduce": cell_weights(genotype.reduce.nodes)}
