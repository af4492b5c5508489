"""Wall time of the default run and of every experiment preset with debug=fast ("about a minute").

    python benchmarks/preset_times.py [--full-default]

Runs each as a user would (`python run.py experiment=<name> debug=fast logger=none`) in a temporary
run dir and prints seconds per preset. Presets whose data is not under data/ (CIFAR, ImageNet) are
reported as skipped with the reason. `--full-default` also times plain `python run.py` (target: under
5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(args: list[str]) -> tuple[float, subprocess.CompletedProcess, dict | None]:
    """`python run.py *args logger=none` in a temporary run dir: (seconds, process, results.json or None)."""
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "run.py", *args, "logger=none", f"hydra.run.dir={run_dir}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        results_file = Path(run_dir) / "results.json"
        results = json.loads(results_file.read_text()) if done.returncode == 0 else None
        return seconds, done, results


def timed_run(args: list[str]) -> tuple[float, str]:
    seconds, done, results = run_cli(args)
    if results is None:
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:") or "Error" in line]
        return seconds, "skipped: " + (errors[-1] if errors else "?")[:140]
    final = results.get("final") or {}
    metric = "test_perplexity" if final.get("test_perplexity") is not None else "test_accuracy"
    return seconds, f"{metric.replace('_', ' ')} {final.get(metric)}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full-default", action="store_true")
    args = parser.parse_args()
    runs = [[f"experiment={p.stem}", "debug=fast"] for p in sorted((ROOT / "conf" / "experiment").glob("*.yaml"))]
    if args.full_default:
        runs.append([])
    for run_args in runs:
        seconds, outcome = timed_run(run_args)
        print(f"{' '.join(run_args) or 'python run.py (default)':45} {seconds:7.1f} s   {outcome}")


if __name__ == "__main__":
    main()
