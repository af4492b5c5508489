"""`evaluator=table`: scores looked up in a file of measured results, for exact and fast studies.

The search-phase study (Sciuto et al. arXiv:1902.08142, Sec. 4.2) trains every architecture of a small space stand-alone
with several seeds and uses the mean as ground truth. `mode=groundtruth` (`naslab.studies.groundtruth`) writes
such a file: one JSON line per (architecture, seed) trial, the archive format (`archive.jsonl`) with
keys `seed<s>:<architecture key>`, so it is append-only, fsynced and resumable like any search. A
`ResultTable` groups the trials per architecture (mean, std, per-seed values, epochs, cost), ranks them
and prints them; `TableEvaluator` answers a strategy's queries from it in microseconds, so strategies
can be compared over many seeds exactly. An architecture that is not in the table is a one-line error,
and so is a damaged table (a line that is not a trial, a score that is not a number): it names the file
and the line, as a damaged archive does, rather than ranking what is left as if nothing were missing.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import stats

from naslab.archive import ArchiveRecord, read_numbered_records
from naslab.errors import CorruptStateError, MissingFileError
from naslab.evaluators.base import Evaluation, Evaluator, G
from naslab.spaces.base import Space

VALUES = ("mean", "seed")
# What to do about a damaged table: the builder resumes and redoes only missing trials.
DAMAGED_TABLE_FIX = (
    "the table is damaged: delete that line and build the missing trials with mode=groundtruth "
    "hydra.run.dir=<its run dir> resume=true, or point evaluator.path at an intact table"
)
TABLES_DIR = Path(__file__).parent / "tables"  # measured ground truths shipped with naslab (tables/README.md)


def packaged_tables() -> list[str]:
    """Names of the ground-truth tables that ship with naslab (`evaluator.path=<name>` finds them)."""
    return sorted(p.stem for p in TABLES_DIR.glob("*.jsonl"))


def resolve_table(path: str | Path) -> Path:
    """A table file: `path` itself, or a packaged table's name; a one-line error saying what exists."""
    if Path(path).is_file():
        return Path(path)
    if (TABLES_DIR / f"{path}.jsonl").is_file():
        return TABLES_DIR / f"{path}.jsonl"
    raise MissingFileError(
        f"no ground-truth table at {path}: build one with mode=groundtruth (it writes groundtruth.jsonl) "
        f"or name a packaged one ({', '.join(packaged_tables())})"
    )


def trial_key(seed: int, architecture_key: str) -> str:
    """The archive key of one ground-truth trial."""
    return f"seed{seed}:{architecture_key}"


def split_trial_key(key: str) -> tuple[int, str]:
    """(seed, architecture key) of a trial key; a one-line error for anything else."""
    head, sep, rest = key.partition(":")
    if not sep or not head.startswith("seed") or not head[4:].lstrip("-").isdigit():
        raise ValueError(f"not a ground-truth trial key (seed<s>:<architecture>): {key[:80]!r}")
    return int(head[4:]), rest


@dataclass
class TableEntry:
    """Everything measured for one architecture, over its seeds."""

    key: str
    genotype: dict[str, Any]
    readable: str
    seeds: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    epochs: float | None = None
    params: int | None = None
    cost_seconds: float = 0.0
    failed: int = 0
    curves: dict[int, dict[int, float]] = field(default_factory=dict)  # seed -> {epoch: validation score}
    partial: bool = False  # a lower progressive level (groundtruth.levels): answers lookups, is never ranked
    train_accuracy: dict[int, float] = field(default_factory=dict)  # seed -> the trial's last-epoch training accuracy

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 for one seed)."""
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0

    def measured_seed(self, seed: int) -> int:
        """The measured seed that stands for `seed`: itself when measured, else seed modulo the seeds measured."""
        return seed if seed in self.seeds else self.seeds[seed % len(self.seeds)]

    def value_for(self, seed: int) -> float:
        """The measurement of one seed (the seed's own when measured, else seed modulo the seeds measured)."""
        return self.values[self.seeds.index(self.measured_seed(seed))]


class ResultTable:
    """Measured results per architecture, built from ground-truth trial records."""

    def __init__(self, entries: Iterable[TableEntry], source: str = "") -> None:
        self.entries = {e.key: e for e in entries}
        self.source = source

    @classmethod
    def from_records(cls, records: Iterable[ArchiveRecord], source: str = "") -> "ResultTable":
        entries: dict[str, TableEntry] = {}
        for r in records:
            _add_trial(entries, r)
        return cls(entries.values(), source)

    @classmethod
    def load(cls, path: str | Path) -> "ResultTable":
        """Reads a ground-truth file (`groundtruth.jsonl`) or a packaged table by name; else a one-line error.

        Read only (a table still being built is not cut). A line that is not a trial record (garbage, a
        field missing or of the wrong type, a key that is not `seed<s>:<architecture>`, a curve that is not
        numbers) is a CorruptStateError naming the file and the line; only a cut last line, what a builder
        killed mid-write leaves, is skipped with a warning.
        """
        path = resolve_table(path)
        entries: dict[str, TableEntry] = {}
        numbered = read_numbered_records(path, "a ground-truth trial record", DAMAGED_TABLE_FIX)
        for line, record in numbered:
            try:
                _add_trial(entries, record)
            except (ValueError, TypeError, KeyError, AttributeError) as err:
                reason = " ".join(str(err).split())[:120] or type(err).__name__
                total = len(path.read_bytes().splitlines())
                raise CorruptStateError(
                    f"{path} line {line} of {total} is not a ground-truth trial record ({reason}); {DAMAGED_TABLE_FIX}"
                ) from None
        return cls(entries.values(), str(path))

    def __len__(self) -> int:
        """Complete architectures (partial ones of lower progressive levels are not counted)."""
        return sum(1 for e in self.entries.values() if not e.partial)

    def lookup(self, key: str) -> TableEntry:
        entry = self.entries.get(key)
        if entry is None or not entry.values:
            what = "has only failed trials of" if entry is not None else "has no"
            raise KeyError(f"the table {self.source or ''} {what} architecture {key[:120]}".replace("  ", " "))
        return entry

    def ranked(self) -> list[TableEntry]:
        """Complete architectures with a measurement, best mean first."""
        return sorted((e for e in self.entries.values() if e.values and not e.partial), key=lambda e: -e.mean)

    def rank_of(self, key: str) -> int:
        """1-based rank of an architecture by mean among the complete ones (1 = best; ties share the better rank)."""
        mean = self.lookup(key).mean
        return 1 + sum(1 for e in self.ranked() if e.mean > mean)

    def seed_taus(self) -> dict[tuple[int, int], float]:
        """Kendall tau between two seeds' measurements of the complete architectures measured with both, for
        every pair of seeds: how well one training run ranks the space, the noise ceiling of any search."""
        by_seed: dict[int, dict[str, float]] = {}
        for e in self.ranked():
            for seed, value in zip(e.seeds, e.values):
                by_seed.setdefault(seed, {})[e.key] = value
        taus = {}
        for a, b in itertools.combinations(sorted(by_seed), 2):
            common = sorted(set(by_seed[a]) & set(by_seed[b]))
            if len(common) > 1:
                tau = stats.kendalltau([by_seed[a][k] for k in common], [by_seed[b][k] for k in common]).statistic
                taus[(a, b)] = float(tau)
        return taus

    def rank_evolution(self) -> tuple[list[int], list[TableEntry], np.ndarray]:
        """How the architectures' ranks change while they train (Sciuto et al. arXiv:1902.08142, Appendix C, Fig. 8).

        At every epoch that all measured architectures were validated at (`evaluator.validate_every`
        when the table was built), each architecture's score is averaged over its seeds and the
        architectures are ranked (1 = best, ties share the better rank). Returns (epochs, entries in
        their final order, ranks[entry, epoch]); no epochs when the table has no curves.
        """
        measured = self.ranked()
        common: set[int] | None = None
        for e in measured:
            epochs = {epoch for curve in e.curves.values() for epoch in curve}
            common = epochs if common is None else common & epochs
        epochs = sorted(common or ())
        if not epochs:
            return [], measured, np.zeros((len(measured), 0))
        means = np.array(
            [[np.mean([c[epoch] for c in e.curves.values() if epoch in c]) for epoch in epochs] for e in measured]
        )
        ranks = np.stack([stats.rankdata(-means[:, j], method="min") for j in range(len(epochs))], axis=1)
        return epochs, measured, ranks.astype(int)

    def rows(self) -> list[dict[str, Any]]:
        ranked = self.ranked()
        ranks = stats.rankdata([-e.mean for e in ranked], method="min")  # ties share the better rank, as rank_of
        return [
            {
                "rank": int(rank),
                "mean": round(e.mean, 6),
                "std": round(e.std, 6),
                "seeds": len(e.values),
                "failed": e.failed,
                "values": " ".join(f"{v:.4f}" for v in e.values),
                "epochs": e.epochs,
                "params": e.params,
                "cost_seconds": round(e.cost_seconds, 2),
                "genotype": e.readable,
            }
            for e, rank in zip(ranked, ranks)
        ]

    def to_csv(self) -> str:
        rows = self.rows()
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["rank"])
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()

    def to_markdown(self) -> str:
        lines = ["| rank | mean +- std | seeds | params | genotype |", "|---:|---|---:|---:|---|"]
        for row in self.rows():
            lines.append(
                f"| {row['rank']} | {row['mean']:.4f} +- {row['std']:.4f} | {row['seeds']} | "
                f"{row['params'] if row['params'] is not None else ''} | `{row['genotype']}` |"
            )
        return "\n".join(lines) + "\n"


def _add_trial(entries: dict[str, TableEntry], r: ArchiveRecord) -> None:
    """Adds one trial record to its architecture's entry; ValueError / TypeError for a malformed one."""
    seed, key = split_trial_key(r.key)
    entry = entries.setdefault(key, TableEntry(key, r.genotype, r.readable))
    entry.partial = bool(r.extra.get("partial", False))
    entry.cost_seconds += r.wall_seconds
    entry.epochs, entry.params = r.epochs, r.params if r.params is not None else entry.params
    if r.error is not None or not math.isfinite(r.score):
        entry.failed += 1
        return
    entry.seeds.append(seed)
    entry.values.append(float(r.score))
    if r.extra.get("train_accuracy") is not None:
        entry.train_accuracy[seed] = float(r.extra["train_accuracy"])
    if r.extra.get("curve"):  # evaluator.validate_every: the validation score after those epochs
        entry.curves[seed] = {int(epoch): float(score) for epoch, score in r.extra["curve"]}


class TableEvaluator(Evaluator[G]):
    """Looks every architecture up in a ground-truth table; `value=mean` or one seed's measurement."""

    name = "table"
    needs_data = False

    def __init__(self, space: Space[G], path: str, value: str = "mean", seed: int = 0, **_: Any) -> None:
        if value not in VALUES:
            raise ValueError(f"evaluator.value must be one of {', '.join(VALUES)}, got {value!r}")
        self.space, self.value, self.seed = space, value, seed
        self.table = ResultTable.load(path)

    def evaluate(self, genotypes: Sequence[G]) -> list[Evaluation]:
        out = []
        for g in genotypes:
            start = time.perf_counter()
            entry = self.table.lookup(self.space.key(g))
            score = entry.mean if self.value == "mean" else entry.value_for(self.seed)
            extra = {"std": entry.std, "seeds": len(entry.values), "cost_seconds": entry.cost_seconds}
            if entry.train_accuracy:  # what the trials' training reported (NASES' reward uses it)
                train = entry.train_accuracy
                seed = entry.measured_seed(self.seed) if self.value == "seed" else None
                extra["train_accuracy"] = train[seed] if seed in train else float(np.mean(list(train.values())))
            out.append(Evaluation(score, entry.params, entry.epochs, time.perf_counter() - start, extra=extra))
        return out
