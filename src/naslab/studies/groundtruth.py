"""`mode=groundtruth`: every architecture of an enumerable space, trained stand-alone for several seeds.

This is the "without weight sharing" ground truth of the search-phase study (arXiv:1902.08142, Sec. 4.2: all
32 cells of the 2-node space, 10 seeds each, the mean as the architecture's true quality). Trials run
through the configured evaluator and its backend (local, process pool or Ray), one evaluator per seed
(the seed fixes the child's initialisation and batch order). Each finished trial is appended to
`groundtruth.jsonl` at once (the archive format, `evaluators.table`), so a killed build resumes with
`resume=true` and trains only what is missing. At the end the table is written as `groundtruth.md` and
`groundtruth.csv`, best mean first; `evaluator=table evaluator.path=<run dir>/groundtruth.jsonl` then
answers searches from it.

`groundtruth.levels=true` also measures the partial architectures of a progressive space (the cells of
fewer blocks that EPNAS / PNAS train on their way up, `Progressive.expand`), so that those strategies can
search the table too. They are marked `partial` in the table: looked up, but never ranked.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from naslab.archive import Archive
from naslab.errors import ConfigError
from naslab.evaluators.base import Evaluator
from naslab.evaluators.table import ResultTable, trial_key
from naslab.search.ask_tell import evaluation_record
from naslab.spaces.base import Progressive, Space

log = logging.getLogger(__name__)
TABLE_FILE = "groundtruth.jsonl"


def distinct_architectures(space: Space[Any], genotypes: Iterable[Any]) -> list[Any]:
    """One genotype per architecture key (the space's symmetry classes), in first-seen order."""
    seen: dict[str, Any] = {}
    for g in genotypes:
        seen.setdefault(space.key(g), g)
    return list(seen.values())


def lower_levels(space: Space[Any]) -> list[Any]:
    """Every partial architecture of a progressive space: levels 1 .. max_level - 1, one per key."""
    if not isinstance(space, Progressive):
        raise ConfigError(
            f"groundtruth.levels=true needs a progressive space (micro, macro); {space.name} has no levels"
        )
    found: list[Any] = []
    frontier = space.expand(None)
    while frontier and space.level(frontier[0]) < space.max_level():
        found += frontier
        frontier = distinct_architectures(space, (child for parent in frontier for child in space.expand(parent)))
    return distinct_architectures(space, found)


def build_ground_truth(
    space: Space[Any],
    make_evaluator: Callable[[int], Evaluator[Any]],
    seeds: Sequence[int],
    run_dir: str | Path,
    resume: bool = False,
    genotypes: Iterable[Any] | None = None,
    levels: bool = False,
    sample: int | None = None,
) -> ResultTable:
    """Trains each architecture (default: `space.enumerate()`) once per seed; returns the table.

    `levels`: also the partial architectures of the lower progressive levels (`lower_levels`).
    `sample`: only that many architectures, drawn uniformly without replacement (seed 0), e.g. to
    measure a sample at a higher budget and compare its ranking with the table's.
    """
    if not seeds:
        raise ValueError("groundtruth.seeds must list at least one seed")
    run_dir = Path(run_dir)
    archive = Archive(run_dir / TABLE_FILE, resume=resume)
    every = distinct_architectures(space, space.enumerate() if genotypes is None else genotypes)
    lower = lower_levels(space) if levels else []
    partial = {space.key(g) for g in lower}
    every = distinct_architectures(space, [*every, *lower])
    if sample is not None:
        if not 1 <= sample <= len(every):
            raise ValueError(f"groundtruth.sample must be in 1..{len(every)} (the architectures), got {sample}")
        every = [every[i] for i in sorted(np.random.default_rng(0).choice(len(every), sample, replace=False))]
    total = len(every) * len(seeds)
    log.info(
        "ground truth: %d architectures x %d seeds = %d trials (%d done)", len(every), len(seeds), total, len(archive)
    )
    start = time.perf_counter()
    with Progress(TextColumn("[bold]ground truth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as progress:
        bar = progress.add_task("trials", total=total, completed=len(archive))
        for seed in seeds:
            todo = [g for g in every if trial_key(seed, space.key(g)) not in archive]
            if not todo:
                continue
            evaluator = make_evaluator(seed)
            try:
                for i, evaluation in evaluator.evaluate_each(todo):
                    architecture = space.key(todo[i])
                    key = trial_key(seed, architecture)
                    record = evaluation_record(space, todo[i], key, len(archive), seed, evaluation)
                    if architecture in partial:
                        record.extra["partial"] = True  # a lower progressive level: looked up, never ranked
                    archive.append(record)
                    progress.update(bar, completed=len(archive))
            finally:
                evaluator.close()
    table = ResultTable.from_records(archive.records, str(archive.path))
    (run_dir / "groundtruth.md").write_text(table.to_markdown())
    (run_dir / "groundtruth.csv").write_text(table.to_csv())
    log.info("ground truth: %d trials in %.1f s, table in %s", len(archive), time.perf_counter() - start, run_dir)
    return table
