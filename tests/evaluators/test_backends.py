"""evaluator.backend=local|pool|ray: every backend gives the same scores, and only the backend knows where trials ran.

Measured on 2 busy CPU cores: a pool of 2 spawned workers starts in ~5-9 s (each imports torch and
lightning), a local Ray instance in ~10-15 s; the tiny trials below then take ~0.5 s each.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import multiprocessing
import pickle
from typing import Any, Iterator

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


class ScriptedRay:
    """Ray's runtime replaced in `ray` itself (its real exception classes kept): no cluster, no processes.
    A task's outcome is scripted per genotype: ("ok", attempt) returns the evaluation Ray's attempt
    `attempt` gave; ("crashed",) is a worker that died more often than max_retries allowed; ("raised",)
    is an exception of the trial itself. Records the options the backend gave its task."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, outcomes: dict[Any, tuple[Any, ...]]) -> None:
        import ray

        self.exceptions = ray.exceptions
        self.outcomes, self.options, self.initialised, self.cancelled = outcomes, {}, False, []
        for name in ("is_initialized", "init", "put", "remote", "wait", "get", "cancel", "shutdown"):
            monkeypatch.setattr(ray, name, getattr(self, name))
        monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})

    def is_initialized(self) -> bool:
        return self.initialised

    def init(self, **kwargs: Any) -> None:
        self.initialised, self.init_kwargs = True, kwargs

    def shutdown(self) -> None:
        self.initialised = False

    def put(self, value: Any) -> Any:
        return value

    def remote(self, function: Any) -> Any:
        ray = self

        class Task:
            def options(self, **options: Any) -> "Task":
                ray.options = options
                return self

            def remote(self, runner: Any, genotype: Any) -> tuple[Any, Any]:
                return runner, genotype

        return Task()

    def wait(self, refs: list[Any], num_returns: int) -> tuple[list[Any], list[Any]]:
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref: tuple[Any, Any]) -> tuple[Evaluation, int]:
        runner, genotype = ref
        outcome = self.outcomes.get(genotype, ("ok", 0))
        if outcome[0] == "crashed":
            raise self.exceptions.WorkerCrashedError()
        if outcome[0] == "raised":
            raise self.exceptions.RayTaskError("_run_ray_trial", "Traceback ...", ValueError("bad trial"))
        return runner.evaluate_one(genotype), outcome[1]

    def cancel(self, ref: Any) -> None:
        self.cancelled.append(ref)


def test_ray_backend_asks_ray_for_retries_and_reports_a_rerun_or_a_lost_trial(
    local_results, caplog, monkeypatch
) -> None:
    """The Ray backend's own logic, for the fast tier (the real cluster test is slow): the task carries
    max_retries and no retry of the trial's own exceptions; a rerun is logged with the trial; a trial whose
    retries ran out is a failed record and the others still score what the local backend scores."""
    pytest.importorskip("ray")
    ray = ScriptedRay(monkeypatch, {GENOTYPES[1]: ("ok", 1), GENOTYPES[2]: ("crashed",)})
    backend = make_backend("ray", workers=2, max_retries=3)
    backend.start(evaluator("local"))
    assert ray.options["max_retries"] == 3 and ray.options["retry_exceptions"] is False
    assert ray.init_kwargs["num_cpus"] == 2  # a local instance of `workers` x cpus_per_trial CPUs
    with caplog.at_level(logging.WARNING, logger="naslab.evaluators.backends"):
        got = dict(backend.map_unordered(GENOTYPES))
    backend.close()
    assert not ray.initialised  # the instance it started is shut down
    assert sorted(got) == list(range(len(GENOTYPES)))
    assert got[2].error is not None and got[2].error.startswith("ray backend: trial 2 (MicroGenotype(")
    assert got[2].error.endswith("and evaluator.max_retries=3 reruns; recorded as failed")
    assert "WorkerCrashedError: The worker died unexpectedly" in got[2].error
    others = [i for i in range(len(GENOTYPES)) if i != 2]
    assert [got[i].score for i in others] == [local_results[i].score for i in others]
    (rerun,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    (lost,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert lost == got[2].error  # logged as an error too, not only archived
    assert rerun.startswith("ray backend: trial 1 (MicroGenotype(")
    assert rerun.endswith("was rerun by Ray: attempt 2 finished it (retry 1 of evaluator.max_retries=3)")

    ScriptedRay(monkeypatch, {GENOTYPES[0]: ("raised",)})
    backend = make_backend("ray", workers=2, max_retries=3)
    backend.start(evaluator("local"))
    with pytest.raises(TrialError, match=r"^ray backend: trial 0 failed on MicroGenotype\(.*RayTaskError"):
        list(backend.map_unordered(GENOTYPES))
    backend.close()
