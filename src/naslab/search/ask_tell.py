"""The ask/tell search: ask the strategy, score with the evaluator, record, tell, checkpoint.

Resuming is exact: the strategy state is checkpointed after every `tell`, and every evaluation is
in the archive before the next starts. On restart the strategy is restored to its last
checkpoint and asked again; architectures already in the archive are taken from it instead of
being re-evaluated, so a killed search loses no evaluated architecture and repeats no work.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from naslab.archive import Archive, ArchiveRecord
from naslab.errors import SearchFailedError
from naslab.evaluators.base import Evaluation, Evaluator
from naslab.loggers import log_metrics
from naslab.search.base import G, Search, SearchResult, make_record, save_state
from naslab.spaces.base import Space
from naslab.strategies.base import Proposal, Result, Strategy

log = logging.getLogger(__name__)
MetricsLogger = Callable[[dict[str, float], int], None]

STATE_FILE = "search_state.pt"


class AskTellSearch(Search[G]):
    """`search.num_architectures` distinct architectures proposed by the strategy (in batches of
    `search.batch_size`), each scored by the evaluator (stand-alone training, a table, a function).

    A proposal already in the archive (a strategy may repeat itself) takes its archived score and
    costs no evaluation; the search stops after `max_proposals_factor * num_architectures`
    proposals if the strategy keeps repeating itself.
    """

    kind = "ask_tell"
    budget_unit = "evaluations"

    def __init__(
        self,
        space: Space[G],
        strategy: Strategy[G],
        evaluator: Evaluator[G],
        num_architectures: int,
        batch_size: int = 1,
        seed: int = 0,
        max_proposals_factor: int = 10,
    ):
        if num_architectures < 1:
            raise ValueError(f"search.num_architectures must be >= 1, got {num_architectures}")
        self.space, self.strategy, self.evaluator = space, strategy, evaluator
        self.num_architectures, self.batch_size, self.seed = num_architectures, batch_size, seed
        self.max_proposals_factor = max_proposals_factor

    def close(self) -> None:
        self.evaluator.close()  # process pools and Ray instances end with the search

    def run(self, run_dir: Path, resume: bool = False, logger: Any = None) -> SearchResult[G]:
        metrics_fn = (lambda metrics, step: log_metrics(logger, metrics, step)) if logger is not None else None
        return self._run(Path(run_dir), resume, metrics_fn)

    def _run(self, run_dir: Path, resume: bool, log_metrics: MetricsLogger | None) -> SearchResult[G]:
        space, strategy, evaluator, seed = self.space, self.strategy, self.evaluator, self.seed
        num_architectures, batch_size, max_proposals_factor = (
            self.num_architectures,
            self.batch_size,
            self.max_proposals_factor,
        )
        archive = Archive(run_dir / "archive.jsonl", resume=resume)
        state_path = run_dir / STATE_FILE
        fingerprint = {"space": repr(space), "strategy": strategy.name, "seed": seed, "batch_size": batch_size}
        archived_at_tell, proposals = 0, 0  # archive size when the strategy was last told; proposals so far
        state = _read_state(state_path) if resume and state_path.exists() else None
        if state is not None:
            if state["fingerprint"] != fingerprint:
                raise ValueError(
                    f"resume=true in {run_dir}: it holds a search of {state['fingerprint']}, not of {fingerprint}"
                )
            try:
                strategy.load_state_dict(state["strategy"])
            except (RuntimeError, KeyError, ValueError, IndexError) as err:  # torch's size mismatches are pages long
                lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
                reason = " ".join(lines[:2])[
                    :200
                ]  # torch: "Error(s) in loading state_dict for X:" + the first mismatch
                raise ValueError(
                    f"resume=true in {run_dir}: its saved {strategy.name} state does not fit this run's strategy "
                    f"settings ({reason}); resume with the settings of the killed run (its .hydra/config.yaml)"
                ) from err
            archived_at_tell, proposals = int(state["num_archived"]), int(state["num_proposed"])
            log.info("restored the strategy after %d proposals (%d archived)", proposals, archived_at_tell)
        elif resume and len(archive):
            # No (readable) state: the seeded strategy proposes again what it proposed, and every proposal in
            # the archive takes its archived score, so nothing evaluated is lost or evaluated twice.
            log.warning("no usable %s in %s: replaying the strategy from its seed", STATE_FILE, run_dir)
        start = time.perf_counter() - sum(r.wall_seconds for r in archive.records)
        best_so_far = max((r.score for r in archive.records if r.error is None), default=float("-inf"))
        max_proposals = max_proposals_factor * num_architectures
        finished = False  # the strategy said it has nothing more to propose

        with Progress(
            TextColumn("[bold]search"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("best {task.fields[best]:.4f}"),
        ) as progress:
            bar = progress.add_task(
                "search", total=num_architectures, completed=len(archive), best=max(best_so_far, 0.0)
            )
            while archived_at_tell < num_architectures and proposals < max_proposals:
                # Depends only on checkpointed numbers, so a resumed search asks exactly what it asked.
                asked: list[Proposal[G]] = strategy.ask(min(batch_size, num_architectures - archived_at_tell))
                if not asked:
                    finished = True
                    log.info("the strategy has finished after %d proposals", proposals)
                    break
                records: dict[str, ArchiveRecord] = {}
                fresh: dict[str, Proposal[G]] = {}  # distinct architectures of this batch not yet in the archive
                batch_keys = []  # the archive key (space.key: identity up to symmetries) of each proposal
                for proposal in asked:
                    space.validate_partial(proposal.genotype)  # progressive strategies propose partial ones
                    key = space.key(proposal.genotype)
                    batch_keys.append(key)
                    record = archive.get(key)
                    if record is not None:
                        records[key] = record
                    else:
                        fresh.setdefault(key, proposal)
                keys = list(fresh)
                # The evaluator may train the batch in parallel (evaluator.backend); each result is
                # archived the moment it arrives, so a kill loses no finished trial.
                for i, evaluation in evaluator.evaluate_each([fresh[k].genotype for k in keys]):
                    proposal = fresh[keys[i]]
                    record = evaluation_record(space, proposal.genotype, keys[i], len(archive), seed, evaluation)
                    record.extra.update(proposal.info)
                    archive.append(record)
                    records[keys[i]] = record
                    if record.error is None:
                        best_so_far = max(best_so_far, record.score)
                    if log_metrics is not None:
                        metrics = {
                            "search/score": record.score,
                            "search/best_so_far": best_so_far,
                            "search/params": float(record.params or 0),
                        }
                        log_metrics(metrics, record.index)
                    progress.update(bar, completed=len(archive), best=max(best_so_far, 0.0))
                strategy.tell(
                    [
                        Result(p.genotype, records[key].score, records[key].extra, records[key].error)
                        for p, key in zip(asked, batch_keys)
                    ]
                )
                strategy_metrics = strategy.pop_metrics()
                if strategy_metrics and log_metrics is not None:
                    log_metrics({f"strategy/{k}": v for k, v in strategy_metrics.items()}, len(archive))
                archived_at_tell, proposals = len(archive), proposals + len(asked)
                state = {
                    "strategy": strategy.state_dict(),
                    "num_archived": archived_at_tell,
                    "num_proposed": proposals,
                    "fingerprint": fingerprint,
                }
                save_state(state_path, state)
        if len(archive) < num_architectures and not finished:
            log.warning("the strategy proposed only %d distinct architectures in %d proposals", len(archive), proposals)

        # The result is a whole architecture: a progressive search also scores partial ones on its way.
        best = archive.best(lambda r: space.is_complete(space.genotype_from_dict(r.genotype)))
        if best is None and archive.best() is not None:
            best = archive.best()
            log.warning("no complete architecture was evaluated; the result is the best partial one: %s", best.readable)
        if best is None:
            first = next((r.error for r in archive.records if r.error), "no error recorded")
            raise SearchFailedError(
                f"every one of the {len(archive)} evaluated architectures failed (the first: {first}); "
                f"see {archive.path}"
            )
        return SearchResult(
            best_genotype=space.genotype_from_dict(best.genotype),
            best_score=best.score,
            num_evaluated=len(archive),
            wall_seconds=time.perf_counter() - start,
            archive=archive,
        )


def _read_state(path: Path) -> dict[str, Any] | None:
    """The checkpointed strategy state, or None (with a warning) when the file is damaged: a kill cannot leave
    half a file (it is replaced atomically), so a damaged one came from elsewhere; the strategy is replayed."""
    try:
        return torch.load(path, weights_only=False)
    except Exception as err:  # torch raises pickle, zip and EOF errors of several kinds for a damaged file
        log.warning("%s is unreadable (%s: %s); replaying the strategy from its seed", path, type(err).__name__, err)
        return None


def run_search(
    space: Space[G],
    strategy: Strategy[G],
    evaluator: Evaluator[G],
    run_dir: Path,
    num_architectures: int,
    batch_size: int = 1,
    seed: int = 0,
    resume: bool = False,
    log_metrics: MetricsLogger | None = None,
    max_proposals_factor: int = 10,
) -> SearchResult[G]:
    """`AskTellSearch(...).run(...)` in one call, with a metrics callback (tests, benchmarks, notebooks)."""
    search = AskTellSearch(space, strategy, evaluator, num_architectures, batch_size, seed, max_proposals_factor)
    return search._run(Path(run_dir), resume, log_metrics)


def evaluation_record(
    space: Space[G], genotype: G, key: str, index: int, seed: int, evaluation: Evaluation
) -> ArchiveRecord:
    """The archive record of one evaluation (search archives and ground-truth tables alike)."""
    return make_record(
        space,
        genotype,
        key,
        index,
        seed,
        evaluation.score,
        epochs=evaluation.epochs,
        params=evaluation.params,
        wall_seconds=evaluation.wall_seconds,
        error=evaluation.error,
        extra=evaluation.extra,
    )
