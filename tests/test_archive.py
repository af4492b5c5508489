"""The archive of evaluated architectures: appended line by line, read back on resume, damage refused."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from naslab.archive import Archive, ArchiveRecord, read_records
from naslab.errors import CorruptStateError, UserError


def record(index: int) -> ArchiveRecord:
    return ArchiveRecord(
        index=index, key=f"k{index}", genotype={"i": index}, readable=str(index), score=index / 10, seed=0
    )


def write(path: Path, n: int) -> None:
    archive = Archive(path)
    for i in range(n):
        archive.append(record(i))


def test_records_round_trip_and_a_new_run_never_overwrites_them(tmp_path: Path) -> None:
    path = tmp_path / "archive.jsonl"
    write(path, 3)
    assert [r.key for r in Archive(path, resume=True).records] == ["k0", "k1", "k2"]
    with pytest.raises(UserError, match="already holds a search; pass resume=true"):
        Archive(path)  # without resume: refused, the file untouched
    assert len(path.read_text().splitlines()) == 3


def test_a_line_cut_by_a_kill_is_dropped_and_the_next_append_starts_a_fresh_line(tmp_path: Path) -> None:
    path = tmp_path / "archive.jsonl"
    write(path, 2)
    with path.open("a") as f:
        f.write(json.dumps({"index": 2, "key": "k2"})[:15])  # half of a record, no newline
    archive = Archive(path, resume=True)
    assert [r.key for r in archive.records] == ["k0", "k1"]
    archive.append(record(2))
    assert [r.key for r in read_records(path)] == ["k0", "k1", "k2"]


def test_a_damaged_line_in_the_middle_is_refused_in_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "archive.jsonl"
    write(path, 4)
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1][:20] + "#garbage#\n"
    path.write_text("".join(lines))
    before = path.read_bytes()
    with pytest.raises(CorruptStateError) as err:
        Archive(path, resume=True)
    message = str(err.value)
    assert str(path) in message and "line 2 of 4" in message and "keep lines 1-1" in message and "\n" not in message
    assert path.read_bytes() == before  # nothing cut, nothing reset


@pytest.mark.parametrize(
    "line, damage, reason",
    [
        (2, b'{"index": 1, "key": "k1", "score": "high"}\n', "field genotype is missing"),
        (2, json.dumps({**asdict(record(1)), "score": "0.1"}).encode() + b"\n", 'field score is "0.1", not int/float'),
        (2, b"\xff\xfe binary \x00 garbage\n", "UnicodeDecodeError"),
        (4, json.dumps({**asdict(record(3)), "score": None}).encode() + b"\n", "field score is null"),
    ],
    ids=["a missing field", "a score that is not a number", "bytes that are not text", "a whole last line"],
)
def test_a_line_that_parses_but_is_not_a_record_is_refused_wherever_it_is(
    tmp_path: Path, line: int, damage: bytes, reason: str
) -> None:
    """Only a last line that is not whole JSON is what a kill leaves (dropped); any other bad line, the last
    one included, is damage: refused in one line, the file untouched (a resume would otherwise cut it)."""
    path = tmp_path / "archive.jsonl"
    write(path, 4)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[line - 1] = damage
    path.write_bytes(b"".join(lines))
    before = path.read_bytes()
    with pytest.raises(CorruptStateError) as err:
        Archive(path, resume=True)
    message = str(err.value)
    assert message.startswith(f"{path} line {line} of 4 is not an archive record (") and reason in message
    assert "\n" not in message and path.read_bytes() == before
