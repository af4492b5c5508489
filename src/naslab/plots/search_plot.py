"""The search curve: each evaluated architecture's score and the best so far, in evaluation order.

The one picture that tells whether a search is still improving or has plateaued (and, across
strategies, which one finds good architectures with fewer evaluations).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from naslab.archive import ArchiveRecord
from naslab.plots.canvas import LABEL_FONT, LEGEND_FONT, TITLE_FONT, integer_ticks, new_plot, no_data_note, save


def search_curve_figure(
    records: Sequence[ArchiveRecord], title: str = "search", xlabel: str = "architectures evaluated"
) -> Any:
    """The search curve's Figure (bare Agg canvas). x counts from 1: the n-th evaluation is drawn at n."""
    fig, ax = new_plot((7.0, 3.8))
    ok = [(i + 1, r.score) for i, r in enumerate(records) if r.error is None]
    failed = [i + 1 for i, r in enumerate(records) if r.error is not None]
    if ok:
        ax.scatter(*zip(*ok), s=14, color="tab:blue", alpha=0.6, label="architecture")
    if failed:
        ax.scatter(failed, [0.0] * len(failed), marker="x", color="tab:red", label="failed trial (at 0)")
    best, curve = float("-inf"), []
    for r in records:
        if r.error is None:
            best = max(best, r.score)
        curve.append(best if best > float("-inf") else None)
    steps = [(i + 1, b) for i, b in enumerate(curve) if b is not None]
    if steps:
        ax.step(*zip(*steps), where="post", color="tab:orange", label="best so far")
    if not records:
        no_data_note(ax, "no architectures evaluated", y=0.5)
    elif not ok:
        no_data_note(ax, f"all {len(records)} trials failed")
    integer_ticks(ax.xaxis)
    if records:
        ax.set_xlim(0.5, len(records) + 0.5)
    ax.set_xlabel(xlabel, fontsize=LABEL_FONT)
    ax.set_ylabel("validation score", fontsize=LABEL_FONT)
    ax.set_title(title, fontsize=TITLE_FONT)
    ax.grid(alpha=0.3)
    if ok or failed:  # beside the axes, where it hides no point
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=LEGEND_FONT, borderaxespad=0)
    return fig


def plot_search_curve(
    records: Sequence[ArchiveRecord],
    path: str | Path,
    title: str = "search",
    xlabel: str = "architectures evaluated",
) -> Path:
    """Writes a PNG of scores (dots; failed trials as red crosses) and the best-so-far line.

    The n-th record is drawn at x = n (whole-number ticks). DARTS archives one derivation per epoch, so
    its curve is drawn against search epochs (`xlabel`). An empty archive or one of failures only
    still gets its picture, saying so.
    """
    return save(search_curve_figure(records, title, xlabel), path)
