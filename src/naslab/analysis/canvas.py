"""Bare Agg figures (no pyplot state, safe in notebooks and threads): a blank diagram canvas, or one
plot's axes with the folder of its PNG made."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_axes(path: str | Path, figsize: tuple[float, float], dpi: int = 120) -> tuple[Path, Any, Any]:
    """(path, figure, axes) of a one-panel plot to be saved at `path`, whose folder now exists."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return path, fig, fig.add_subplot()


def diagram_axes(x0: float, x1: float, y0: float, y1: float, inch: float, dpi: int) -> tuple[Any, Any]:
    """(figure, axes) covering data box [x0, x1] x [y0, y1] at `inch` inches per unit, equal aspect, no axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=((x1 - x0) * inch, (y1 - y0) * inch), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax
