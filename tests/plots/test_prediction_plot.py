"""The predicted-vs-measured scatter of model-based proposals."""

from __future__ import annotations

import matplotlib.image as mpimg

from naslab.archive import ArchiveRecord
from naslab.plots.prediction_plot import plot_predicted_vs_measured, prediction_figure, predictions
from tests.plots.figure_checks import assert_integer_ticks, assert_texts_inside, assert_tick_labels_apart


def record(i: int, score: float, extra: dict, error: str | None = None, genotype: int | None = None) -> ArchiveRecord:
    genotype_data = {"id": i if genotype is None else genotype}
    return ArchiveRecord(
        index=i, key=str(i), genotype=genotype_data, readable="", score=score, seed=0, error=error, extra=extra
    )


def test_only_records_with_a_prediction_are_plotted(tmp_path) -> None:
    records = [
        record(0, 0.5, {"channels": 4}),  # a random-pool architecture: no prediction
        record(1, 0.7, {"nao": {"generation": 1, "predicted": 0.65}}),
        record(2, 0.8, {"nao": {"generation": 2, "predicted": 0.9}}),
        record(3, 0.0, {"nao": {"generation": 2, "predicted": 0.9}}, error="nan loss"),
        record(4, 0.6, {"nao": {"generation": 1, "source": "random_fill"}}),
        record(5, 0.9, {"nao": {"generation": 1, "predicted": 0.65}}, genotype=1),  # re-scored later: not again
    ]
    assert predictions(records) == [(0.65, 0.7, 1), (0.9, 0.8, 2)]
    path = plot_predicted_vs_measured(records, tmp_path / "p.png", "nao")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert mpimg.imread(path).shape[1] > 400
    assert plot_predicted_vs_measured(records[:1], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def scattered(n: int, generations: int) -> list[ArchiveRecord]:
    return [
        record(
            i, 0.5 + 0.4 * ((i * 7) % 11) / 11, {"nao": {"generation": i % generations, "predicted": 0.4 + i / (2 * n)}}
        )
        for i in range(n)
    ]


def test_few_generations_get_a_legend_beside_the_points() -> None:
    fig = prediction_figure(predictions(scattered(30, 3)), "nao")
    ax = fig.axes[0]
    assert len(fig.axes) == 1  # no colour bar
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "generation 0",
        "generation 1",
        "generation 2",
        "predicted = measured",
    ]
    fig.canvas.draw()
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
    assert ax.get_title() == "nao: pairwise accuracy " + ax.get_title().split("accuracy ")[1]
    assert ax.get_title().endswith(", 30 architectures")
    assert_texts_inside(fig)


def test_many_generations_get_a_colour_bar_with_whole_generation_numbers() -> None:
    fig = prediction_figure(predictions(scattered(60, 20)), "nao")
    ax, bar = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["predicted = measured"]
    assert bar.get_ylabel() == "generation"
    assert_integer_ticks(bar.yaxis)
    fig.canvas.draw()
    labels = [t.get_text() for t in bar.get_yticklabels() if t.get_text()]
    assert labels and all(label.isdigit() and 0 <= int(label) < 20 for label in labels)
    assert_tick_labels_apart(bar.yaxis)
    assert_texts_inside(fig)


def test_one_prediction_has_no_pairwise_accuracy() -> None:
    fig = prediction_figure([(0.5, 0.6, 0)], "epnas")
    assert fig.axes[0].get_title() == "epnas: pairwise accuracy n/a, 1 architecture"


def test_no_predictions_write_no_picture(tmp_path, caplog) -> None:
    """A strategy that predicted nothing (random, REINFORCE) gets no empty scatter: None, no file, a log line."""
    with caplog.at_level("INFO", logger="naslab.plots.prediction_plot"):
        assert plot_predicted_vs_measured([record(0, 0.5, {"random": {}})], tmp_path / "p.png", "random") is None
    assert not (tmp_path / "p.png").exists()
    assert "no architecture carried a prediction" in caplog.text
