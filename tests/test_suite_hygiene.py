"""The suite's own hygiene: the leak check at the end of a session (tests/conftest.py) finds a process
a test left running, and a hard per-test time limit is configured."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

from tests.conftest import REPO_ROOT, descendants


def test_a_child_left_running_is_found_and_a_finished_one_is_not() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert proc.pid in [pid for pid, _ in descendants(os.getpid())]
    finally:
        proc.kill()
        proc.wait()
    assert proc.pid not in [pid for pid, _ in descendants(os.getpid())]


def test_every_test_has_a_hard_time_limit() -> None:
    options = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 0 < int(options["timeout"]) <= 900
