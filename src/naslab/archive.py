"""The append-only archive of evaluated architectures: the search's record and its resume log.

One JSON line per evaluation, flushed and fsynced before the next evaluation starts, so a
search killed at any moment (even `kill -9`) loses at most the evaluation in flight.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from naslab.errors import CorruptStateError, RunExistsError

log = logging.getLogger(__name__)


@dataclass
class ArchiveRecord:
    """One evaluated architecture and what it cost."""

    index: int
    key: str  # canonical JSON of the genotype: the identity used for resuming and de-duplication
    genotype: dict[str, Any]
    readable: str
    score: float
    seed: int
    epochs: float | None = None
    params: int | None = None
    wall_seconds: float = 0.0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Archive:
    """Reads an existing archive.jsonl (for resuming) and appends new records to it."""

    def __init__(self, path: str | Path, resume: bool = False):
        self.path = Path(path)
        self.records: list[ArchiveRecord] = []
        if self.path.exists() and self.path.stat().st_size > 0:
            if not resume:
                raise RunExistsError(f"{self.path} already holds a search; pass resume=true to continue it")
            self.records = list(self._read())
            log.info("resuming from %s: %d evaluated architectures", self.path, len(self.records))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        self._by_key = {r.key: r for r in self.records}

    def _read(self) -> Iterator[ArchiveRecord]:
        good_bytes = 0
        for record, end in _parse(self.path):
            yield record
            good_bytes = end
        # Cut what was dropped, and end the last record's line (a kill may have come between the
        # record and its newline), so that the next append starts on a fresh line.
        with self.path.open("r+b") as f:
            f.truncate(good_bytes)
            if good_bytes:
                f.seek(good_bytes - 1)
                if f.read(1) != b"\n":
                    f.write(b"\n")

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, key: str) -> bool:
        return key in self._by_key

    def get(self, key: str) -> ArchiveRecord | None:
        return self._by_key.get(key)

    def append(self, record: ArchiveRecord) -> None:
        line = json.dumps(asdict(record), sort_keys=True)
        with self.path.open("a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records.append(record)
        self._by_key[record.key] = record

    def best(self, where: Callable[[ArchiveRecord], bool] | None = None) -> ArchiveRecord | None:
        """The best-scored record without an error (among those `where` accepts)."""
        scored = [r for r in self.records if r.error is None and (where is None or where(r))]
        return max(scored, key=lambda r: r.score) if scored else None


def read_records(path: str | Path) -> list[ArchiveRecord]:
    """The records of an archive file, read only: a file another process still appends to is left as it
    is (a half-written last line is skipped, not cut), e.g. a ground truth being built or a live study."""
    path = Path(path)
    if not path.is_file():
        return []
    return [record for record, _ in _parse(path)]


def _parse(path: Path) -> Iterator[tuple[ArchiveRecord, int]]:
    """(record, byte offset after its line) for every record; a truncated last line is dropped with a warning."""
    lines = path.read_text().splitlines(keepends=True)
    good_bytes = 0
    for n, line in enumerate(lines):
        good_bytes += len(line.encode())
        if line.strip():
            try:
                record = ArchiveRecord(**json.loads(line))
            except (json.JSONDecodeError, TypeError) as err:
                if n == len(lines) - 1:  # a line cut by a kill mid-write: it is re-evaluated
                    log.warning("dropping a truncated last line of %s: %s", path, err)
                    return
                # In the middle of the file it is not a kill mid-write: the records after it cannot be trusted.
                raise CorruptStateError(
                    f"{path} line {n + 1} of {len(lines)} is not an archive record ({type(err).__name__}); the file is "
                    f"damaged: move it away to start the search over, or keep lines 1-{n} to resume from them"
                ) from None
            yield record, good_bytes
