"""Regularized evolution: random start, tournament parents, one-token children, aging, exact resume."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from naslab.evaluators.planted import PlantedEvaluator
from naslab.spaces import MacroSpace, MicroSpace, MLPSpace
from naslab.strategies.base import Proposal, Result, SharesWeights, results_of
from naslab.strategies.evolution import RegularizedEvolution

MICRO, MACRO = MicroSpace(3, "enas"), MacroSpace(6, "enas_macro")
MLP = MLPSpace(max_layers=3, widths=(8, 16), activations=("relu", "tanh"))
SPACES = [MICRO, MACRO, MLP]


def differing(space, a, b) -> list[int]:
    return [i for i, (x, y) in enumerate(zip(space.to_tokens(a), space.to_tokens(b))) if x != y]


def fill(strategy: RegularizedEvolution, scores: list[float]) -> list[Proposal]:
    """Asks for the random start and tells it `scores` (member i is born i)."""
    proposals = strategy.ask(len(scores))
    strategy.tell(results_of(proposals, scores))
    return proposals


# --- the random start -----------------------------------------------------------------------------------
@pytest.mark.parametrize("space", SPACES, ids=repr)
def test_the_first_population_size_proposals_are_random_and_distinct(space) -> None:
    strategy = RegularizedEvolution(space, seed=0, population_size=12, sample_size=3)
    first = strategy.ask(5) + strategy.ask(7)  # asked in batches, nothing told yet
    assert [p.info for p in first] == [{"evolution": {"source": "random", "generation": 0}}] * 12
    assert len({space.key(p.genotype) for p in first}) == 12
    strategy.tell(results_of(first, np.linspace(0.1, 0.9, 12)))
    assert all(p.info["evolution"]["source"] == "mutation" for p in strategy.ask(4))


def test_a_batch_that_straddles_the_population_size_breeds_from_what_was_told() -> None:
    strategy = RegularizedEvolution(MICRO, seed=0, population_size=5, sample_size=2)
    fill(strategy, [0.1, 0.2, 0.3, 0.4])
    sources = [p.info["evolution"]["source"] for p in strategy.ask(4)]
    assert sources == ["random", "mutation", "mutation", "mutation"]
    # More asked than the population holds, nothing told: there is no parent yet, so random ones.
    fresh = RegularizedEvolution(MICRO, seed=0, population_size=2, sample_size=2)
    assert {p.info["evolution"]["source"] for p in fresh.ask(5)} == {"random"}


# --- children -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("space", [MICRO, MACRO], ids=repr)
def test_a_child_is_its_parent_with_one_token_changed(space) -> None:
    strategy = RegularizedEvolution(space, seed=1, population_size=8, sample_size=3, identity_prob=0.0)
    parents = fill(strategy, list(np.random.default_rng(0).uniform(size=8)))
    kinds = space.token_kinds()
    for child in strategy.ask(200):
        info = child.info["evolution"]
        parent = parents[info["parent"]].genotype
        space.validate(child.genotype)
        assert differing(space, parent, child.genotype) == [info["position"]]
        assert info["mutation"] == kinds[info["position"]] and info["generation"] == 1
        assert space.key(child.genotype) != space.key(parent)


def test_an_mlp_child_is_a_different_network() -> None:
    """An mlp token after the stop changes nothing: such a mutation is drawn again."""
    strategy = RegularizedEvolution(MLP, seed=0, population_size=6, sample_size=2, identity_prob=0.0)
    parents = fill(strategy, [0.5, 0.1, 0.2, 0.3, 0.4, 0.6])
    for child in strategy.ask(100):
        parent = parents[child.info["evolution"]["parent"]].genotype
        assert MLP.key(child.genotype) != MLP.key(parent)


def test_hidden_state_and_op_mutations_are_equally_likely_on_any_token_table() -> None:
    """Macro: 6 op and 15 skip positions, yet op and skip mutations half and half (the paper's 1/2)."""
    strategy = RegularizedEvolution(MACRO, seed=0, population_size=4, sample_size=4, identity_prob=0.0)
    fill(strategy, [0.1, 0.2, 0.3, 0.4])
    kinds = Counter(p.info["evolution"]["mutation"] for p in strategy.ask(2000))
    assert set(kinds) == {"op", "skip"} and abs(kinds["op"] / 2000 - 0.5) < 0.05


def test_identity_mutation_proposes_the_parent_itself() -> None:
    strategy = RegularizedEvolution(
        MICRO, seed=0, population_size=4, sample_size=4, identity_prob=0.3, with_replacement=False
    )
    parents = fill(strategy, [0.1, 0.9, 0.3, 0.4])
    children = strategy.ask(1000)
    identity = [p for p in children if p.info["evolution"]["mutation"] == "identity"]
    assert abs(len(identity) / 1000 - 0.3) < 0.05
    assert all(p.genotype == parents[1].genotype and "position" not in p.info["evolution"] for p in identity)


# --- selection --------------------------------------------------------------------------------------------------
def test_with_the_whole_population_as_sample_the_parent_is_always_the_best() -> None:
    strategy = RegularizedEvolution(MICRO, seed=0, population_size=10, sample_size=10, with_replacement=False)
    fill(strategy, [0.3, 0.1, 0.7, 0.2, 0.95, 0.4, 0.6, 0.5, 0.8, 0.0])
    assert {p.info["evolution"]["parent"] for p in strategy.ask(50)} == {4}


@pytest.mark.parametrize("with_replacement", [False, True])
def test_the_parent_is_the_best_of_a_uniform_sample(with_replacement: bool) -> None:
    """S = 2 of 10 members with distinct scores: the member of rank r (0 = worst) wins a tournament with
    probability r / 45 drawn without replacement, (2r + 1) / 100 with (Algorithm 1): only then can the
    worst member be a parent."""
    strategy = RegularizedEvolution(MICRO, seed=0, population_size=10, sample_size=2, with_replacement=with_replacement)
    scores = [0.5, 0.2, 0.9, 0.0, 0.7, 0.3, 0.8, 0.1, 0.6, 0.4]
    fill(strategy, scores)
    n = 9000
    wins = Counter(p.info["evolution"]["parent"] for p in strategy.ask(n))  # the population is unchanged: no tell
    rank = np.argsort(np.argsort(scores))
    observed = np.array([wins[i] / n for i in range(10)])
    expected = (2 * rank + 1) / 100 if with_replacement else rank / 45
    assert np.abs(observed - expected).max() < 0.02
    assert (wins[int(np.argmin(scores))] > 0) == with_replacement


# --- aging ------------------------------------------------------------------------------------------------------
def test_the_oldest_die_even_when_they_scored_best() -> None:
    """Aging, not survival of the fittest: P results after its birth the best member is gone."""
    strategy = RegularizedEvolution(
        MICRO, seed=0, population_size=4, sample_size=4, identity_prob=0.0, with_replacement=False
    )
    fill(strategy, [0.2, 0.3, 0.1, 1.0])
    for born in range(4, 8):
        (child,) = strategy.ask(1)
        assert child.info["evolution"]["parent"] == 3  # the best breeds (S = P) as long as it lives
        strategy.tell([Result(child.genotype, 0.5)])
        assert strategy.population[-1].born == born and len(strategy.population) == 4  # the oldest died
    assert [m.born for m in strategy.population] == [4, 5, 6, 7]
    assert max(m.score for m in strategy.population) == 0.5
    assert strategy.ask(1)[0].info["evolution"]["parent"] in {4, 5, 6, 7}


def test_a_failed_trial_joins_with_its_score_and_ages_out() -> None:
    strategy = RegularizedEvolution(MICRO, seed=0, population_size=2, sample_size=2)
    (first, second) = strategy.ask(2)
    strategy.tell([Result(first.genotype, 0.0, error="CUDA out of memory"), Result(second.genotype, 0.4)])
    assert [(m.score, m.born) for m in strategy.population] == [(0.0, 0), (0.4, 1)]
    assert strategy.ask(1)[0].info["evolution"]["parent"] == 1


# --- checkpoints ------------------------------------------------------------------------------------------------
def _step(strategy: RegularizedEvolution, evaluator: PlantedEvaluator, n: int) -> list[tuple[str, dict]]:
    proposals = strategy.ask(n)
    strategy.tell(results_of(proposals, [evaluator.score(p.genotype) for p in proposals]))
    return [(strategy.space.key(p.genotype), p.info) for p in proposals]


@pytest.mark.parametrize("space", SPACES, ids=repr)
def test_a_restored_strategy_proposes_exactly_what_the_uninterrupted_one_does(space) -> None:
    evaluator = PlantedEvaluator(space, seed=0)
    original = RegularizedEvolution(space, seed=3, population_size=6, sample_size=3, identity_prob=0.2)
    for _ in range(4):  # past the random start: the population has aged
        _step(original, evaluator, 3)
    state = json.loads(json.dumps(original.state_dict()))  # JSON-serialisable as it stands
    restored = RegularizedEvolution(space, seed=99, population_size=6, sample_size=3, identity_prob=0.2)
    restored.load_state_dict(state)
    assert [_step(original, evaluator, 3) for _ in range(10)] == [_step(restored, evaluator, 3) for _ in range(10)]
    assert restored.train_on() == original.train_on()


def test_a_state_taken_between_ask_and_tell_keeps_the_pending_proposals() -> None:
    evaluator = PlantedEvaluator(MICRO, seed=0)
    original = RegularizedEvolution(MICRO, seed=0, population_size=4, sample_size=2)
    _step(original, evaluator, 4)
    asked = original.ask(3)
    restored = RegularizedEvolution(MICRO, seed=0, population_size=4, sample_size=2)
    restored.load_state_dict(json.loads(json.dumps(original.state_dict())))
    for strategy in (original, restored):
        strategy.tell(results_of(asked, [evaluator.score(p.genotype) for p in asked]))
    assert original.state_dict() == restored.state_dict()
    assert [m.generation for m in restored.population] == [0, 1, 1, 1]


def test_a_state_with_a_larger_population_is_refused() -> None:
    big = RegularizedEvolution(MICRO, seed=0, population_size=5, sample_size=2)
    fill(big, [0.1] * 5)
    with pytest.raises(ValueError, match="strategy.population_size=4"):
        RegularizedEvolution(MICRO, population_size=4, sample_size=2).load_state_dict(big.state_dict())


# --- settings ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "settings, name",
    [
        ({"population_size": 1}, "strategy.population_size"),
        ({"population_size": 2.5}, "strategy.population_size"),
        ({"sample_size": 0}, "strategy.sample_size"),
        ({"population_size": 10, "sample_size": 11}, "strategy.sample_size"),
        ({"identity_prob": 1.0}, "strategy.identity_prob"),
        ({"identity_prob": -0.1}, "strategy.identity_prob"),
        ({"max_tries": 0}, "strategy.max_tries"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_setting(settings: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name.replace(".", r"\.")) as err:
        RegularizedEvolution(MICRO, **settings)
    assert "\n" not in str(err.value)


# --- evolution works ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("space", SPACES, ids=repr)
def test_evolution_improves_on_its_random_start(space) -> None:
    evaluator = PlantedEvaluator(space, seed=0)
    strategy = RegularizedEvolution(space, seed=0, population_size=10, sample_size=3)
    for _ in range(10):
        _step(strategy, evaluator, 1)
    start = np.mean([m.score for m in strategy.population])
    for _ in range(30):
        for key, _info in _step(strategy, evaluator, 4):
            space.validate(space.genotype_from_dict(json.loads(key)))
    assert np.mean([m.score for m in strategy.population]) > start + 0.05


def test_the_weight_sharing_role_trains_on_members_and_derives_the_best() -> None:
    strategy = RegularizedEvolution(MICRO, seed=0, population_size=4, sample_size=2)
    assert isinstance(strategy, SharesWeights) and not strategy.finished
    MICRO.validate(strategy.train_on())  # nothing told yet: a random architecture
    proposals = fill(strategy, [0.2, 0.9, 0.5, 0.1])
    asked_before = strategy.proposed
    members = {MICRO.key(p.genotype) for p in proposals}
    assert all(MICRO.key(strategy.train_on()) in members for _ in range(20))
    assert [MICRO.key(p.genotype) for p in strategy.derive_from(2)] == [
        MICRO.key(proposals[1].genotype),
        MICRO.key(proposals[2].genotype),
    ]
    assert strategy.proposed == asked_before  # training and deriving are not proposals


# --- end to end --------------------------------------------------------------------------------------------------
def test_a_search_run_from_the_config_evolves(compose_cfg, tmp_path: Path) -> None:
    """strategy=evolution through naslab.pipeline.run with the planted evaluator (no data, no training)."""
    from naslab.pipeline import run

    cfg = compose_cfg(
        "strategy=evolution",
        "evaluator=planted",
        "mode=search",
        "search.num_architectures=12",
        "strategy.population_size=4",
        "strategy.sample_size=2",
    )
    results = run(cfg)
    assert results["strategy"] == "evolution" and results["search"]["num_evaluated"] == 12
    records = [json.loads(line) for line in (Path(cfg.paths.output_dir) / "archive.jsonl").read_text().splitlines()]
    sources = Counter(r["extra"]["evolution"]["source"] for r in records)
    assert sources["random"] == 4 and sources["mutation"] == 8
