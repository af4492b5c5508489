"""What every search shares: `Search.run`, its `SearchResult`, the one function that makes archive
records, and atomic checkpoints.

Three searches implement `Search` (naslab.search.SEARCHES): `ask_tell` (a strategy's proposals scored
by any evaluator), `shared` (weight sharing: one supernet trained in alternation with the strategy)
and `gradient` (DARTS: architecture weights of a relaxed supernet trained by gradient). Each archives
what it scores through `make_record`, so archives, search curves, reports and resume read the same
records whichever search wrote them.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Mapping, Sequence, TypeVar

import torch

from naslab.archive import Archive, ArchiveRecord
from naslab.records import atomic_write, atomic_write_bytes
from naslab.spaces.base import Space

G = TypeVar("G")

# Scores architectures with a one-shot search's trained weights on its first n search-valid batches.
SharedScorer = Callable[[Sequence[Any], int], list[float]]


@dataclass
class SearchResult(Generic[G]):
    best_genotype: G
    best_score: float
    num_evaluated: int
    wall_seconds: float
    archive: Archive
    # Weight sharing and DARTS: the trained supernet's scores of any architectures (`search.rank_all`
    # ranks every architecture of the space with it); None for stand-alone searches.
    shared_scorer: SharedScorer | None = None


class Search(ABC, Generic[G]):
    """One way of searching a space; `run` is resumable and archives every architecture it scores."""

    kind: str = "search"
    # What the search spends, as the `search.budget` block of results.json names it.
    budget_unit: str = "evaluations"

    @abstractmethod
    def run(self, run_dir: Path, resume: bool = False, logger: Any = None) -> SearchResult[G]:
        """Searches in `run_dir` (archive.jsonl and checkpoints); `resume` continues what is there;
        `logger` (Lightning's, or None) receives metrics and pictures."""

    def close(self) -> None:
        """Releases what the search holds (an evaluator's worker processes or Ray connection)."""


def make_record(
    space: Space[G],
    genotype: G,
    key: str,
    index: int,
    seed: int,
    score: float,
    *,
    epochs: float | None = None,
    params: int | None = None,
    wall_seconds: float = 0.0,
    error: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ArchiveRecord:
    """The archive record of one scored architecture (every search and the ground-truth tables)."""
    return ArchiveRecord(
        index=index,
        key=key,
        genotype=space.to_dict(genotype),
        readable=space.describe(genotype),
        score=score,
        seed=seed,
        epochs=epochs,
        params=params,
        wall_seconds=wall_seconds,
        error=error,
        extra=dict(extra or {}),
    )


def save_state(path: Path, state: dict[str, Any]) -> None:
    """torch.save, atomically and durably: a kill, a power loss or a full disk leaves the old or the new
    checkpoint, never half of one; a failed write is one line (RunDirWriteError) and leaves no temp file.

    The state is serialized in memory first, so a write error is the OSError of the write itself (torch
    writing to a file turns it into an opaque RuntimeError) and a failed pickle never touches the disk.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getbuffer(), tmp=path.with_suffix(".tmp"))


def save_trainer_checkpoint(trainer: Any, path: Path) -> None:
    """Writes a Lightning checkpoint atomically and durably: a kill, a power loss or a full disk leaves the
    previous one intact, never half of one; a failed write is one line (RunDirWriteError), no temp file."""
    atomic_write(path, lambda tmp: trainer.save_checkpoint(tmp, weights_only=False), tmp=path.with_suffix(".tmp"))
