"""`mode=report`: the paper-style tables and pictures of a search-phase study (Sciuto et al. arXiv:1902.08142).

A study is one Hydra multirun, strategy x seeds, every search followed by the same final training
(`experiment=search_phase` / `search_phase_table`). `write_report` reads its run dirs (or runs loaded
from W&B) and writes, into the output dir:

- `report.md`: per method, mean +- std of the search score and of the final validation / test metric,
  the best over seeds, and with a ground-truth table the true score and rank of what each seed found,
  the random baseline's comparison, the REAL-BEST row; then one line per seed;
- `report.csv` (per method) and `report_runs.csv` (per run);
- `found_ranks.png`, `rank_trajectories.png`, `rank_vs_cost.png` and, when the table was built with learning curves
  (`evaluator.validate_every`), `rank_evolution.png`.

`ReportAtMultirunEnd` is the Hydra callback that the study presets install, so the one command that
runs the study also writes its report into the sweep dir (after every run, so a failed run does not
cost the report of the others).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from naslab.evaluators.table import ResultTable
from naslab.studies.plots import (
    plot_found_ranks,
    plot_rank_evolution,
    plot_rank_trajectories,
    plot_rank_vs_cost,
)
from naslab.studies.study import StudyReport, StudyRun, load_study

log = logging.getLogger(__name__)


def write_report(
    study_dir: str | Path | None,
    out_dir: str | Path,
    table: str | Path | None = None,
    runs: list[StudyRun] | None = None,
) -> tuple[StudyReport, list[Path]]:
    """Builds the report of the runs under `study_dir` (or `runs`) and writes it to `out_dir`."""
    if runs is None:
        if study_dir is None:
            raise ValueError("mode=report needs report.dir=<sweep dir of the study>")
        runs = load_study(study_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = StudyReport(runs, ResultTable.load(table) if table else None)
    (out / "report.md").write_text(report.to_markdown())
    (out / "report.csv").write_text(report.to_csv())
    (out / "report_runs.csv").write_text(report.to_csv(per_run=True))
    pictures = [
        plot_found_ranks(report, out / "found_ranks.png"),
        plot_rank_trajectories(report, out / "rank_trajectories.png"),
        plot_rank_vs_cost(report, out / "rank_vs_cost.png"),
        plot_rank_evolution(report.table, out / "rank_evolution.png") if report.table is not None else None,
    ]
    log.info("report of %d runs (%s) in %s", len(runs), ", ".join(report.methods), out)
    return report, [p for p in pictures if p is not None]


def study_table(cfg: DictConfig, study_dir: str | Path | None = None) -> str | None:
    """The ground-truth table of a study: `report.table`, else the table its searches looked scores up in.

    `cfg` is the report's own config (mode=report) or the study's (the callback); with `study_dir`, the
    study's runs' saved configs (`.hydra/config.yaml`) are asked too.
    """
    table = OmegaConf.select(cfg, "report.table")
    if table:
        return str(table)
    configs = [cfg]
    if study_dir is not None:
        configs += [OmegaConf.load(p) for p in sorted(Path(study_dir).rglob(".hydra/config.yaml"))[:1]]
    for config in configs:
        if str(OmegaConf.select(config, "evaluator._target_") or "").endswith("TableEvaluator"):
            path = OmegaConf.select(config, "evaluator.path", throw_on_missing=False)
            if path and str(path) != "???":
                return str(path)
    return None


class ReportAtMultirunEnd(Callback):
    """Writes the study's report into the sweep dir after every finished run and at the multirun's end.

    After every run, because Hydra's sweeper re-raises a failed run's error and then never calls
    `on_multirun_end`: the report of what did finish is there all the same (its `failed` column counts
    the failures; a process-pool launcher may finish runs out of order, the last report is complete).
    """

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        self._write(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        report = self._write(config)
        if report is not None:
            print(f"study report ({len(report.runs)} runs): {Path(config.hydra.sweep.dir) / 'report.md'}")

    @staticmethod
    def _write(config: DictConfig) -> StudyReport | None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            report, _ = write_report(sweep_dir, sweep_dir, study_table(config, sweep_dir))
        except (FileNotFoundError, ValueError) as err:  # nothing finished yet, or a table that is missing
            log.warning("no study report yet: %s", err)
            return None
        return report
