"""The per-level table and picture of a progressive search (EPNAS / PNAS)."""

from __future__ import annotations

import matplotlib.image as mpimg
import pytest

from naslab.archive import ArchiveRecord
from naslab.plots.progression_plot import plot_progression, progression_figure, progression_rows
from tests.plots.figure_checks import (
    assert_integer_ticks,
    assert_texts_inside,
    assert_tick_labels_apart,
    visible_ticks,
)


def record(i: int, score: float, extra: dict, error: str | None = None) -> ArchiveRecord:
    return ArchiveRecord(
        index=i, key=str(i), genotype={"id": i}, readable=f"g{i}", score=score, seed=0, error=error, extra=extra
    )


def info(iteration: int, level: int, predicted: float | None = None) -> dict:
    out = {"iteration": iteration, "level": level, "temperature": 5.0 if iteration == 0 else 3.0}
    return out | ({"predicted": predicted} if predicted is not None else {})


def test_rows_list_each_levels_sampled_set_and_skip_derivations_and_failures(tmp_path) -> None:
    records = [
        record(0, 0.5, {"epnas": info(0, 1, 0.4)}),
        record(1, 0.6, {"epoch": 2, "epnas": info(0, 2, 0.55)}),  # weight sharing adds its own keys beside
        record(2, 0.0, {"epnas": info(0, 2, 0.5)}, error="nan loss"),
        record(3, 0.7, {"derive": True, "epnas": info(1, 2)}),  # the final re-scoring: not part of a level
        record(4, 0.65, {"pnas": info(1, 1)}),
        record(5, 0.9, {"nao": {"generation": 1, "predicted": 0.8}}),  # not a progressive strategy
    ]
    assert progression_rows(records) == [
        (0, 1, 5.0, 0.4, 0.5, "g0"),
        (0, 2, 5.0, 0.55, 0.6, "g1"),
        (1, 1, 3.0, None, 0.65, "g4"),
    ]
    path = plot_progression(records, tmp_path / "progression.png", "epnas")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert mpimg.imread(path).shape[1] > 500
    assert plot_progression(records[5:], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def levels_of(iterations: int, levels: int) -> list[tuple]:
    return [
        (it, lv, 5.0 / (it + 1), None, 0.1 * lv + 0.01 * k, f"g{it}{lv}{k}")
        for it in range(iterations)
        for lv in range(1, levels + 1)
        for k in range(3)
    ]


@pytest.mark.parametrize(("iterations", "levels"), [(1, 2), (3, 5), (2, 24)])
def test_levels_are_whole_numbers_and_the_legend_hides_no_point(iterations, levels) -> None:
    fig = progression_figure(levels_of(iterations, levels), "epnas")
    ax = fig.axes[0]
    assert_integer_ticks(ax.xaxis)
    assert set(visible_ticks(ax.xaxis)) <= set(range(1, levels + 1))
    assert_tick_labels_apart(ax.xaxis)
    fig.canvas.draw()
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
    assert len(ax.get_legend().get_texts()) == iterations
    assert_texts_inside(fig)


def test_no_progressive_records_write_no_picture(tmp_path, caplog) -> None:
    with caplog.at_level("INFO", logger="naslab.plots.progression_plot"):
        assert plot_progression([record(0, 0.5, {"nao": {"predicted": 0.4}})], tmp_path / "p.png") is None
    assert not (tmp_path / "p.png").exists()
    assert "not drawn" in caplog.text
