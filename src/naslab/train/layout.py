"""Memory layout of image batches and CNNs: channels-last (NHWC) by default.

On CPU, oneDNN runs the depthwise-heavy cell networks of these spaces about twice as fast in NHWC
(benchmarks/channels_last.py); on CUDA, NHWC is what tensor cores want under mixed precision. The
layout changes how numbers are summed, not what is computed: tests/ops/test_channels_last.py checks
outputs and gradients against NCHW within float32 rounding. Only rank-4 tensors (image batches,
conv weights) have a channels-last layout; feature vectors and token windows pass through.
"""

from __future__ import annotations

import torch
from torch import nn


def memory_format(channels_last: bool) -> torch.memory_format:
    """torch.channels_last when asked for, else the default contiguous (NCHW) layout."""
    return torch.channels_last if channels_last else torch.contiguous_format


def laid_out(x: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
    """`x` in `layout` if it is an image batch (rank 4); anything else unchanged."""
    return x.contiguous(memory_format=layout) if x.dim() == 4 else x


def lay_out_network(net: nn.Module, layout: torch.memory_format) -> nn.Module:
    """The network with its conv weights in `layout` (in place; other parameters are unaffected)."""
    return net.to(memory_format=layout)
