"""What a progressive search (EPNAS / PNAS) measured at each level, as a table and a picture.

The question a progressive run raises is whether growing from the best partial architectures pays:
do the levels' measured scores climb, does each new progression (a lower temperature, a better
surrogate) start from better architectures than the last? One point per measured architecture,
its level on the x axis, one colour per progression, and the level's best joined by a line answer
it at a glance; the table lists the sampled set of every level with its prediction.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import matplotlib

from naslab.archive import ArchiveRecord
from naslab.plots.canvas import LABEL_FONT, LEGEND_FONT, TITLE_FONT, integer_ticks, new_plot, save

log = logging.getLogger(__name__)

COLUMNS = ("iteration", "level", "temperature", "predicted", "score", "genotype")


def progression_rows(records: Sequence[ArchiveRecord]) -> list[tuple[Any, ...]]:
    """(iteration, level, temperature, predicted or None, score, readable genotype) of every architecture a
    progressive strategy sampled and had measured, in archive order.

    Progressive strategies store `{"level", "iteration", ...}` under their name in `extra`; the final
    re-scoring of weight sharing (`extra["derive"]`) and failed trials are not part of a level.
    """
    rows = []
    for record in records:
        if record.error is not None or record.extra.get("derive"):
            continue
        for info in record.extra.values():
            if isinstance(info, dict) and "level" in info and "iteration" in info:
                rows.append(
                    (
                        int(info["iteration"]),
                        int(info["level"]),
                        float(info.get("temperature", float("nan"))),
                        info.get("predicted"),
                        record.score,
                        record.readable,
                    )
                )
                break
    return rows


def progression_figure(rows: Sequence[tuple[Any, ...]], title: str = "") -> Any:
    """The per-level Figure (bare Agg canvas) of `progression_rows` (not empty)."""
    fig, ax = new_plot((7.0, 4.4))
    iterations = sorted({row[0] for row in rows})
    colours = matplotlib.colormaps["viridis"]
    width = 0.6 / max(1, len(iterations))
    for i, iteration in enumerate(iterations):
        mine = [row for row in rows if row[0] == iteration]
        colour = colours(i / max(1, len(iterations) - 1))
        offset = (i - (len(iterations) - 1) / 2) * width  # side by side within a level
        ax.scatter([r[1] + offset for r in mine], [r[4] for r in mine], s=12, alpha=0.6, color=colour)
        levels = sorted({r[1] for r in mine})
        best = [max(r[4] for r in mine if r[1] == level) for level in levels]
        temperature = mine[0][2]
        ax.plot(
            [lv + offset for lv in levels],
            best,
            color=colour,
            marker="o",
            markersize=4,
            linewidth=1.2,
            label=f"progression {iteration} (tau {temperature:.2g})",
        )
    ax.set_xlabel("level (layers or blocks)", fontsize=LABEL_FONT)
    ax.set_ylabel("measured score", fontsize=LABEL_FONT)
    levels = sorted({row[1] for row in rows})
    ax.set_xlim(levels[0] - 0.5, levels[-1] + 0.5)
    integer_ticks(ax.xaxis)  # levels are whole numbers; many levels get a readable subset of them
    ax.set_title(title or "progressive search: measured score per level", fontsize=TITLE_FONT)
    ax.grid(alpha=0.3)
    ax.legend(
        title="dots: every architecture\nline: each level's best",
        title_fontsize=LEGEND_FONT,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=LEGEND_FONT,
        borderaxespad=0,
    )
    return fig


def plot_progression(records: Sequence[ArchiveRecord], path: str | Path, title: str = "") -> Path | None:
    """Writes the measured score of every sampled architecture by level, one colour per progression,
    with each level's best joined; None (and no file) when no record came from a progressive strategy."""
    rows = progression_rows(records)
    if not rows:
        log.info("no architecture came from a progressive strategy: %s not drawn", Path(path).name)
        return None
    return save(progression_figure(rows, title), path)
