"""The ask/tell search with an instant evaluator: budgets, duplicates, resume checks, checkpoints."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pytest

from naslab.errors import SearchFailedError, UserError
from naslab.evaluators.base import Evaluation, Evaluator
from naslab.search.ask_tell import STATE_FILE, run_search
from naslab.spaces import MicroGenotype, MicroSpace
from naslab.strategies.base import Proposal, Result
from naslab.strategies.random import RandomStrategy


class TokenSumEvaluator(Evaluator[MicroGenotype]):
    """Score = a deterministic function of the tokens; counts its calls."""

    name = "token_sum"

    def __init__(self, space: MicroSpace) -> None:
        self.space, self.calls = space, 0

    def evaluate(self, genotypes: Sequence[MicroGenotype]) -> list[Evaluation]:
        self.calls += len(genotypes)
        return [Evaluation(sum(self.space.to_tokens(g)) / 100.0, params=1) for g in genotypes]


class RepeatingStrategy(RandomStrategy):
    """Proposes every architecture twice in a row (like a converged RL controller)."""

    def __init__(self, space, seed: int = 0) -> None:
        super().__init__(space, seed)
        self.last: MicroGenotype | None = None

    def ask(self, n: int) -> list[Proposal[MicroGenotype]]:
        out = []
        for _ in range(n):
            if self.last is not None:
                out.append(self.last)
                self.last = None
            else:
                self.last = super().ask(1)[0]
                out.append(self.last)
        return out


def test_duplicates_are_not_re_evaluated_and_do_not_eat_the_budget(tmp_path) -> None:
    space = MicroSpace(2, "enas")
    evaluator = TokenSumEvaluator(space)
    result = run_search(space, RepeatingStrategy(space), evaluator, tmp_path, num_architectures=5, batch_size=2)
    assert result.num_evaluated == 5 == evaluator.calls == len({r.key for r in result.archive.records})


def test_a_strategy_stuck_on_one_architecture_stops(tmp_path) -> None:
    space = MicroSpace(2, "enas")
    g = space.sample(np.random.default_rng(0))

    class Stuck(RandomStrategy):
        def ask(self, n: int) -> list[Proposal[MicroGenotype]]:
            return [Proposal(g)] * n

    evaluator = TokenSumEvaluator(space)
    result = run_search(space, Stuck(space), evaluator, tmp_path, num_architectures=3, max_proposals_factor=4)
    assert result.num_evaluated == 1 == evaluator.calls and result.best_genotype == g


def test_best_is_the_highest_score(tmp_path) -> None:
    space = MicroSpace(3, "nao")
    result = run_search(space, RandomStrategy(space, 1), TokenSumEvaluator(space), tmp_path, num_architectures=20)
    scores = [r.score for r in result.archive.records]
    assert result.best_score == max(scores) and sum(space.to_tokens(result.best_genotype)) / 100 == max(scores)


def test_resume_refuses_another_search(tmp_path) -> None:
    space = MicroSpace(2, "enas")
    run_search(space, RandomStrategy(space, 0), TokenSumEvaluator(space), tmp_path, num_architectures=3)
    other = MicroSpace(3, "enas")
    with pytest.raises(ValueError, match="resume=true in .* holds a search of"):
        run_search(other, RandomStrategy(other, 0), TokenSumEvaluator(other), tmp_path, 5, resume=True)
    with pytest.raises(ValueError, match="holds a search of"):
        run_search(space, RandomStrategy(space, 1), TokenSumEvaluator(space), tmp_path, 5, seed=1, resume=True)


def test_resume_extends_a_finished_search_identically(tmp_path) -> None:
    space = MicroSpace(3, "enas")
    run_search(
        space, RandomStrategy(space, 0), TokenSumEvaluator(space), tmp_path / "a", num_architectures=4, batch_size=2
    )
    evaluator = TokenSumEvaluator(space)
    resumed = run_search(space, RandomStrategy(space, 0), evaluator, tmp_path / "a", 8, batch_size=2, resume=True)
    fresh = run_search(space, RandomStrategy(space, 0), TokenSumEvaluator(space), tmp_path / "b", 8, batch_size=2)
    assert evaluator.calls == 4
    assert [r.key for r in resumed.archive.records] == [r.key for r in fresh.archive.records]


def test_strategies_are_told_each_evaluation_s_measured_extras_with_its_score(tmp_path) -> None:
    """NASES's reward needs the training accuracy: the loop passes every record's extra, repeats included."""
    space = MicroSpace(2, "enas")

    class WithTrainAccuracy(TokenSumEvaluator):
        def evaluate(self, genotypes: Sequence[MicroGenotype]) -> list[Evaluation]:
            evaluations = super().evaluate(genotypes)
            for e in evaluations:
                e.extra["train_accuracy"] = e.score + 0.01
            return evaluations

    class Recording(RepeatingStrategy):
        told: list[tuple[float, float]] = []

        def tell(self, results: Sequence[Result[MicroGenotype]]) -> None:
            self.told.extend((r.score, r.extra["train_accuracy"]) for r in results)
            super().tell(results)

    strategy = Recording(space)
    run_search(space, strategy, WithTrainAccuracy(space), tmp_path, num_architectures=3, batch_size=2)
    assert len(strategy.told) >= 4  # every proposal, the repeated ones with their archived extras too
    assert all(train == pytest.approx(score + 0.01) for score, train in strategy.told)


def test_resuming_with_other_strategy_settings_is_a_one_line_error(tmp_path) -> None:
    from naslab.strategies import ReinforceStrategy

    space = MicroSpace(2, "enas")
    run_search(space, ReinforceStrategy(space, hidden=16), TokenSumEvaluator(space), tmp_path, num_architectures=2)
    with pytest.raises(ValueError, match=r"saved reinforce state does not fit .*\(.*size mismatch") as err:
        run_search(space, ReinforceStrategy(space, hidden=8), TokenSumEvaluator(space), tmp_path, 4, resume=True)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_strategy_state_is_replayed_from_the_seed_with_a_warning(tmp_path, caplog, damage) -> None:
    """A garbage or truncated search_state.pt is not a silent reset: the resume says so, replays the seeded
    strategy, and takes every archived evaluation from the archive, so it ends where an uninterrupted run ends."""
    space = MicroSpace(3, "enas")
    run_search(space, RandomStrategy(space, 0), TokenSumEvaluator(space), tmp_path / "a", 4, batch_size=2)
    state = tmp_path / "a" / STATE_FILE
    whole = state.read_bytes()
    state.write_bytes(b"not a torch checkpoint" if damage == "garbage" else whole[: len(whole) // 2])
    evaluator = TokenSumEvaluator(space)
    with caplog.at_level("WARNING"):
        resumed = run_search(space, RandomStrategy(space, 0), evaluator, tmp_path / "a", 8, batch_size=2, resume=True)
    assert "is unreadable" in caplog.text and "replaying the strategy from its seed" in caplog.text
    fresh = run_search(space, RandomStrategy(space, 0), TokenSumEvaluator(space), tmp_path / "b", 8, batch_size=2)
    assert evaluator.calls == 4  # the 4 archived ones were not evaluated again
    assert [(r.key, r.score) for r in resumed.archive.records] == [(r.key, r.score) for r in fresh.archive.records]


def test_a_search_whose_every_trial_failed_ends_in_one_line_with_the_first_error(tmp_path) -> None:
    space = MicroSpace(2, "enas")

    class Failing(TokenSumEvaluator):
        def evaluate(self, genotypes: Sequence[MicroGenotype]) -> list[Evaluation]:
            return [Evaluation(0.0, error="FloatingPointError: loss is nan at step 3") for _ in genotypes]

    with pytest.raises(SearchFailedError) as err:
        run_search(space, RandomStrategy(space, 0), Failing(space), tmp_path, num_architectures=3)
    message = str(err.value)
    assert "every one of the 3 evaluated architectures failed" in message and "loss is nan at step 3" in message
    assert str(tmp_path / "archive.jsonl") in message and "\n" not in message
    assert isinstance(err.value, UserError)  # run.py prints it as one line and exits 2
