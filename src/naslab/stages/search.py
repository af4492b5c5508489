"""The search stage: the configured search run, its pictures and tables, and results.json's `search` block."""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig

from naslab.loggers import log_images, log_table
from naslab.plots.prediction_plot import plot_predicted_vs_measured
from naslab.plots.progression_plot import COLUMNS as PROGRESSION_COLUMNS
from naslab.plots.progression_plot import plot_progression, progression_rows
from naslab.plots.search_plot import plot_search_curve
from naslab.rank_agreement import SHARED_RANKING_FILE, write_shared_ranking
from naslab.search import search_class
from naslab.search.base import Search, SearchResult
from naslab.spaces.base import Space
from naslab.stages.build import (
    build,
    build_evaluator,
    datamodule,
    datamodule_factory,
    evaluator_class,
    run_search_kind,
    task_of,
)
from naslab.studies.groundtruth import distinct_architectures
from naslab.train.objectives import reward_perplexity

log = logging.getLogger(__name__)


def build_search(cfg: DictConfig, space: Space[Any], trainer_factory: Any) -> tuple[Search[Any], Any]:
    """(the run's Search, its strategy), chosen by `run_search_kind` from the configured classes."""
    kind = run_search_kind(cfg)
    strategy = build(cfg.strategy, "strategy", space=space)
    cls = search_class(kind)
    if kind == "gradient":  # DARTS: its own relaxed supernet stands in for the evaluator
        log.info("strategy=%s trains its own supernet; evaluator=%s is not used", strategy.name, cfg.evaluator._target_)
        task = task_of(cfg, datamodule(cfg, "search"))
        return cls(space, strategy, task, datamodule_factory(cfg, "search"), trainer_factory), strategy
    # A table or planted evaluator needs no data: such searches run where the data is not.
    task = task_of(cfg, datamodule(cfg, "search")) if evaluator_class(cfg).needs_data else None
    evaluator = build_evaluator(cfg, space, task, trainer_factory)
    if kind == "shared":
        return cls(space, strategy, evaluator), strategy
    search = cls(
        space,
        strategy,
        evaluator,
        num_architectures=cfg.search.num_architectures,
        batch_size=cfg.search.batch_size,
        seed=int(cfg.seed),
    )
    return search, strategy


def run_search_stage(
    cfg: DictConfig, space: Space[Any], trainer_factory: Any, run_dir: Path, logger: Any, results: dict[str, Any]
) -> Any:
    """Runs the search, draws and logs it, fills `results["search"]`; returns the chosen genotype."""
    search, strategy = build_search(cfg, space, trainer_factory)
    results["strategy"] = strategy.name
    try:
        outcome = search.run(run_dir, resume=bool(cfg.resume), logger=logger)
    finally:
        search.close()  # process pools and Ray instances end with the search
    if search.kind == "gradient":
        method, xlabel = strategy.name, "search epoch (one derived genotype each)"
    else:
        results["evaluator"] = evaluator_class(cfg).name
        method, xlabel = f"{strategy.name} + {results['evaluator']}", "architectures evaluated"
    records = outcome.archive.records
    curve = plot_search_curve(records, run_dir / "search_curve.png", f"{method} on {cfg.dataset.name}", xlabel)
    scatter = plot_predicted_vs_measured(records, run_dir / "predicted_vs_measured.png", strategy.name)
    progression = plot_progression(records, run_dir / "progression.png", f"{method} on {cfg.dataset.name}")
    log_images(logger, "search", [curve] + [p for p in (scatter, progression) if p])
    columns = ("index", "score", "params", "wall_seconds", "error", "genotype")
    log_table(
        logger,
        "search/archive",
        columns,
        [(r.index, r.score, r.params, r.wall_seconds, r.error, r.readable) for r in records],
    )
    if progression:  # EPNAS / PNAS: the sampled set of every level, with its predictions
        log_table(logger, "search/levels", PROGRESSION_COLUMNS, progression_rows(records))
    results["search"] = {
        "best_score": outcome.best_score,
        "num_evaluated": outcome.num_evaluated,
        "wall_seconds": outcome.wall_seconds,
    }
    if cfg.dataset.stem == "text":  # scores are 80 / validation perplexity (ENAS' reward); say the perplexity too
        results["search"]["best_perplexity"] = reward_perplexity(outcome.best_score)
    results["search"]["budget"] = budget(cfg, search)
    provenance = proposal_provenance(records, outcome.best_score)
    if provenance:
        results["search"]["provenance"] = provenance
    if cfg.search.get("rank_all"):
        results["search"]["shared_ranking"] = rank_all(cfg, space, outcome, run_dir)
    log.info(
        "search: best validation score %.4f over %d architectures in %.1f s",
        outcome.best_score,
        outcome.num_evaluated,
        outcome.wall_seconds,
    )
    return outcome.best_genotype


def proposal_provenance(records: Sequence[Any], best_score: float) -> dict[str, Any] | None:
    """Where the evaluated architectures came from, for strategies that say so (NAO: the random pool,
    gradient ascent, random fill; evolution: random, mutation): counts per source and the best one's source
    and generation. None when no record names a source."""
    sources = [proposal_info(r.extra).get("source") for r in records]
    if not any(sources):
        return None
    best = next(r for r in records if r.score == best_score and r.error is None)
    info = proposal_info(best.extra)
    return {
        "counts": dict(Counter(s or "initial random" for s in sources)),
        "best_source": info.get("source") or "initial random",
        "best_generation": info.get("generation", 0),
    }


def proposal_info(extra: dict[str, Any]) -> dict[str, Any]:
    """The strategy's block of a record's `extra` that names a `source` (NAO: `extra["nao"]`, evolution:
    `extra["evolution"]`), else `extra` itself; {} for a record without one."""
    for value in extra.values():
        if isinstance(value, dict) and "source" in value:
            return value
    return extra


def budget(cfg: DictConfig, search: Search[Any]) -> dict[str, int]:
    """What the search was allowed to spend, in its own unit: shared-weight epochs for one-shot searches
    (weight sharing, DARTS), architectures evaluated for stand-alone ones (a study states both)."""
    if search.kind == "gradient":
        return {"shared_epochs": int(cfg.strategy.epochs)}
    if search.kind == "shared":
        return {"shared_epochs": int(cfg.evaluator.epochs)}
    return {"evaluations": int(cfg.search.num_architectures)}


def rank_all(cfg: DictConfig, space: Space[Any], outcome: SearchResult[Any], run_dir: Path) -> dict[str, Any] | None:
    """search.rank_all: every architecture of the space scored with the search's shared weights."""
    if outcome.shared_scorer is None:
        log.info("search.rank_all: this search has no shared weights that score any architecture; nothing to rank")
        return None
    start = time.perf_counter()
    every = distinct_architectures(space, space.enumerate())
    scores = outcome.shared_scorer(every, int(cfg.search.rank_batches))
    path = write_shared_ranking(
        run_dir / SHARED_RANKING_FILE, [space.key(g) for g in every], [space.describe(g) for g in every], scores
    )
    seconds = time.perf_counter() - start
    log.info("search.rank_all: %d architectures scored with shared weights in %.1f s: %s", len(every), seconds, path)
    return {"file": path.name, "architectures": len(every), "batches": int(cfg.search.rank_batches), "seconds": seconds}
