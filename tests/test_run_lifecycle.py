"""The life of a run through `python run.py`: Ctrl-C / SIGTERM, resume with only the run dir, refused and
finished resumes, final training resumed from its checkpoint, and user mistakes as one line.

Every process a test starts is killed in a `finally`; waits are on progress (archive lines, a
checkpoint file), with generous limits, never on wall-clock speed.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, run_py, signal_when

# NAO (the default strategy) on a search long enough to be stopped in the middle: 6 children of 12 batches.
SEARCH = [
    "debug=fast",
    "search.num_architectures=6",
    "search.batch_size=1",
    "evaluator.train_batches=12",
    "trainer.limit_train_batches=12",
]


def file_digests(run_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def archive(run_dir: Path) -> list[tuple[str, float]]:
    lines = (run_dir / "archive.jsonl").read_text().splitlines()
    return [(r["key"], r["score"]) for r in map(json.loads, lines)]


def archive_lines(run_dir: Path) -> int:
    path = run_dir / "archive.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    done = run_py([*SEARCH, "logger=none", f"hydra.run.dir={run_dir}"], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stop_mid_search_then_resume_with_only_the_run_dir(tmp_path: Path, uninterrupted: Path, signum: int) -> None:
    run_dir = tmp_path / "run"
    # W&B (its id must survive the resume) with SIGINT; the SIGTERM run logs to CSV, which starts faster
    logger = "logger=wandb" if signum == signal.SIGINT else "logger=csv"
    code, output = signal_when([logger, *SEARCH], run_dir, lambda: archive_lines(run_dir) >= 2, signum)
    assert code == 128 + signum
    last = output.strip().splitlines()[-1]
    assert last == (
        f"stopped by {signal.Signals(signum).name}: every finished evaluation is kept in {run_dir}; "
        f"continue with: python run.py hydra.run.dir={run_dir} resume=true"
    )
    assert "Traceback" not in output
    stopped = json.loads((run_dir / "results.json").read_text())
    assert stopped["status"] == "interrupted" and 2 <= archive_lines(run_dir) < 6
    kept = archive(run_dir)

    # A resume that would change what the run computes is refused and writes nothing.
    before = file_digests(run_dir)
    if signum == signal.SIGINT:  # (the refusal does not depend on the signal that stopped the run)
        refused = run_py([f"hydra.run.dir={run_dir}", "resume=true", "evaluator.epochs=3"], timeout=120)
        assert refused.returncode == 2 and refused.stderr.startswith("error: resume=true keeps the run's configuration")
        assert len(refused.stderr.strip().splitlines()) == 1 and file_digests(run_dir) == before

    # The README's command: only the run dir. The saved config (NAO, debug sizes, W&B) comes back.
    resumed = run_py([f"hydra.run.dir={run_dir}", "resume=true"], timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    reference = json.loads((uninterrupted / "results.json").read_text())
    assert archive(run_dir)[: len(kept)] == kept  # nothing finished was evaluated again
    assert archive(run_dir) == archive(uninterrupted)
    assert (results["genotype"], results["final"]["test_accuracy"]) == (
        reference["genotype"],
        reference["final"]["test_accuracy"],
    )
    assert results["status"] == "finished" and results["attempts"][0]["status"] == "interrupted"
    if signum == signal.SIGINT:
        assert results["wandb_id"] == stopped["wandb_id"]  # the same W&B run continues
    for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):  # the run's .hydra/ as the first start wrote it
        assert before[f".hydra/{name}"] == file_digests(run_dir)[f".hydra/{name}"]
    assert "naslab search_train: dataset=digits, space=micro_small, strategy=nao" in resumed.stdout
    assert f"everything is in {run_dir}" in resumed.stdout

    # Resuming the finished run says so, exits 0 and touches nothing.
    finished = file_digests(run_dir)
    again = run_py([f"hydra.run.dir={run_dir}", "resume=true"], timeout=120)
    assert again.returncode == 0 and "finished already" in again.stdout and file_digests(run_dir) == finished


@pytest.mark.slow
def test_search_train_stopped_in_final_training_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    # 8 epochs: the stop comes after the first epoch's checkpoint with most of the training still to do
    args = ["debug=fast", "logger=none", "train.epochs=8", "trainer.limit_train_batches=16"]
    reference = tmp_path / "reference"
    done = run_py([*args, f"hydra.run.dir={reference}"], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    run_dir = tmp_path / "run"
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    code, output = signal_when(args, run_dir, checkpoint.exists, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, output[-3000:]
    assert json.loads((run_dir / "results.json").read_text())["status"] == "interrupted"
    resumed = run_py([f"hydra.run.dir={run_dir}", "resume=true"], timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming final training from {checkpoint}" in (run_dir / "run.log").read_text()
    final = json.loads((run_dir / "results.json").read_text())["final"]
    assert final["test_accuracy"] == json.loads((reference / "results.json").read_text())["final"]["test_accuracy"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["resume=true", "hydra.run.dir=MISSING"], "error: resume=true: hydra.run.dir=MISSING does not exist"),
        (["resume=true", "hydra.run.dir=EMPTY"], "error: resume=true: EMPTY holds no naslab run"),
        (["evaluator.epochs=0"], "error: evaluator.epochs=0 is not valid: it must be an integer >= 1"),
        (["search.batch_size=0"], "error: search.batch_size=0 is not valid"),
        (["evaluator.channels=abc"], "error: evaluator.channels='abc' is not valid"),
        (["seed=abc"], "error: seed='abc' is not valid: it must be an integer"),
        (["strategy=nope"], "error: strategy=nope: no such strategy; choose one of: darts"),
        (["evaluator.epoch=3"], "error: evaluator.epoch: no such setting"),
        (["mode=export"], "error: mode=export needs export.run="),
        (["resume=on"], "error: resume=on is not valid: it must be true or false"),
    ],
)
def test_a_mistake_is_one_line_before_anything_is_written(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "empty").mkdir()
    args = [a.replace("MISSING", str(tmp_path / "missing")).replace("EMPTY", str(tmp_path / "empty")) for a in args]
    message = message.replace("MISSING", str(tmp_path / "missing")).replace("EMPTY", str(tmp_path / "empty"))
    run_dir = tmp_path / "run"
    if not any(a.startswith("hydra.run.dir") for a in args):
        args.append(f"hydra.run.dir={run_dir}")
    done = run_py(args, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(message)
    assert not run_dir.exists() and not (tmp_path / "missing").exists() and not any((tmp_path / "empty").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["mode=train", "genotype=darts_ptb"], "error: genotype=darts_ptb belongs to space 'rnn', but space=micro"),
        (["mode=train", "genotype=nothing_here"], "error: genotype 'nothing_here' is neither a published name"),
        (["dataset=cifar10", "paths.data_dir=EMPTY"], "error: cifar10 not found: missing data_batch_1"),
        (["space.op_set=foo"], "error: space: unknown op set 'foo'"),
        (["strategy=darts", "space=micro_darts", "strategy.select=bad"], "error: strategy: strategy.select must be"),
    ],
)
def test_a_mistake_found_in_the_run_is_one_line_without_traceback(tmp_path: Path, args: list[str], message: str):
    (tmp_path / "empty").mkdir()
    args = [a.replace("EMPTY", str(tmp_path / "empty")) for a in args]
    done = run_py(["debug=fast", "logger=none", *args, f"hydra.run.dir={tmp_path / 'run'}"], timeout=300)
    assert done.returncode == 2 and done.stderr.startswith(message), done.stderr[-3000:]
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "failed" and results["error"]  # the failed run still says what happened


def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    """The first Ctrl-C starts a clean stop (here: a cleanup that would take a minute); the second ends it."""
    script = textwrap.dedent(
        """
        import sys, time
        from naslab.errors import RunInterrupted
        from naslab.interrupt import stop_on_signals
        try:
            with stop_on_signals():
                print("running", flush=True)
                time.sleep(60)
        except RunInterrupted:
            print("cleaning up", flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    try:
        assert proc.stdout.readline().strip() == "running"
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline().strip() == "cleaning up"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 128 + signal.SIGINT
    finally:
        proc.kill()
        proc.wait()


def test_help_lists_the_groups(tmp_path: Path) -> None:
    done = run_py(["--help"], timeout=60)
    assert done.returncode == 0 and "Config groups" in done.stdout and "strategy" in done.stdout
    assert not os.path.exists(REPO_ROOT / "outputs" / "help")


@pytest.mark.slow
def test_a_sweep_run_again_with_resume_skips_its_finished_jobs(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", "strategy=random", "seed=0,1", "debug=fast", "logger=none", f"hydra.sweep.dir={sweep}"]
    done = run_py(args, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    first = file_digests(sweep / "0")
    (sweep / "1" / "results.json").unlink()  # job 1 as if the sweep had been stopped during it
    again = run_py([*args, "resume=true"], timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{sweep / '0'} finished already" in again.stdout
    assert {k: v for k, v in file_digests(sweep / "0").items() if not k.startswith(".hydra")} == {
        k: v for k, v in first.items() if not k.startswith(".hydra")
    }
    assert json.loads((sweep / "1" / "results.json").read_text())["status"] == "finished"
