"""Networks of the ENAS macro space: a chain of L layers with searched ops and skip connections.

One class serves both uses. `MacroNetwork(genotype)` is the stand-alone child: it holds only the
modules its genotype uses. `MacroNetwork(None, ops=..., num_layers=...)` is the weight-sharing
supernet of ENAS macro search: it holds every op of every layer and every reduction, and
`forward(x, genotype)` runs only the sampled path. Module names depend only on what a module is,
never on which genotype built it:

    stem.*                 3x3 conv + BN (in_channels -> channels)
    layers.{i}.{op}.*      the op of layer i (an nn.ModuleDict per layer: one op in a child, all in a supernet)
    skip_bns.{i}.*         the BN after layer i's skip sum (i >= 1; ENAS applies it even with no skip)
    reductions.{r}.{j}.*   FactorizedReduce of layer j's output after layer r (a reduction position)
    classifier.*           the final Linear

so a child's `state_dict()` keys are a subset of the supernet's, and `child.load_state_dict(
{k: v for k, v in supernet.state_dict().items() if k in child.state_dict()})` gives the child
exactly the supernet's weights for its path.

Ops follow ENAS `general_child.py` without its per-branch 1x1 input conv (`inp_conv_1`): every
layer of a stage has the same width, so the 1x1 conv only re-projects and is left out here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from naslab.ops.cnn import ENAS_MACRO_OP_NAMES, FactorizedReduce, Pool

if TYPE_CHECKING:  # macro.py imports this module for its op table; only annotations need the genotype
    from naslab.spaces.macro.space import MacroGenotype

__all__ = [
    "MACRO_OPS",
    "MACRO_OPS_ENAS",
    "MACRO_OP_SETS",
    "MacroNetwork",
    "build_macro_op",
    "needed_reductions",
    "reduction_layers",
]

MacroOpFactory = Callable[[int], nn.Module]  # channels -> module mapping (N, C, H, W) to itself


class MacroConv(nn.Sequential):
    """conv kxk ('same' padding) -> BN -> ReLU: ENAS's macro convolution branch."""

    def __init__(self, channels: int, kernel: int):
        super().__init__(
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=False),
        )


class MacroSepConv(nn.Sequential):
    """depthwise kxk -> pointwise 1x1 -> BN -> ReLU: ENAS's `separable_conv2d` branch (applied once).

    Unlike the cell spaces' SepConv (two stacked DilConvs, DARTS style), ENAS's macro layer applies
    the separable convolution a single time.
    """

    def __init__(self, channels: int, kernel: int):
        super().__init__(
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=False),
        )


# Local to the macro space on purpose: "conv_3x3" in naslab.ops.cnn is ReLU -> conv -> BN (the cell
# spaces' layout) and there is no "conv_5x5" there; the macro layers have their own layouts.
MACRO_OPS: dict[str, MacroOpFactory] = {
    "conv_3x3": lambda c: MacroConv(c, 3),
    "conv_5x5": lambda c: MacroConv(c, 5),
    "sep_conv_3x3": lambda c: MacroSepConv(c, 3),
    "sep_conv_5x5": lambda c: MacroSepConv(c, 5),
    # 'same' 3x3 pools, avg excluding the padding like TF's SAME pooling; no parameters, no BN.
    "max_pool_3x3": lambda c: Pool("max", 3, 1),
    "avg_pool_3x3": lambda c: Pool("avg", 3, 1),
}

MACRO_OPS_ENAS = ENAS_MACRO_OP_NAMES  # op names of ENAS's index order (ops/cnn.py, shared with EPNAS's cells)

MACRO_OP_SETS: dict[str, tuple[str, ...]] = {"enas_macro": MACRO_OPS_ENAS}


def build_macro_op(name: str, channels: int) -> nn.Module:
    """A macro op for `channels` channels; a clear error for names outside MACRO_OPS."""
    if name not in MACRO_OPS:
        raise KeyError(f"unknown macro op '{name}'; known: {', '.join(MACRO_OPS)}")
    return MACRO_OPS[name](channels)


def reduction_layers(num_layers: int) -> tuple[int, ...]:
    """Layers after which the resolution halves and the width doubles (ENAS `pool_layers`).

    ENAS: pool_distance = L // 3, pool_layers = [pool_distance - 1, 2 * pool_distance - 1]; for
    L = 12 that is after layers 3 and 7. With L < 3 ENAS's positions are -1 (never reached), so
    there is no reduction; with L in 3..5 the network reduces after layers 0 and 1.
    """
    distance = num_layers // 3
    return tuple(sorted({r for r in (distance - 1, 2 * distance - 1) if r >= 0}))


def needed_reductions(genotype: MacroGenotype, reductions: Sequence[int]) -> dict[int, tuple[int, ...]]:
    """Per reduction position r: the earlier layers whose outputs some later layer still reads.

    Layer r's own output is always needed (the next layer's input); layer j < r only if a layer
    after r skips from it. The child builds exactly these FactorizedReduces and the supernet runs
    exactly these, so both compute the same function with the same parameter names.
    """
    plan = {}
    for r in reductions:
        used = {r} | {j for layer in genotype.layers[r + 1 :] for j in layer.skips if j <= r}
        plan[r] = tuple(sorted(used))
    return plan


class MacroNetwork(nn.Module):
    """Stem, L searched layers (two resolution halvings), global pooling and a linear classifier.

    Layer i applies its op to layer i-1's output (the stem's for i = 0); for i >= 1 the outputs of
    its skip layers are added and the sum goes through a BN (ENAS `add_n` + `batch_norm`). After
    each reduction layer every output still needed is halved by its own FactorizedReduce(c, 2c),
    so a skip across a reduction has the shape of the layer it joins.

    `genotype=None` builds the supernet over `ops` x `num_layers` (ENAS macro search's shared
    weights); its `forward(x, genotype)` needs the genotype to run, which may also be partial (its first
    l layers, EPNAS's progressive levels): the last layer's output then goes through the remaining
    stages' reductions (1x1-conv FactorizedReduce, as the channel width doubles) to the one classifier,
    so every level shares every weight. A child's `forward(x)` runs its
    own genotype. A supernet step leaves the other ops without gradients, so DDP needs
    find_unused_parameters=True for it. `channels` defaults to ENAS macro search's child_out_filters.

    `dropout` (0 unless set; the supernet's shared-weight step sets it) drops the pooled features before
    the classifier in `forward_with_aux` in training mode, as ENAS's macro child does (general_child.py
    `_model`: `tf.nn.dropout(x, keep_prob)` if `is_training`); `forward` never drops, so scores with
    batch statistics see the whole network. ENAS's macro child has no auxiliary head, nor does this one.
    """

    search_regularisers = ("dropout",)

    def __init__(
        self,
        genotype: MacroGenotype | None,
        num_classes: int,
        in_channels: int = 3,
        channels: int = 36,
        num_layers: int | None = None,
        ops: Sequence[str] = MACRO_OPS_ENAS,
    ):
        super().__init__()
        if channels < 1:
            raise ValueError(f"network channels must be >= 1, got {channels}")
        if genotype is not None:
            if num_layers is not None and num_layers != len(genotype.layers):
                raise ValueError(f"num_layers={num_layers} but the genotype has {len(genotype.layers)} layers")
            num_layers = len(genotype.layers)
        elif num_layers is None or num_layers < 1:
            raise ValueError(f"a supernet (genotype=None) needs num_layers >= 1, got {num_layers}")
        self.genotype = genotype
        self.num_layers = num_layers
        self.ops: tuple[str, ...] = tuple(ops) if genotype is None else tuple(dict.fromkeys(genotype.ops()))
        self.reduction_layers = reduction_layers(num_layers)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        self.layers = nn.ModuleList()
        self.skip_bns = nn.ModuleDict()
        self.reductions = nn.ModuleDict()
        plan = (
            needed_reductions(genotype, self.reduction_layers)
            if genotype is not None
            else {r: tuple(range(r + 1)) for r in self.reduction_layers}
        )
        width = channels
        for i in range(num_layers):
            layer_ops = (genotype.layers[i].op,) if genotype is not None else self.ops
            self.layers.append(nn.ModuleDict({op: build_macro_op(op, width) for op in layer_ops}))
            if i > 0:
                self.skip_bns[str(i)] = nn.BatchNorm2d(width)
            if i in plan:
                self.reductions[str(i)] = nn.ModuleDict({str(j): FactorizedReduce(width, 2 * width) for j in plan[i]})
                width *= 2
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width, num_classes)
        self.dropout = 0.0

    @property
    def is_supernet(self) -> bool:
        return self.genotype is None

    def set_drop_path(self, prob: float) -> None:
        """No drop-path in the macro space; present so the shared training module can call it."""

    def _resolve(self, genotype: MacroGenotype | None) -> MacroGenotype:
        """The genotype to run: a child's own; for the supernet, the sampled one (checked to fit)."""
        if self.genotype is not None:
            if genotype is not None and genotype != self.genotype:
                raise ValueError("a child MacroNetwork runs only its own genotype; build a supernet to switch paths")
            return self.genotype
        if genotype is None:
            raise ValueError("the macro supernet needs forward(x, genotype): which path to run")
        if len(genotype.layers) > self.num_layers:
            raise ValueError(f"genotype has {len(genotype.layers)} layers; the supernet has {self.num_layers}")
        unknown = sorted({layer.op for layer in genotype.layers} - set(self.ops))
        if unknown:
            raise ValueError(f"genotype uses ops {unknown} that the supernet does not hold ({', '.join(self.ops)})")
        return genotype

    def forward_with_aux(
        self, x: torch.Tensor, genotype: MacroGenotype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (dropout before the classifier in training mode) and no auxiliary logits."""
        if not (self.training and self.dropout > 0):
            return self.forward(x, genotype), None
        return self.classifier(F.dropout(self.features(x, genotype), self.dropout, training=True)), None

    def forward(self, x: torch.Tensor, genotype: MacroGenotype | None = None) -> torch.Tensor:
        return self.classifier(self.features(x, genotype))

    def features(self, x: torch.Tensor, genotype: MacroGenotype | None = None) -> torch.Tensor:
        """The globally pooled output of the last layer (the classifier's input)."""
        genotype = self._resolve(genotype)
        plan = needed_reductions(genotype, self.reduction_layers)
        h = self.stem(x)
        outputs: list[torch.Tensor | None] = []
        for i, (ops, spec) in enumerate(zip(self.layers, genotype.layers)):
            out = ops[spec.op](h)
            if i > 0:
                for j in spec.skips:
                    out = out + outputs[j]  # type: ignore[operator]
                out = self.skip_bns[str(i)](out)
            outputs.append(out)
            if i in plan:
                reductions = self.reductions[str(i)]
                keep = set(plan[i])
                # Outputs no later layer reads are dropped, so they are neither reduced nor kept alive.
                outputs = [reductions[str(j)](o) if j in keep else None for j, o in enumerate(outputs)]
            h = outputs[i]  # type: ignore[assignment]
        last = len(genotype.layers) - 1
        for r in self.reduction_layers:  # a partial path (progressive search) stops before some reductions:
            if r > last:  # its output takes the supernet's FactorizedReduce of those stages, so widths fit
                h = self.reductions[str(r)][str(last)](h)
        return self.global_pool(h).flatten(1)
