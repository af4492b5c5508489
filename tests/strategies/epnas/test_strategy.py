"""EPNAS / PNAS as ask / tell: the progression, greedy vs sampled choice, resume, and the search loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from naslab.evaluators.planted import PlantedEvaluator
from naslab.search.ask_tell import run_search
from naslab.spaces.macro.space import MacroGenotype, MacroSpace
from naslab.spaces.micro.space import MicroSpace
from naslab.spaces.rnn.space import RNNSpace
from naslab.strategies.base import Proposal, SharesWeights, results_of
from naslab.strategies.epnas.strategy import EPNASStrategy, PNASStrategy, normalised

SPACE = MacroSpace(3, op_set=["conv_3x3", "max_pool_3x3", "avg_pool_3x3"])
FAST = {"epochs": 5}  # surrogate refits: a few epochs keep the test fast


def genotypes(proposals: list[Proposal]) -> list:
    return [p.genotype for p in proposals]


def measure(strategy: EPNASStrategy, proposals: list[Proposal], evaluator: PlantedEvaluator) -> None:
    strategy.tell(results_of(proposals, [e.score for e in evaluator.evaluate(genotypes(proposals))]))


def drive(strategy: EPNASStrategy, evaluator: PlantedEvaluator, limit: int = 200) -> list[list[MacroGenotype]]:
    """ask / tell level by level until the strategy finishes; returns the architectures of each level."""
    levels: list[list[MacroGenotype]] = []
    while limit:
        batch = strategy.ask(100)
        if not batch:
            break
        levels.append(genotypes(batch))
        measure(strategy, batch, evaluator)
        limit -= 1
    return levels


def test_progression_grows_the_sampled_architectures_one_layer_per_level() -> None:
    strategy = EPNASStrategy(SPACE, seed=0, k=4, iterations=2, surrogate=FAST)
    levels = drive(strategy, PlantedEvaluator(SPACE, seed=1))
    assert [len(batch) for batch in levels] == [3, 4, 4] * 2  # level 1 has only 3 architectures (<= K)
    assert [{g.num_layers for g in batch} for batch in levels] == [{1}, {2}, {3}] * 2
    for parents, children in zip(levels, levels[1:]):
        if children[0].num_layers > 1:  # every child extends one of the previous level's K
            assert all(MacroGenotype(child.layers[:-1]) in parents for child in children)
    assert strategy.ask(5) == [] and strategy.finished
    best = strategy.derive_from(3)
    assert best and all(SPACE.is_complete(p.genotype) for p in best)
    assert [p.info["epnas"]["level"] for p in best] == [3] * len(best)


def test_epnas_takes_the_weight_sharing_role_on_its_current_level() -> None:
    """Shared weights train on this level's K (`train_on`) and derive from the best complete architectures."""
    strategy = EPNASStrategy(SPACE, seed=0, k=2, iterations=1, surrogate=FAST)
    assert isinstance(strategy, SharesWeights) and not strategy.finished
    level = {SPACE.key(p.genotype) for p in strategy.ask(100)}
    assert {SPACE.key(strategy.train_on()) for _ in range(20)} <= level
    # nothing complete measured yet: this level's architectures grown to full depth
    derived = strategy.derive_from(2)
    assert len(derived) == 2 and all(SPACE.is_complete(p.genotype) for p in derived)


def test_pnas_keeps_the_top_k_by_prediction(monkeypatch) -> None:
    strategy = PNASStrategy(SPACE, seed=0, k=2, surrogate=FAST)
    drive_one = strategy.ask(10)
    strategy.tell(results_of(drive_one, [0.5] * len(drive_one)))  # level 1 measured: level 2 chosen by the surrogate
    children = {SPACE.key(c): c for p in genotypes(drive_one) for c in SPACE.expand(p)}
    predictions = strategy.surrogate.predict([SPACE.to_tokens(c) for c in children.values()])
    top = {list(children)[i] for i in np.argsort(-predictions)[:2]}
    assert {SPACE.key(p.genotype) for p in strategy.ask(10)} == top
    with pytest.raises(ValueError, match="greedy"):
        PNASStrategy(SPACE, greedy=False)


def test_a_resumed_strategy_asks_what_the_uninterrupted_one_asks() -> None:
    evaluator = PlantedEvaluator(SPACE, seed=2)
    straight = EPNASStrategy(SPACE, seed=3, k=3, iterations=1, surrogate=FAST)
    expected = drive(straight, evaluator)
    first = EPNASStrategy(SPACE, seed=3, k=3, iterations=1, surrogate=FAST)
    measure(first, first.ask(100), evaluator)
    half = first.ask(2)  # killed in the middle of level 2, after asking part of it
    resumed = EPNASStrategy(SPACE, seed=99, k=3, iterations=1, surrogate=FAST)
    resumed.load_state_dict(first.state_dict())
    rest = resumed.ask(100)
    assert genotypes(half + rest) == expected[1]
    measure(resumed, half + rest, evaluator)
    assert drive(resumed, evaluator) == expected[2:]


def test_search_loop_returns_a_complete_architecture_and_logs_the_surrogate(tmp_path: Path) -> None:
    strategy = EPNASStrategy(SPACE, seed=0, k=3, iterations=2, surrogate=FAST)
    metrics: list[dict[str, float]] = []
    outcome = run_search(
        SPACE,
        strategy,
        PlantedEvaluator(SPACE, seed=1),
        tmp_path,
        num_architectures=40,
        batch_size=3,
        log_metrics=lambda m, step: metrics.append(m),
    )
    assert SPACE.is_complete(outcome.best_genotype)
    complete = [r for r in outcome.archive.records if len(r.genotype["layers"]) == 3]
    assert outcome.best_score == max(r.score for r in complete)  # partial architectures are not the result
    logged = {k for m in metrics for k in m}
    assert {"strategy/surrogate_kendall_tau", "strategy/temperature", "strategy/level"} <= logged
    assert {r.extra["epnas"]["level"] for r in outcome.archive.records} == {1, 2, 3}
    assert all("predicted" in r.extra["epnas"] for r in outcome.archive.records)
    # one metrics row per measured level, naming that level: 2 progressions x 3 levels
    levels = [(m["strategy/iteration"], m["strategy/level"]) for m in metrics if "strategy/level" in m]
    assert levels == [(i, lv) for i in (0.0, 1.0) for lv in (1.0, 2.0, 3.0)]


def test_a_space_without_levels_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no progressive levels"):
        EPNASStrategy(RNNSpace(num_nodes=2), seed=0)
    with pytest.raises(ValueError, match="grows one cell used as both normal and reduction cell.*space.tied=true"):
        EPNASStrategy(MicroSpace(2), seed=0)


def test_minmax_normalisation_spreads_clustered_predictions() -> None:
    clustered = np.array([0.90, 0.92, 0.94])
    assert normalised(clustered, "sum") is clustered
    assert normalised(clustered, "minmax") == pytest.approx([0.0, 0.5, 1.0])
    assert normalised(np.array([0.7, 0.7]), "minmax").tolist() == [1.0, 1.0]  # all equal: uniform
    with pytest.raises(ValueError, match="normalise"):
        EPNASStrategy(SPACE, normalise="softmax")
    strategy = EPNASStrategy(SPACE, seed=0, k=2, normalise="minmax", surrogate=FAST)
    assert len(drive(strategy, PlantedEvaluator(SPACE, seed=1))) == 3 * 3  # 3 progressions of 3 levels


def test_micro_progression_grows_one_tied_cell_block_by_block(tmp_path: Path) -> None:
    """EPNAS on the PNAS / EPNAS cell space: level b measures cells of b blocks, each extending a parent."""
    space = MicroSpace(3, op_set=["identity", "conv_3x3", "max_pool_3x3"], tied=True)
    strategy = EPNASStrategy(space, seed=0, k=5, iterations=1, surrogate=FAST)
    levels = drive(strategy, PlantedEvaluator(space, seed=1))
    # level 1 is every 1-block cell (2 inputs x 3 ops per branch, up to the branch swap: 3 * 7 = 21),
    # measured before the surrogate ranks anything (EPNAS Fig. 3, step 1); then K per level
    assert [len(batch) for batch in levels] == [21, 5, 5]
    assert {space.key(g) for g in levels[0]} == {space.key(g) for g in space.expand(None)}
    assert [{space.level(g) for g in batch} for batch in levels] == [{1}, {2}, {3}]
    for parents, children in zip(levels, levels[1:]):
        parent_keys = {space.key(p) for p in parents}
        assert all(space.key(space.prefix(c, space.level(c) - 1)) in parent_keys for c in children)
    assert all(g.normal == g.reduce for batch in levels for g in batch)
    outcome = run_search(
        space,
        EPNASStrategy(space, seed=0, k=5, iterations=1, surrogate=FAST),
        PlantedEvaluator(space, seed=1),
        tmp_path,
        num_architectures=31,
        batch_size=5,
    )
    assert space.is_complete(outcome.best_genotype) and outcome.best_genotype.normal == outcome.best_genotype.reduce


def test_first_level_sample_picks_k_of_the_simplest_architectures_like_any_level() -> None:
    space = MicroSpace(3, op_set=["identity", "conv_3x3", "max_pool_3x3"], tied=True)
    strategy = EPNASStrategy(space, seed=0, k=5, iterations=1, first_level="sample", surrogate=FAST)
    assert [len(batch) for batch in drive(strategy, PlantedEvaluator(space, seed=1))] == [5, 5, 5]
    with pytest.raises(ValueError, match="first_level"):
        EPNASStrategy(space, first_level="some")
