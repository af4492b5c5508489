"""Random search: uniform proposals without repeats, seeded, resumable; weight sharing trains on its samples."""

from __future__ import annotations

from naslab.spaces import MicroSpace
from naslab.strategies.base import AskedRole, SharesWeights, results_of, weight_sharing_role
from naslab.strategies.random.strategy import RandomStrategy

SPACE = MicroSpace(2, "enas")


def test_proposals_are_new_valid_and_seeded() -> None:
    strategy = RandomStrategy(SPACE, seed=0)
    first = strategy.ask(20)
    assert first == RandomStrategy(SPACE, seed=0).ask(20) and first != RandomStrategy(SPACE, seed=1).ask(20)
    assert all(p.info == {} for p in first)  # nothing to archive about a uniform draw
    for p in first:
        SPACE.validate(p.genotype)
    strategy.tell(results_of(first, [0.5] * len(first)))
    keys = [SPACE.key(p.genotype) for p in first + strategy.ask(20)]
    assert len(keys) == len(set(keys)) == 40  # never an architecture it was told about, nor one twice a batch


def test_state_round_trip_continues_identically() -> None:
    first = RandomStrategy(SPACE, seed=2)
    first.tell(results_of(first.ask(5), [0.1] * 5))
    second = RandomStrategy(SPACE, seed=9)
    second.load_state_dict(first.state_dict())
    assert first.ask(10) == second.ask(10)


def test_weight_sharing_trains_on_and_derives_from_its_samples() -> None:
    strategy, same = RandomStrategy(SPACE, seed=3), RandomStrategy(SPACE, seed=3)
    assert not isinstance(strategy, SharesWeights)
    role = weight_sharing_role(strategy)
    assert isinstance(role, AskedRole) and not role.finished
    assert role.train_on() == same.ask(1)[0].genotype and role.derive_from(3) == same.ask(3)
