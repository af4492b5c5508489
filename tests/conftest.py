"""Shared fixtures: the real Hydra config composed with the compose API, as the entry point sees it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

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


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models: intra-op threads only add synchronisation, and on a busy 2-core machine they thrash
    (100x slower steps). A module that uses this runs on one thread; the old setting is restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """compose_cfg(*overrides) -> the project config with its outputs in tmp_path, no logger."""

    def _compose(*overrides: str, run_dir: Path | None = None) -> DictConfig:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=["logger=none", *overrides])
        with open_dict(cfg):
            cfg.paths.output_dir = str(run_dir or tmp_path / "run")
        return cfg

    return _compose


def run_py(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`python run.py *args` in the repository; its output captured, the process killed in a `finally`."""
    proc = subprocess.Popen(
        [sys.executable, "run.py", *args], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
        proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def run_and_kill_9(args: list[str], run_dir: Path, ready: Callable[[], bool], timeout: float = 180) -> None:
    """Starts `python run.py *args` in run_dir and SIGKILLs it as soon as `ready()` holds.

    Fails if the run ends on its own first: a resume test that never killed anything proves nothing.
    """
    proc = subprocess.Popen(
        [sys.executable, "run.py", *args, f"hydra.run.dir={run_dir}"],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
