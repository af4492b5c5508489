"""evaluator.backend=local|pool|ray: every backend gives the same scores, and only the backend knows where trials ran.

Measured on 2 busy CPU cores: a pool of 2 spawned workers starts in ~5-9 s (each imports torch and
lightning), a local Ray instance in ~10-15 s; the tiny trials below then take ~0.5 s each.
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import pickle
from typing import Iterator

import lightning as L
import numpy as np
import pytest

from naslab.data import DigitsDataModule
from naslab.evaluators.backends import BACKENDS, TrialError, make_backend
from naslab.evaluators.base import Evaluation, Evaluator
from naslab.evaluators.standalone import StandaloneEvaluator
from naslab.registry import UnknownNameError
from naslab.spaces import MicroSpace, Task

SPACE = MicroSpace(2, "enas")
GENOTYPES = [SPACE.sample(np.random.default_rng(s)) for s in range(3)]


def evaluator(backend: str = "local", **options) -> StandaloneEvaluator:
    """conf/debug/fast.yaml sizes on digits; functools.partial, not lambdas, so that workers can unpickle it.
    `options` add evaluator settings (a child's recipe)."""
    return StandaloneEvaluator(
        SPACE,
        Task(10, (1, 8, 8)),
        functools.partial(DigitsDataModule, phase="search", search_valid_size=0.2, max_train_samples=256),
        functools.partial(L.Trainer, accelerator="cpu", deterministic=True),
        epochs=1,
        train_batches=2,
        batch_size=16,
        channels=4,
        cells_per_stage=1,
        backend=backend,
        workers=2,
        **options,
    )


def by_index(results: Iterator[tuple[int, Evaluation]]) -> list[Evaluation]:
    """The results in genotype order, after checking that every index came exactly once."""
    pairs = list(results)
    assert sorted(i for i, _ in pairs) == list(range(len(GENOTYPES)))
    return [e for _, e in sorted(pairs, key=lambda pair: pair[0])]


def assert_same_scores(got: list[Evaluation], expected: list[Evaluation]) -> None:
    assert [e.params for e in got] == [e.params for e in expected]
    assert [e.score for e in got] == pytest.approx([e.score for e in expected])
    assert all(e.error is None for e in got)


@pytest.fixture(scope="module")
def local_results() -> list[Evaluation]:
    ev = evaluator("local")
    results = by_index(ev.evaluate_each(GENOTYPES))
    ev.close()
    assert len({e.params for e in results}) == 3  # three different networks, or the comparisons prove little
    return results


@pytest.fixture(scope="module")
def pool_evaluator() -> Iterator[StandaloneEvaluator]:
    """One pool for the module's pool tests: spawning its workers is most of their cost."""
    ev = evaluator("pool")
    yield ev
    ev.close()


def test_pool_backend_matches_local(pool_evaluator, local_results) -> None:
    assert_same_scores(by_index(pool_evaluator.evaluate_each(GENOTYPES)), local_results)
    assert len(multiprocessing.active_children()) == 2  # the trials ran in `workers` child processes
    assert_same_scores(pool_evaluator.evaluate(GENOTYPES), local_results)  # in order, on the same warm pool


def test_pickled_evaluator_leaves_its_pool_behind(pool_evaluator, local_results) -> None:
    pool_evaluator.evaluate(GENOTYPES[:1])  # the pool is running
    clone = pickle.loads(pickle.dumps(pool_evaluator))
    assert clone._backend is None and pool_evaluator._backend is not None
    assert clone.evaluate_one(GENOTYPES[0]).score == pytest.approx(local_results[0].score)


def test_pool_trial_error_names_the_genotype(pool_evaluator) -> None:
    normal = GENOTYPES[0].normal
    first = normal.nodes[0]
    bad_node = dataclasses.replace(first, left=dataclasses.replace(first.left, op="no_such_op"))
    bad = dataclasses.replace(GENOTYPES[0], normal=dataclasses.replace(normal, nodes=(bad_node, *normal.nodes[1:])))
    with pytest.raises(TrialError, match=r"pool backend: trial 0 failed on MicroGenotype\(.*no_such_op.*GenotypeError"):
        list(pool_evaluator.evaluate_each([bad]))


def test_unknown_backend_is_a_one_line_error_listing_the_known_ones() -> None:
    assert BACKENDS.names() == ["local", "pool", "ray"]
    with pytest.raises(UnknownNameError) as err:
        make_backend("dask")
    assert str(err.value) == "unknown evaluator backend 'dask'; known: local, pool, ray"
    with pytest.raises(UnknownNameError, match="known: local, pool, ray"):
        evaluator("dask")  # at construction, not when the search first evaluates


def test_default_evaluate_each_yields_every_index_in_order() -> None:
    class Lengths(Evaluator[str]):
        def evaluate(self, genotypes):
            return [Evaluation(float(len(g))) for g in genotypes]

    assert [(i, e.score) for i, e in Lengths().evaluate_each(["a", "bbb"])] == [(0, 1.0), (1, 3.0)]
