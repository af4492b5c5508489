"""The search curve picture."""

from __future__ import annotations

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import pytest

from naslab.archive import ArchiveRecord
from naslab.plots import plot_search_curve
from naslab.plots.search_plot import search_curve_figure
from tests.plots.figure_checks import (
    assert_integer_ticks,
    assert_texts_inside,
    assert_tick_labels_apart,
    visible_ticks,
)


def record(i: int, score: float, error: str | None = None) -> ArchiveRecord:
    return ArchiveRecord(index=i, key=str(i), genotype={}, readable=str(i), score=score, seed=0, error=error)


def test_search_curve_png(tmp_path) -> None:
    records = [record(0, 0.5), record(1, 0.0, "nan loss"), record(2, 0.7), record(3, 0.6)]
    path = plot_search_curve(records, tmp_path / "curves" / "search.png", "random")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = mpimg.imread(path).shape[:2]
    assert width > 600 and height > 300
    assert plt.get_fignums() == []


def test_search_curve_of_only_failures(tmp_path) -> None:
    assert plot_search_curve([record(0, 0.0, "nan")], tmp_path / "s.png").exists()


def test_x_counts_evaluations_from_one_with_whole_number_ticks() -> None:
    """Two architectures: ticks at 1 and 2, not 0.0, 0.2, ... 1.0."""
    fig = search_curve_figure([record(0, 0.5), record(1, 0.7)], "nao", "architectures evaluated")
    ax = fig.axes[0]
    assert_integer_ticks(ax.xaxis)
    assert visible_ticks(ax.xaxis) == [1.0, 2.0]
    points = ax.collections[0].get_offsets()
    assert [tuple(p) for p in points] == [(1.0, 0.5), (2.0, 0.7)]
    assert_texts_inside(fig)
    assert_tick_labels_apart(ax.xaxis)


@pytest.mark.parametrize("n", [3, 7, 40, 300])
def test_whole_number_ticks_for_any_length(n: int) -> None:
    fig = search_curve_figure([record(i, (i % 7) / 10) for i in range(n)], "random", "search epoch")
    assert_integer_ticks(fig.axes[0].xaxis)
    assert_tick_labels_apart(fig.axes[0].xaxis)
    assert_texts_inside(fig)


def test_legend_sits_beside_the_points() -> None:
    fig = search_curve_figure([record(i, i / 10) for i in range(10)], "random")
    ax = fig.axes[0]
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # outside the axes: no point hidden behind it


@pytest.mark.parametrize(
    ("records", "note"),
    [([], "no architectures evaluated"), ([record(0, 0.0, "nan"), record(1, 0.0, "oom")], "all 2 trials failed")],
)
def test_a_curve_without_scores_says_why(tmp_path, records, note) -> None:
    fig = search_curve_figure(records, "random")
    assert note in [t.get_text() for t in fig.axes[0].texts]
    assert plot_search_curve(records, tmp_path / "s.png").exists()
