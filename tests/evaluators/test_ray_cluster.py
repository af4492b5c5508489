"""evaluator.backend=ray on a real multi-node Ray cluster, one of its workers killed mid-trial.

The test starts a two-node cluster on this machine (`ray start --head` and `ray start --address=<head>`,
each with 1 CPU and ports of its own), runs `python run.py ... evaluator.backend=ray
evaluator.ray_address=<head>` against it, and SIGKILLs the Ray worker process that runs a trial on the
second node. Ray reruns the task (its `max_retries` = evaluator.max_retries) and the search log names the
trial; the archive then holds every architecture exactly once, with the scores, and the genotype, of the
same search on the local backend (run alongside as the reference).

The cluster's processes are the `ray start --block` commands' children (gcs_server, raylet, agents) and
the raylets' workers: all of them descend from this test, so they are killed by pid in a `finally`, never
with `ray stop`, which would stop every Ray on the machine. Measured on 2 busy CPU cores: ~60-90 s (the
cluster starts in ~10-20 s, each Ray worker imports torch and lightning, the local search runs meanwhile).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import REPO_ROOT, descendants, kill_pids, outlived
from tests.evaluators.test_pool_faults import GENOTYPES, KillsItsWorker, comparable, read_archive

pytest.importorskip("ray")

NUM_ARCHITECTURES = 6
SEARCH = [
    "mode=search",
    "logger=none",
    "strategy=random",
    "debug=fast",
    f"search.num_architectures={NUM_ARCHITECTURES}",
    f"search.batch_size={NUM_ARCHITECTURES}",  # one batch: every trial is queued on the cluster at once
]
TRIAL_TITLE = "ray::_run_ray_trial"  # a Ray worker's process title while it runs naslab's trial task
RETRY_LOG = "lost its worker and was rerun by Ray"


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free now on 127.0.0.1 (held open together, so none is handed out twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_for(condition: Callable[[], bool], what: str, output: Callable[[], str], timeout: float = 300) -> None:
    """Polls `condition` (progress, not time: `timeout` is a generous bound for a busy machine)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s\n{output()[-4000:]}"
        time.sleep(0.05)


class Node:
    """One `ray start --block` (head or not): its own ports, its output in a file, its process tree."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.node_manager_port, self.agent_port, self.dashboard_port = free_ports(3)
        self.log = log_dir / f"ray_{name}.log"
        command = [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--block",  # stays in the foreground: the node's processes are its children, this test's descendants
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            "--disable-usage-stats",
            f"--node-manager-port={self.node_manager_port}",
            f"--dashboard-agent-listen-port={self.agent_port}",  # default 52365: two nodes on one machine clash
            *args,
        ]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text()

    def started(self) -> bool:
        assert self.proc.poll() is None, (
            f"ray start ({self.name}) exited {self.proc.returncode}:\n{self.output()[-4000:]}"
        )
        return "Ray runtime started" in self.output()

    def raylet(self) -> int | None:
        return next((pid for pid, cmd in descendants(self.proc.pid) if "/raylet/raylet " in cmd), None)

    def trial_workers(self) -> list[int]:
        """The node's Ray workers now running naslab's trial task."""
        return [pid for pid, cmd in descendants(self.proc.pid) if cmd.startswith(TRIAL_TITLE)]

    def processes(self) -> list[int]:
        return [self.proc.pid, *(pid for pid, _ in descendants(self.proc.pid))]


def still_running_a_trial(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().startswith(TRIAL_TITLE)
    except OSError:
        return False


def kill_tree(pids: list[int]) -> list[int]:
    """SIGKILLs every pid; returns those still running after a generous wait (none, normally)."""
    kill_pids(pids)
    return outlived(pids, grace=30)


# Ray's setting of its workers' niceness (ray_constants.RAY_WORKER_NICENESS; default 15)
RAY_NICENESS = "RAY_worker_niceness"


@pytest.mark.slow
def test_ray_cluster_worker_killed_mid_trial_is_retried_and_the_search_equals_the_local_one(tmp_path) -> None:
    # A short root for Ray's sockets (a unix socket path has ~107 characters), removed at the end.
    ray_tmp = Path(tempfile.mkdtemp(prefix="naslab_ray_", dir="/tmp"))
    env = {
        **os.environ,
        # The cluster's workers import this checkout's naslab, as the driver (run.py) does.
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "OMP_NUM_THREADS": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        # No token: a test cluster on 127.0.0.1 must not depend on (or write) ~/.ray/auth_token.
        "RAY_AUTH_MODE": "disabled",
        "RAY_TMPDIR": str(ray_tmp),
        # Ray starts its workers at nice 15: on a machine busy with other work a trial then gets a few per
        # cent of a core and the test crawls (measured: 4 % next to two busy processes). Same priority here.
        RAY_NICENESS: "0",
    }
    ray_dir, local_dir = tmp_path / "ray", tmp_path / "local"
    ray_log, local_log = tmp_path / "ray_search.log", tmp_path / "local_search.log"
    nodes: list[Node] = []
    runs: list[subprocess.Popen[bytes]] = []
    left: list[int] = []
    report: list[str] = []

    def everything() -> str:
        logs = [*(n.log for n in nodes), ray_log, local_log]
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs if p.exists())

    def start_run(args: list[str], run_dir: Path, log: Path) -> subprocess.Popen[bytes]:
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [sys.executable, "run.py", *args, f"hydra.run.dir={run_dir}"],
                cwd=REPO_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        runs.append(proc)
        return proc

    try:
        local = start_run([*SEARCH, "evaluator.backend=local"], local_dir, local_log)  # the reference, meanwhile
        gcs_port, dashboard_port = free_ports(2)
        head = Node(
            "head",
            [
                "--head",
                f"--port={gcs_port}",
                f"--temp-dir={ray_tmp}",
                "--include-dashboard=false",
                f"--dashboard-port={dashboard_port}",  # its headless dashboard process still binds one (8265)
            ],
            env,
            tmp_path,
        )
        nodes.append(head)
        address = f"127.0.0.1:{gcs_port}"
        wait_for(head.started, "the head node started", everything)
        second = Node("second", [f"--address={address}"], env, tmp_path)
        nodes.append(second)
        wait_for(second.started, "the second node joined", everything)
        for node in nodes:
            report.append(
                f"node {node.name}: ray start pid {node.proc.pid}, raylet pid {node.raylet()}, "
                f"node manager port {node.node_manager_port}, 1 CPU"
            )

        search = start_run(
            [*SEARCH, "evaluator.backend=ray", f"evaluator.ray_address={address}", "evaluator.max_retries=3"],
            ray_dir,
            ray_log,
        )
        # The second node's worker as soon as it runs a trial: killed mid-trial (it has not returned).
        victim: list[int] = []

        def trial_on_second_node() -> bool:
            assert search.poll() is None, f"the search ended before a trial could be killed\n{everything()}"
            victim[:] = second.trial_workers()[:1]
            return bool(victim)

        while True:
            wait_for(trial_on_second_node, "a trial running on the second node", everything)
            archived = len(read_archive(ray_dir))
            # Still the trial, read again just before the kill: the scan of /proc takes milliseconds, and a
            # trial that ended meanwhile leaves an idle worker (titled ray::IDLE) whose death retries nothing.
            if still_running_a_trial(victim[0]):
                os.kill(victim[0], signal.SIGKILL)
                break
        report.append(
            f"killed: Ray worker pid {victim[0]} ({TRIAL_TITLE}) on node second, "
            f"{archived} of {NUM_ARCHITECTURES} trials archived"
        )
        assert search.wait(timeout=600) == 0, everything()
        assert local.wait(timeout=600) == 0, everything()
    finally:
        for proc in runs:
            left += kill_tree([proc.pid, *(pid for pid, _ in descendants(proc.pid))])
            proc.wait()
        for node in reversed(nodes):
            left += kill_tree(node.processes())
            node.proc.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)
        print("\n".join(report))  # pytest shows it with -s, and on a failure
    assert not left, f"Ray processes still running after the test killed them: {left}"

    output = ray_log.read_text()
    retries = [line for line in output.splitlines() if RETRY_LOG in line]
    report_archive = [
        f"  {r['index']} {r['key']} score={r['score']:.4f} params={r['params']} error={r['error']}"
        for r in read_archive(ray_dir)
    ]
    print("retried:\n  " + "\n  ".join(retries) + "\nfinal archive:\n" + "\n".join(report_archive))
    assert len(retries) == 1, output[-4000:]  # the killed trial, rerun once, and no other
    assert retries[0].rstrip().endswith("attempt 2 finished it (retry 1 of evaluator.max_retries=3)"), retries
    records = read_archive(ray_dir)
    assert len(records) == NUM_ARCHITECTURES and len({r["key"] for r in records}) == NUM_ARCHITECTURES
    assert all(r["error"] is None for r in records)
    assert comparable(records) == comparable(read_archive(local_dir))  # same scores as the local backend
    assert json.loads((ray_dir / "genotype.json").read_text()) == json.loads((local_dir / "genotype.json").read_text())


@pytest.mark.slow
def test_ray_trial_that_keeps_killing_its_worker_is_recorded_failed_and_the_others_finish(
    tmp_path, monkeypatch
) -> None:
    """Ray's retries exhausted (a local Ray instance): a failed record naming the trial, not a crashed search;
    the other trials score what the local backend scores."""
    import ray

    monkeypatch.setenv(RAY_NICENESS, "0")  # the local instance's workers at normal priority (see the cluster test)

    from naslab.evaluators.backends import make_backend

    marks = tmp_path / "deaths"
    marks.mkdir()
    assert not ray.is_initialized()
    backend = make_backend("ray", workers=2, max_retries=1)
    runner = KillsItsWorker(GENOTYPES[2], marks, times=99)
    try:
        backend.start(runner)
        assert ray.is_initialized() and ray.cluster_resources()["CPU"] == 2  # a local instance of `workers` CPUs
        got = dict(backend.map_unordered(GENOTYPES))
    finally:
        backend.close()
    assert not ray.is_initialized()  # the instance it started is shut down
    assert sorted(got) == [0, 1, 2, 3]
    assert len(list(marks.iterdir())) == 2  # the first run and Ray's one retry
    assert got[2].score == 0.0 and got[2].error is not None
    assert got[2].error.startswith("ray backend: trial 2 (MicroGenotype(")
    assert "(WorkerCrashedError: " in got[2].error
    assert got[2].error.endswith("and evaluator.max_retries=1 reruns; recorded as failed")
    expected = [runner.runner.evaluate_one(GENOTYPES[i]) for i in (0, 1, 3)]
    assert [got[i].error for i in (0, 1, 3)] == [None] * 3
    assert [got[i].score for i in (0, 1, 3)] == [e.score for e in expected]
