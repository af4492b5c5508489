"""Checks on drawn matplotlib figures, through their artists (not pixels): what a reader can read."""

from __future__ import annotations

from typing import Any

from matplotlib.text import Annotation, Text


def _undrawn_tick_labels(fig: Any) -> set[int]:
    """ids of the tick labels matplotlib keeps for ticks outside the view limits (it does not draw them)."""
    hidden = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - 1e-9 <= tick.get_loc() <= high + 1e-9:
                    hidden |= {id(tick.label1), id(tick.label2)}
    return hidden


def drawn_texts(fig: Any) -> list[Text]:
    """Every visible, non-empty text of `fig` after a draw (tick labels, titles, legends, labels)."""
    fig.canvas.draw()
    hidden = _undrawn_tick_labels(fig)
    return [
        t
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and not isinstance(t, Annotation) and id(t) not in hidden
    ]


def assert_texts_inside(fig: Any, slack: float = 1.0) -> None:
    """No text is clipped by the figure's edge."""
    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    for t in drawn_texts(fig):
        box = t.get_window_extent(renderer)
        assert box.x0 >= -slack and box.y0 >= -slack, (t.get_text(), box)
        assert box.x1 <= width + slack and box.y1 <= height + slack, (t.get_text(), box, width, height)


def assert_tick_labels_apart(axis: Any) -> None:
    """The axis's visible tick labels do not overlap each other."""
    fig = axis.axes.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    low, high = sorted(axis.get_view_interval())
    labels = [tick.label1 for tick in axis.get_major_ticks() if low - 1e-9 <= tick.get_loc() <= high + 1e-9]
    boxes = [t.get_window_extent(renderer) for t in labels if t.get_visible() and t.get_text()]
    for a, b in zip(boxes, boxes[1:]):
        assert not a.overlaps(b), (a, b)


def visible_ticks(axis: Any) -> list[float]:
    """Tick positions inside the axis's view limits, after a draw."""
    axis.axes.figure.canvas.draw()
    low, high = sorted(axis.get_view_interval())
    return [v for v in axis.get_majorticklocs() if low - 1e-9 <= v <= high + 1e-9]


def assert_integer_ticks(axis: Any) -> None:
    ticks = visible_ticks(axis)
    assert ticks, "no ticks"
    assert all(float(v).is_integer() for v in ticks), ticks
