"""The study modes: mode=groundtruth (a measured table), mode=ranking (Kendall tau of weight-sharing
rankings against it) and mode=report (a study's tables and figures)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from naslab.errors import ConfigError
from naslab.evaluators.table import ResultTable
from naslab.loggers import log_images, log_metrics, log_table
from naslab.spaces.base import Space
from naslab.stages.build import build_evaluator, datamodule, evaluator_class, task_of
from naslab.studies.groundtruth import build_ground_truth
from naslab.studies.ranking import run_ranking_study
from naslab.studies.report import study_table, write_report
from naslab.studies.study import load_wandb_runs

log = logging.getLogger(__name__)


def ground_truth_stage(
    cfg: DictConfig, space: Space[Any], trainer_factory: Any, run_dir: Path, logger: Any, results: dict[str, Any]
) -> Any:
    """mode=groundtruth: every architecture x `groundtruth.seeds`; returns the best architecture by mean."""
    start = time.perf_counter()
    task = task_of(cfg, datamodule(cfg, "search")) if evaluator_class(cfg).needs_data else None
    seeds = [int(s) for s in cfg.groundtruth.seeds]
    table = build_ground_truth(
        space,
        lambda seed: build_evaluator(cfg, space, task, trainer_factory, seed=seed),
        seeds,
        run_dir,
        resume=bool(cfg.resume),
        levels=bool(cfg.groundtruth.get("levels", False)),
        sample=cfg.groundtruth.get("sample"),
    )
    ranked = table.ranked()
    if not ranked:
        raise RuntimeError(f"every ground-truth trial failed; see {run_dir / 'groundtruth.jsonl'}")
    results["evaluator"] = evaluator_class(cfg).name
    results["groundtruth"] = {
        "architectures": len(table),
        "seeds": seeds,
        "trials": sum(len(e.values) + e.failed for e in table.entries.values()),
        "best_mean": ranked[0].mean,
        "best_std": ranked[0].std,
        "wall_seconds": time.perf_counter() - start,
        "table": str(run_dir / "groundtruth.jsonl"),
    }
    rows = table.rows()
    log_table(logger, "groundtruth/table", tuple(rows[0]), [tuple(r.values()) for r in rows])
    return space.genotype_from_dict(ranked[0].genotype)


def ranking_stage(
    cfg: DictConfig, space: Space[Any], trainer_factory: Any, run_dir: Path, logger: Any, results: dict[str, Any]
) -> Any:
    """mode=ranking: Kendall tau of weight-sharing rankings against a ground-truth table, per seed."""
    if not cfg.ranking.get("table"):
        raise ConfigError("mode=ranking needs ranking.table=<groundtruth.jsonl of a mode=groundtruth run>")
    table = ResultTable.load(str(cfg.ranking.table))
    task = task_of(cfg, datamodule(cfg, "search"))
    overrides = {"strategy_steps": 0, "derive_samples": 1, "valid_batches": int(cfg.ranking.valid_batches)}
    study = run_ranking_study(
        space,
        table,
        lambda seed: build_evaluator(cfg, space, task, trainer_factory, seed=seed, **overrides),
        [int(s) for s in cfg.ranking.seeds],
        run_dir,
        resume=bool(cfg.resume),
    )
    results["evaluator"] = evaluator_class(cfg).name
    results["ranking"] = study.summary()
    log_metrics(logger, {"ranking/kendall_tau_mean": results["ranking"]["kendall_tau_mean"]})
    log_images(logger, "ranking", [run_dir / "ranking.png"])
    log.info("weight-sharing ranking: %s", json.dumps(results["ranking"]))
    return study.shared_favourite()


def report_stage(cfg: DictConfig, run_dir: Path, logger: Any) -> dict[str, Any]:
    """mode=report: the study under `report.dir` (or in W&B group `report.wandb_group`) as tables and pictures."""
    runs = None
    if cfg.report.get("wandb_group"):
        runs = load_wandb_runs(str(cfg.report.wandb_group), str(cfg.report.wandb_project))
    elif not cfg.report.get("dir"):
        raise ConfigError("mode=report needs report.dir=<sweep dir of a study> or report.wandb_group=<its group>")
    # Into the study's own sweep dir (report.md, report.json and the figures next to the runs); a report
    # of a W&B group goes to this run's dir.
    out_dir = Path(str(cfg.report.dir)) if cfg.report.get("dir") else run_dir
    report, pictures = write_report(cfg.report.get("dir"), out_dir, study_table(cfg, cfg.report.get("dir")), runs=runs)
    print(report.to_markdown())
    rows = report.rows()
    columns = list(dict.fromkeys(k for row in rows for k in row))
    log_table(logger, "report/methods", columns, [[row.get(c) for c in columns] for row in rows])
    log_images(logger, "report", pictures)
    return report.summary()
