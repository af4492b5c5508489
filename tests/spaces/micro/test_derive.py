"""DARTS derivation from planted alphas: the hand-computed genotype, never the zero op."""

from __future__ import annotations

import pytest
import torch

from naslab.spaces import MicroSpace
from naslab.spaces.base import GenotypeError
from naslab.spaces.micro.derive import derive_micro_genotype, micro_edges

SPACE = MicroSpace(4, "darts", concat="all")
OPS = SPACE.ops  # none, max_pool_3x3, avg_pool_3x3, identity, sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5


def test_edge_order_is_node_by_node() -> None:
    assert micro_edges(2) == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    assert len(micro_edges(4)) == 14


def planted(choices: dict[tuple[int, int], tuple[str, float]]) -> torch.Tensor:
    """Alphas where `none` dominates every edge (it must still never be picked), plus planted ops."""
    alphas = torch.zeros(14, len(OPS))
    alphas[:, OPS.index("none")] = 5.0
    for row, (node, j) in enumerate(micro_edges(4)):
        if (node, j) in choices:
            op, logit = choices[(node, j)]
            alphas[row, OPS.index(op)] = logit
    return alphas


def test_planted_alphas_give_the_hand_computed_genotype() -> None:
    normal = planted(
        {
            (0, 0): ("sep_conv_3x3", 3.0), (0, 1): ("sep_conv_5x5", 2.0),
            (1, 0): ("identity", 1.0), (1, 1): ("dil_conv_3x3", 2.5), (1, 2): ("max_pool_3x3", 2.0),
            (2, 3): ("avg_pool_3x3", 4.0), (2, 1): ("sep_conv_3x3", 0.5), (2, 0): ("dil_conv_5x5", 0.4),
            (3, 4): ("identity", 1.0), (3, 2): ("sep_conv_5x5", 1.5), (3, 0): ("max_pool_3x3", 0.9),
        }
    )  # fmt: skip
    reduce = planted(
        {(k, 0): ("max_pool_3x3", 2.0) for k in range(4)} | {(k, 1): ("sep_conv_3x3", 1.0) for k in range(4)}
    )
    genotype = derive_micro_genotype(SPACE, normal, reduce)
    described = [(b.input, b.op) for node in genotype.normal.nodes for b in node.branches]
    assert described == [
        (0, "sep_conv_3x3"), (1, "sep_conv_5x5"),
        (1, "dil_conv_3x3"), (2, "max_pool_3x3"),  # identity(0) at logit 1.0 loses
        (1, "sep_conv_3x3"), (3, "avg_pool_3x3"),
        (2, "sep_conv_5x5"), (4, "identity"),  # max_pool(0) at 0.9 loses to identity(4) at 1.0
    ]  # fmt: skip
    assert all(b.op == "max_pool_3x3" and b.input == 0 or b.op == "sep_conv_3x3" and b.input == 1
               for node in genotype.reduce.nodes for b in node.branches)  # fmt: skip
    assert genotype.normal.concat == (2, 3, 4, 5)  # DARTS concatenates every node
    SPACE.validate(genotype)


def test_never_none_even_for_random_alphas() -> None:
    torch.manual_seed(0)
    for _ in range(50):
        alphas = torch.randn(2, 14, len(OPS)) * 3
        alphas[..., 0] += 10  # none is the strongest op everywhere
        genotype = derive_micro_genotype(SPACE, alphas[0], alphas[1])
        assert "none" not in genotype.ops()


def test_bad_alphas_are_one_clear_error() -> None:
    with pytest.raises(GenotypeError, match=r"need \(14, 8\)"):
        derive_micro_genotype(SPACE, torch.zeros(10, 8), torch.zeros(14, 8))
    with pytest.raises(GenotypeError, match="not in"):
        derive_micro_genotype(
            MicroSpace(4, "enas", concat="all"), torch.zeros(14, 2), torch.zeros(14, 2), ["none", "conv_9x9"]
        )
