"""Pictures of recurrent cells (`spaces.rnn.RNNGenotype`): a row of boxes, reads as arcs.

The nodes stand in a row: x_t and h_{t-1} feed node 0 (the fixed highway with tanh), nodes 1..n follow
in order, each labelled with its index and activation: node i is the i-th entry `activation(j)` of the
genotype string (`RNNGenotype.__str__`, written beneath the title), reading node j. A node reading its
predecessor gets a straight arrow; longer reads arc above the row, leaving a box right of its centre and
arriving left of it. The averaged nodes have a red border and arc below the row into "h_t (avg)".
`rnn_cell_to_dot` writes the same graph as graphviz source for anyone who has graphviz.

Drawing uses a bare `Figure` on the Agg canvas: headless, no pyplot state, no leaked figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from naslab.plots.canvas import diagram_axes
from naslab.spaces.rnn.space import RNNGenotype

__all__ = ["draw_rnn_cell", "rnn_cell_figure", "rnn_cell_to_dot"]

_FILL = {
    "tanh": "#add8e6",
    "relu": "#b4eeb4",
    "sigmoid": "#eee8aa",
    "identity": "#f5deb3",
    "highway": "#d8bfd8",
    "io": "#dddddd",
}
_OUTPUT_EDGE = "#c0392b"
_DPI = 120
_FONT = 9
_TITLE_FONT = 11
_SUBTITLE_FONT = 8


def _fill(activation: str) -> str:
    return _FILL.get(activation, "#ffffff")


def rnn_cell_to_dot(genotype: RNNGenotype) -> str:
    """Graphviz source: inputs -> node 0 -> chosen nodes (by what each reads) -> h_t from the averaged ones."""
    outputs = set(genotype.output_nodes())
    lines = [
        'digraph "rnn_cell" {',
        "  graph [rankdir=LR, fontname=times];",
        "  node [style=filled, shape=rect, fontname=times, fontsize=14];",
        "  edge [fontname=times, fontsize=12];",
        f'  x_t [label="x_t", fillcolor="{_FILL["io"]}"];',
        f'  h_prev [label="h_{{t-1}}", fillcolor="{_FILL["io"]}"];',
        f'  N0 [label="0\\nhighway tanh", fillcolor="{_FILL["highway"]}"];',
    ]
    for i, node in enumerate(genotype.nodes, start=1):
        border = f', color="{_OUTPUT_EDGE}", penwidth=2.5' if i in outputs else ""
        lines.append(f'  N{i} [label="{i}\\n{node.activation}", fillcolor="{_fill(node.activation)}"{border}];')
    lines.append(f'  h_t [label="h_t (avg)", fillcolor="{_FILL["io"]}"];')
    lines += ["  x_t -> N0;", "  h_prev -> N0;"]
    lines += [f"  N{node.input} -> N{i};" for i, node in enumerate(genotype.nodes, start=1)]
    lines += [f'  N{i} -> h_t [color="{_OUTPUT_EDGE}"];' for i in sorted(outputs)]
    lines.append("}")
    return "\n".join(lines) + "\n"


def rnn_cell_figure(genotype: RNNGenotype, title: str = "recurrent cell", subtitle: str | None = None) -> Any:
    """The Figure of the cell (bare Agg canvas): `title`, and beneath it `subtitle` (default: the genotype string,
    whose i-th entry `activation(j)` is node i, drawn as box "i" with an arc from box "j")."""
    if subtitle is None:
        subtitle = str(genotype)
    dx, box_w, box_h, in_h, inch, rad = 1.7, 1.35, 0.7, 0.45, 0.7, 0.3
    n = genotype.num_nodes
    xs = [k * dx for k in range(n + 3)]  # column 0: x_t / h_{t-1}; 1: node 0; 1 + i: node i; n + 2: h_t
    outputs = genotype.output_nodes()
    longest_read = max((i - node.input for i, node in enumerate(genotype.nodes, start=1)), default=1)
    longest_out = max((n + 1 - i for i in outputs), default=1)
    top = max(box_h / 2 + 0.5 * rad * longest_read * dx, in_h + 0.5) + 0.3  # arc3 peaks at rad/2 of its span
    header = 0.75 if subtitle else 0.45  # title (and subtitle) above the arcs, in data units
    bottom = -max(box_h / 2 + 0.5 * rad * longest_out * dx, in_h + 0.5) - 0.3
    x0, x1 = -box_w / 2 - 0.3, xs[-1] + box_w / 2 + 0.3
    fig, ax = diagram_axes(x0, x1, bottom, top + header, inch, _DPI)
    ax.text((x0 + x1) / 2, top + header - 0.22, title, ha="center", va="center", fontsize=_TITLE_FONT)
    if subtitle:
        ax.text(
            (x0 + x1) / 2,
            top + header - 0.55,
            subtitle,
            ha="center",
            va="center",
            fontsize=_SUBTITLE_FONT,
            family="monospace",
            color="0.25",
        )

    def box(x: float, y: float, h: float, text: str, fill: str, edge: str = "black", lw: float = 1.2) -> None:
        ax.add_patch(
            FancyBboxPatch(
                (x - box_w / 2, y - h / 2),
                box_w,
                h,
                boxstyle="round,pad=0,rounding_size=0.08",
                fc=fill,
                ec=edge,
                lw=lw,
                zorder=3,
            )
        )
        ax.text(x, y, text, ha="center", va="center", fontsize=_FONT, zorder=4)

    def arrow(start: tuple[float, float], end: tuple[float, float], **style: object) -> None:
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=11, zorder=2, **style))

    in_y = in_h / 2 + 0.1
    box(xs[0], in_y, in_h, "$x_t$", _FILL["io"])
    box(xs[0], -in_y, in_h, "$h_{t-1}$", _FILL["io"])
    for y in (in_y, -in_y):
        arrow((xs[0] + box_w / 2, y), (xs[1] - box_w / 2, 0))
    box(xs[1], 0, box_h, "0\nhighway tanh", _FILL["highway"])
    # Arcs above the row leave a box right of its centre and arrive left of it, so a box that is read
    # and reads is not one point where arcs meet.
    out_dx, in_dx = 0.2 * box_w, -0.2 * box_w
    for i, node in enumerate(genotype.nodes, start=1):
        is_output = i in outputs
        box(
            xs[1 + i],
            0,
            box_h,
            f"{i}\n{node.activation}",
            _fill(node.activation),
            _OUTPUT_EDGE if is_output else "black",
            2.4 if is_output else 1.2,
        )
        j = node.input
        if j == i - 1:
            arrow((xs[1 + j] + box_w / 2, 0), (xs[1 + i] - box_w / 2, 0))
        else:  # left to right with a negative rad: the arc bends above the row
            arrow(
                (xs[1 + j] + out_dx, box_h / 2),
                (xs[1 + i] + in_dx, box_h / 2),
                connectionstyle=f"arc3,rad={-rad}",
                color="0.3",
            )
    box(xs[-1], 0, box_h, "$h_t$ (avg)", _FILL["io"])
    for i in outputs:
        start = (xs[1 + i], -box_h / 2)
        if i == n:
            arrow((xs[1 + i] + box_w / 2, 0), (xs[-1] - box_w / 2, 0), color=_OUTPUT_EDGE)
        else:  # a positive rad bends below the row
            arrow(start, (xs[-1], -box_h / 2), connectionstyle=f"arc3,rad={rad}", color=_OUTPUT_EDGE, lw=0.9)
    return fig


def draw_rnn_cell(genotype: RNNGenotype, png: Path) -> Path:
    """Renders the cell to `png` and its graphviz source beside it (same name, `.dot`); returns `png`."""
    png = Path(png)
    fig = rnn_cell_figure(genotype)
    png.parent.mkdir(parents=True, exist_ok=True)
    png.with_suffix(".dot").write_text(rnn_cell_to_dot(genotype))
    fig.savefig(png, format="png", dpi=_DPI)
    return png
