"""The search curve picture."""

from __future__ import annotations

import matplotlib.image as mpimg
import matplotlib.pyplot as plt

from naslab.analysis import plot_search_curve
from naslab.archive import ArchiveRecord


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
