"""The search curve: each evaluated architecture's score and the best so far, in evaluation order.

The one picture that tells whether a search is still improving or has plateaued (and, across
strategies, which one finds good architectures with fewer evaluations).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from naslab.analysis.canvas import plot_axes
from naslab.archive import ArchiveRecord


def plot_search_curve(
    records: Sequence[ArchiveRecord],
    path: str | Path,
    title: str = "search",
    xlabel: str = "architectures evaluated",
) -> Path:
    """Writes a PNG of scores (dots; failed trials as red crosses) and the best-so-far line.

    DARTS archives one derivation per epoch, so its curve is drawn against search epochs (`xlabel`).
    """
    path, fig, ax = plot_axes(path, (6.4, 3.6))
    ok = [(i, r.score) for i, r in enumerate(records) if r.error is None]
    failed = [i for i, r in enumerate(records) if r.error is not None]
    if ok:
        ax.scatter(*zip(*ok), s=14, color="tab:blue", alpha=0.6, label="architecture")
    if failed:
        ax.scatter(failed, [0.0] * len(failed), marker="x", color="tab:red", label="failed trial")
    best, curve = float("-inf"), []
    for r in records:
        if r.error is None:
            best = max(best, r.score)
        curve.append(best if best > float("-inf") else None)
    steps = [(i, b) for i, b in enumerate(curve) if b is not None]
    if steps:
        ax.step(*zip(*steps), where="post", color="tab:orange", label="best so far")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation score")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path
