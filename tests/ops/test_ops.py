"""Every registered op keeps shapes at stride 1, halves them at stride 2, and passes gradients."""

from __future__ import annotations

import pytest
import torch

from naslab.ops import OP_SETS, OPS, build_op
from naslab.registry import UnknownNameError


@pytest.mark.parametrize("name", OPS.names())
@pytest.mark.parametrize("size", [8, 14])
def test_op_keeps_shape_and_halves_at_stride_2(name: str, size: int) -> None:
    x = torch.randn(2, 6, size, size, requires_grad=True)
    assert build_op(name, 6, 1)(x).shape == (2, 6, size, size)
    y = build_op(name, 6, 2)(x)
    assert y.shape == (2, 6, size // 2, size // 2)
    if name != "none":
        y.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", [n for n in OPS.names() if "pool" in n])
def test_pools_keep_odd_sizes(name: str) -> None:
    x = torch.randn(1, 3, 7, 7)
    assert build_op(name, 3, 1)(x).shape == (1, 3, 7, 7)
    assert build_op(name, 3, 2)(x).shape == (1, 3, 4, 4)


def test_zero_op_outputs_zeros() -> None:
    assert build_op("none", 4, 2)(torch.randn(1, 4, 8, 8)).abs().sum() == 0


def test_op_sets_use_registered_ops_and_paper_sizes() -> None:
    assert {k: len(v) for k, v in OP_SETS.items()} == {"enas": 5, "nao": 11, "epnas": 7, "darts": 8}
    for ops in OP_SETS.values():
        assert all(op in OPS for op in ops)


def test_unknown_op_is_one_clear_line() -> None:
    with pytest.raises(UnknownNameError, match="unknown op 'sep_conv_9x9'; known: .*sep_conv_3x3") as err:
        build_op("sep_conv_9x9", 4, 1)
    assert "\n" not in str(err.value) and not str(err.value).startswith("'")


def test_factorized_reduce_rejects_odd_input() -> None:
    with pytest.raises(ValueError, match="even height and width"):
        build_op("identity", 4, 2)(torch.randn(1, 4, 7, 7))
