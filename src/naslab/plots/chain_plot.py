"""Pictures of chain architectures with skips (ENAS macro, NASES): the layers top to bottom, the skips as a matrix.

A row of boxes joined by arcs stops being readable once a chain has more than a handful of skips (an ENAS
macro network has dozens, a NASES one up to 105): every arc leaves and enters at the same spot and the
crossings hide which layer reads which. Here each layer is a row: its box on the left, labelled as the
genotype string labels it ("4: sep_conv_5x5", `MacroGenotype.__str__` / `NASESSpace.describe`), and to
its right one square per earlier layer, filled where the layer reads that layer's output (the `[+i,...]`
of the genotype string). Column numbers are layer numbers; a dotted line marks where the resolution halves.

Drawing uses a bare `Figure` on the Agg canvas: headless, no pyplot state, no leaked figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

from naslab.plots.canvas import diagram_axes

__all__ = ["chain_figure", "draw_chain", "skip_gid"]

_UNIT = 0.32  # inches per row (and per matrix column)
_BOX_H = 0.6  # box height, in rows: the rest is the arrow between two boxes
_FONT = 9
_SMALL = 8
_DPI = 120
_IO_FILL = "#dddddd"
_SKIP_FILL = "#3b5b92"
_FREE_FILL = "#f2f2f2"


def skip_gid(source: int, layer: int) -> str:
    """The gid of the filled square saying `layer` reads layer `source` (what tests look the picture up by)."""
    return f"skip {source}->{layer}"


def _text_width(text: str, size: float) -> float:
    """Rough width of `text` in rows (DejaVu Sans averages about 0.6 em per character)."""
    return len(text) * 0.6 * size / 72 / _UNIT


def chain_figure(
    layers: Sequence[tuple[str, Sequence[int]]],
    fill: Callable[[str], str],
    reductions: Sequence[int] = (),
    title: str = "",
    input_label: str = "input: stem conv_3x3",
    output_label: str = "output: global avg pool, linear",
    skip_header: str = "layer j (row) reads the output of layer i (column)",
    key: Mapping[str, str] | None = None,
) -> Any:
    """The Figure of a chain: `layers` as (op text, skips) in order, `fill(op)` each box's colour, `reductions`
    the layers after which the resolution halves. Box j reads "j: op"; matrix square (j, i) is filled when i
    is in layer j's skips. `key` (name -> colour) is drawn under the chain as the boxes' colour key."""
    n = len(layers)
    labels = [f"{j}: {op}" for j, (op, _) in enumerate(layers)]
    box_w = max(_text_width(t, _FONT) for t in [input_label, output_label, *labels]) + 0.8
    gap = 0.7  # between the boxes and the matrix
    m0 = box_w + gap  # x of column 0's centre minus 0.5
    cols = max(n - 1, 1)  # layer 0 reads no earlier layer: columns 0 .. n-2
    header = 2.2 if title else 1.4  # rows above the input box: title, the matrix's header
    halves = "/2 resolution"
    right = m0 + cols + (0.3 + _text_width(halves, _SMALL) if reductions else 0.0)
    x0, x1 = -0.3, max(right, m0 + _text_width(skip_header, _SMALL)) + 0.3
    y0, y1 = -(n + 1) - (1.6 if key else 0.8), 0.5 + header
    fig, ax = diagram_axes(x0, x1, y0, y1, _UNIT, _DPI)
    cx = box_w / 2

    def box(row: int, text: str, colour: str) -> None:
        y = -row
        ax.add_patch(
            FancyBboxPatch(
                (0, y - _BOX_H / 2),
                box_w,
                _BOX_H,
                boxstyle="round,pad=0,rounding_size=0.12",
                fc=colour,
                ec="black",
                lw=1.0,
                zorder=3,
            )
        )
        ax.text(0.35, y, text, ha="left", va="center", fontsize=_FONT, zorder=4)

    box(0, input_label, _IO_FILL)
    for j, ((op, _), text) in enumerate(zip(layers, labels)):
        box(j + 1, text, fill(op))
    box(n + 1, output_label, _IO_FILL)
    for row in range(n + 1):
        ax.add_patch(
            FancyArrowPatch(
                (cx, -row - _BOX_H / 2),
                (cx, -row - 1 + _BOX_H / 2),
                arrowstyle="-|>",
                mutation_scale=8,
                lw=1.0,
                color="black",
                zorder=2,
            )
        )
    for r in reductions:  # after layer r (row r + 1): between rows r + 1 and r + 2
        if 0 <= r < n:
            y = -(r + 1.5)
            ax.plot([0, m0 + cols + 0.15], [y, y], color="0.45", lw=0.8, linestyle=":", zorder=1)
            ax.text(m0 + cols + 0.3, y, halves, ha="left", va="center", fontsize=_SMALL, color="0.3")

    # The matrix: row j (layer j), column i < j; filled where j reads i.
    for j, (_, skips) in enumerate(layers):
        y = -(j + 1)
        chosen = set(skips)
        for i in range(j):
            on = i in chosen
            ax.add_patch(
                Rectangle(
                    (m0 + i + 0.06, y - 0.44),
                    0.88,
                    0.88,
                    fc=_SKIP_FILL if on else _FREE_FILL,
                    ec="none",
                    zorder=2,
                    gid=skip_gid(i, j) if on else None,
                )
            )
    for i in range(n - 1):
        ax.text(m0 + i + 0.5, 0, str(i), ha="center", va="center", fontsize=_SMALL, zorder=4)
    ax.text(m0, 0.9, skip_header, ha="left", va="center", fontsize=_SMALL, color="0.2")
    if title:
        ax.text((x0 + x1) / 2, 0.5 + header - 0.5, title, ha="center", va="center", fontsize=11)
    x, y = 0.0, -(n + 2.2)
    for name, colour in (key or {}).items():
        ax.add_patch(Rectangle((x, y - 0.25), 0.5, 0.5, fc=colour, ec="black", lw=0.8))
        ax.text(x + 0.7, y, name, ha="left", va="center", fontsize=_SMALL)
        x += 0.7 + _text_width(name, _SMALL) + 0.6
    return fig


def draw_chain(
    layers: Sequence[tuple[str, Sequence[int]]],
    fill: Callable[[str], str],
    png: str | Path,
    reductions: Sequence[int] = (),
    **labels: str,
) -> Path:
    """Saves `chain_figure(layers, fill, reductions, **labels)` to `png` (folder made); returns its path."""
    png = Path(png)
    fig = chain_figure(layers, fill, reductions, **labels)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, format="png", dpi=_DPI)
    return png
