"""The planted synthetic score: symmetric, seeded, spread over an accuracy-like range."""

from __future__ import annotations

import numpy as np
import pytest

from naslab.evaluators.planted import PlantedEvaluator
from naslab.spaces import MacroSpace, MicroSpace


@pytest.mark.parametrize("space", [MicroSpace(5, "nao"), MicroSpace(3, "enas"), MacroSpace(6, "enas_macro")], ids=repr)
def test_scores_are_seeded_spread_and_respect_symmetries(space) -> None:
    evaluator = PlantedEvaluator(space, seed=0)
    rng = np.random.default_rng(0)
    genotypes = [space.sample(rng) for _ in range(100)]
    scores = np.array([e.score for e in evaluator.evaluate(genotypes)])
    assert ((scores > 0.5) & (scores < 0.95)).all() and scores.std() > 0.08  # not saturated
    assert np.array_equal(scores, [PlantedEvaluator(space, seed=0).score(g) for g in genotypes])
    assert not np.allclose(scores, [PlantedEvaluator(space, seed=1).score(g) for g in genotypes])
    for g in genotypes[:5]:
        twins = space.symmetries(g)[:64] + [space.random_symmetry(g, rng) for _ in range(8)]
        assert {round(evaluator.score(twin), 12) for twin in twins} == {round(evaluator.score(g), 12)}


def test_noise_is_fixed_per_architecture() -> None:
    space = MicroSpace(3, "enas")
    noisy, clean = PlantedEvaluator(space, seed=0, noise=0.5), PlantedEvaluator(space, seed=0)
    genotypes = [space.sample(np.random.default_rng(i)) for i in range(10)]
    assert [noisy.score(g) for g in genotypes] == [noisy.score(g) for g in genotypes]
    assert [noisy.score(g) for g in genotypes] != [clean.score(g) for g in genotypes]


def test_planted_evaluator_runs_a_whole_search_from_the_command_line_config(compose_cfg) -> None:
    from naslab.pipeline import run

    results = run(compose_cfg("evaluator=planted", "strategy=random", "mode=search", "search.num_architectures=20"))
    assert results["evaluator"] == "planted" and results["search"]["num_evaluated"] == 20
    assert 0.5 < results["search"]["best_score"] < 0.95
