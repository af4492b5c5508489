"""torch threads on a shared CPU: the debug presets with torch's default threads vs `threads=1` (naslab's default).

    python benchmarks/threads.py [--load N] [--repeat R]

A busy machine is simulated by N pure-Python processes spinning on the cores (default: one per core,
another user's job). Each preset runs as a user would (`python run.py <preset> debug=fast logger=none
threads=T`) once with T = torch's default (one thread per core) and once with T = 1, alternating, in one
run of this script (machines are noisy: compare the ratio, not the seconds). It prints the wall times,
their ratio, and whether the two runs found the same architectures with the same scores (seeded results
must not depend on the thread count).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {
    "nao + standalone (default)": ["debug=fast"],
    "random + shared (Random-WS)": ["strategy=random", "evaluator=shared", "debug=fast"],
    "enas_micro": ["experiment=enas_micro", "debug=fast"],
    "darts_v1 on digits": ["experiment=darts_v1", "dataset=digits", "debug=fast"],
    "epnas_micro": ["experiment=epnas_micro", "debug=fast"],
}


def spin() -> None:
    """Another user's single-threaded job: a core kept busy until terminated."""
    while True:
        sum(range(100_000))


def run(args: list[str], threads: int) -> tuple[float, dict, list]:
    """(seconds, results.json, archive [(key, score)]) of one `python run.py` in a temporary run dir."""
    with tempfile.TemporaryDirectory() as run_dir:
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "run.py", *args, "logger=none", f"threads={threads}", f"hydra.run.dir={run_dir}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{args} threads={threads} failed:\n{done.stderr[-2000:]}")
        results = json.loads((Path(run_dir) / "results.json").read_text())
        lines = (Path(run_dir) / "archive.jsonl").read_text().splitlines()
        archive = [(r["key"], r["score"]) for r in map(json.loads, lines)]
        return seconds, results, archive


def outcome(results: dict, archive: list) -> tuple[tuple, tuple]:
    """(what was chosen: the archive's architectures and the found genotype, what was measured: scores and
    the test accuracy). Strategies decide on one thread, so the first must never depend on the thread
    count; scores from training can differ in float rounding (CPU sums split over threads)."""
    final = results.get("final") or {}
    return (tuple(k for k, _ in archive), results.get("genotype")), (
        tuple(s for _, s in archive),
        final.get("test_accuracy"),
    )


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--load", type=int, default=os.cpu_count() or 1, help="busy processes (0: an idle machine)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--presets", nargs="*", default=list(PRESETS))
    args = parser.parse_args()
    default_threads = torch.get_num_threads()  # torch's default: one per (physical) core
    load = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.load)]
    for process in load:
        process.start()
    print(f"{os.cpu_count()} cores, {args.load} busy processes; torch's default threads = {default_threads}")
    print(f"{'preset':30} {'default threads':>16} {'threads=1':>10} {'ratio':>6}  same architectures  same scores")
    try:
        for name in args.presets:
            times: dict[int, list[float]] = {default_threads: [], 1: []}
            outcomes: dict[int, tuple] = {}
            for _ in range(args.repeat):
                for threads in (default_threads, 1):  # alternating: a load that drifts hits both
                    seconds, results, archive = run(PRESETS[name], threads)
                    times[threads].append(seconds)
                    outcomes[threads] = outcome(results, archive)
            slow, fast = min(times[default_threads]), min(times[1])
            chosen = outcomes[default_threads][0] == outcomes[1][0]
            measured = outcomes[default_threads][1] == outcomes[1][1]
            print(
                f"{name:30} {slow:14.1f} s {fast:8.1f} s {slow / fast:6.1f}  {'yes' if chosen else 'NO':>18}"
                f"  {'yes' if measured else 'rounding':>11}"
            )
    finally:
        for process in load:
            process.terminate()
            process.join()


if __name__ == "__main__":
    main()
