"""`mode=ranking`: how well weight sharing ranks architectures (Sciuto et al. arXiv:1902.08142, Sec. 4.2-4.3).

For each seed, a shared supernet is trained on an enumerable space with uniform sampling (one
architecture per mini-batch, `strategy=random` driving `evaluator=shared`), then every architecture
of the space is scored with the shared weights. Kendall's tau (scipy) between that ranking and the
ground truth's (the mean stand-alone score of a `mode=groundtruth` table) is reported per seed and
averaged; the study found it about 0 on the 32-cell space. A `SubSpace` (earlier nodes fixed, the last
one searched) is the "amount of sharing" experiment: fewer architectures share the weights.

`search.rank_all=true` does the same at the end of any weight-sharing or DARTS search, with the
supernet that search trained: `naslab.rank_agreement.write_shared_ranking` puts every architecture's
shared-weight score in the run dir's `shared_ranking.csv`, which a study report (`naslab.studies.report`)
ranks against its table.

Outputs in the run dir: `ranking.csv` (per architecture: ground-truth mean and rank, shared score and
rank per seed), `ranking.md` (tau per seed, mean +- std) and `ranking.png` (shared rank against true
rank, one panel per seed); each seed's supernet search lives in `seed<s>/` and resumes there.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import numpy as np
from scipy import stats

from naslab.evaluators.table import ResultTable
from naslab.rank_agreement import kendall_tau
from naslab.search.shared import SharedWeightSearch
from naslab.spaces.base import Space
from naslab.strategies.random.strategy import RandomStrategy
from naslab.studies.groundtruth import distinct_architectures

log = logging.getLogger(__name__)


@dataclass
class RankingStudy:
    """Ground truth and shared-weight scores of every architecture, per seed."""

    genotypes: list[Any]
    readable: list[str]
    truth: list[float]
    shared: dict[int, list[float]] = field(default_factory=dict)

    def shared_favourite(self) -> Any:
        """The architecture with the best shared-weight score averaged over seeds."""
        return self.genotypes[int(np.argmax(np.mean(list(self.shared.values()), axis=0)))]

    def tau(self, seed: int) -> float:
        return kendall_tau(self.truth, self.shared[seed])

    def taus(self) -> dict[int, float]:
        return {seed: self.tau(seed) for seed in self.shared}

    def summary(self) -> dict[str, Any]:
        taus = list(self.taus().values())
        return {
            "architectures": len(self.truth),
            "kendall_tau": {str(s): t for s, t in self.taus().items()},
            "kendall_tau_mean": float(np.mean(taus)),
            "kendall_tau_std": float(np.std(taus, ddof=1)) if len(taus) > 1 else 0.0,
        }

    def to_csv(self) -> str:
        truth_rank = stats.rankdata([-t for t in self.truth], method="min")
        shared_rank = {s: stats.rankdata([-v for v in scores], method="min") for s, scores in self.shared.items()}
        out = io.StringIO()
        writer = csv.writer(out)
        header = ["genotype", "truth_mean", "truth_rank"]
        for s in self.shared:
            header += [f"shared_score_seed{s}", f"shared_rank_seed{s}"]
        writer.writerow(header)
        for i, name in enumerate(self.readable):
            row: list[Any] = [name, round(self.truth[i], 6), int(truth_rank[i])]
            for s, scores in self.shared.items():
                row += [round(scores[i], 6), int(shared_rank[s][i])]
            writer.writerow(row)
        return out.getvalue()

    def to_markdown(self) -> str:
        summary = self.summary()
        lines = ["| seed | Kendall tau (shared vs stand-alone) |", "|---:|---:|"]
        lines += [f"| {s} | {t:.3f} |" for s, t in self.taus().items()]
        lines.append(f"| mean +- std | {summary['kendall_tau_mean']:.3f} +- {summary['kendall_tau_std']:.3f} |")
        return f"{summary['architectures']} architectures\n\n" + "\n".join(lines) + "\n"

    def plot(self, png: Path) -> Path:
        """Shared-weight rank against stand-alone rank, one panel per seed (a diagonal = perfect agreement)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        seeds = list(self.shared)
        n = len(self.truth)
        truth_rank = stats.rankdata([-t for t in self.truth], method="min")
        fig = Figure(figsize=(3.2 * len(seeds), 3.4), dpi=110)
        FigureCanvasAgg(fig)
        for k, seed in enumerate(seeds):
            ax = fig.add_subplot(1, len(seeds), k + 1)
            shared_rank = stats.rankdata([-v for v in self.shared[seed]], method="min")
            ax.scatter(truth_rank, shared_rank, s=14)
            ax.plot([1, n], [1, n], color="0.6", lw=0.8, ls="--")
            ax.set_title(f"seed {seed}: tau {self.tau(seed):.2f}", fontsize=9)
            ax.set_xlabel("stand-alone rank")
            if k == 0:
                ax.set_ylabel("weight-sharing rank")
        fig.tight_layout()
        png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(png)
        return png


def run_ranking_study(
    space: Space[Any],
    table: ResultTable,
    make_evaluator: Callable[[int], Any],
    seeds: Sequence[int],
    run_dir: str | Path,
    resume: bool = False,
) -> RankingStudy:
    """Trains one shared supernet per seed (uniform sampling) and ranks every architecture with it."""
    run_dir = Path(run_dir)
    every = distinct_architectures(space, space.enumerate())
    study = RankingStudy(every, [space.describe(g) for g in every], [table.lookup(space.key(g)).mean for g in every])
    for seed in seeds:
        L.seed_everything(seed, workers=True, verbose=False)
        evaluator = make_evaluator(seed)
        if getattr(evaluator, "search_kind", None) != "shared":
            raise ValueError("mode=ranking trains a weight-sharing supernet: use evaluator=shared")
        try:
            search = SharedWeightSearch(space, RandomStrategy(space, seed=seed), evaluator)
            search.run(run_dir / f"seed{seed}", resume=resume)
            study.shared[seed] = [e.score for e in evaluator.evaluate(every)]
        finally:
            evaluator.close()
        log.info("seed %d: Kendall tau %.3f over %d architectures", seed, study.tau(seed), len(every))
    (run_dir / "ranking.csv").write_text(study.to_csv())
    (run_dir / "ranking.md").write_text(study.to_markdown())
    study.plot(run_dir / "ranking.png")
    return study
