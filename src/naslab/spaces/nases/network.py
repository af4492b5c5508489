"""The stand-alone child network of the NASES macro space (Liu's NASES paper, Sec. 3.2.2 and Appendix A).

A chain of decoded layers (see `naslab.spaces.nases.space` for the decoding rules):

    stem.*              3x3 conv + BN: image channels -> layer 0's width (a fixed stem, not searched)
    projections.{i}.*   layer i >= 1: ReLU -> 1x1 conv -> BN from layer i-1's (concatenated) output
                        to its own width (Liu's NASES paper A.3: "1x1 ... before the convolution layer,
                        except for the first layer")
    layers.{i}.*        layer i's op at stride 1, 'same' padding, ReLU-conv-BN order (A.3):
                        conv kxk, depthwise-separable conv kxk applied twice (A.1), max/avg pool kxk
    classifier.*        Linear after global average pooling (A.4)

Layer j's output is the concatenation, on the channel axis, of its op's output h_j and the op
outputs h_i of its skip layers (A.2: connected layers "were concatenated in the channel dimension
at the end of the layer"); layer j+1 (or the classifier, after the last layer) reads it, layer 0
reads the stem. After each layer listed in `reduce_after`, every h a later layer still reads
is halved by a parameter-free 2x2 stride-2 pooling (ceil mode, so any input size >= 1 works), so
skips across a reduction keep matching resolutions. Every convolution is He-initialised (file
001, Sec. 4.2.2: "We initialize w with He initialization"), fan-out mode as in ResNet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from naslab.ops.cnn import Pool, ReLUConvBN, SepConv

if TYPE_CHECKING:  # nases.py imports this module; only annotations need its layer class
    from naslab.spaces.nases.space import NASESLayer

__all__ = ["NASES_KINDS", "NASESNetwork", "build_nases_op", "last_readers"]

NASES_KINDS = ("sep_conv", "conv", "max_pool", "avg_pool")  # Liu's NASES paper A.1's four kernel types


def build_nases_op(kind: str, kernel: int, width: int) -> nn.Module:
    """One layer's op on `width` channels, stride 1, output shape = input shape."""
    if kind == "conv":
        return ReLUConvBN(width, width, kernel, 1, kernel // 2)
    if kind == "sep_conv":  # two stacked ReLU -> depthwise -> pointwise -> BN (NASNet / DARTS layout)
        return SepConv(width, width, kernel, 1)
    if kind in ("max_pool", "avg_pool"):
        return Pool(kind[:3], kernel, 1)
    raise KeyError(f"unknown NASES kernel type '{kind}'; known: {', '.join(NASES_KINDS)}")


def last_readers(layers: Sequence[NASESLayer]) -> list[int]:
    """For each layer i, the last step that reads its op output h_i: step j + 1 reads layer j's
    output (h_j and its skips' h); step len(layers) is the classifier."""
    last = [i + 1 for i in range(len(layers))]
    for j, layer in enumerate(layers):
        for i in layer.skips:
            last[i] = max(last[i], j + 1)
    return last


class NASESNetwork(nn.Module):
    """Stem, the decoded layers with concatenated skips, global average pooling, a linear classifier.

    `widths[i]` is layer i's output channel count (the decoded filter count, already scaled by the
    space's `channels` knob); `reduce_after` lists the layers after which the resolution halves.
    """

    def __init__(
        self,
        layers: Sequence[NASESLayer],
        widths: Sequence[int],
        num_classes: int,
        in_channels: int = 3,
        reduce_after: Sequence[int] = (4, 9),
        reduction: str = "max",
    ):
        super().__init__()
        if len(layers) != len(widths) or not layers:
            raise ValueError(f"need one width per layer and at least one layer, got {len(layers)} / {len(widths)}")
        if min(widths) < 1:
            raise ValueError(f"layer widths must be >= 1, got {list(widths)}")
        if reduction not in ("max", "avg"):
            raise ValueError(f"reduction must be 'max' or 'avg', got {reduction!r}")
        self.specs = tuple(layers)
        self.widths = tuple(int(w) for w in widths)
        self.reduce_after = tuple(sorted(set(reduce_after)))
        self.reduction = reduction
        self.readers = last_readers(self.specs)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, self.widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(self.widths[0])
        )
        self.projections = nn.ModuleDict()
        self.layers = nn.ModuleList()
        for i, spec in enumerate(self.specs):
            if i > 0:
                self.projections[str(i)] = ReLUConvBN(self.output_width(i - 1), self.widths[i], 1, 1, 0)
            self.layers.append(build_nases_op(spec.kind, spec.kernel, self.widths[i]))
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.output_width(len(self.specs) - 1), num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def output_width(self, j: int) -> int:
        """Channels of layer j's output: its own filters plus those of the layers concatenated to it."""
        return self.widths[j] + sum(self.widths[i] for i in self.specs[j].skips)

    def _output(self, hs: list[torch.Tensor | None], j: int) -> torch.Tensor:
        parts = [hs[j]] + [hs[i] for i in self.specs[j].skips]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # type: ignore[arg-type,return-value]

    def _reduce(self, x: torch.Tensor) -> torch.Tensor:
        if self.reduction == "max":
            return F.max_pool2d(x, 2, 2, ceil_mode=True)
        return F.avg_pool2d(x, 2, 2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hs: list[torch.Tensor | None] = []  # op outputs h_i of the layers so far
        h = self.stem(x)
        for i, op in enumerate(self.layers):
            if i > 0:
                h = self.projections[str(i)](self._output(hs, i - 1))
            hs.append(op(h))
            # An h no later step reads is dropped, so it is neither reduced nor kept alive.
            hs = [o if o is not None and self.readers[j] > i else None for j, o in enumerate(hs)]
            if i in self.reduce_after:
                hs = [None if o is None else self._reduce(o) for o in hs]
        return self.classifier(self.global_pool(self._output(hs, len(hs) - 1)).flatten(1))
