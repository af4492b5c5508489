"""Pictures of micro (cell) genotypes, in the style of DARTS' visualize.py.

`cell_to_dot` writes graphviz DOT source (for anyone who has graphviz); `draw_cell` renders the
same graph to PNG with matplotlib alone, using a layout computed here, so no system package is
needed. Every state carries the number the genotype string gives it (`Cell.__str__`, e.g.
`2=max_pool_3x3(0)+identity(1) 3=... -> cat[3, 4]`): the inputs are "0 (c_{k-2})" and "1 (c_{k-1})",
intermediate node k is "k + 2", and the cell output c_{k} concatenates the nodes of `cat[...]`
(dashed edges). The picture's subtitle is that string itself. Branches whose op is "none" are left
out, as DARTS does.

Drawing uses a bare `Figure` on the Agg canvas: it never touches pyplot's figure manager or the
process-wide backend, so it works headless and cannot leak open figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyBboxPatch

from naslab.spaces.micro.genotype import NUM_CELL_INPUTS, Cell, MicroGenotype

__all__ = ["cell_figure", "cell_to_dot", "draw_cell", "draw_genotype", "state_label"]

NONE_OP = "none"
INPUT_NAMES = ("c_{k-2}", "c_{k-1}")
OUTPUT_NAME = "c_{k}"

# The X11 colours DARTS uses, as hex for matplotlib.
_COLORS = {"darkseagreen2": "#b4eeb4", "lightblue": "#add8e6", "palegoldenrod": "#eee8aa"}

# Layout, in data units (one unit is _INCH inches on the page).
_INCH = 0.85
_DX = 2.6  # between depth columns
_DY = 1.25  # between nodes in a column
_RECT_W, _RECT_H = 1.3, 0.5  # cell inputs and output
_RADIUS = 0.3  # intermediate nodes
_NODE_FONT = 11
_EDGE_FONT = 8
_TITLE_FONT = 12
_SUBTITLE_FONT = 8
_DPI = 120


def state_label(index: int) -> str:
    """What the picture and the DOT file call a state: its number in the genotype string, the two cell
    inputs with their DARTS names beside ("0 (c_{k-2})", "1 (c_{k-1})", "2", "3", ...)."""
    return f"{index} ({INPUT_NAMES[index]})" if index < NUM_CELL_INPUTS else str(index)


def _display_label(index: int, n_states: int) -> str:
    """A node's text in the picture (mathtext for the c_{...} names)."""
    if index == n_states:
        return f"${OUTPUT_NAME}$"
    return f"{index} (${INPUT_NAMES[index]}$)" if index < NUM_CELL_INPUTS else str(index)


def _edges(cell: Cell) -> list[tuple[int, int, str | None]]:
    """(source, target, op) per kept branch, then (node, output, None) per concatenated node."""
    out_index = NUM_CELL_INPUTS + cell.num_nodes
    edges: list[tuple[int, int, str | None]] = []
    for k, node in enumerate(cell.nodes):
        for branch in node.branches:
            if branch.op != NONE_OP:
                edges.append((branch.input, k + NUM_CELL_INPUTS, branch.op))
    edges.extend((i, out_index, None) for i in cell.concat)
    return edges


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cell_to_dot(cell: Cell, title: str) -> str:
    """Graphviz DOT source for a cell, laid out left to right like DARTS' plot().

    Nodes are named by their state number in the genotype string ("0", "1", "2", ...; the inputs are
    labelled "0 (c_{k-2})" and "1 (c_{k-1})"); the output is "c_{k}".
    """
    cell.validate(title or "cell")
    lines = [
        f"digraph {_quote(title)} {{",
        f"  graph [label={_quote(title)}, labelloc=t, fontsize=20, fontname=times, rankdir=LR];",
        "  node [style=filled, shape=rect, align=center, fontsize=20, height=0.5, width=0.5, "
        "penwidth=2, fontname=times];",
        "  edge [fontsize=20, fontname=times];",
    ]
    for i in range(NUM_CELL_INPUTS):
        lines.append(f"  {_quote(str(i))} [label={_quote(state_label(i))}, fillcolor=darkseagreen2];")
    for i in range(NUM_CELL_INPUTS, NUM_CELL_INPUTS + cell.num_nodes):
        lines.append(f"  {_quote(str(i))} [fillcolor=lightblue];")
    lines.append(f"  {_quote(OUTPUT_NAME)} [fillcolor=palegoldenrod];")
    out_index = NUM_CELL_INPUTS + cell.num_nodes
    for src, dst, op in _edges(cell):
        u = _quote(str(src))
        v = _quote(OUTPUT_NAME if dst == out_index else str(dst))
        attrs = f"label={_quote(op)}, fillcolor=gray" if op is not None else "fillcolor=gray, style=dashed"
        lines.append(f"  {u} -> {v} [{attrs}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Layout


def _depths(cell: Cell) -> list[int]:
    """Longest path (in kept edges) from the cell inputs; the output sits one past the deepest."""
    depth = [0] * NUM_CELL_INPUTS
    for node in cell.nodes:
        preds = [depth[b.input] for b in node.branches if b.op != NONE_OP]
        depth.append(1 + max(preds, default=0))
    depth.append(max(depth) + 1)
    return depth


def _positions(cell: Cell, depth: list[int]) -> dict[int, tuple[float, float]]:
    """x by depth; within a column, order by the mean height of the predecessors, spread evenly."""
    preds: dict[int, list[int]] = {i: [] for i in range(len(depth))}
    for src, dst, _ in _edges(cell):
        preds[dst].append(src)
    columns: dict[int, list[int]] = {}
    for i, d in enumerate(depth):
        columns.setdefault(d, []).append(i)
    tallest = max(len(c) for c in columns.values())
    pos: dict[int, tuple[float, float]] = {}
    for d in sorted(columns):
        members = columns[d]

        def barycentre(i: int) -> tuple[float, int]:
            ys = [pos[p][1] for p in preds[i] if p in pos]
            return (-sum(ys) / len(ys) if ys else 0.0, i)

        if d > 0:
            members = sorted(members, key=barycentre)
        # Short columns spread out a little (towards the tallest one's height) so that edges
        # fanning between columns are steeper and their labels easier to tell apart.
        n = len(members)
        step = max(_DY, 0.8 * (tallest - 1) * _DY / (n - 1)) if n > 1 else 0.0
        for row, i in enumerate(members):
            pos[i] = (d * _DX, (n - 1) * step / 2 - row * step)
    return pos


def _bezier(p0, p2, rad: float, t: float) -> tuple[float, float]:
    """A point of matplotlib's arc3 curve (valid in data units because the axes aspect is equal)."""
    (x0, y0), (x2, y2) = p0, p2
    cx = (x0 + x2) / 2 + rad * (y2 - y0)
    cy = (y0 + y2) / 2 - rad * (x2 - x0)
    a, b, c = (1 - t) ** 2, 2 * (1 - t) * t, t**2
    return (a * x0 + b * cx + c * x2, a * y0 + b * cy + c * y2)


def _node_extent(i: int, n_states: int) -> tuple[float, float]:
    """Half width and half height of a node's shape."""
    if NUM_CELL_INPUTS <= i < n_states:
        return (_RADIUS, _RADIUS)
    return (_RECT_W / 2, _RECT_H / 2)


def _node_hits(p0, p2, rad, pos, skip, n_states, margin=0.12) -> int:
    """How many sample points of the curve pass through (or too near) nodes other than its ends."""
    hits = 0
    for t in [k / 32 for k in range(2, 31)]:
        x, y = _bezier(p0, p2, rad, t)
        for i, (nx, ny) in pos.items():
            if i in skip:
                continue
            hw, hh = _node_extent(i, n_states)
            if abs(x - nx) < hw + margin and abs(y - ny) < hh + margin:
                hits += 1
    return hits


@dataclass
class _Edge:
    src: int
    dst: int
    op: str | None
    rad: float = 0.0
    label_xy: tuple[float, float] | None = None


def _overlap(p0, p2, rad: float, others: list[list[tuple[float, float]]], near: float = 0.15) -> int:
    """How many sample points of the middle of the curve run along (within `near` of) an edge already routed.

    A crossing touches one or two samples; an edge laid over another touches many.
    """
    count = 0
    for t in [k / 20 for k in range(4, 17)]:
        x, y = _bezier(p0, p2, rad, t)
        if any(abs(x - ox) < near and abs(y - oy) < near for pts in others for ox, oy in pts):
            count += 1
    return count


def _route(cell: Cell, pos: dict[int, tuple[float, float]]) -> list[_Edge]:
    """Straight edges where they are clear; otherwise the least-curved arc that misses the nodes and does
    not run along an edge routed before it (op edges first, then the dashed concat edges).

    Two branches of one node that read the same input are bent apart (one each way).
    """
    n_states = NUM_CELL_INPUTS + cell.num_nodes
    edges = [_Edge(s, d, op) for s, d, op in _edges(cell)]
    seen: dict[tuple[int, int], int] = {}
    routed: list[list[tuple[float, float]]] = []
    for e in edges:
        key = (e.src, e.dst)
        twin = seen.get(key, 0)
        seen[key] = twin + 1
        bends = [k / 20 for k in range(1, 13)]  # 0.05 .. 0.6
        if twin == 0 and sum(1 for f in edges if (f.src, f.dst) == key) == 1:
            candidates = [0.0] + [r for b in bends for r in (b, -b)]
        else:
            sign = 1.0 if twin == 0 else -1.0
            candidates = [sign * b for b in bends if b >= 0.2]
        p0, p2 = pos[e.src], pos[e.dst]
        # First clear candidate (least bent); if none is clear, the one through the fewest nodes. Running
        # along another edge over a few samples (more than a crossing) counts next.
        scored = [
            (
                _node_hits(p0, p2, r, pos, {e.src, e.dst}, n_states),
                max(0, _overlap(p0, p2, r, routed) - 2),
                k,
            )
            for k, r in enumerate(candidates)
        ]
        e.rad = candidates[min(scored)[2]]
        routed.append([_bezier(p0, p2, e.rad, k / 40) for k in range(1, 40)])
    return edges


def _place_labels(edges: list[_Edge], pos, n_states: int) -> None:
    """Op names near the middle of their edge, slid along it to keep clear of each other.

    Each label picks a point of its own edge (t = 0.5 unless that is crowded); a few rounds of
    coordinate descent minimise overlaps with other labels, nodes and other edges.
    """
    char_w = 0.62 * _EDGE_FONT / 72 / _INCH
    half_h = 0.75 * _EDGE_FONT / 72 / _INCH
    labelled = [e for e in edges if e.op is not None]
    if not labelled:
        return
    samples = [[_bezier(pos[e.src], pos[e.dst], e.rad, k / 40) for k in range(1, 40)] for e in edges]
    options = (0.5, 0.42, 0.58, 0.35, 0.65, 0.28, 0.72, 0.22, 0.78)
    boxes = {
        id(e): [(*_bezier(pos[e.src], pos[e.dst], e.rad, t), len(e.op) * char_w / 2 + 0.04) for t in options]
        for e in labelled
    }
    own = {id(e): i for i, e in enumerate(edges)}
    fixed_cost = {}
    for e in labelled:
        costs = []
        for x, y, hw in boxes[id(e)]:
            cost = 0.0
            for i, (nx, ny) in pos.items():
                nhw, nhh = _node_extent(i, n_states)
                if abs(x - nx) < hw + nhw and abs(y - ny) < half_h + nhh:
                    cost += 100.0
            for j, pts in enumerate(samples):
                if j != own[id(e)] and any(abs(px - x) < hw and abs(py - y) < half_h + 0.02 for px, py in pts):
                    cost += 10.0
            costs.append(cost)
        fixed_cost[id(e)] = costs
    choice = {id(e): 0 for e in labelled}

    def cost(e: _Edge, k: int) -> float:
        x, y, hw = boxes[id(e)][k]
        total = fixed_cost[id(e)][k] + 8.0 * abs(options[k] - 0.5)
        for f in labelled:
            if f is e:
                continue
            fx, fy, fhw = boxes[id(f)][choice[id(f)]]
            if abs(x - fx) < hw + fhw and abs(y - fy) < 2 * half_h:
                total += 50.0
        return total

    for _ in range(6):
        changed = False
        for e in labelled:
            best = min(range(len(options)), key=lambda k: (cost(e, k), k))
            if best != choice[id(e)]:
                choice[id(e)] = best
                changed = True
        if not changed:
            break
    for e in labelled:
        x, y, _ = boxes[id(e)][choice[id(e)]]
        e.label_xy = (x, y)


# ---------------------------------------------------------------------------------------------
# Drawing


def _header_lines(subtitle: str | None, width_in: float) -> list[str]:
    """The subtitle (the cell's genotype string) broken between its nodes to fit `width_in` inches."""
    if not subtitle:
        return []
    max_chars = max(24, int(width_in * 72 / (0.62 * _SUBTITLE_FONT)))
    # break only between nodes: "-> cat[3, 4]" stays together
    words: list[str] = []
    for part in subtitle.split(" "):
        if words and (words[-1].endswith(",") or words[-1] == "->"):
            words[-1] += " " + part
        else:
            words.append(part)
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= max_chars:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def cell_figure(cell: Cell, title: str, subtitle: str | None = None) -> Any:
    """The matplotlib Figure of a cell (bare Agg canvas), titled `title` with `subtitle` (default: the
    cell's genotype string) beneath; `draw_cell` saves it."""
    cell.validate(title or "cell")
    if subtitle is None:
        subtitle = str(cell)
    depth = _depths(cell)
    pos = _positions(cell, depth)
    n_states = NUM_CELL_INPUTS + cell.num_nodes
    edges = _route(cell, pos)
    _place_labels(edges, pos, n_states)

    xs = [x for x, _ in pos.values()]
    ys = [y for _, y in pos.values()]
    pad_x, pad_y = _RECT_W / 2 + 0.3, 0.55
    # Arcs may bulge beyond the node rows; include their control region in the limits.
    for e in edges:
        for t in (0.25, 0.5, 0.75):
            x, y = _bezier(pos[e.src], pos[e.dst], e.rad, t)
            ys.append(y)
    x0, x1 = min(xs) - pad_x, max(xs) + pad_x
    y0, y1 = min(ys) - pad_y, max(ys) + pad_y
    width_in = (x1 - x0) * _INCH
    sub_lines = _header_lines(subtitle, width_in)
    # the header: title line, subtitle lines, a little air (inches)
    header = 0.12 + (_TITLE_FONT * 1.4 + len(sub_lines) * _SUBTITLE_FONT * 1.35) / 72 + 0.1
    height_in = (y1 - y0) * _INCH + header
    fig = Figure(figsize=(width_in, height_in), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, (y1 - y0) * _INCH / height_in))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.axis("off")
    top = 1 - 0.12 / height_in
    fig.text(0.5, top, title, ha="center", va="top", fontsize=_TITLE_FONT)
    if sub_lines:
        fig.text(
            0.5,
            top - _TITLE_FONT * 1.4 / 72 / height_in,
            "\n".join(sub_lines),
            ha="center",
            va="top",
            fontsize=_SUBTITLE_FONT,
            family="monospace",
            color="0.25",
            linespacing=1.25,
        )

    patches = {}
    for i, (x, y) in pos.items():
        if NUM_CELL_INPUTS <= i < n_states:
            patch = Circle((x, y), _RADIUS, fc=_COLORS["lightblue"], ec="black", lw=1.5, zorder=3)
        else:
            color = _COLORS["palegoldenrod" if i == n_states else "darkseagreen2"]
            patch = FancyBboxPatch(
                (x - _RECT_W / 2, y - _RECT_H / 2),
                _RECT_W,
                _RECT_H,
                boxstyle="round,pad=0,rounding_size=0.08",
                fc=color,
                ec="black",
                lw=1.5,
                zorder=3,
            )
        ax.add_patch(patch)
        patches[i] = patch
        ax.text(x, y, _display_label(i, n_states), ha="center", va="center", fontsize=_NODE_FONT, zorder=4)

    for e in edges:
        concat = e.op is None
        ax.annotate(
            "",
            xy=pos[e.dst],
            xytext=pos[e.src],
            arrowprops=dict(
                arrowstyle="-|>,head_length=0.5,head_width=0.25",
                connectionstyle=f"arc3,rad={e.rad:g}",
                patchA=patches[e.src],
                patchB=patches[e.dst],
                shrinkA=1,
                shrinkB=1,
                color="0.5" if concat else "black",
                linestyle="--" if concat else "-",
                lw=1.0,
            ),
            zorder=2,
        )
        if e.op is not None and e.label_xy is not None:
            ax.text(
                *e.label_xy,
                e.op,
                ha="center",
                va="center",
                fontsize=_EDGE_FONT,
                zorder=5,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85),
            )
    return fig


def draw_cell(cell: Cell, path: str | Path, title: str, subtitle: str | None = None) -> Path:
    """Renders `cell` to a PNG at `path` and its DOT source beside it (same stem, .dot).

    The picture is titled `title`, with `subtitle` (default: the cell's genotype string) beneath.
    """
    png = Path(path)
    if not png.suffix:
        png = png.with_suffix(".png")
    dot = cell_to_dot(cell, title)  # also validates the cell before anything is drawn
    fig = cell_figure(cell, title, subtitle)
    png.parent.mkdir(parents=True, exist_ok=True)
    png.with_suffix(".dot").write_text(dot)
    fig.savefig(png, format="png", dpi=_DPI)
    return png


def draw_genotype(genotype: MicroGenotype, out_dir: str | Path, prefix: str = "", tied: bool = False) -> list[Path]:
    """Draws the normal and reduction cells to out_dir/{prefix}normal.png and {prefix}reduce.png.

    `tied` (a space whose one cell serves as both): both pictures say so in their title, as
    `MicroSpace.describe` writes "cell (normal = reduce): ...".
    """
    out = Path(out_dir)
    paths = []
    for name, cell in genotype.cells.items():
        title = f"{prefix}cell (normal = reduce)" if tied else f"{prefix}{name}"
        paths.append(draw_cell(cell, out / f"{prefix}{name}.png", title))
    return paths
