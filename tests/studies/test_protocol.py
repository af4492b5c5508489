"""The search-phase protocol end to end: one multirun command, its report, and the fixed final seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from naslab.evaluators.table import ResultTable
from naslab.loggers import logger_names
from naslab.pipeline import run
from tests.conftest import run_py


def row_of(lines: list[str], start: str) -> str:
    rows = [line for line in lines if line.startswith(start)]
    assert len(rows) == 1, f"no single row starting {start!r} in the report"
    return rows[0]


@pytest.mark.slow
def test_one_multirun_runs_strategies_x_seeds_and_writes_the_report(compose_cfg, tmp_path: Path) -> None:
    sweep = tmp_path / "study"
    done = run_py(
        ["-m", "experiment=search_phase_table", "strategy=random,reinforce", "seed=0,1,2", f"hydra.sweep.dir={sweep}"]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    runs = sorted(p.parent.relative_to(sweep).as_posix() for p in sweep.rglob("results.json"))
    assert runs == [
        f"{s}+table/seed{n}-job{3 * i + n}" for i, s in enumerate(("random", "reinforce")) for n in range(3)
    ]
    table = ResultTable.load("ptb_rnn_small_e1")
    lines = (sweep / "report.md").read_text().splitlines()
    random_row = row_of(lines, "| random + table | 3 |")
    row_of(lines, "| reinforce + table | 3 |")
    row_of(lines, "| REAL-BEST | 4 |")
    # the report's true score of each find is the table's mean for the genotype results.json names
    found = []
    for n in range(3):
        results = json.loads((sweep / f"random+table/seed{n}-job{n}" / "results.json").read_text())
        assert results["search"]["num_evaluated"] == 8 and results["final"] is None
        found.append(table.lookup(results["genotype_key"]).mean)
    assert f"{sum(found) / 3:.4f} +- " in random_row.split("|")[4]
    assert (sweep / "found_ranks.png").stat().st_size > 0 and (sweep / "rank_trajectories.png").exists()
    # mode=report finds the table the study searched on in the runs' saved configs
    again = run(compose_cfg("mode=report", f"report.dir={sweep}", run_dir=tmp_path / "report"))
    assert again["report"]["random + table"]["truth_mean"] == pytest.approx(sum(found) / 3)


@pytest.mark.slow
def test_a_failed_run_does_not_cost_the_report_of_the_others(tmp_path: Path) -> None:
    sweep = tmp_path / "study"
    missing = "evaluator.path=ptb_rnn_small_e1,/nonexistent/groundtruth.jsonl"  # the second table is missing
    done = run_py(
        ["-m", "experiment=search_phase_table", "strategy=random", "seed=0", missing, f"hydra.sweep.dir={sweep}"]
    )
    assert done.returncode != 0  # Hydra re-raises the failure ...
    lines = (sweep / "report.md").read_text().splitlines()  # ... and the report of what finished is there
    assert row_of(lines, "| random + table | 1 |")  # the run that finished (seed 0, 1 run)


def test_report_mode_needs_a_study_and_writes_results(compose_cfg, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="report.dir"):
        run(compose_cfg("mode=report"))
    with pytest.raises(FileNotFoundError, match="no finished search run"):
        run(compose_cfg("mode=report", f"report.dir={tmp_path}", run_dir=tmp_path / "report"))
    study = tmp_path / "one"
    run(compose_cfg("experiment=search_phase_table", "strategy=random", "seed=3", run_dir=study / "random" / "seed3"))
    results = run(compose_cfg("mode=report", f"report.dir={study}", run_dir=tmp_path / "report"))
    # the table comes from the study's own evaluator only when report.table says so; here: none
    assert results["report"]["random + table"]["seeds"] == 1 and "truth_mean" not in results["report"]["random + table"]
    with_table = run(
        compose_cfg("mode=report", f"report.dir={study}", "report.table=ptb_rnn_small_e1", run_dir=tmp_path / "report2")
    )
    # written into the study dir itself, next to its runs
    assert with_table["report"]["REAL-BEST"]["seeds"] == 4 and (study / "report.md").exists()


def trained_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


def test_a_fixed_final_seed_makes_final_training_independent_of_the_search_seed(compose_cfg, tmp_path: Path) -> None:
    """arXiv:1902.08142 trains every found architecture with one seed, so only the architecture differs."""
    common = ("mode=train", "space=micro_darts", "genotype=darts_v2", "debug=fast")
    run(compose_cfg(*common, "seed=1", "train.seed=0", run_dir=tmp_path / "a"))
    run(compose_cfg(*common, "seed=2", "train.seed=0", run_dir=tmp_path / "b"))
    run(compose_cfg(*common, "seed=2", run_dir=tmp_path / "c"))  # train.seed=null: the run's own seed
    a, b, c = (trained_weights(tmp_path / name) for name in "abc")
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_runs_of_a_study_share_its_wandb_group_and_are_named_by_setting_and_seed(compose_cfg) -> None:
    study = compose_cfg("experiment=search_phase", "strategy=nao", "seed=7", "logger=wandb")
    # (without Hydra's runtime the choices read as class names: NAOStrategy+SharedEvaluator)
    assert logger_names(study) == {"group": "search_phase", "name": "NAOStrategy+SharedEvaluator/seed7"}
    alone = compose_cfg("strategy=darts", "logger=wandb")  # no study: the setting is the group, seeds aggregate
    assert logger_names(alone, with_evaluator=False) == {"group": "digits/MicroSpace/DartsStrategy"}
    assert logger_names(compose_cfg("experiment=search_phase", "logger=csv")) == {}
