"""Shared fixtures: the real Hydra config composed with the compose API, as the entry point sees it."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

# One torch thread in the test process, as `python run.py` runs by default (`threads: 1`): results computed
# here and in run.py subprocesses are then bit-identical (CPU sums split over threads round differently),
# and the suite does not oversubscribe a shared 2-core machine.
torch.set_num_threads(1)

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def same_random_state_for_every_test() -> None:
    """Every test starts from the same global random state (torch, numpy, random), so what a test draws
    without its own generator does not depend on which tests ran before it in the same process: the order
    differs between `-m "not slow"`, the full suite and pytest-xdist's workers."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models: intra-op threads only add synchronisation, and on a busy 2-core machine they thrash
    (100x slower steps). A module that uses this runs on one thread; the old setting is restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def compose_config(*overrides: str, run_dir: Path) -> DictConfig:
    """The project config as run.py composes it, with no logger and its outputs in `run_dir` (for a
    module-scoped fixture; a test takes `compose_cfg`)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["logger=none", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    return cfg


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """compose_cfg(*overrides) -> the project config with its outputs in tmp_path, no logger."""

    def _compose(*overrides: str, run_dir: Path | None = None) -> DictConfig:
        return compose_config(*overrides, run_dir=run_dir or tmp_path / "run")

    return _compose


def run_py(
    args: list[str], timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python run.py *args` in the repository, with `env` on top of this process's environment; its output
    captured, the process killed in a `finally`."""
    proc = subprocess.Popen(
        [sys.executable, "run.py", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
        proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def signal_when(
    args: list[str], run_dir: Path, ready: Callable[[], bool], signum: int, timeout: float = 600
) -> tuple[int, str]:
    """Starts `python run.py *args` in run_dir, sends `signum` as soon as `ready()` holds, and returns
    (exit code, output).

    Waits on progress (`ready`), not on time: `timeout` is only a generous bound for a busy machine.
    Fails if the run ends on its own first (a resume test that stopped nothing proves nothing) or is
    never ready. The child is killed in a `finally` whatever happens; its output is kept in
    `<run_dir>.log` and is in every failure message. The run's own children (pool workers, their
    resource tracker) must end with it: once the run is gone they belong to init, out of reach of the
    session's leak check, so they are checked here, and killed if they linger.
    """
    log = Path(f"{run_dir}.log")
    children: list[int] = []
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "run.py", *args, f"hydra.run.dir={run_dir}"], cwd=REPO_ROOT, stdout=out, stderr=out
        )
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None and not ready():
                time.sleep(0.02)
            ended = proc.poll()
            assert ended is None, f"the run ended (exit {ended}) before it could be stopped:\n{log.read_text()[-3000:]}"
            assert ready(), f"the run was not ready to be stopped within {timeout:.0f} s:\n{log.read_text()[-3000:]}"
            children = [pid for pid, _ in descendants(proc.pid)]
            proc.send_signal(signum)
            code = proc.wait(timeout=60)  # SIGKILL ends it at once; a clean stop takes seconds
        finally:
            children = children or [pid for pid, _ in descendants(proc.pid)]
            proc.kill()
            proc.wait()
            lingering = outlived(children, grace=30)
    tail = log.read_text()[-3000:]
    assert not lingering, f"the run's processes {lingering} outlived it by 30 s (now killed):\n{tail}"
    return code, log.read_text()


def kill_process_tree(proc: subprocess.Popen[str]) -> None:
    """SIGKILLs a process a test started and every process below it (pool workers), then reaps it: once the
    parent is gone its children would belong to init, out of the session's leak check."""
    kill_pids([child for child, _ in descendants(proc.pid)])
    proc.kill()
    proc.wait()


def kill_pids(pids: list[int]) -> None:
    """SIGKILLs each of `pids` that is still there."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def outlived(pids: list[int], grace: float) -> list[int]:
    """Those of `pids` still running after `grace` seconds, SIGKILLed (a zombie counts as ended)."""
    deadline = time.monotonic() + grace
    running = [pid for pid in pids if is_running(pid)]
    while running and time.monotonic() < deadline:
        time.sleep(0.1)
        running = [pid for pid in running if is_running(pid)]
    kill_pids(running)
    return running


def is_running(pid: int) -> bool:
    """Whether `pid` runs (a zombie has ended: only its parent's wait is missing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def run_and_kill_9(args: list[str], run_dir: Path, ready: Callable[[], bool], timeout: float = 600) -> None:
    """`signal_when` with SIGKILL: the run dies wherever it is, with no chance to clean up."""
    code, output = signal_when(args, run_dir, ready, signal.SIGKILL, timeout)
    assert code == -signal.SIGKILL, f"the run was not killed mid-way (exit {code}):\n{output[-3000:]}"


# --- which real-data tests ran --------------------------------------------------------------------------------
# A real-data test (tests/real_data.py: `needs_real_data`) skips where its files are missing. A green CI run
# must not hide that: the closing summary lists every real-data test that ran and every one that skipped, why.
REAL_DATA_OUTCOMES: dict[str, tuple[str, str]] = {}  # node id -> (dataset, "passed" / "failed" / "skipped: why")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # user_properties travel with every report, also from pytest-xdist's workers to the controller
    for item in items:
        marker = item.get_closest_marker("real_data")
        if marker is not None:
            item.user_properties.append(("real_data", marker.args[0]))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    dataset = dict(report.user_properties).get("real_data")
    if dataset is None:
        return
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        REAL_DATA_OUTCOMES[report.nodeid] = (dataset, f"skipped: {reason.removeprefix('Skipped: ')}")
    elif report.when == "call" or report.failed:
        REAL_DATA_OUTCOMES.setdefault(report.nodeid, (dataset, report.outcome))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REAL_DATA_OUTCOMES:
        return
    ran = {n: o for n, o in REAL_DATA_OUTCOMES.items() if not o[1].startswith("skipped")}
    skipped = {n: o for n, o in REAL_DATA_OUTCOMES.items() if o[1].startswith("skipped")}
    terminalreporter.section(f"real data: {len(ran)} test(s) ran on real files, {len(skipped)} skipped")
    for node, (dataset, outcome) in sorted(ran.items()) + sorted(skipped.items()):
        terminalreporter.write_line(f"{outcome.split(':')[0]:>8}  {dataset:<13} {node}")
        if outcome.startswith("skipped"):
            terminalreporter.write_line(f"{'':>8}  {'':<13} {outcome.removeprefix('skipped: ')}")


# --- no test leaves a process behind ------------------------------------------------------------------------
# A process the suite started and did not end (a run.py child, a worker pool) would keep training for minutes
# and slow every later test. At the end of the session every descendant of the test process is listed (from
# /proc: Linux, as CI), killed and reported, and the session fails. multiprocessing's resource tracker is
# not a leak: it lives as long as the process that started it, by design.
ALLOWED_DESCENDANTS = ("multiprocessing.resource_tracker",)


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live process below `pid`; [] where /proc is not there."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] == "Z":  # a zombie has ended; only its parent's wait is missing
                continue
            parents[int(entry.name)] = int(fields[1])
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue  # ended while being read
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return [(child, commands[child].strip()) for child in found]


def leaked_processes() -> list[tuple[int, str]]:
    return [(pid, cmd) for pid, cmd in descendants(os.getpid()) if not any(a in cmd for a in ALLOWED_DESCENDANTS)]


@pytest.hookimpl(trylast=True)  # after pytest-xdist has stopped its workers
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if "wandb" in sys.modules:  # W&B's service process (wandb-core) serves this process: shut it down first
        try:
            sys.modules["wandb"].teardown()
        except Exception:  # a teardown that fails leaves the service for the check below to report
            pass
    deadline = time.monotonic() + 10  # a process told to stop may take a moment to go
    leaked = leaked_processes()
    while leaked and time.monotonic() < deadline:
        time.sleep(0.2)
        leaked = leaked_processes()
    for pid, _ in leaked:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if leaked:
        lines = "\n".join(f"  {pid}: {cmd[:200]}" for pid, cmd in leaked)
        print(f"\nthe test session left {len(leaked)} process(es) running (now killed):\n{lines}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
