"""A search killed with SIGKILL resumes without losing or repeating work; failed trials are handled."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from naslab.archive import Archive, ArchiveRecord
from naslab.data import DigitsDataModule
from naslab.evaluators.standalone import StandaloneEvaluator
from naslab.pipeline import run
from naslab.spaces import MicroSpace, Task
from tests.conftest import run_and_kill_9

SEARCH_ARGS = [
    "mode=search",
    "logger=none",
    "debug=fast",
    "search.num_architectures=8",
    "search.batch_size=3",
    "evaluator.epochs=4",
    "evaluator.train_batches=4",
]


def read_archive(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "archive.jsonl").read_text().splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [2, 6], ids=["in the random pool", "in NAO's first ascent generation"])
def test_kill_9_mid_search_then_resume_loses_nothing(compose_cfg, tmp_path, kill_after) -> None:
    """The default strategy (NAO: 5 random cells, then ascent) killed before or after its model trained."""
    run_dir = tmp_path / "killed"
    archive = run_dir / "archive.jsonl"
    archived = lambda: len(archive.read_text().splitlines()) if archive.exists() else 0  # noqa: E731
    run_and_kill_9(SEARCH_ARGS, run_dir, lambda: archived() >= kill_after)
    before = read_archive(run_dir)
    assert kill_after <= len(before) < 8

    resumed = run(compose_cfg(*SEARCH_ARGS, "resume=true", run_dir=run_dir))
    after = read_archive(run_dir)
    assert after[: len(before)] == before  # nothing evaluated before the kill was lost or rewritten
    assert len(after) == 8 == resumed["search"]["num_evaluated"]
    assert len({r["key"] for r in after}) == 8  # nothing evaluated twice

    # the resumed search is the search that was never interrupted
    fresh = run(compose_cfg(*SEARCH_ARGS, run_dir=tmp_path / "fresh"))
    assert [(r["key"], r["score"]) for r in read_archive(tmp_path / "fresh")] == [(r["key"], r["score"]) for r in after]
    assert fresh["genotype"] == resumed["genotype"]


def test_truncated_last_archive_line_is_dropped(tmp_path) -> None:
    archive = Archive(tmp_path / "archive.jsonl")
    archive.append(ArchiveRecord(index=0, key="a", genotype={}, readable="a", score=0.5, seed=0))
    with (tmp_path / "archive.jsonl").open("a") as f:
        f.write('{"index": 1, "key": "b", "geno')  # killed mid-write
    resumed = Archive(tmp_path / "archive.jsonl", resume=True)
    assert [r.key for r in resumed.records] == ["a"] and resumed.best().score == 0.5
    resumed.append(ArchiveRecord(index=1, key="b", genotype={}, readable="b", score=0.7, seed=0))
    resumed.append(ArchiveRecord(index=2, key="c", genotype={}, readable="c", score=0.1, seed=0))
    again = Archive(tmp_path / "archive.jsonl", resume=True)  # the partial line did not corrupt the file
    assert [r.key for r in again.records] == ["a", "b", "c"] and again.best().key == "b"


def test_record_without_newline_is_kept(tmp_path) -> None:
    path = tmp_path / "archive.jsonl"
    Archive(path).append(ArchiveRecord(index=0, key="a", genotype={}, readable="a", score=0.5, seed=0))
    path.write_text(path.read_text().rstrip("\n"))  # killed between the record and its newline
    resumed = Archive(path, resume=True)
    resumed.append(ArchiveRecord(index=1, key="b", genotype={}, readable="b", score=0.7, seed=0))
    assert [r.key for r in Archive(path, resume=True).records] == ["a", "b"]


class NaNSpace(MicroSpace):
    """A space whose children output NaN: their training loss is NaN from the first step."""

    def build_child(self, genotype, task, **network):
        class NaNNet(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.linear = nn.Linear(64, task.num_classes)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.linear(x.flatten(1)) * float("nan")

        return NaNNet()


def test_nan_loss_is_a_logged_failed_trial(caplog) -> None:
    space = NaNSpace(2, "enas")
    evaluator = StandaloneEvaluator(
        space,
        Task(10, (1, 8, 8)),
        lambda **kw: DigitsDataModule(phase="search", **kw),
        lambda **kw: L.Trainer(accelerator="cpu", limit_train_batches=2, limit_val_batches=1, **kw),
        epochs=1,
    )
    [evaluation] = evaluator.evaluate([space.sample(np.random.default_rng(0))])
    assert evaluation.score == 0.0 and "training loss is not finite at epoch 0, step 0" in evaluation.error
    assert "child failed, scored 0" in caplog.text
