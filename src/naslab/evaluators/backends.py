"""Where stand-alone trials run: in this process, in a local process pool, or as Ray tasks.

A backend is handed the evaluator once (`start`) and then runs `evaluator.evaluate_one(genotype)`
for every genotype it is given, yielding results as they finish. The evaluator, and so the search
strategy above it, never knows which backend ran a trial: `evaluate_one` seeds every child the same
way, so all backends give the same scores (up to float rounding from different thread counts).

A worker that dies mid-trial (killed, out of memory, its node lost) is not the trial's fault: the pool
and Ray backends rerun that trial, at most `max_retries` times, and since `evaluate_one` is seeded the
rerun gives the evaluation the first run would have. A trial whose worker died more often than that is
yielded as a failed Evaluation (score 0, `error` saying why), so the search records it and goes on.
An exception raised by the trial itself is a TrialError, as before: rerunning it would fail again.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Iterator, Protocol, Sequence

import torch

from naslab.evaluators.base import Evaluation, G
from naslab.registry import Registry

log = logging.getLogger(__name__)


class TrialRunner(Protocol):
    """What a backend needs from an evaluator: one trial at a time (and to be picklable for pool/ray)."""

    def evaluate_one(self, genotype: Any) -> Evaluation: ...


class TrialError(RuntimeError):
    """A trial raised inside a backend; the message names the genotype so the failure can be rerun alone."""


def _trial_error(backend: str, index: int, genotype: Any, err: BaseException) -> TrialError:
    return TrialError(f"{backend} backend: trial {index} failed on {genotype!r}: {type(err).__name__}: {err}")


def _lost_trial(message: str) -> Evaluation:
    """The record of a trial whose worker kept dying: failed (score 0), as a NaN-loss child is, so the
    search goes on and a resumed search does not rerun it."""
    log.error(message)
    return Evaluation(0.0, error=message)


class Backend(ABC):
    """Runs `runner.evaluate_one` over genotypes; every backend takes the same options and uses what it needs."""

    name: str = "backend"

    def __init__(
        self,
        workers: int = 2,
        ray_address: str | None = None,
        cpus_per_trial: float = 1,
        gpus_per_trial: float = 0,
        max_retries: int = 3,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if max_retries < 0:
            raise ValueError(f"evaluator.max_retries must be >= 0, got {max_retries}")
        self.workers = workers
        self.max_retries = max_retries  # reruns of a trial whose worker died (pool, ray)
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
# The pool's table of who runs what (shared memory: row k = [pid, token of the running trial or -1]) and
# this worker's row. When the pool breaks, the parent reads it to know which trial a dead worker was running.
_worker_row: tuple[Any, int] | None = None


def _init_pool_worker(runner: TrialRunner, threads: int, parent_pid: int, running: Any, next_row: Any) -> None:
    global _worker_runner, _worker_row
    _worker_runner = runner
    with next_row.get_lock():  # at most `workers` processes per executor: one row each
        row = next_row.value
        next_row.value += 1
    running[2 * row], running[2 * row + 1] = os.getpid(), -1
    _worker_row = (running, row)
    # `workers` processes share the cores: without this each would start a thread per core.
    torch.set_num_threads(threads)
    # Ctrl-C in a terminal reaches the whole process group: the parent stops the run (naslab.interrupt)
    # and terminates its workers, which must not die mid-trial with tracebacks of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A terminated worker must die at once: Lightning's own SIGTERM handler (installed for `fit`) only sets a
    # flag, and the worker would finish its step, or even the next queued trial, before stopping. Lightning
    # calls the handler it found after its own, so this one still runs inside `fit`.
    signal.signal(signal.SIGTERM, _die_on_sigterm)
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()


def _die_on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)  # exit code -SIGTERM, which the parent reads as "terminated by the pool"


def _exit_when_orphaned(parent_pid: int) -> None:
    # A search killed with kill -9 cannot shut its pool down; without this its workers would keep
    # training (and holding the cores) while the resumed search runs.
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def _run_pool_trial(token: int, genotype: Any) -> Evaluation:
    assert _worker_runner is not None and _worker_row is not None, "pool worker was not initialised"
    running, row = _worker_row
    running[2 * row + 1] = token  # lock-free: only this process writes its row
    try:
        return _worker_runner.evaluate_one(genotype)
    finally:
        running[2 * row + 1] = -1


# Consecutive pool breaks with no trial running that are tolerated (a worker dying while idle), whatever
# max_retries: more in a row mean the workers cannot start (their initializer fails), not bad luck.
IDLE_BREAKS = 2


def died_on_its_own(exit_code: int | None) -> bool:
    """A worker's exit code says it died by itself (killed, crashed), not stopped by the pool (0, SIGTERM);
    None (unknown, still running) says nothing."""
    return exit_code is not None and exit_code not in (0, -signal.SIGTERM)


@BACKENDS.register("pool")
class PoolBackend(Backend):
    """`workers` spawned processes on this machine; "spawn" because forking a process with torch threads
    (or CUDA) can deadlock. Each worker pays the torch/lightning import once (a few seconds).

    A worker that dies (kill -9, the OOM killer) breaks a ProcessPoolExecutor: every unfinished trial
    fails with BrokenProcessPool. The backend then starts a fresh pool and resubmits the unfinished
    trials; the one whose worker died is charged a retry (at most `max_retries`), the others, whose
    workers the broken pool terminated, are rerun free. Results that had arrived are kept.
    """

    name = "pool"
    _executor: ProcessPoolExecutor | None = None
    _runner: TrialRunner | None = None
    _running: Any = None  # the shared [pid, token] table of the current executor's workers
    _next_token = 0  # trial tokens are never reused, so a stale row cannot name a later trial

    def start(self, runner: TrialRunner) -> None:
        self._runner = runner
        self._start_executor()

    def _start_executor(self) -> None:
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        context = multiprocessing.get_context("spawn")
        self._running = context.Array("q", [0, -1] * self.workers, lock=False)
        self._executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_init_pool_worker,
            # pickled once per worker, not per task
            initargs=(self._runner, threads, os.getpid(), self._running, context.Value("i", 0)),
        )

    def _submit(self, genotype: Any) -> Future[Evaluation]:
        assert self._executor is not None, "start() first"
        self._next_token += 1
        return self._executor.submit(_run_pool_trial, self._next_token, genotype)

    def map_unordered(self, genotypes: Sequence[G]) -> Iterator[tuple[int, Evaluation]]:
        assert self._executor is not None, "start() first"
        if getattr(self._executor, "_broken", False):  # a worker died while idle, e.g. between two batches
            self._restart()
            log.warning("pool backend: a worker had died since the last trials; restarted the pool")
        todo = list(range(len(genotypes)))
        deaths = [0] * len(genotypes)  # how often each trial's own worker died under it
        idle_breaks = 0  # consecutive breaks with no trial running: the workers die on their own
        while todo:
            futures: dict[Future[Evaluation], int] = {}
            tokens: dict[int, int] = {}  # token -> index into genotypes
            lost: list[int] = []  # trials the broken pool did not finish
            for n, i in enumerate(todo):
                try:
                    future = self._submit(genotypes[i])
                except BrokenProcessPool:  # broke while the trials were being queued
                    lost += todo[n:]
                    break
                futures[future], tokens[self._next_token] = i, i
            try:
                for future in as_completed(futures):
                    i = futures[future]
                    try:
                        evaluation = future.result()
                    except BrokenProcessPool:
                        lost.append(i)  # the rest of this pool's futures fail the same way at once
                        continue
                    except Exception as err:
                        raise _trial_error(self.name, i, genotypes[i], err) from err
                    yield i, evaluation
            finally:  # the caller stopped early or a trial failed: do not start the trials still queued
                for future in futures:
                    future.cancel()
            if not lost:
                return
            # A trial running on a worker that died on its own is charged a retry; trials on workers the broken
            # pool terminated (SIGTERM) are not. Where no exit code tells anything (no worker is known to have
            # died on its own), every running trial is; where an idle worker died on its own, none is.
            codes, idle_death = self._restart()
            running = {tokens[t]: code for t, code in codes.items() if t in tokens}
            culprits = {i: c for i, c in running.items() if died_on_its_own(c)}
            if not culprits and not idle_death:
                culprits = running
            idle_breaks = 0 if culprits else idle_breaks + 1
            if idle_breaks > max(self.max_retries, IDLE_BREAKS):
                raise TrialError(
                    f"pool backend: the worker pool broke {idle_breaks} times in a row with no trial running "
                    f"(evaluator.max_retries={self.max_retries}); its workers' output above says why"
                )
            if not culprits:
                log.warning("pool backend: a worker died between trials; restarted the pool")
            todo = []
            for i in sorted(lost):
                if i in culprits:
                    deaths[i] += 1
                    what = f"trial {i} ({genotypes[i]!r}) lost its worker (exit code {culprits[i]})"
                    if deaths[i] > self.max_retries:
                        yield (
                            i,
                            _lost_trial(
                                f"pool backend: {what} {deaths[i]} times; evaluator.max_retries={self.max_retries} "
                                "exhausted, recorded as failed"
                            ),
                        )
                        continue
                    log.warning(
                        "pool backend: %s; restarted the pool and re-queued it (retry %d of evaluator.max_retries=%d)",
                        what,
                        deaths[i],
                        self.max_retries,
                    )
                todo.append(i)
            rerun = [i for i in todo if i not in culprits]
            if rerun:
                log.info("pool backend: re-queued the unfinished trials %s of the broken pool", rerun)

    def _restart(self) -> tuple[dict[int, int | None], bool]:
        """Replaces a broken executor with a fresh one. Returns {token: exit code of its worker} for every
        trial a worker of the broken one was running, and whether a worker running no trial died on its own."""
        assert self._executor is not None
        processes = list((getattr(self._executor, "_processes", None) or {}).values())  # shutdown clears it
        # The broken pool has terminated its workers already; this joins its management thread, which joined them.
        self._executor.shutdown(wait=True, cancel_futures=True)
        codes = {process.pid: process.exitcode for process in processes}
        running = self._running
        rows = [(int(running[2 * r]), int(running[2 * r + 1])) for r in range(self.workers)]
        dead = {token: codes.get(pid) for pid, token in rows if token != -1}
        busy = {pid for pid, token in rows if token != -1}
        idle_death = any(died_on_its_own(code) for pid, code in codes.items() if pid not in busy)
        self._start_executor()
        return dead, idle_death

    def close(self) -> None:
        # Workers still training belong to a search that stopped (an error, Ctrl-C): their trials are not
        # recorded, so they are terminated instead of waited for (minutes). An idle worker just exits.
        if self._executor is not None:
            processes = list((getattr(self._executor, "_processes", None) or {}).values())
            self._executor.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                process.join(timeout=10)
                if process.is_alive():  # a worker that ignored SIGTERM must not outlive the search
                    process.kill()
                    process.join(timeout=10)
            self._executor = None


def _run_ray_trial(runner: TrialRunner, genotype: Any) -> tuple[Evaluation, int]:
    """The evaluation and Ray's attempt number (0 = first run): a retry after a worker died is invisible to the
    driver otherwise, and the search log should say that a trial was rerun."""
    return runner.evaluate_one(genotype), _ray_attempt_number()


def _ray_attempt_number() -> int:
    try:  # not in ray's public API (2.60); 0 where it is missing
        from ray._private.worker import global_worker

        return int(global_worker.core_worker.get_current_task_attempt_number())
    except Exception:
        return 0


@BACKENDS.register("ray")
class RayBackend(Backend):
    """Ray tasks: a local Ray instance of `workers` trials, or the cluster at `ray_address`
    ("auto", "head:6379" or "ray://head:10001"; naslab must be installed on its nodes). Ray is imported
    here only, so the rest of naslab does not need it.

    Each task has Ray's `max_retries` = evaluator.max_retries: when its worker process dies (killed, out of
    memory, its node lost) Ray reruns it, and the search log names the trial. An exception raised by the
    trial itself is never retried (`retry_exceptions=False`): it is a TrialError, as on every backend."""

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
        self._remote = ray.remote(_run_ray_trial).options(
            num_cpus=self.cpus_per_trial,
            num_gpus=self.gpus_per_trial,
            max_retries=self.max_retries,
            retry_exceptions=False,
        )

    def _check_local_gpus(self, ray: Any) -> None:
        # Tasks asking for GPUs a local instance does not have would wait forever, not fail.
        available = ray.cluster_resources().get("GPU", 0)
        if self.gpus_per_trial > available:
            self.close()
            raise RuntimeError(f"gpus_per_trial={self.gpus_per_trial} but this machine has {available:g} GPUs for Ray")

    def map_unordered(self, genotypes: Sequence[G]) -> Iterator[tuple[int, Evaluation]]:
        import ray
        from ray.exceptions import RayError, RayTaskError

        assert self._remote is not None, "start() first"
        pending = {self._remote.remote(self._runner_ref, g): i for i, g in enumerate(genotypes)}
        try:
            while pending:
                [done], _ = ray.wait(list(pending), num_returns=1)
                i = pending.pop(done)
                try:
                    evaluation, attempt = ray.get(done)
                except RayTaskError as err:  # raised by the trial: a rerun would raise it again
                    raise _trial_error(self.name, i, genotypes[i], err) from err
                except RayError as err:  # the worker or its node died more than max_retries times
                    reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
                    yield (
                        i,
                        _lost_trial(
                            f"ray backend: trial {i} ({genotypes[i]!r}) lost its worker ({type(err).__name__}: "
                            f"{reason}) and evaluator.max_retries={self.max_retries} reruns; recorded as failed"
                        ),
                    )
                    continue
                if attempt:
                    log.warning(
                        "ray backend: trial %d (%r) lost its worker and was rerun by Ray: attempt %d finished it "
                        "(retry %d of evaluator.max_retries=%d)",
                        i,
                        genotypes[i],
                        attempt + 1,
                        attempt,
                        self.max_retries,
                    )
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
    max_retries: int = 3,
) -> Backend:
    """The backend called `name`; an unknown name fails with one line listing the known ones."""
    return BACKENDS.get(name)(
        workers=workers,
        ray_address=ray_address,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
        max_retries=max_retries,
    )
