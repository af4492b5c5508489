"""A search-phase study's runs and the paper-style report built from them (arXiv:1902.08142, Tables 2-3, Fig. 3).

A study is strategy x seeds: every run dir holds `results.json` (and `archive.jsonl`), as a Hydra
multirun writes them. `load_study(dir)` reads every run under a directory, `load_wandb_runs(group)`
the same fields from a W&B group, and `StudyReport` turns them into

- one row per method (strategy + evaluator): seeds, search score mean +- std, final validation and
  test metric mean +- std and best over seeds ("best of N", Table 2's BEST columns), and, given a
  ground-truth table, the true quality and true rank of the architecture each seed found, how many
  seeds found the best one, and a Mann-Whitney U test (scipy) of the method against the random
  baseline on the per-seed true quality (or on the final test metric when there is no table);
- the REAL-BEST row of Table 3 (the table's best architecture, mean +- std over its seeds);
- one row per run (per seed), for the plots and for anyone who wants to look closer.

Means are over seeds, +- is the sample standard deviation (ddof=1, 0 for one seed), as for the table's
own entries. Scores are higher-is-better (accuracy, or 80 / perplexity for text); final metrics keep
their own direction (perplexity: lower is better), so "best" is the max accuracy or the min perplexity.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from omegaconf import OmegaConf
from scipy import stats

from naslab.archive import read_records
from naslab.errors import MissingFileError
from naslab.evaluators.table import ResultTable
from naslab.rank_agreement import kendall_tau, read_shared_ranking

RANDOM = "random"
# Archive keys are the space's key, prefixed by weight-sharing searches (`epoch<e>:` per strategy phase,
# `derive:` for the final candidates) and DARTS (`epoch<e>:` per derived genotype).
_KEY_PREFIX = re.compile(r"^(?:epoch\d+|derive):")


def architecture_key(archive_key: str) -> str:
    """The space's key inside an archive key (without a search's `epoch<e>:` / `derive:` prefix)."""
    return _KEY_PREFIX.sub("", archive_key, count=1)


@dataclass(frozen=True)
class StudyRun:
    """What the report needs from one run: its method, seed, what it found, and what that scored."""

    strategy: str  # as the user chose it (Hydra's choice, e.g. nao_small), else results.json's name
    evaluator: str | None  # None for a strategy with its own supernet (DARTS)
    seed: int
    genotype: str | None = None  # readable
    genotype_key: str | None = None  # the space's key of the found architecture (looks it up in a table)
    search_score: float | None = None  # DARTS: the best derived genotype's validation score over its epochs
    num_evaluated: int | None = None
    search_seconds: float | None = None
    final_valid: float | None = None  # language models: best validation perplexity of final training
    final_test: float | None = None  # test accuracy, or test perplexity for text
    perplexity: bool = False  # whether final metrics are perplexities (lower is better)
    trajectory: tuple[tuple[str, float], ...] = ()  # (architecture key, search score) in evaluation order
    error: str | None = None  # the run failed (before or after its search)
    run_dir: str | None = None
    label: str | None = None  # the `method=` preset the run was composed with (experiment=search_phase_cnn)
    budget: tuple[tuple[str, float], ...] = ()  # results.json search.budget: (("evaluations", 24),) or shared epochs
    shared_ranking: dict[str, float] | None = None  # search.rank_all: key -> shared-weight score of every architecture
    # evaluator=table: what the evaluated architectures cost to train when the table was measured (one seed's
    # training each), i.e. what the search would have cost training them itself
    table_seconds: float | None = None

    @property
    def cost_seconds(self) -> float | None:
        """The search's cost: its wall time, or for table lookups the training time the table measured."""
        return self.table_seconds if self.table_seconds is not None else self.search_seconds

    @property
    def method(self) -> str:
        """The `method=` preset's name, else `strategy + evaluator`, or the strategy alone when it owns its
        supernet (DARTS)."""
        if self.label:
            return self.label
        return f"{self.strategy} + {self.evaluator}" if self.evaluator else self.strategy

    @property
    def is_random(self) -> bool:
        """A random-search run: the `random` preset when runs are labelled, else any random strategy."""
        return self.label == RANDOM if self.label else self.strategy.startswith(RANDOM)


def run_from_results(
    results: dict[str, Any],
    trajectory: Sequence[tuple[str, float]] = (),
    readables: Sequence[tuple[str, str]] = (),
    choices: dict[str, Any] | None = None,
    run_dir: str | None = None,
    shared_ranking: dict[str, float] | None = None,
    table_seconds: float | None = None,
) -> StudyRun:
    """A `StudyRun` from a results.json dict, its archive's (key, score) / (key, readable) pairs in order,
    and Hydra's config choices (strategy and evaluator named as chosen: `nao_small`, not `nao`).

    The found architecture's key is results.json's `genotype_key`, else (runs from before it was
    recorded) the key of the last archive record that reads like the found genotype.
    """
    search = results.get("search") or {}
    final = results.get("final") or {}
    perplexity = final.get("test_perplexity") is not None or search.get("best_perplexity") is not None
    genotype_key = results.get("genotype_key")
    if genotype_key is None:
        genotype_key = next((key for key, text in reversed(readables) if text == results.get("genotype")), None)
    choices = choices or {}
    # results.json names no evaluator for DARTS (its own supernet) nor for a run that failed before
    # its search; the latter's choice is what it would have used.
    evaluator = results.get("evaluator")
    if evaluator is not None or results.get("search") is None:
        evaluator = choices.get("evaluator") or evaluator
    if "darts" in (results.get("strategy"), choices.get("strategy")):
        evaluator = None
    return StudyRun(
        strategy=str(choices.get("strategy") or results.get("strategy")),
        evaluator=evaluator,
        seed=int(results["seed"]),
        genotype=results.get("genotype"),
        genotype_key=genotype_key,
        search_score=search.get("best_score"),
        num_evaluated=search.get("num_evaluated"),
        search_seconds=search.get("wall_seconds"),
        final_valid=final.get("valid_perplexity") if perplexity else final.get("valid_accuracy"),
        final_test=final.get("test_perplexity") if perplexity else final.get("test_accuracy"),
        perplexity=perplexity,
        trajectory=tuple((k, s) for k, s in trajectory if math.isfinite(s)),
        error=results.get("error"),
        run_dir=run_dir,
        label=choices.get("method"),
        budget=tuple((str(k), float(v)) for k, v in (search.get("budget") or {}).items()),
        shared_ranking=shared_ranking,
        table_seconds=table_seconds,
    )


def hydra_choices(run_dir: Path) -> dict[str, Any]:
    """The config choices Hydra recorded for a run (`.hydra/hydra.yaml`), or {} outside Hydra."""
    path = run_dir / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return {}
    choices = OmegaConf.select(OmegaConf.load(path), "hydra.runtime.choices")
    return dict(choices) if choices is not None else {}


def load_run(run_dir: str | Path) -> StudyRun:
    """One run dir: its results.json and, when there, its archive.jsonl (evaluation order, keys, scores)."""
    run_dir = Path(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    records = [r for r in read_records(run_dir / "archive.jsonl") if r.error is None]
    ranking = ((results.get("search") or {}).get("shared_ranking") or {}).get("file")
    # table lookups record each architecture's measured training time (all seeds) and seed count
    looked_up = [
        r.extra["cost_seconds"] / max(r.extra.get("seeds", 1), 1) for r in records if "cost_seconds" in r.extra
    ]
    return run_from_results(
        results,
        [(architecture_key(r.key), float(r.score)) for r in records],
        readables=[(architecture_key(r.key), r.readable) for r in records],
        choices=hydra_choices(run_dir),
        run_dir=str(run_dir),
        shared_ranking=read_shared_ranking(run_dir / ranking) if ranking else None,
        table_seconds=float(sum(looked_up)) if looked_up else None,
    )


def _ordered(runs: list[StudyRun]) -> list[StudyRun]:
    return sorted(runs, key=lambda r: (not r.is_random, r.method, r.seed))


def load_study(study_dir: str | Path) -> list[StudyRun]:
    """Every search run under `study_dir` (a Hydra sweep dir), failed ones included, by method and seed.

    Runs of other modes (train, groundtruth, ranking, report) are left out; a directory without any
    search run is a one-line error.
    """
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise MissingFileError(f"no study at {study_dir}: pass the sweep dir of a `python run.py -m ...` study")
    runs = []
    for path in sorted(study_dir.rglob("results.json")):
        results = json.loads(path.read_text())
        if results.get("mode") in ("search", "search_train") and "seed" in results:
            runs.append(load_run(path.parent))
    if not any(r.search_score is not None for r in runs):
        raise MissingFileError(f"no finished search run (results.json with a search block) under {study_dir}")
    return _ordered(runs)


def load_wandb_runs(group: str, project: str = "naslab", api: Any = None) -> list[StudyRun]:
    """The runs of a W&B group (a study's group), from the results.json the pipeline logs in each summary.

    `api` defaults to `wandb.Api()` (needs the network and a key). W&B holds no archive, so these runs
    have no rank trajectories; runs that did not finish have no results in their summary and are skipped.
    """
    if api is None:
        import wandb

        api = wandb.Api()
    runs = []
    for run in api.runs(project, filters={"group": group}):
        results = dict(run.summary.get("results") or {})
        if results.get("search"):
            runs.append(run_from_results(results))
    if not runs:
        raise LookupError(f"W&B group {group!r} of project {project!r} has no finished search run")
    return _ordered(runs)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _present(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


@dataclass
class StudyReport:
    """Per-method statistics of a study, optionally against a ground-truth table of the space."""

    runs: list[StudyRun]
    table: ResultTable | None = None
    methods: list[str] = field(init=False)

    def __post_init__(self) -> None:
        if not self.runs:
            raise ValueError("a study report needs at least one run")
        seen: dict[tuple[str, int], StudyRun] = {}
        for run in self.runs:
            twin = seen.setdefault((run.method, run.seed), run)
            if twin is not run:  # e.g. two sweeps under one folder, or a space swept inside one study
                raise ValueError(
                    f"two runs are {run.method} seed {run.seed} ({twin.run_dir or 'W&B'} and {run.run_dir or 'W&B'}): "
                    "a study compares strategies on one setting; report each sweep dir separately"
                )
        self.methods = list(dict.fromkeys(r.method for r in self.runs))  # random first (load order)

    def runs_of(self, method: str) -> list[StudyRun]:
        return [r for r in self.runs if r.method == method]

    def baseline_of(self, method: str) -> list[StudyRun]:
        """The random runs `method` is compared with: with `method=` presets the `random` preset (stand-alone
        random search, every method's baseline); else random with the same evaluator, else any random."""
        if any(r.label for r in self.runs):
            return [r for r in self.runs if r.label == RANDOM and r.method != method]
        runs = self.runs_of(method)
        evaluator = runs[0].evaluator if runs else None
        same = [r for r in self.runs if r.is_random and r.evaluator == evaluator and r.strategy == RANDOM]
        return same or [r for r in self.runs if r.is_random and r.method != method]

    def truth(self, run: StudyRun) -> tuple[float, int] | None:
        """(ground-truth mean, rank) of what `run` found, or None without a table or a key in it."""
        if self.table is None or run.genotype_key is None or run.genotype_key not in self.table.entries:
            return None
        entry = self.table.entries[run.genotype_key]
        return (entry.mean, self.table.rank_of(run.genotype_key)) if entry.values else None

    def _compared(self, run: StudyRun) -> float | None:
        """The per-seed quantity compared with random: true quality with a table, else the final test metric."""
        if self.table is not None:
            truth = self.truth(run)
            return truth[0] if truth else None
        if run.final_test is None:
            return None
        return -run.final_test if run.perplexity else run.final_test  # higher is better for the test

    def p_vs_random(self, method: str) -> float | None:
        """Two-sided Mann-Whitney U p-value of `method` against `baseline_of(method)` (None if either is empty)."""
        runs = self.runs_of(method)
        if not runs or (runs[0].label == RANDOM if runs[0].label else runs[0].strategy == RANDOM):
            return None
        baseline = self.baseline_of(method)
        a = _present(self._compared(r) for r in runs)
        b = _present(self._compared(r) for r in baseline)
        if not a or not b or len(set(a + b)) == 1:
            return None
        return float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)

    def shared_tau(self, run: StudyRun) -> float | None:
        """Kendall tau between a run's shared-weight scores of every architecture (`search.rank_all`) and the
        table's means, over the complete architectures in both; None without a table or a ranking."""
        if self.table is None or not run.shared_ranking:
            return None
        common = [e for e in self.table.ranked() if e.key in run.shared_ranking]
        if len(common) < 2:
            return None
        return kendall_tau([e.mean for e in common], [run.shared_ranking[e.key] for e in common])

    def method_row(self, method: str) -> dict[str, Any]:
        runs = self.runs_of(method)
        perplexity = any(r.perplexity for r in runs)
        best = min if perplexity else max
        valid, test = _present(r.final_valid for r in runs), _present(r.final_test for r in runs)
        row: dict[str, Any] = {"method": method, "seeds": len(runs), "failed": sum(r.error is not None for r in runs)}
        row["search_mean"], row["search_std"] = _mean_std(_present(r.search_score for r in runs))
        row["evaluated_mean"] = float(np.mean(_present(r.num_evaluated for r in runs) or [math.nan]))
        row["budget"] = ", ".join(f"{k} {v:g}" for k, v in runs[0].budget) if runs[0].budget else ""
        row["cost_mean"], row["cost_std"] = _mean_std(_present(r.cost_seconds for r in runs))
        row["cost_simulated"] = any(r.table_seconds is not None for r in runs)
        row["valid_mean"], row["valid_std"] = _mean_std(valid)
        row["test_mean"], row["test_std"] = _mean_std(test)
        row["best_valid"] = best(valid) if valid else math.nan
        row["best_test"] = best(test) if test else math.nan
        if self.table is not None:
            truths = [t for t in (self.truth(r) for r in runs) if t is not None]
            row["truth_mean"], row["truth_std"] = _mean_std([t[0] for t in truths])
            row["rank_mean"], row["rank_std"] = _mean_std([float(t[1]) for t in truths])
            row["best_rank"] = min((t[1] for t in truths), default=None)
            row["found_best"] = sum(1 for t in truths if t[1] == 1)
            row["in_table"] = len(truths)
            taus = _present(self.shared_tau(r) for r in runs)
            if taus:
                row["tau_mean"], row["tau_std"] = _mean_std(taus)
        row["p_vs_random"] = self.p_vs_random(method)
        row["vs_random"] = self.direction_vs_random(method) if row["p_vs_random"] is not None else None
        return row

    def direction_vs_random(self, method: str) -> str | None:
        """'better' or 'worse': the method's mean compared quantity (true score, or final test) against random's."""
        a = _present(self._compared(r) for r in self.runs_of(method))
        b = _present(self._compared(r) for r in self.baseline_of(method))
        if not a or not b or np.mean(a) == np.mean(b):
            return None
        return "better" if np.mean(a) > np.mean(b) else "worse"

    def rows(self) -> list[dict[str, Any]]:
        """One row per method, then REAL-BEST (the table's best architecture) when there is a table."""
        rows = [self.method_row(m) for m in self.methods]
        if self.table is not None and self.table.ranked():
            best = self.table.ranked()[0]
            rows.append(
                {"method": "REAL-BEST", "seeds": len(best.values), "truth_mean": best.mean, "truth_std": best.std}
                | {"rank_mean": 1.0, "rank_std": 0.0, "best_rank": 1, "genotype": best.readable}
            )
        return rows

    def run_rows(self) -> list[dict[str, Any]]:
        """One row per run: what each seed found and how good it really is."""
        out = []
        for r in self.runs:
            truth = self.truth(r)
            out.append(
                {
                    "method": r.method,
                    "seed": r.seed,
                    "search_score": r.search_score,
                    "truth_mean": truth[0] if truth else None,
                    "true_rank": truth[1] if truth else None,
                    "shared_tau": self.shared_tau(r),
                    "search_seconds": r.cost_seconds,
                    "final_valid": r.final_valid,
                    "final_test": r.final_test,
                    "genotype": r.genotype,
                    "run_dir": r.run_dir,
                }
            )
        return out

    def to_csv(self, per_run: bool = False) -> str:
        rows = self.run_rows() if per_run else self.rows()
        columns = list(dict.fromkeys(k for row in rows for k in row))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()

    def to_markdown(self) -> str:
        """Table 2/3 of Sciuto et al. arXiv:1902.08142 plus the true rank columns, then the per-seed table."""
        perplexity = any(r.perplexity for r in self.runs)
        metric = "perplexity" if perplexity else "accuracy"
        has_final = any(r.final_test is not None for r in self.runs)
        has_valid = any(r.final_valid is not None for r in self.runs)  # image runs: test accuracy only
        head = ["method", "seeds", "search score"]
        if has_valid:
            head += [f"final valid {metric}", "best valid"]
        if has_final:
            head += [f"final test {metric}", "best test"]
        if self.table is not None:
            head += ["true score of found", "true rank of found", "best rank", "found the best"]
        has_tau = any(r.shared_ranking for r in self.runs) and self.table is not None
        has_budget = any(r.budget for r in self.runs)
        if has_tau:
            head += ["Kendall tau (shared)"]
        head += ["p vs random", "search cost (s)"] + (["budget"] if has_budget else [])
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for row in self.rows():
            digits = 2 if perplexity else 4
            seeds = str(row["seeds"]) + (f" ({row['failed']} failed)" if row.get("failed") else "")
            cells = [row["method"], seeds, _pm(row.get("search_mean"), row.get("search_std"))]
            if has_valid:
                cells += [_pm(row.get("valid_mean"), row.get("valid_std"), digits), _num(row.get("best_valid"), digits)]
            if has_final:
                cells += [_pm(row.get("test_mean"), row.get("test_std"), digits), _num(row.get("best_test"), digits)]
            if self.table is not None:
                cells += [
                    _pm(row.get("truth_mean"), row.get("truth_std")),
                    _pm(row.get("rank_mean"), row.get("rank_std"), 1),
                    "" if row.get("best_rank") is None else str(row["best_rank"]),
                    f"{row['found_best']}/{row['in_table']}" if row.get("in_table") else "",
                ]
            if has_tau:
                cells.append(_pm(row.get("tau_mean"), row.get("tau_std"), 3))
            cost = _pm(row.get("cost_mean"), row.get("cost_std"), 1)
            p_value = _num(row.get("p_vs_random"), 3) + (f" ({row['vs_random']})" if row.get("vs_random") else "")
            cells += [p_value, cost + (" *" if cost and row.get("cost_simulated") else "")]
            if has_budget:
                cells.append(str(row.get("budget") or ""))
            lines.append("| " + " | ".join(cells) + " |")
        size = f" of {len(self.table.ranked())} architectures" if self.table is not None else ""
        notes = [
            "",
            "Mean +- sample std over seeds; search score: higher is better"
            + (
                f"; final {metric}: best = "
                + ("lowest" if perplexity else "highest")
                + " over seeds, each column on its own as in Sciuto et al.'s Tables 2-3"
                if has_final
                else ""
            )
            + (f". True score and rank{size}: the ground-truth table's mean" if self.table is not None else "")
            + (f" ({self.table.source})" if self.table is not None and self.table.source else "")
            + (
                "; Kendall tau (shared): each run's shared-weight scores of every architecture (search.rank_all) "
                "against the table's means"
                if has_tau
                else ""
            )
            + "; search cost: wall seconds per run (* looked up in the table: the training time the table measured "
            "for what the search evaluated, one seed each)"
            + "; p vs random: two-sided Mann-Whitney U against "
            + ("the random preset" if any(r.label for r in self.runs) else "random with the same evaluator")
            + ", on "
            + ("the true score" if self.table is not None else f"the final test {metric}")
            + " per seed (better / worse: the method's mean against random's).",
            "",
        ]
        if self.table is not None:
            taus = list(self.table.seed_taus().values())
            if taus:
                notes.append(
                    f"Ground truth: {len(self.table)} architectures; Kendall tau between two seeds' measurements "
                    f"(the noise ceiling): {np.mean(taus):.3f} +- {np.std(taus, ddof=1) if len(taus) > 1 else 0:.3f} "
                    f"over {len(taus)} seed pairs."
                )
                notes.append("")
        notes += [
            "| method | seed | search score | true score | true rank | Kendall tau | cost (s) | final test "
            "| genotype |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in self.run_rows():
            notes.append(
                f"| {row['method']} | {row['seed']} | {_num(row['search_score'])} | {_num(row['truth_mean'])} | "
                f"{'' if row['true_rank'] is None else row['true_rank']} | {_num(row['shared_tau'], 3)} | "
                f"{_num(row['search_seconds'], 1)} | {_num(row['final_test'], 2 if perplexity else 4)} | "
                f"`{row['genotype']}` |"
            )
        return "\n".join(lines + notes) + "\n"

    def summary(self) -> dict[str, Any]:
        """The report block of results.json: each method's row, keyed by method."""
        return {row["method"]: {k: _json_number(v) for k, v in row.items() if k != "method"} for row in self.rows()}

    def rank_trajectories(self) -> dict[str, list[list[int]]]:
        """Per method, per seed: the true rank of the architecture the search holds after each evaluation.

        That is the best so far by the search's own score, or for DARTS (`evaluator` None) the genotype
        derived at that epoch; the last point is the rank of what the run returned. Architectures missing
        from the table are skipped. Needs a table.
        """
        if self.table is None:
            return {}
        out: dict[str, list[list[int]]] = {}
        for r in self.runs:
            ranks, best_score, held = [], -math.inf, None
            for key, score in r.trajectory:
                if key not in self.table.entries or not self.table.entries[key].values:
                    continue
                if r.evaluator is None or score > best_score:
                    best_score, held = score, self.table.rank_of(key)
                ranks.append(held)
            found = self.truth(r)
            if found is not None and (not ranks or ranks[-1] != found[1]):
                ranks.append(found[1])  # e.g. a weight-sharing search's final pick among derived candidates
            if ranks:
                out.setdefault(r.method, []).append(ranks)
        return out


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}f}"


def _pm(mean: Any, std: Any, digits: int = 4) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    return f"{mean:.{digits}f} +- {std:.{digits}f}"


def _json_number(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value
