"""Convolutional primitives of the NASNet / ENAS / NAO / DARTS cell spaces.

Every op maps (N, C, H, W) to (N, C, ceil(H / stride), ceil(W / stride)) for even H, W when
stride is 2, so that any op can sit on any edge. Layouts follow DARTS' `operations.py` (ReLU
before conv, BN after; separable conv applied twice; pools without BN in the final network) so
that parameter counts of published genotypes match the authors' code exactly.
"""

from __future__ import annotations

import math
from typing import Callable, Container, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from naslab.registry import Registry

OpFactory = Callable[[int, int, bool], nn.Module]
OPS: Registry[OpFactory] = Registry("op")


def pointwise_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """A bias-free 1x1 convolution at `stride`; in channels-last, a stride-1 conv of every stride-th pixel.

    The same numbers as `F.conv2d(x, weight, stride=stride)` (output size ceil(H / stride) either
    way), but a channels-last input never reaches the strided 1x1 kernel: torch 2.14.1's CPU (oneDNN)
    weight gradient of a stride-2 1x1 conv segfaults on channels-last inputs from 48x48 up (e.g.
    16x8x56x56), and channels-last is naslab's default layout. An NCHW input (`channels_last=false`)
    takes the strided kernel, so that layout keeps its former numbers bit for bit.
    tests/ops/test_channels_last.py holds the shapes that crashed.
    """
    if stride == 1 or x.stride(-1) == 1:  # NCHW (width innermost): the strided kernel is safe, keep its numbers
        return F.conv2d(x, weight, stride=stride)
    return F.conv2d(x[:, :, ::stride, ::stride], weight)


class Conv2d(nn.Conv2d):
    """nn.Conv2d (same parameters and state-dict keys) whose strided 1x1 case goes through `pointwise_conv2d`."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        strided_pointwise = (
            self.kernel_size == (1, 1)
            and self.stride[0] == self.stride[1] > 1
            and self.padding == (0, 0)
            and self.groups == 1
            and bias is None
        )
        if strided_pointwise:
            return pointwise_conv2d(input, weight, self.stride[0])
        return super()._conv_forward(input, weight, bias)


class ReLUFirst(nn.Sequential):
    """A Sequential that starts with a ReLU and can be fed an input already passed through it.

    A DARTS mixed op runs every candidate on the same edge input; four of its eight ops start with
    ReLU. `MixedOp` applies that ReLU once and calls `forward_relued` on each, which keeps one
    rectified copy of the input for the backward pass instead of four (same numbers, less memory).
    """

    def forward_relued(self, x: torch.Tensor) -> torch.Tensor:
        """The op on `x` = relu(input): every layer after the leading ReLU."""
        for layer in list(self)[1:]:
            x = layer(x)
        return x


class ReLUConvBN(ReLUFirst):
    """ReLU -> conv -> BN: the plain convolution of the cell spaces."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class FactorizedConv(ReLUFirst):
    """ReLU -> 1xk conv -> kx1 conv -> BN (NASNet's "1x7 then 7x1" convolution)."""

    def __init__(self, channels: int, kernel: int, stride: int, affine: bool = True):
        pad = kernel // 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, (1, kernel), stride=(1, stride), padding=(0, pad), bias=False),
            nn.Conv2d(channels, channels, (kernel, 1), stride=(stride, 1), padding=(pad, 0), bias=False),
            nn.BatchNorm2d(channels, affine=affine),
        )


class DilConv(ReLUFirst):
    """ReLU -> depthwise dilated conv -> pointwise conv -> BN (DARTS `dil_conv_kxk`)."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int, affine: bool = True
    ):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked DilConv(dilation=1): the separable convolution as NASNet/ENAS/DARTS apply it."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, affine: bool = True):
        pad = kernel // 2
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, pad, 1, affine),
            DilConv(c_in, c_out, kernel, 1, pad, 1, affine),
        )

    def forward_relued(self, x: torch.Tensor) -> torch.Tensor:
        """The op on `x` = relu(input) (see `ReLUFirst`)."""
        return self[1](self[0].forward_relued(x))


class FactorizedReduce(nn.Module):
    """Halves the resolution without losing half the pixels: two offset stride-2 1x1 convs.

    Used for `identity` at stride 2 and to align the cell input two steps back after a reduction.
    Needs even H and W.
    """

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            raise ValueError(f"FactorizedReduce needs even height and width, got {tuple(x.shape[-2:])}")
        return self.forward_relued(self.relu(x))

    def forward_relued(self, x: torch.Tensor) -> torch.Tensor:
        """The op on `x` = relu(input) (see `ReLUFirst`)."""
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class Identity(nn.Module):
    """Identity; a separate class so that drop-path can recognise it (DARTS skips it there)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The DARTS `none` op: outputs zeros at the op's output resolution.

    `always_zero` lets a mixed op leave it out of its weighted sum: its term w * 0 adds nothing and
    the gradient of its weight, sum(grad * 0), is exactly 0 either way.
    """

    always_zero = True

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class Pool(nn.Module):
    """Max/avg pooling with 'same' output size ceil(H / stride), for odd and even kernels.

    Odd kernels pad symmetrically (avg excludes the padding, as DARTS does). Even kernels (NAO's
    2x2 pools) cannot pad symmetrically, so the input is edge-replicated on the bottom/right first.
    """

    def __init__(self, kind: str, kernel: int, stride: int):
        super().__init__()
        self.kind, self.kernel, self.stride = kind, kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel, self.stride
        if k % 2:
            pad = k // 2
        else:
            h, w = x.shape[-2:]
            pad_h = max((math.ceil(h / s) - 1) * s + k - h, 0)
            pad_w = max((math.ceil(w / s) - 1) * s + k - w, 0)
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), mode="replicate")
            pad = 0
        if self.kind == "max":
            return F.max_pool2d(x, k, s, pad)
        return F.avg_pool2d(x, k, s, pad, count_include_pad=False)

    def extra_repr(self) -> str:
        return f"{self.kind}, kernel={self.kernel}, stride={self.stride}"


def _register_pool(kind: str, kernel: int) -> None:
    OPS.add(f"{kind}_pool_{kernel}x{kernel}", lambda c, stride, affine: Pool(kind, kernel, stride))


OPS.add("none", lambda c, stride, affine: Zero(stride))
OPS.add("identity", lambda c, stride, affine: Identity() if stride == 1 else FactorizedReduce(c, c, affine))
for _k in (3, 5, 7):
    OPS.add(f"sep_conv_{_k}x{_k}", lambda c, stride, affine, k=_k: SepConv(c, c, k, stride, affine))
for _k in (3, 5):
    OPS.add(f"dil_conv_{_k}x{_k}", lambda c, stride, affine, k=_k: DilConv(c, c, k, stride, (k // 2) * 2, 2, affine))
OPS.add("conv_1x1", lambda c, stride, affine: ReLUConvBN(c, c, 1, stride, 0, affine))
OPS.add("conv_3x3", lambda c, stride, affine: ReLUConvBN(c, c, 3, stride, 1, affine))
OPS.add("conv_5x5", lambda c, stride, affine: ReLUConvBN(c, c, 5, stride, 2, affine))
OPS.add("conv_1x3_3x1", lambda c, stride, affine: FactorizedConv(c, 3, stride, affine))
OPS.add("conv_1x7_7x1", lambda c, stride, affine: FactorizedConv(c, 7, stride, affine))
for _kind in ("max", "avg"):
    for _k in (2, 3, 5):
        _register_pool(_kind, _k)

# The ENAS macro space's 6 ops in the index order of ENAS's released code (general_child.py branches 0-5),
# so an op token is the number ENAS writes in its arc strings (cifar10_macro_final.sh's fixed_arc). The
# macro space realises them as whole layers (spaces/macro/network.py); EPNAS's cells use them as edges.
ENAS_MACRO_OP_NAMES: tuple[str, ...] = (
    "conv_3x3",
    "sep_conv_3x3",
    "conv_5x5",
    "sep_conv_5x5",
    "avg_pool_3x3",
    "max_pool_3x3",
)

# Op sets of the papers, in the index order their encodings use.
OP_SETS: dict[str, tuple[str, ...]] = {
    # ENAS / NAO-WS: 5 ops (Pham et al.; NAO paper, arXiv:1808.07233, Sec. 3.2 weight sharing space)
    "enas": ("identity", "sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3"),
    # NAO: the 11 ops of Sec. 4.1 (NAO arXiv:1808.07233): identity, 1x1 / 3x3 conv, 1x3+3x1, 1x7+7x1, max/avg pools
    "nao": (
        "identity",
        "conv_1x1",
        "conv_3x3",
        "conv_1x3_3x1",
        "conv_1x7_7x1",
        "max_pool_2x2",
        "max_pool_3x3",
        "max_pool_5x5",
        "avg_pool_2x2",
        "avg_pool_3x3",
        "avg_pool_5x5",
    ),
    # EPNAS micro: the 6 macro ops (ENAS's index order) plus identity (EPNAS arXiv:1808.00391, "Micro search space")
    "epnas": ("identity", *ENAS_MACRO_OP_NAMES),
    # DARTS: the 8 ops of Liu et al. (incl. the zero op `none`)
    "darts": (
        "none",
        "max_pool_3x3",
        "avg_pool_3x3",
        "identity",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
    ),
}


def op_set(
    name_or_ops: str | Sequence[str],
    sets: Mapping[str, tuple[str, ...]] = OP_SETS,
    known_ops: Container[str] = OPS,
    kind: str = "op set",
) -> tuple[str, ...]:
    """The ops of a named op set, or a custom list of known op names (e.g. from a config).

    `sets` / `known_ops` default to the cell ops; other spaces (macro) pass their own tables.
    """
    if isinstance(name_or_ops, str):
        if name_or_ops not in sets:
            raise ValueError(f"unknown {kind} '{name_or_ops}'; known: {', '.join(sorted(sets))} or a list of ops")
        return sets[name_or_ops]
    ops = tuple(str(op) for op in name_or_ops)
    unknown = [op for op in ops if op not in known_ops]
    if unknown or not ops or len(set(ops)) != len(ops):
        raise ValueError(f"{kind} {list(ops)} must list distinct known ops; unknown: {unknown}")
    return ops


def build_op(name: str, channels: int, stride: int, affine: bool = True) -> nn.Module:
    """Instantiate a registered op for `channels` channels at `stride` (1 or 2)."""
    if stride not in (1, 2):
        raise ValueError(f"op stride must be 1 or 2, got {stride}")
    return OPS.get(name)(channels, stride, affine)
