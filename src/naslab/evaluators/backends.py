"""Where stand-alone trials run: in this process, in a local process pool, or as Ray tasks.

A backend is handed the evaluator once (`start`) and then runs `evaluator.evaluate_one(genotype)`
for every genotype it is given, yielding results as they finish. The evaluator, and so the search
strategy above it, never knows which backend ran a trial: `evaluate_one` seeds every child the same
way, so all backends give the same scores (up to float rounding from different thread counts).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any, Iterator, Protocol, Sequence

import torch

from naslab.evaluators.base import Evaluation, G
from naslab.registry import Registry


class TrialRunner(Protocol):
    """What a backend needs from an evaluator: one trial at a time (and to be picklable for pool/ray)."""

    def evaluate_one(self, genotype: Any) -> Evaluation: ...


class TrialError(RuntimeError):
    """A trial raised inside a backend; the message names the genotype so the failure can be rerun alone."""


def _trial_error(backend: str, index: int, genotype: Any, err: BaseException) -> TrialError:
    return TrialError(f"{backend} backend: trial {index} failed on {genotype!r}: {type(err).__name__}: {err}")


class Backend(ABC):
    """Runs `runner.evaluate_one` over genotypes; every backend takes the same options and uses what it needs."""

    name: str = "backend"

    def __init__(
        self, workers: int = 2, ray_address: str | None = None, cpus_per_trial: float = 1, gpus_per_trial: float = 0
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.ray_address = ray_address
        self.cpus_per_trial = cpus_per_trial
        self.gpus_per_trial = gpus_per_trial

    @abstractmethod
    def start(self, runner: TrialRunner) -> None:
        """Ships the evaluator to the workers once, so each trial sends only its genotype."""

    @abstractmethod
    def map_unordered(self, genotypes: Sequence[G]) -> Iterator[tuple[int, Evaluation]]:
        """Yields (index into genotypes, evaluation) as each trial finishes; a failed trial raises TrialError."""

    def close(self) -> None:
        """Releases workers; safe to call twice."""


BACKENDS: Registry[type[Backend]] = Registry("evaluator backend")


@BACKENDS.register("local")
class LocalBackend(Backend):
    """In this process, one trial after another: no start-up cost, and the default."""

    name = "local"
    _runner: TrialRunner | None = None

    def start(self, runner: TrialRunner) -> None:
        self._runner = runner

    def map_unordered(self, genotypes: Sequence[G]) -> Iterator[tuple[int, Evaluation]]:
        assert self._runner is not None, "start() first"
        for i, genotype in enumerate(genotypes):
            yield i, self._runner.evaluate_one(genotype)

    def close(self) -> None:
        self._runner = None


# The evaluator inside a pool worker: unpickled once by the initializer, used by every task it runs.
_worker_runner: TrialRunner | None = None


def _init_pool_worker(runner: TrialRunner, threads: int, parent_pid: int) -> None:
    global _worker_runner
    _worker_runner = runner
    # `workers` processes share the cores: without this each would start a thread per core.
    torch.set_num_threads(threads)
    # Ctrl-C in a terminal reaches the whole process group: the parent stops the run (naslab.interrupt)
    # and terminates its workers, which must not die mid-trial with tracebacks of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()


def _exit_when_orphaned(parent_pid: int) -> None:
    # A search killed with kill -9 cannot shut its pool down; without this its workers would keep
    # training (and holding the cores) while the resumed search runs.
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def _run_pool_trial(genotype: Any) -> Evaluation:
    assert _worker_runner is not None, "pool worker was not initialised"
    return _worker_runner.evaluate_one(genotype)


@BACKENDS.register("pool")
class PoolBackend(Backend):
    """`workers` spawned processes on this machine; "spawn" because forking a process with torch threads
    (or CUDA) can deadlock. Each worker pays the torch/lightning import once (a few seconds)."""

    name = "pool"
    _executor: ProcessPoolExecutor | None = None

    def start(self, runner: TrialRunner) -> None:
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        self._executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_pool_worker,
            initargs=(runner, threads, os.getpid()),  # pickled once per worker, not per task
        )

    def map_unordered(self, genotypes: Sequence[G]) -> Iterator[tuple[int, Evaluation]]:
        assert self._executor is not None, "start() first"
        futures: dict[Future[Evaluation], int] = {
            self._executor.submit(_run_pool_trial, g): i for i, g in enumerate(genotypes)
        }
        try:
            for future in as_completed(futures):
                i = futures[future]
                try:
                    evaluation = future.result()
                except Exception as err:
                    raise _trial_error(self.name, i, genotypes[i], err) from err
                yield i, evaluation
        finally:  # the caller stopped early or a trial failed: do not start the trials still queued
            for future in futures:
                future.cancel()

    def close(self) -> None:
        # Workers still training belong to a search that stopped (an error, Ctrl-C): their trials are not
        # recorded, so they are terminated instead of waited for (minutes). An idle worker just exits.
        if self._executor is not None:
            processes = list(getattr(self._executor, "_processes", {}).values())
            self._executor.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                process.join(timeout=10)
            self._executor = None


def _run_ray_trial(runner: TrialRunner, genotype: Any) -> Evaluation:
    return runner.evaluate_one(genotype)


@BACKENDS.register("ray")
class RayBackend(Backend):
    """Ray tasks: a local Ray instance of `workers` trials, or the cluster at `ray_address`
    ("auto" or "ray://head:10001"; naslab must be installed on its nodes). Ray is imported here only,
    so the rest of naslab does not need it."""

    name = "ray"
    _started_ray = False
    _runner_ref: Any = None
    _remote: Any = None

    def start(self, runner: TrialRunner) -> None:
        import ray

        if not ray.is_initialized():
            quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": "warning"}
            if self.ray_address:
                ray.init(address=self.ray_address, **quiet)
                self._started_ray = True  # shutdown() then only disconnects; the cluster keeps running
            else:
                ray.init(num_cpus=max(1, math.ceil(self.workers * self.cpus_per_trial)), **quiet)
                self._started_ray = True
                self._check_local_gpus(ray)
        self._runner_ref = ray.put(runner)  # one copy in the object store, shared by every task
        self._remote = ray.remote(_run_ray_trial).options(num_cpus=self.cpus_per_trial, num_gpus=self.gpus_per_trial)

    def _check_local_gpus(self, ray: Any) -> None:
        # Tasks asking for GPUs a local instance does not have would wait forever, not fail.
        available = ray.cluster_resources().get("GPU", 0)
        if self.gpus_per_trial > available:
            self.close()
            raise RuntimeError(f"gpus_per_trial={self.gpus_per_trial} but this machine has {available:g} GPUs for Ray")

    def map_unordered(self, genotypes: Sequence[G]) -> Iterator[tuple[int, Evaluation]]:
        import ray

        assert self._remote is not None, "start() first"
        pending = {self._remote.remote(self._runner_ref, g): i for i, g in enumerate(genotypes)}
        try:
            while pending:
                [done], _ = ray.wait(list(pending), num_returns=1)
                i = pending.pop(done)
                try:
                    evaluation = ray.get(done)
                except Exception as err:
                    raise _trial_error(self.name, i, genotypes[i], err) from err
                yield i, evaluation
        finally:
            for ref in pending:
                ray.cancel(ref)

    def close(self) -> None:
        self._runner_ref = self._remote = None
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False


def make_backend(
    name: str,
    workers: int = 2,
    ray_address: str | None = None,
    cpus_per_trial: float = 1,
    gpus_per_trial: float = 0,
) -> Backend:
    """The backend called `name`; an unknown name fails with one line listing the known ones."""
    return BACKENDS.get(name)(
        workers=workers, ray_address=ray_address, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial
    )
