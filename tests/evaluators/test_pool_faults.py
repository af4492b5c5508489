"""evaluator.backend=pool when a worker process dies mid-trial (kill -9, the OOM killer).

A dead worker breaks a ProcessPoolExecutor: every unfinished future fails with BrokenProcessPool. The
pool backend restarts the pool and reruns the unfinished trials; only the trial whose own worker died
is charged a retry (evaluator.max_retries), and one that keeps killing its worker is recorded as failed
instead of ending the search. The first tests inject the death from inside a worker (deterministic: a
given genotype SIGKILLs its own process); the last kills a worker of a real `run.py` search from outside.

Measured on 2 busy CPU cores: each pool start (2 spawned workers importing torch and lightning) takes
~5-9 s, so a test with one restart takes ~15-25 s; the run.py test ~60 s (a pool and a local search).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from naslab.errors import ConfigError
from naslab.evaluators.backends import PoolBackend, make_backend
from naslab.evaluators.base import Evaluation
from naslab.spaces import MicroSpace
from naslab.validation import validate_config
from tests.conftest import REPO_ROOT, descendants, kill_process_tree
from tests.evaluators.test_backends import evaluator

SPACE = MicroSpace(2, "enas")
GENOTYPES = [SPACE.sample(np.random.default_rng(s)) for s in range(4)]


class KillsItsWorker:
    """A trial runner whose trial on `victim` SIGKILLs the worker process running it, the first `times`
    times (counted in files under `marks`, which every worker sees): a worker dying mid-trial, on cue.
    Module-level and plain attributes, so spawned pool workers can unpickle it."""

    def __init__(self, victim: Any, marks: Path, times: int) -> None:
        self.runner = evaluator("local")
        self.victim, self.marks, self.times = victim, marks, times

    def evaluate_one(self, genotype: Any) -> Evaluation:
        if genotype == self.victim:
            deaths = len(list(self.marks.iterdir()))
            if deaths < self.times:
                (self.marks / f"{deaths}-{os.getpid()}").touch()
                os.kill(os.getpid(), signal.SIGKILL)
        return self.runner.evaluate_one(genotype)


def pool_results(runner: KillsItsWorker, max_retries: int) -> dict[int, Evaluation]:
    """Runs GENOTYPES on a 2-worker pool; {index: evaluation}, after checking each index came exactly once."""
    backend = make_backend("pool", workers=2, max_retries=max_retries)
    backend.start(runner)
    try:
        pairs = list(backend.map_unordered(GENOTYPES))
    finally:
        backend.close()
    assert sorted(i for i, _ in pairs) == list(range(len(GENOTYPES)))
    return dict(pairs)


@pytest.fixture(scope="module")
def local_results() -> list[Evaluation]:
    ev = evaluator("local")
    results = [ev.evaluate_one(g) for g in GENOTYPES]
    assert len({e.params for e in results}) == len(GENOTYPES)  # different networks, or equality proves little
    return results


@pytest.mark.slow
def test_a_trial_whose_worker_dies_is_rerun_and_scores_as_it_would_have(tmp_path, local_results, caplog) -> None:
    marks = tmp_path / "deaths"
    marks.mkdir()
    caplog.set_level(logging.INFO, logger="naslab.evaluators.backends")
    got = pool_results(KillsItsWorker(GENOTYPES[1], marks, times=1), max_retries=1)
    assert len(list(marks.iterdir())) == 1  # the worker really died mid-trial, once
    assert [got[i].error for i in range(4)] == [None] * 4
    assert [got[i].score for i in range(4)] == [e.score for e in local_results]  # seeded: the rerun is identical
    assert [got[i].params for i in range(4)] == [e.params for e in local_results]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # only the trial whose own worker died is charged a retry
    assert warnings[0].startswith("pool backend: trial 1 (MicroGenotype(")
    assert warnings[0].endswith(
        "lost its worker (exit code -9); restarted the pool and re-queued it (retry 1 of evaluator.max_retries=1)"
    )


@pytest.mark.slow
def test_a_trial_that_keeps_killing_its_worker_is_recorded_failed_and_the_others_finish(
    tmp_path, local_results, caplog
) -> None:
    marks = tmp_path / "deaths"
    marks.mkdir()
    got = pool_results(KillsItsWorker(GENOTYPES[2], marks, times=99), max_retries=1)
    assert len(list(marks.iterdir())) == 2  # the first run and its one retry; then no more
    assert got[2].score == 0.0 and got[2].error is not None
    assert got[2].error.startswith("pool backend: trial 2 (MicroGenotype(")
    assert got[2].error.endswith(
        "lost its worker (exit code -9) 2 times; evaluator.max_retries=1 exhausted, recorded as failed"
    )
    assert got[2].error in caplog.text  # logged as an error, not only archived
    others = [0, 1, 3]
    assert [got[i].error for i in others] == [None] * 3
    assert [got[i].score for i in others] == [local_results[i].score for i in others]


@pytest.mark.slow
def test_a_worker_killed_between_batches_is_replaced_and_charges_no_trial(local_results, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="naslab.evaluators.backends")
    backend = make_backend("pool", workers=2, max_retries=0)  # a trial wrongly charged would be recorded failed
    backend.start(evaluator("local"))
    try:
        first = dict(backend.map_unordered(GENOTYPES[:2]))
        idle = next(pid for pid in backend._running[::2] if pid)  # a worker that has started, now idle
        os.kill(idle, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while not backend._executor._broken:  # the pool notices the death on its own (its management thread)
            assert time.monotonic() < deadline, "the pool never noticed its dead worker"
            time.sleep(0.02)
        second = dict(backend.map_unordered(GENOTYPES[2:]))
    finally:
        backend.close()
    got = {**first, **{i + 2: e for i, e in second.items()}}
    assert sorted(got) == [0, 1, 2, 3] and all(e.error is None for e in got.values())
    assert [got[i].score for i in range(4)] == [e.score for e in local_results]
    assert [r.getMessage() for r in caplog.records] == [
        "pool backend: a worker had died since the last trials; restarted the pool"
    ]


def test_max_retries_must_not_be_negative(compose_cfg) -> None:
    with pytest.raises(ValueError, match=r"^evaluator.max_retries must be >= 0, got -1$"):
        make_backend("pool", max_retries=-1)
    with pytest.raises(ValueError, match=r"^evaluator.max_retries must be >= 0, got -1$"):
        evaluator("local", max_retries=-1)
    assert compose_cfg().evaluator.max_retries == 3  # the default of conf/evaluator/standalone.yaml
    with pytest.raises(ConfigError, match=r"^evaluator.max_retries=-1 is not valid: it must be an integer >= 0$"):
        validate_config(compose_cfg("evaluator.max_retries=-1"))  # refused before anything starts


# --- a real search: `python run.py evaluator.backend=pool`, one of its workers killed from outside ----------

SEARCH = [
    "mode=search",
    "logger=none",
    "strategy=random",
    "debug=fast",
    "search.num_architectures=6",  # with at most 2 archived, 4 are left: both workers are mid-trial when one is killed
    "search.batch_size=6",
]


def read_archive(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "archive.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def comparable(records: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """What a backend must not change, per architecture: everything but the archive order and the wall time."""
    return {r["key"]: (r["score"], r["params"], r["epochs"], r["error"], r["genotype"]) for r in records}


def pool_workers(pid: int) -> list[int]:
    """The spawned pool workers below `pid` (not multiprocessing's resource tracker)."""
    return [p for p, cmd in descendants(pid) if "spawn_main" in cmd]


def start_run(args: list[str], run_dir: Path) -> tuple[subprocess.Popen[str], Path]:
    log = Path(f"{run_dir}.log")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "run.py", *args, f"hydra.run.dir={run_dir}"],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return proc, log


def stop_all(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        kill_process_tree(proc)  # its pool workers too, should it be killed mid-way


@pytest.mark.slow
def test_run_py_pool_search_with_a_worker_killed_mid_trial_equals_the_local_search(tmp_path) -> None:
    pool_dir, local_dir = tmp_path / "pool", tmp_path / "local"
    procs: list[subprocess.Popen[str]] = []
    try:
        pool, pool_log = start_run([*SEARCH, "evaluator.backend=pool", "evaluator.workers=2"], pool_dir)
        procs.append(pool)
        local, local_log = start_run([*SEARCH, "evaluator.backend=local"], local_dir)  # the reference, meanwhile
        procs.append(local)
        # Once a trial has finished the workers are warm and the rest of the batch is in flight: kill one
        # (with 2 of the 6 archived at most, so that the killed worker is running a trial).
        deadline, killed = time.monotonic() + 600, None
        while time.monotonic() < deadline and pool.poll() is None and killed is None:
            workers = pool_workers(pool.pid)
            if 1 <= len(read_archive(pool_dir)) <= 2 and workers:
                killed = workers[0]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.02)
        assert killed is not None, f"no pool worker to kill while the search ran:\n{pool_log.read_text()[-3000:]}"
        assert pool.wait(timeout=600) == 0, pool_log.read_text()[-3000:]
        assert local.wait(timeout=600) == 0, local_log.read_text()[-3000:]
    finally:
        stop_all(procs)
    output = pool_log.read_text()
    print(
        f"killed pool worker {killed}; the search's log:",
        *(line for line in output.splitlines() if "pool backend" in line),
    )
    # The log names the trial whose worker was killed, charged one retry; on a busy machine the killed worker
    # may still have been starting (no trial yet, the other one finished the first): then nobody is charged.
    charged = r"pool backend: trial \d \(.*\) lost its worker \(exit code -9\); restarted the pool"
    idle = "pool backend: a worker died between trials; restarted the pool"
    assert re.search(charged, output) or idle in output, output[-3000:]
    records = read_archive(pool_dir)
    assert len(records) == 6 and len({r["key"] for r in records}) == 6  # every architecture exactly once
    assert comparable(records) == comparable(read_archive(local_dir))
    assert json.loads((pool_dir / "genotype.json").read_text()) == json.loads((local_dir / "genotype.json").read_text())


class ScriptedPool(PoolBackend):
    """A pool backend without processes: round r breaks the pool for the trials in `breaks[r]`, and its
    restart reports `deaths[r]` = ({trial index: worker exit code}, an idle worker died on its own). Checks
    which trials the backend charges a retry, in milliseconds, for the fast tier."""

    def __init__(self, breaks: list[set[int]], deaths: list[tuple[dict[int, int | None], bool]], **kwargs) -> None:
        super().__init__(workers=2, **kwargs)
        self.breaks, self.deaths, self.round = breaks, deaths, 0
        self.token_of: dict[int, int] = {}

    def _start_executor(self) -> None:
        self._executor = object()  # type: ignore[assignment]

    def _submit(self, genotype: Any) -> Future:
        self._next_token += 1
        self.token_of[genotype] = self._next_token
        future: Future = Future()
        broken = self.round < len(self.breaks) and genotype in self.breaks[self.round]
        if broken:
            future.set_exception(BrokenProcessPool("a worker died"))
        else:
            future.set_result(Evaluation(score=float(genotype)))
        return future

    def _restart(self) -> tuple[dict[int, int | None], bool]:
        codes, idle = self.deaths[self.round]
        self.round += 1
        return {self.token_of[i]: code for i, code in codes.items()}, idle


@pytest.mark.parametrize(
    ("codes", "idle_death", "charged"),
    [
        ({1: -9, 2: -15}, False, [1]),  # trial 1's worker was killed; trial 2's was terminated by the pool
        ({1: -15, 2: -15}, True, []),  # an idle worker died: nobody running is to blame
        ({1: None, 2: None}, False, [1, 2]),  # nothing known: every running trial is charged
    ],
    ids=["killed-worker", "idle-worker-died", "unknown"],
)
def test_only_a_trial_whose_own_worker_died_is_charged_a_retry(caplog, codes, idle_death, charged) -> None:
    caplog.set_level(logging.WARNING, logger="naslab.evaluators.backends")
    backend = ScriptedPool(breaks=[{1, 2}], deaths=[(codes, idle_death)], max_retries=0)
    backend.start(evaluator("local"))
    got = dict(backend.map_unordered([0, 1, 2, 3]))
    assert sorted(got) == [0, 1, 2, 3]  # every trial exactly once
    failed = sorted(i for i, e in got.items() if e.error is not None)
    assert failed == charged  # max_retries=0: a charged trial is recorded as failed, the others rerun and score
    assert all(got[i].score == float(i) for i in got if i not in charged)
