"""The study report on a tiny synthetic study: every figure checked against a hand computation."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from naslab.archive import Archive, ArchiveRecord
from naslab.evaluators.table import ResultTable, trial_key
from naslab.studies.report import write_report
from naslab.studies.study import StudyReport, architecture_key, load_study, load_wandb_runs

# Four architectures "a" (best) .. "d" (worst) measured with two seeds each.
TRUTH = {"a": (0.9, 0.8), "b": (0.7, 0.7), "c": (0.5, 0.7), "d": (0.2, 0.2)}  # means 0.85, 0.7, 0.6, 0.2


def write_table(path: Path) -> ResultTable:
    archive = Archive(path)
    for name, values in TRUTH.items():
        for seed, value in enumerate(values):
            archive.append(ArchiveRecord(len(archive), trial_key(seed, name), {"name": name}, name, value, seed))
    return ResultTable.load(path)


def write_run(
    root: Path,
    strategy: str,
    seed: int,
    found: str,
    trajectory: list[tuple[str, float]],
    test: float | None,
    evaluator: str | None = "table",
    error: str | None = None,
) -> Path:
    """A run dir as the pipeline writes it: results.json and archive.jsonl, keys as the archives have them
    (plain for a table search; `epoch<e>:` / `derive:` prefixes given in `trajectory` for shared / DARTS)."""
    run_dir = root / f"{strategy}+{evaluator}" / f"seed{seed}"
    run_dir.mkdir(parents=True)
    archive = Archive(run_dir / "archive.jsonl")
    for key, score in trajectory:
        name = key.rpartition(":")[2]
        archive.append(ArchiveRecord(len(archive), key, {"name": name}, name, score, seed))
    final = None if test is None else {"params": 10, "macs": 10, "test_accuracy": test, "test_perplexity": None}
    results = {
        "mode": "search_train",
        "dataset": "digits",
        "space": "toy",
        "strategy": strategy,
        "evaluator": evaluator,
        "seed": seed,
        "genotype": found,
        "genotype_key": found,
        "search": {"best_score": max(s for _, s in trajectory), "num_evaluated": len(trajectory), "wall_seconds": 1.0},
        "final": final,
    }
    (run_dir / "results.json").write_text(json.dumps(results | ({"error": error} if error else {})))
    return run_dir


@pytest.fixture
def study(tmp_path: Path) -> tuple[Path, ResultTable]:
    table = write_table(tmp_path / "groundtruth.jsonl")
    root = tmp_path / "study"
    # random: seeds find b (rank 2), d (rank 4), a (rank 1)
    write_run(root, "random", 0, "b", [("d", 0.1), ("b", 0.6)], test=0.70)
    write_run(root, "random", 1, "d", [("d", 0.3)], test=0.20)
    write_run(root, "random", 2, "a", [("c", 0.5), ("a", 0.8), ("d", 0.4)], test=0.90)
    # nao: seeds find a, a, c (ranks 1, 1, 3)
    write_run(root, "nao", 0, "a", [("c", 0.4), ("a", 0.9)], test=0.85)
    write_run(root, "nao", 1, "a", [("a", 0.7), ("b", 0.6)], test=0.80)
    write_run(root, "nao", 2, "c", [("d", 0.2), ("c", 0.65)], test=0.60)
    # a training run of the same folder is not part of the study
    other = root / "train"
    other.mkdir()
    (other / "results.json").write_text(json.dumps({"mode": "train", "seed": 0, "search": None, "final": {}}))
    return root, table


def test_report_numbers_match_a_hand_computation(study) -> None:
    root, table = study
    runs = load_study(root)
    assert [(r.method, r.seed) for r in runs][:3] == [
        ("random + table", 0),
        ("random + table", 1),
        ("random + table", 2),
    ]
    assert len(runs) == 6  # the mode=train run is left out
    report = StudyReport(runs, table)
    rows = {row["method"]: row for row in report.rows()}
    random, nao, best = rows["random + table"], rows["nao + table"], rows["REAL-BEST"]

    # search scores: random 0.6, 0.3, 0.8; nao 0.9, 0.7, 0.65
    assert random["search_mean"] == pytest.approx(17 / 30)
    mean = 17 / 30
    assert random["search_std"] == pytest.approx(
        np.sqrt(((0.6 - mean) ** 2 + (0.3 - mean) ** 2 + (0.8 - mean) ** 2) / 2)
    )
    assert nao["search_mean"] == pytest.approx(0.75)
    # final test: random 0.7, 0.2, 0.9 -> mean 0.6, best 0.9; nao 0.85, 0.8, 0.6 -> mean 0.75, best 0.85
    assert random["test_mean"] == pytest.approx(0.6) and random["best_test"] == pytest.approx(0.9)
    assert nao["test_mean"] == pytest.approx(0.75) and nao["best_test"] == pytest.approx(0.85)
    assert nao["test_std"] == pytest.approx(np.std([0.85, 0.8, 0.6], ddof=1))
    # true scores of what was found: random b 0.7, d 0.2, a 0.85; nao a, a, c = 0.85, 0.85, 0.6
    assert random["truth_mean"] == pytest.approx((0.7 + 0.2 + 0.85) / 3)
    assert nao["truth_mean"] == pytest.approx((0.85 + 0.85 + 0.6) / 3)
    assert random["rank_mean"] == pytest.approx(7 / 3)
    assert random["rank_std"] == pytest.approx(np.std([2, 4, 1], ddof=1))
    assert nao["rank_mean"] == pytest.approx(5 / 3) and nao["best_rank"] == 1
    assert (random["found_best"], nao["found_best"]) == (1, 2)
    # REAL-BEST: architecture a, 0.85 +- std(0.9, 0.8)
    assert best["truth_mean"] == pytest.approx(0.85) and best["truth_std"] == pytest.approx(np.std([0.9, 0.8], ddof=1))
    # the baseline has no p-value; nao's is scipy's Mann-Whitney U on the per-seed true scores
    assert random["p_vs_random"] is None
    expected = stats.mannwhitneyu([0.85, 0.85, 0.6], [0.7, 0.2, 0.85], alternative="two-sided").pvalue
    assert nao["p_vs_random"] == pytest.approx(expected)


def test_rank_trajectories_follow_the_best_so_far_by_search_score(study) -> None:
    root, table = study
    trajectories = StudyReport(load_study(root), table).rank_trajectories()
    # random seed 2 evaluates c (0.5, rank 3), a (0.8, rank 1), d (0.4: not better) -> 3, 1, 1
    assert trajectories["random + table"] == [[4, 2], [4], [3, 1, 1]]
    # nao seed 1 evaluates a (0.7) then b (0.6, worse by search score): stays at a's rank 1
    assert trajectories["nao + table"] == [[3, 1], [1, 1], [4, 3]]


def test_weight_sharing_and_darts_runs_are_read_with_their_real_archive_keys(tmp_path: Path) -> None:
    table = write_table(tmp_path / "groundtruth.jsonl")
    root = tmp_path / "study"
    # ENAS-style: strategy-phase scores per epoch, then the derived candidates; it returns the best derived, d
    shared = [("epoch0:b", 0.3), ("epoch1:c", 0.5), ("derive:a", 0.4), ("derive:d", 0.45)]
    write_run(root, "reinforce", 0, "d", shared, test=0.5, evaluator="shared")
    write_run(root, "random", 0, "b", [("epoch0:b", 0.2), ("derive:b", 0.3)], test=0.6, evaluator="shared")
    # DARTS: one derived genotype per epoch, the last one returned (select=last), whatever its score
    write_run(root, "darts", 0, "b", [("epoch0:c", 0.7), ("epoch1:b", 0.6)], test=0.7, evaluator=None)
    report = StudyReport(load_study(root), table)
    assert report.methods == ["random + shared", "darts", "reinforce + shared"]
    trajectories = report.rank_trajectories()
    # best so far by score: b (2), c (3), a and d are not better -> 3, 3; then what it returned: d (4)
    assert trajectories["reinforce + shared"] == [[2, 3, 3, 3, 4]]
    assert trajectories["darts"] == [[3, 2]]  # the epoch's own genotype, not the best-scored one
    assert report.method_row("darts")["truth_mean"] == pytest.approx(0.7)


def test_failed_runs_are_counted_and_their_search_still_counts(study, tmp_path: Path) -> None:
    root, table = study
    write_run(root, "nao", 3, "b", [("b", 0.5)], test=None, error="RuntimeError: final training diverged")
    row = StudyReport(load_study(root), table).method_row("nao + table")
    assert (row["seeds"], row["failed"]) == (4, 1)
    assert row["search_mean"] == pytest.approx((0.9 + 0.7 + 0.65 + 0.5) / 4)
    assert row["test_mean"] == pytest.approx(0.75)  # the failed final training has no test metric
    assert "| nao + table | 4 (1 failed) |" in StudyReport(load_study(root), table).to_markdown()


def test_two_runs_of_one_method_and_seed_are_refused(study) -> None:
    root, table = study
    write_run(root / "second_sweep", "nao", 0, "a", [("a", 0.9)], test=0.8)
    with pytest.raises(ValueError, match="two runs are nao \\+ table seed 0"):
        StudyReport(load_study(root), table)


def test_random_baseline_is_random_with_the_same_evaluator(tmp_path: Path) -> None:
    root = tmp_path / "study"
    write_run(root, "random", 0, "a", [("a", 0.9)], test=0.9, evaluator="standalone")
    write_run(root, "random", 0, "d", [("d", 0.1)], test=0.1, evaluator="shared")
    write_run(root, "nao", 0, "b", [("b", 0.5)], test=0.5, evaluator="shared")
    report = StudyReport(load_study(root))
    assert [r.evaluator for r in report.baseline_of("nao + shared")] == ["shared"]


def test_report_without_a_table_compares_the_final_test_metric(study) -> None:
    root, _ = study
    report = StudyReport(load_study(root))
    rows = {row["method"]: row for row in report.rows()}
    assert "REAL-BEST" not in rows and "truth_mean" not in rows["nao + table"]
    expected = stats.mannwhitneyu([0.85, 0.8, 0.6], [0.7, 0.2, 0.9], alternative="two-sided").pvalue
    assert rows["nao + table"]["p_vs_random"] == pytest.approx(expected)
    assert report.rank_trajectories() == {}


def test_perplexities_are_best_when_lowest(tmp_path: Path) -> None:
    for seed, ppl in enumerate((80.0, 60.0, 70.0)):
        run_dir = tmp_path / f"seed{seed}"
        run_dir.mkdir()
        final = {"test_accuracy": None, "test_perplexity": ppl, "valid_perplexity": ppl + 2}
        search = {"best_score": 80 / ppl, "num_evaluated": 4, "wall_seconds": 1.0}
        results = {"mode": "search_train", "dataset": "ptb", "strategy": "random", "evaluator": "shared", "seed": seed}
        (run_dir / "results.json").write_text(json.dumps(results | {"search": search, "final": final}))
    row = StudyReport(load_study(tmp_path)).rows()[0]
    assert row["best_test"] == 60.0 and row["best_valid"] == 62.0 and row["test_mean"] == pytest.approx(70.0)
    assert "final test perplexity" in StudyReport(load_study(tmp_path)).to_markdown()


def test_write_report_writes_tables_and_pictures(study, tmp_path: Path) -> None:
    root, _ = study
    report, pictures = write_report(root, tmp_path / "out", tmp_path / "groundtruth.jsonl")
    names = {p.name for p in pictures}
    assert names == {"found_ranks.png", "rank_trajectories.png", "rank_vs_cost.png"}  # no learning curves
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| nao + table | 3 |" in markdown and "REAL-BEST" in markdown
    per_run = (tmp_path / "out" / "report_runs.csv").read_text().splitlines()
    assert len(per_run) == 1 + 6 and per_run[0].startswith("method,seed,search_score,truth_mean,true_rank")
    assert report.summary()["nao + table"]["found_best"] == 2


def test_missing_study_and_empty_study_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no study at"):
        load_study(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no finished search run"):
        load_study(tmp_path)


def test_runs_load_from_a_wandb_group_summary() -> None:
    """The W&B path reads the results.json the pipeline puts in every run's summary (fake API here)."""
    results = {
        "dataset": "digits",
        "strategy": "nao",
        "evaluator": "shared",
        "seed": 4,
        "genotype": "g",
        "genotype_key": "k",
        "search": {"best_score": 0.5, "num_evaluated": 3},
        "final": {"test_accuracy": 0.9},
    }
    runs = [SimpleNamespace(summary={"results": results}), SimpleNamespace(summary={"results": {"search": None}})]
    api = SimpleNamespace(runs=lambda project, filters: runs if filters == {"group": "study"} else [])
    (run,) = load_wandb_runs("study", api=api)
    assert (run.method, run.seed, run.genotype_key, run.final_test) == ("nao + shared", 4, "k", 0.9)
    with pytest.raises(LookupError, match="no finished search run"):
        load_wandb_runs("other", api=api)


def test_architecture_key_strips_only_the_epoch_prefix() -> None:
    assert architecture_key('epoch12:{"nodes": []}') == '{"nodes": []}'
    assert architecture_key('{"epoch1:": 1}') == '{"epoch1:": 1}'


def write_labelled_run(
    root: Path,
    label: str,
    strategy: str,
    evaluator: str,
    seed: int,
    found: str,
    seconds: float,
    budget: dict[str, int],
    ranking: dict[str, float] | None = None,
) -> Path:
    """A run of experiment=search_phase_cnn: its `method=` choice in .hydra/hydra.yaml, its budget and
    (weight sharing) the shared_ranking.csv of search.rank_all."""
    run_dir = root / label / f"seed{seed}"
    (run_dir / ".hydra").mkdir(parents=True)
    choices = {"method": label, "strategy": strategy, "evaluator": evaluator}
    (run_dir / ".hydra" / "hydra.yaml").write_text(json.dumps({"hydra": {"runtime": {"choices": choices}}}))
    Archive(run_dir / "archive.jsonl").append(ArchiveRecord(0, found, {"name": found}, found, 0.5, seed))
    search = {"best_score": 0.5, "num_evaluated": 1, "wall_seconds": seconds, "budget": budget}
    if ranking is not None:
        (run_dir / "shared_ranking.csv").write_text(
            "key,genotype,shared_score\n" + "".join(f"{k},{k},{v}\n" for k, v in ranking.items())
        )
        search["shared_ranking"] = {"file": "shared_ranking.csv", "architectures": len(ranking)}
    results = {"mode": "search", "strategy": strategy, "evaluator": evaluator, "seed": seed}
    results |= {"genotype": found, "genotype_key": found, "search": search, "final": None}
    (run_dir / "results.json").write_text(json.dumps(results))
    return run_dir


def test_labelled_study_reports_method_presets_taus_cost_and_budget_by_hand(tmp_path: Path) -> None:
    """experiment=search_phase_cnn's report: rows named by the method preset, every method against the
    `random` preset, the Kendall tau of each weight-sharing run's ranking of all cells, cost and budget."""
    table = write_table(tmp_path / "groundtruth.jsonl")  # a 0.85 (rank 1), b 0.7 (2), c 0.6 (3), d 0.2 (4)
    root = tmp_path / "sweep"
    for seed, found in enumerate("bdc"):
        write_labelled_run(root, "random", "random", "table", seed, found, 1.0, {"evaluations": 24})
    for seed, found in enumerate("bdc"):  # random_ws: a random strategy, but not the baseline preset
        write_labelled_run(root, "random_ws", "random", "shared", seed, found, 5.0, {"shared_epochs": 5})
    rankings = [
        {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.1},  # the truth's order: tau 1
        {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4},  # reversed: tau -1
        {"a": 0.9, "b": 0.8, "c": 0.1, "d": 0.2},  # c and d swapped: 5 of 6 pairs agree, tau 2/3
    ]
    for seed, (found, seconds) in enumerate(zip("aab", (10.0, 20.0, 30.0))):
        budget = {"shared_epochs": 5}
        write_labelled_run(root, "enas", "reinforce", "shared", seed, found, seconds, budget, rankings[seed])
    report = StudyReport(load_study(root), table)
    assert report.methods[0] == "random" and set(report.methods) == {"random", "random_ws", "enas"}
    assert [r.seed for r in report.baseline_of("enas")] == [0, 1, 2]
    assert all(r.method == "random" for r in report.baseline_of("random_ws"))
    enas = report.method_row("enas")
    assert enas["truth_mean"] == pytest.approx((0.85 + 0.85 + 0.7) / 3)
    assert enas["rank_mean"] == pytest.approx(4 / 3) and enas["best_rank"] == 1 and enas["found_best"] == 2
    assert enas["tau_mean"] == pytest.approx((1 - 1 + 2 / 3) / 3)
    assert enas["tau_std"] == pytest.approx(np.std([1, -1, 2 / 3], ddof=1))
    assert enas["cost_mean"] == pytest.approx(20.0) and enas["cost_std"] == pytest.approx(10.0)
    assert enas["budget"] == "shared_epochs 5"
    expected = stats.mannwhitneyu([0.85, 0.85, 0.7], [0.7, 0.2, 0.6], alternative="two-sided").pvalue
    assert enas["p_vs_random"] == pytest.approx(expected) and enas["vs_random"] == "better"
    assert report.method_row("random_ws")["vs_random"] is None  # the same finds as random: no direction
    assert report.p_vs_random("random") is None and report.p_vs_random("random_ws") == pytest.approx(1.0)
    assert "tau_mean" not in report.method_row("random")  # no ranking: a stand-alone method
    markdown = report.to_markdown()
    assert "| enas | 3 |" in markdown and "0.222 +- " in markdown and "20.0 +- 10.0" in markdown
    assert f"{expected:.3f} (better)" in markdown
    assert "shared_epochs 5" in markdown and "evaluations 24" in markdown
    # the table's two seeds: seed 0 orders a > b > c > d, seed 1 a > b = c > d: 5 concordant pairs, 0 discordant,
    # one pair tied in seed 1 only -> tau-b = 5 / sqrt(6 * 5)
    assert table.seed_taus() == {(0, 1): pytest.approx(5 / np.sqrt(30))}
    assert "Kendall tau between two seeds' measurements (the noise ceiling): 0.913" in markdown
