"""The append-only archive of evaluated architectures: the search's record and its resume log.

One JSON line per evaluation, flushed and fsynced before the next evaluation starts, so a
search killed at any moment (even `kill -9`) loses at most the evaluation in flight. An append
that fails (a full disk) is undone, so the file stays a sequence of whole records; a line that is
not a record is a one-line CorruptStateError naming the file and the line, unless it is the cut
last line a kill leaves (dropped with a warning).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

from naslab.errors import CorruptStateError, RunDirWriteError, RunExistsError
from naslab.records import write_all

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


# The type a record's field must have in the file (None allowed where the field is optional): a line of
# the right shape with a value of another type (a score "abc") is damage, refused like a garbage line.
_NUMBER = (int, float)
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], bool]] = {
    "index": ((int,), False),
    "key": ((str,), False),
    "genotype": ((dict, list), False),
    "readable": ((str,), False),
    "score": (_NUMBER, False),
    "seed": ((int,), False),
    "epochs": (_NUMBER, True),
    "params": ((int,), True),
    "wall_seconds": (_NUMBER, False),
    "error": ((str,), True),
    "extra": ((dict,), False),
}


def record_from_json(data: Any) -> ArchiveRecord:
    """The record of one parsed line; TypeError naming the field when a field is missing, unknown or of
    the wrong type (bool is not a number here, though Python's bool is an int)."""
    if not isinstance(data, dict):
        raise TypeError(f"a JSON {type(data).__name__}, not an object")
    known = {f.name: f for f in fields(ArchiveRecord)}
    missing = [n for n, f in known.items() if n not in data and f.default is MISSING and f.default_factory is MISSING]
    unknown = [n for n in data if n not in known]
    if missing or unknown:
        raise TypeError(
            "; ".join([*(f"field {n} is missing" for n in missing), *(f"unknown field {n}" for n in unknown)])
        )
    record = ArchiveRecord(**data)
    for name, (types, optional) in _FIELD_TYPES.items():
        value = getattr(record, name)  # an absent optional field has its default
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            raise TypeError(f"field {name} is {json.dumps(value)[:40]}, not {'/'.join(t.__name__ for t in types)}")
    return record


class Archive:
    """Reads an existing archive.jsonl (for resuming) and appends new records to it."""

    def __init__(self, path: str | Path, resume: bool = False):
        self.path = Path(path)
        self.records: list[ArchiveRecord] = []
        # Where a failed append whose undo failed too left a fragment: the next append cuts it first.
        self._cut_at: int | None = None
        try:
            if self.path.exists() and self.path.stat().st_size > 0:
                if not resume:
                    raise RunExistsError(f"{self.path} already holds a search; pass resume=true to continue it")
                self.records = list(self._read())
                log.info("resuming from %s: %d evaluated architectures", self.path, len(self.records))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
        except OSError as err:
            if isinstance(err, RunExistsError):
                raise
            raise RunDirWriteError.from_os_error(self.path, err) from err
        self._by_key = {r.key: r for r in self.records}

    def _read(self) -> Iterator[ArchiveRecord]:
        good_bytes = 0
        for record, _, end in _parse(self.path):
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
        """Appends one record durably (written and fsynced) or not at all.

        A write that fails half-way (a full disk) is cut back to the previous end of the file, so no
        half line is left to be read as a record, and RunDirWriteError (one line) is raised. Should the
        cut fail too, the next append cuts the fragment first, and a resume drops it as a cut last line.
        """
        data = (json.dumps(asdict(record), sort_keys=True) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as err:
            raise RunDirWriteError.from_os_error(self.path, err) from err
        end: int | None = None  # the file's length before this record: what a failed write is cut back to
        try:
            if self._cut_at is not None:
                os.ftruncate(fd, self._cut_at)
                self._cut_at = None
            end = os.lseek(fd, 0, os.SEEK_END)
            write_all(fd, data)
            os.fsync(fd)
        except OSError as err:
            if end is not None:
                try:
                    os.ftruncate(fd, end)
                except OSError:
                    self._cut_at = end
                    log.warning(
                        "%s ends with part of a record that could not be cut; the next append cuts it", self.path
                    )
            raise RunDirWriteError.from_os_error(self.path, err) from err
        finally:
            os.close(fd)
        self.records.append(record)
        self._by_key[record.key] = record

    def best(self, where: Callable[[ArchiveRecord], bool] | None = None) -> ArchiveRecord | None:
        """The best-scored record without an error (among those `where` accepts)."""
        scored = [r for r in self.records if r.error is None and (where is None or where(r))]
        return max(scored, key=lambda r: r.score) if scored else None


def read_records(path: str | Path, what: str = "an archive record", fix: str | None = None) -> list[ArchiveRecord]:
    """The records of an archive file, read only: a file another process still appends to is left as it
    is (a half-written last line is skipped, not cut), e.g. a ground truth being built or a live study.
    `what` and `fix` word the error for a damaged line (see read_numbered_records)."""
    return [record for _, record in read_numbered_records(path, what, fix)]


def read_numbered_records(
    path: str | Path, what: str = "an archive record", fix: str | None = None
) -> list[tuple[int, ArchiveRecord]]:
    """(line number, record) for every record of an archive file, read only; [] for a missing file.

    A damaged line is a CorruptStateError naming the file and the line: `what` a line should be, `fix`
    what to do (the default suits a search's archive)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [(line, record) for record, line, _ in _parse(path, what, fix)]


def _parse(
    path: Path, what: str = "an archive record", fix: str | None = None
) -> Iterator[tuple[ArchiveRecord, int, int]]:
    """(record, 1-based line number, byte offset after its line) for every record.

    Only a last line that is not whole JSON is what a kill mid-write leaves: it is dropped with a
    warning. Any other line that is not a record (garbage, a missing field, a score that is not a
    number) is damage from elsewhere: the records after it cannot be trusted, and guessing would reset
    part of a study silently, so it is refused in one line and the file is left untouched.
    """
    lines = path.read_bytes().splitlines(keepends=True)
    good_bytes = 0
    for n, raw in enumerate(lines):
        good_bytes += len(raw)
        if not raw.strip():
            continue
        try:
            data = json.loads(raw.decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            if n == len(lines) - 1 and not raw.endswith(b"\n"):  # a line cut by a kill mid-write: it is redone
                log.warning("dropping a truncated last line of %s: %s", path, err)
                return
            raise CorruptStateError(_damage(path, n, len(lines), what, type(err).__name__, fix)) from None
        try:
            record = record_from_json(data)
        except TypeError as err:
            raise CorruptStateError(_damage(path, n, len(lines), what, str(err), fix)) from None
        yield record, n + 1, good_bytes


def _damage(path: Path, n: int, total: int, what: str, reason: str, fix: str | None) -> str:
    """The one line for damaged line n (0-based) of `total`."""
    fix = fix or (
        f"the file is damaged: move it away to start the search over, or keep lines 1-{n} to resume from them"
    )
    reason = " ".join(reason.split())[:120]
    return f"{path} line {n + 1} of {total} is not {what} ({reason}); {fix}"
