"""Cross-process determinism (issue 24): one seeded search per family, run by `python run.py` in two processes
whose environments differ in everything that must not matter, writes the same results.

The two environments differ in
- PYTHONHASHSEED (0 and 12345): str / bytes hashes, so the iteration order of every set of strings and of dicts
  built from one; a result that depended on it would differ between any two runs of the same command;
- OMP_NUM_THREADS / MKL_NUM_THREADS (1 and 2): the thread pools torch starts with. The config's `threads` stays
  at its default 1, and naslab sets torch's threads from it (naslab.lifecycle.set_threads): the environment's
  thread count must not leak into the numbers. It would show: CPU reductions split over 2 threads round
  differently (`threads=2` changes the DARTS case's alphas in the 6th digit).

What is compared: archive.jsonl record by record and results.json with only what measures time or names the
run dir removed (`VOLATILE`; a new timing field fails here until it is added there, rather than being ignored
silently), each re-serialised in its own key order and compared as text; genotype.json byte for byte.
tests/test_pipeline.py test_seeded_run_is_identical_twice covers two runs in one process (same hash seed, same
threads); this file covers what only a second process can change.

Each case is the cheapest preset of its family on 2 CPU cores (7-14 s a run on an idle 2-core machine, up to
2-3 times that on a busy one); every run uses trainer=cpu, the claim being about CPU threads, not GPU kernels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_py

pytestmark = pytest.mark.slow  # two `python run.py` processes per case

# Keys whose values measure wall-clock time or name the run's own directory: the only differences allowed.
VOLATILE = frozenset({"wall_seconds", "started", "ended", "run_dir", "attempts"})

ENVIRONMENTS: tuple[dict[str, str], dict[str, str]] = (
    {"PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    {"PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
)

# One search per family, each the cheapest configuration of it. The first also trains and tests the found cell
# (final training is the same code for every family); the others search only (mode=search).
CASES: dict[str, list[str]] = {
    # ask/tell with stand-alone training: the default NAO (nao_quick: an encoder-predictor-decoder trained on the
    # archive) proposing children that are each trained from scratch
    "ask_tell-nao-standalone": ["debug=fast"],
    # weight sharing: the ENAS micro controller (REINFORCE) on the shared supernet
    "weight_sharing-enas_micro": ["experiment=enas_micro", "debug=fast", "mode=search"],
    # gradient: DARTS first order, alphas and weights trained in one supernet
    "gradient-darts_v1": ["experiment=darts_v1", "dataset=digits", "debug=fast", "mode=search"],
    # progressive: EPNAS's LSTM surrogate and temperature sampling, level by level, on shared weights
    "progressive-epnas_micro": ["experiment=epnas_micro", "debug=fast", "mode=search"],
    # a packaged ground-truth table (ptb_rnn_small_e1) searched by REINFORCE with the ENAS recurrent-cell controller
    # (controller=auto on space=rnn_small); the preset's mode=search: no training, no data read. The planted
    # evaluator, the other instant one, would add nothing a table does not already cover.
    "table-reinforce": ["experiment=search_phase_table", "strategy=reinforce"],
}


def without_volatile(value: Any) -> Any:
    """`value` with every `VOLATILE` key removed at any depth; everything else, and its order, kept."""
    if isinstance(value, dict):
        return {k: without_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [without_volatile(v) for v in value]
    return value


def outputs(run_dir: Path) -> tuple[list[str], str, bytes]:
    """(archive records, results) normalised and re-serialised in their own key order, and genotype.json's bytes."""
    archive = [
        json.dumps(without_volatile(json.loads(line))) for line in (run_dir / "archive.jsonl").read_text().splitlines()
    ]
    results = json.dumps(without_volatile(json.loads((run_dir / "results.json").read_text())), indent=1)
    return archive, results, (run_dir / "genotype.json").read_bytes()


def first_difference(a: list[str], b: list[str]) -> str:
    """The first differing archive record of two runs, for the failure message."""
    if len(a) != len(b):
        return f"{len(a)} records against {len(b)}"
    index = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    return f"record {index}:\n  {a[index][:1500]}\n  {b[index][:1500]}"


@pytest.mark.parametrize("overrides", list(CASES.values()), ids=list(CASES))
def test_two_processes_with_other_hash_seeds_and_thread_pools_write_the_same_results(
    tmp_path: Path, overrides: list[str]
) -> None:
    """The same seeded command in both environments: the same archive, results and genotype, so a result
    reproduces on another machine or shell, and a resumed run (a new process) continues the same search."""
    runs = []
    for number, env in enumerate(ENVIRONMENTS):
        run_dir = tmp_path / f"env{number}"
        done = run_py([*overrides, "logger=none", "trainer=cpu", f"hydra.run.dir={run_dir}"], env=env)
        assert done.returncode == 0, f"run.py failed under {env}:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        runs.append(outputs(run_dir))
    (archive_a, results_a, genotype_a), (archive_b, results_b, genotype_b) = runs
    # not a vacuous comparison: both finished, scored something, and kept what they compare after normalising
    for results, archive in ((results_a, archive_a), (results_b, archive_b)):
        parsed = json.loads(results)
        assert parsed["status"] == "finished" and parsed["search"]["num_evaluated"] >= 2, results
        assert archive and all(json.loads(r)["score"] is not None and "key" in json.loads(r) for r in archive)
    assert archive_a == archive_b, first_difference(archive_a, archive_b)
    assert results_a == results_b
    assert genotype_a == genotype_b
