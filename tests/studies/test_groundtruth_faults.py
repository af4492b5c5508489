"""`mode=groundtruth` on the process pool, the whole run killed with kill -9 mid-way, then resumed.

The builder appends each trial to groundtruth.jsonl the moment its worker returns it; a kill loses only
the trials in flight (their orphaned pool workers exit on their own), and `resume=true` trains exactly
the trials the table lacks. The resumed table must hold every (architecture, seed) trial exactly once,
the trials written before the kill untouched, with the scores of a build that was never interrupted.

Measured on 2 busy CPU cores: ~60-90 s (a pool starts twice; the local reference runs alongside).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from naslab.studies.groundtruth import TABLE_FILE
from tests.conftest import REPO_ROOT, kill_process_tree, run_and_kill_9, run_py

ARCHITECTURES = 8  # the macro space of 2 layers over 2 ops: 2 x 2 ops x 2 skip patterns
GROUNDTRUTH = [
    "mode=groundtruth",
    "logger=none",
    "space=macro",
    "space.num_layers=2",
    "space.op_set=[conv_3x3,max_pool_3x3]",
    "debug=fast",
    "evaluator.epochs=2",  # trials of ~1 s, so that the kill lands mid-build
    "evaluator.train_batches=4",
    "groundtruth.seeds=[0]",
]


def read_table(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / TABLE_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def comparable(records: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """Per trial key, what the backend and the kill must not change (not the order, not the wall time)."""
    return {r["key"]: (r["score"], r["params"], r["epochs"], r["error"], r["seed"]) for r in records}


@pytest.mark.slow
def test_groundtruth_on_the_pool_killed_9_then_resumed_loses_and_repeats_no_trial(tmp_path) -> None:
    run_dir, fresh_dir = tmp_path / "killed", tmp_path / "fresh"
    pool = [*GROUNDTRUTH, "evaluator.backend=pool", "evaluator.workers=2"]
    fresh_log = tmp_path / "fresh.log"
    with open(fresh_log, "w") as out:  # the uninterrupted build, on the local backend, meanwhile
        fresh = subprocess.Popen(
            [sys.executable, "run.py", *GROUNDTRUTH, "evaluator.backend=local", f"hydra.run.dir={fresh_dir}"],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        run_and_kill_9(pool, run_dir, lambda: len(read_table(run_dir)) >= 3)
        before = read_table(run_dir)
        assert 3 <= len(before) < ARCHITECTURES  # killed mid-build, with trials archived and trials missing

        resumed = run_py([*pool, f"hydra.run.dir={run_dir}", "resume=true"])
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        assert fresh.wait(timeout=600) == 0, fresh_log.read_text()[-3000:]
    finally:
        kill_process_tree(fresh)
    after = read_table(run_dir)
    assert after[: len(before)] == before  # the trials written before the kill are untouched
    assert len(after) == ARCHITECTURES and len({r["key"] for r in after}) == ARCHITECTURES  # none lost, none twice
    assert all(r["error"] is None and r["seed"] == 0 for r in after)
    assert comparable(after) == comparable(read_table(fresh_dir))  # as if never killed, and as the local backend
    results = json.loads((run_dir / "results.json").read_text())
    assert results["groundtruth"]["trials"] == ARCHITECTURES
