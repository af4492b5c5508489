"""Pictures of a genotype, whatever its space: `draw_genotype_pictures(space, genotype, out_dir)`.

Spaces know nothing of plotting (naslab's layers: spaces never import plots); each space family's
drawer is registered here with `functools.singledispatch` on the space class, so a new space adds
its picture with one `@draw_genotype_pictures.register` function. A space without one draws nothing.
"""

from __future__ import annotations

from functools import singledispatch
from pathlib import Path
from typing import Any, Sequence

from naslab.plots.cell_plot import draw_genotype
from naslab.plots.chain_plot import draw_chain
from naslab.plots.rnn_plot import draw_rnn_cell
from naslab.spaces.base import Space
from naslab.spaces.macro.network import reduction_layers
from naslab.spaces.macro.space import MacroGenotype, MacroLayer, MacroSpace
from naslab.spaces.micro.space import MicroSpace
from naslab.spaces.nases.space import NASESGenotype, NASESSpace
from naslab.spaces.rnn.space import RNNGenotype, RNNSpace
from naslab.spaces.subspace import SubSpace


@singledispatch
def draw_genotype_pictures(space: Space[Any], genotype: Any, out_dir: Path) -> list[Path]:
    """The pictures of `genotype` written under `out_dir`; [] for a space without a drawer (MLP)."""
    return []


@draw_genotype_pictures.register
def _micro(space: MicroSpace, genotype: Any, out_dir: Path) -> list[Path]:
    """out_dir/normal.png and reduce.png (DOT beside), nodes numbered as `describe` numbers them; a tied
    space's pictures (the same cell) are both titled "cell (normal = reduce)"."""
    return draw_genotype(genotype, out_dir, tied=space.tied)


@draw_genotype_pictures.register
def _subspace(space: SubSpace, genotype: Any, out_dir: Path) -> list[Path]:
    return draw_genotype_pictures(space.base, genotype, out_dir)


@draw_genotype_pictures.register
def _rnn(space: RNNSpace, genotype: RNNGenotype, out_dir: Path) -> list[Path]:
    return [draw_rnn_cell(genotype, Path(out_dir) / "rnn_cell.png")]


@draw_genotype_pictures.register
def _macro(space: MacroSpace, genotype: MacroGenotype, out_dir: Path) -> list[Path]:
    """out_dir/macro.png (matplotlib) and macro.dot (graphviz source) beside it; returns [png]."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reductions = reduction_layers(genotype.num_layers)
    (out / "macro.dot").write_text(macro_to_dot(genotype, reductions))
    png = out / "macro.png"
    draw_macro(genotype, png, reductions)
    return [png]


@draw_genotype_pictures.register
def _nases(space: NASESSpace, genotype: NASESGenotype, out_dir: Path) -> list[Path]:
    """out_dir/nases.png and nases.dot: the decoded layers top to bottom, box j labelled "j: op/filters" as
    `describe` names layer j, and beside them a matrix with square (j, i) filled when layer i's op output
    is concatenated to layer j's output (`plots.chain_plot`)."""
    decoded = space.decode(genotype)
    chain = MacroGenotype(tuple(MacroLayer(f"{layer.op}/{layer.filters}", layer.skips) for layer in decoded))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "nases.dot").write_text(macro_to_dot(chain, space.reduce_after))
    png = draw_chain(
        [(f"{layer.op}/{layer.filters}", layer.skips) for layer in decoded],
        _fill,
        out / "nases.png",
        space.reduce_after,
        title=f"NASES network, {space.num_layers} layers (op/filters)",
        skip_header="layer j (row) concatenates the op output of layer i (column)",
        key=FILL_KEY,
    )
    return [png]


# ---------------------------------------------------------------------------------------------
# Pictures

_FILL = {"conv": "#add8e6", "sep": "#b4eeb4", "pool": "#eee8aa", "io": "#dddddd"}


FILL_KEY = {"conv": _FILL["conv"], "sep_conv": _FILL["sep"], "pool": _FILL["pool"]}  # a picture's colour key


def _fill(op: str) -> str:
    return _FILL["sep" if op.startswith("sep") else "pool" if "pool" in op else "conv"]


def macro_to_dot(genotype: MacroGenotype, reductions: Sequence[int] = ()) -> str:
    """Graphviz source: the chain left to right, skips as dashed edges, reductions marked on the edge."""
    lines = [
        'digraph "macro" {',
        "  graph [rankdir=LR, fontname=times];",
        "  node [style=filled, shape=rect, fontname=times, fontsize=14];",
        "  edge [fontname=times, fontsize=12];",
        '  input [label="input\\nstem conv_3x3", fillcolor="#dddddd"];',
    ]
    for i, layer in enumerate(genotype.layers):
        lines.append(f'  L{i} [label="{i}\\n{layer.op}", fillcolor="{_fill(layer.op)}"];')
    lines.append('  output [label="avg pool\\nlinear", fillcolor="#dddddd"];')
    names = ["input"] + [f"L{i}" for i in range(genotype.num_layers)] + ["output"]
    for k in range(len(names) - 1):
        label = ' [label="/2"]' if k - 1 in reductions else ""
        lines.append(f"  {names[k]} -> {names[k + 1]}{label};")
    for i, layer in enumerate(genotype.layers):
        for j in layer.skips:
            lines.append(f"  L{j} -> L{i} [style=dashed, constraint=false];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw_macro(genotype: MacroGenotype, png: Path, reductions: Sequence[int] = ()) -> Path:
    """Renders the chain top to bottom, box j labelled "j: op" as `str(genotype)` names layer j, and its skips
    as a matrix beside it (`plots.chain_plot`); bare Figure on Agg (headless, no pyplot state)."""
    return draw_chain(
        [(layer.op, layer.skips) for layer in genotype.layers],
        _fill,
        png,
        reductions,
        title=f"macro network, {genotype.num_layers} layers",
        skip_header="layer j (row) adds the output of layer i (column)",
        key=FILL_KEY,
    )
