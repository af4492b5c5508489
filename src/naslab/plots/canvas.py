"""Bare Agg figures (no pyplot state, safe in notebooks and threads): a blank diagram canvas, or one
plot's axes with the folder of its PNG made; and the small helpers every plot shares (integer ticks,
a note in place of missing data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Font sizes of plots saved at 120 dpi and looked at without zooming in.
TITLE_FONT = 11
LABEL_FONT = 10
TICK_FONT = 9
LEGEND_FONT = 8


def new_plot(figsize: tuple[float, float], dpi: int = 120, layout: str | None = "constrained") -> tuple[Any, Any]:
    """(figure, axes) of a one-panel plot on a bare Agg canvas, ticks at a readable size.

    The default `layout="constrained"` lets matplotlib fit labels, titles and an outside legend into
    the figure (no `tight_layout` needed).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.tick_params(labelsize=TICK_FONT)
    return fig, ax


def plot_axes(
    path: str | Path, figsize: tuple[float, float], dpi: int = 120, layout: str | None = None
) -> tuple[Path, Any, Any]:
    """(path, figure, axes) of a one-panel plot to be saved at `path`, whose folder now exists."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = new_plot(figsize, dpi, layout)
    return path, fig, ax


def save(fig: Any, path: str | Path) -> Path:
    """Saves `fig` as `path` (its folder made); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def integer_ticks(axis: Any) -> None:
    """Ticks of an axis that counts (architectures, epochs, levels, ranks) only at whole numbers."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def no_data_note(ax: Any, text: str, y: float = 0.75) -> None:
    """Writes `text` across an axes that has nothing (or nothing scored) to show, so the plot says why;
    `y` in axes fractions (above the middle, where a row of failed trials at 0 would sit)."""
    ax.text(
        0.5,
        y,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=LABEL_FONT,
        color="0.3",
        bbox=dict(boxstyle="round,pad=0.4", fc="white", ec="0.6"),
    )


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
