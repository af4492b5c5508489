"""The predicted-vs-measured scatter of model-based proposals."""

from __future__ import annotations

import matplotlib.image as mpimg

from naslab.analysis.prediction_plot import plot_predicted_vs_measured, predictions
from naslab.archive import ArchiveRecord


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
