"""Heatmaps of DARTS architecture weights: softmax(alpha) per edge, one panel per cell type.

DARTS derives the genotype from these weights alone: on every edge it keeps the strongest op
that is not `none`, and for every node it keeps the two strongest incoming edges. Drawing the
weights after each epoch shows how that decision forms, and whether `none` or `skip_connect`
come to dominate the rows, a known DARTS failure that yields parameter-free, poor cells.

The colour scale is fixed to [0, 1] so pictures of different epochs can be compared directly.
Each row's maximum is boxed; small grids also get the values written in the cells. Rows are named
in the numbering of the genotype strings (`Space.describe`): the supernets' edge names, "c_{k-1} ->
node 0" (micro: intermediate nodes counted from 0) and "1<-0" (recurrent), are shown as "1 (c_{k-1})
-> 2" and "0 -> 1", so a row reads like the branch `op(1)` of node `2=...` in the derived genotype.
Drawing uses a bare `Figure` on the Agg canvas: no pyplot state, safe headless and in threads.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

__all__ = ["alpha_figure", "plot_alpha_heatmaps", "readable_edge_label", "softmax_rows"]

# Grids up to this size get each cell's value written in it; larger ones would be unreadable.
ANNOTATE_MAX_ROWS = 20
ANNOTATE_MAX_COLS = 10

_CELL_INPUTS = ("c_{k-2}", "c_{k-1}")  # states 0 and 1 of a micro cell
_MICRO_EDGE = re.compile(r"^(c_\{k-2\}|c_\{k-1\}|node (\d+)) -> node (\d+)$")
_RNN_EDGE = re.compile(r"^(\d+)\s*<-\s*(\d+)$")


def readable_edge_label(label: str) -> str:
    """A supernet's edge name in the genotype strings' state numbers; other names are returned as they are.

    Micro cells (`micro.mixed.edge_label`): "c_{k-2} -> node 0" -> "0 ($c_{k-2}$) → 2", "node 0 -> node 3" ->
    "2 → 5" (the cell inputs are states 0 and 1, intermediate node k is state k + 2, as in `2=op(0)+op(1)`).
    Recurrent cells (`rnn_mixed`): "3<-1" (node 3 reads node 1) -> "1 → 3", as in `tanh(1)` at node 3.
    """
    micro = _MICRO_EDGE.match(label)
    if micro:
        source, node, target = micro.groups()
        if node is None:
            index = _CELL_INPUTS.index(source)
            source = f"{index} (${source}$)"
        else:
            source = str(int(node) + len(_CELL_INPUTS))
        return f"{source} \u2192 {int(target) + len(_CELL_INPUTS)}"
    rnn = _RNN_EDGE.match(label)
    if rnn:
        target, source = rnn.groups()
        return f"{source} \u2192 {target}"
    return label


def _as_float64(alpha: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(alpha, torch.Tensor):
        return alpha.detach().to(device="cpu", dtype=torch.float64).numpy()
    return np.asarray(alpha, dtype=np.float64)


def softmax_rows(alphas: torch.Tensor | np.ndarray) -> np.ndarray:
    """Softmax over the last axis of a 2-D array of logits, computed in float64; each row sums to 1."""
    logits = _as_float64(alphas)
    if logits.ndim != 2:
        raise ValueError(f"alphas must be 2-D (edges x ops), got shape {tuple(logits.shape)}")
    shifted = logits - logits.max(axis=1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=1, keepdims=True)


def alpha_figure(
    alphas: Mapping[str, torch.Tensor | np.ndarray],
    row_labels: Mapping[str, Sequence[str]],
    op_names: Sequence[str],
    title: str = "architecture weights",
) -> Figure:
    """The Figure (bare Agg canvas) of `plot_alpha_heatmaps`; ValueError for inconsistent inputs."""
    if not alphas:
        raise ValueError("alphas is empty: nothing to plot")
    op_names = list(op_names)
    panels: list[tuple[str, np.ndarray, list[str]]] = []
    for name, alpha in alphas.items():
        try:
            weights = softmax_rows(alpha)
        except ValueError as e:
            raise ValueError(f"{name!r}: {e}") from None
        if name not in row_labels:
            raise ValueError(f"no row labels for {name!r}")
        labels = [readable_edge_label(str(label)) for label in row_labels[name]]
        if len(labels) != weights.shape[0]:
            raise ValueError(f"{name!r} has {weights.shape[0]} rows but {len(labels)} row labels")
        if len(op_names) != weights.shape[1]:
            raise ValueError(f"{name!r} has {weights.shape[1]} columns but {len(op_names)} op names")
        panels.append((name, weights, labels))

    n_rows = max(w.shape[0] for _, w, _ in panels)
    n_cols = len(op_names)
    panel_width = max(3.2, 0.55 * n_cols + 1.8)  # room for the longest edge labels on the left
    width = len(panels) * panel_width + 1.0
    fig = Figure(figsize=(width, max(3.0, 0.32 * n_rows + 2.2)), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)  # a bare Agg figure: no pyplot state, safe in notebooks and threads
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    image = None
    for k, (ax, (name, weights, labels)) in enumerate(zip(axes, panels)):
        rows, cols = weights.shape
        image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(cols), op_names, rotation=45, ha="right", rotation_mode="anchor", fontsize=9)
        ax.set_yticks(range(rows), labels, fontsize=9)
        ax.set_title(name, fontsize=10)
        if k == 0:
            ax.set_ylabel("edge: input state \u2192 node", fontsize=9)
        best = weights.argmax(axis=1)
        for r, c in enumerate(best):
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1.0, 1.0, fill=False, edgecolor="red", linewidth=1.5))
        if rows <= ANNOTATE_MAX_ROWS and cols <= ANNOTATE_MAX_COLS:
            for r in range(rows):
                for c in range(cols):
                    value = weights[r, c]
                    color = "black" if value > 0.6 else "white"  # readable on viridis' dark and light ends
                    ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(image, ax=list(axes), label="softmax(alpha)", fraction=0.05)
    # Wrapped to the figure's width: a one-panel figure is narrower than a long title.
    max_chars = max(20, int(width * 72 / (0.6 * 11)))
    note = "(box: row maximum)"
    if len(title) + 2 + len(note) <= max_chars:
        suptitle = f"{title}  {note}"
    else:
        suptitle = textwrap.fill(title, width=max_chars) + "\n" + note
    fig.suptitle(suptitle, fontsize=11)
    return fig


def plot_alpha_heatmaps(
    alphas: Mapping[str, torch.Tensor | np.ndarray],
    row_labels: Mapping[str, Sequence[str]],
    op_names: Sequence[str],
    path: str | Path,
    title: str = "architecture weights",
) -> Path:
    """Writes a PNG with one softmax(alpha) heatmap per entry of `alphas`, side by side, sharing a [0, 1] colorbar.

    Rows are named by `readable_edge_label` (the genotype strings' numbering); nothing is written when the
    inputs are inconsistent (ValueError).
    """
    fig = alpha_figure(alphas, row_labels, op_names, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
