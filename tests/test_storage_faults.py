"""Storage faults (issue 24): a full disk, a run dir that cannot be written, a power loss after a rename.

Every fault is injected in-process and deterministically: `os.write` fails with ENOSPC after a given
number of writes to a given file of the run dir (the failing write first writes half of its bytes, the
short write a nearly full disk gives), `os.open` refuses to create files in the run dir as a read-only
dir does (a real `chmod` too where the tests do not run as root, who ignores it). Each fault must end
in one line that names the file, its cause and the resume command, with every earlier record intact
and no temporary file left; a resume then finishes as the run that never failed.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch

from naslab.archive import Archive, ArchiveRecord, read_records
from naslab.errors import RunDirWriteError
from naslab.launch import check_run_dir_writable, prepare
from naslab.lifecycle import run_task
from naslab.pipeline import run
from naslab.records import atomic_write_text
from naslab.search.base import save_state, save_trainer_checkpoint
from tests.conftest import CONF_DIR, compose_config, run_py

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds a write's file in /proc (Linux)")

NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"
DENIED = os.strerror(errno.EACCES)  # "Permission denied"


def chmod_bites(directory: Path) -> bool:
    """Whether a dir chmod-ed read-only refuses a new file here: not for root (os.geteuid() == 0 with
    CAP_DAC_OVERRIDE), which writes anyway; root without that capability is refused like any user."""
    probe = directory / "chmod-probe"
    probe.mkdir()
    probe.chmod(0o555)
    try:
        (probe / "file").touch()
    except PermissionError:
        return True
    else:
        (probe / "file").unlink()
        return False
    finally:
        probe.chmod(0o755)
        probe.rmdir()


SEARCH = [
    "mode=search",
    "debug=fast",
    "evaluator=planted",
    "strategy=random",
    "search.num_architectures=8",
    "search.batch_size=2",
]


def fd_path(fd: int) -> Path:
    return Path(os.readlink(f"/proc/self/fd/{fd}"))


class DiskFull:
    """`os.write` that fills the disk: after `allow` writes to a file named `name` (any file when None)
    under `under`, the next write puts half its bytes on disk and returns short, and every write after
    that raises ENOSPC, until `free()`. Counts what it did, so a test can check the fault really hit."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, under: Path, name: str | None, allow: int = 0) -> None:
        self.real = os.write
        self.under, self.name, self.allow = under.resolve(), name, allow
        self.seen, self.half_written, self.refused, self.full = 0, 0, 0, False
        monkeypatch.setattr(os, "write", self)

    def __call__(self, fd: int, data: Any) -> int:
        path = fd_path(fd)
        if not path.is_relative_to(self.under) or (self.name is not None and path.name != self.name):
            return self.real(fd, data)
        if self.full:
            self.refused += 1
            raise OSError(errno.ENOSPC, NO_SPACE)
        self.seen += 1
        if self.seen <= self.allow:
            return self.real(fd, data)
        self.full, self.half_written = True, self.half_written + 1
        return self.real(fd, bytes(data)[: max(1, len(data) // 2)])

    def free(self) -> None:
        self.full, self.allow = False, 10**9


class ReadOnlyDir:
    """`os.open` of a dir made read-only: an existing file still opens, a new one is refused (EACCES)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, directory: Path, active: bool = True) -> None:
        self.real = os.open
        self.directory, self.active, self.refused = directory.resolve(), active, 0
        monkeypatch.setattr(os, "open", self)

    def __call__(self, path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        target = Path(os.fsdecode(path)).resolve()
        if self.active and flags & os.O_CREAT and target.parent == self.directory and not target.exists():
            self.refused += 1
            raise PermissionError(errno.EACCES, DENIED, str(target))
        return self.real(path, flags, mode, dir_fd=dir_fd)


def record(index: int) -> ArchiveRecord:
    return ArchiveRecord(index=index, key=f"k{index}", genotype={"i": index}, readable=str(index), score=0.1, seed=0)


def archive_lines(run_dir: Path) -> list[dict[str, Any]]:
    """Every line of the archive parsed: a half line fails the test here."""
    return [json.loads(line) for line in (run_dir / "archive.jsonl").read_text().splitlines()]


def leftovers(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir() if p.name.endswith(".tmp"))


def resume_line(run_dir: Path) -> str:
    return f"continue with: python run.py hydra.run.dir={run_dir} resume=true"


# --- the writers, one by one -----------------------------------------------------------------------------------


def test_an_archive_append_that_fills_the_disk_half_way_is_undone_and_named_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "archive.jsonl"
    archive = Archive(path)
    for i in range(2):
        archive.append(record(i))
    before = path.read_bytes()
    disk = DiskFull(monkeypatch, tmp_path, "archive.jsonl")
    with pytest.raises(RunDirWriteError) as err:
        archive.append(record(2))
    assert disk.half_written == 1 and disk.refused == 1  # half the line reached the disk before ENOSPC
    assert str(err.value) == (
        f"cannot write {path}: {NO_SPACE}; free space on the disk of {tmp_path} and continue the run with resume=true"
    )
    assert err.value.errno == errno.ENOSPC and isinstance(err.value, OSError)
    assert path.read_bytes() == before and len(archive) == 2  # the half line was cut: whole records only

    disk.free()
    archive.append(record(2))  # space freed: the same archive goes on
    assert [r.key for r in Archive(path, resume=True).records] == ["k0", "k1", "k2"]


@pytest.mark.parametrize("repair", ["next append", "resume"])
def test_a_half_line_whose_undo_failed_too_is_cut_by_the_next_append_or_the_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, repair: str
) -> None:
    path = tmp_path / "archive.jsonl"
    archive = Archive(path)
    archive.append(record(0))
    disk = DiskFull(monkeypatch, tmp_path, "archive.jsonl")
    real_ftruncate = os.ftruncate

    def broken_ftruncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "ftruncate", broken_ftruncate)
    with pytest.raises(RunDirWriteError, match=NO_SPACE):
        archive.append(record(1))
    assert not path.read_text().endswith("\n")  # the fragment is there: the undo really failed
    assert "could not be cut; the next append cuts it" in caplog.text
    monkeypatch.setattr(os, "ftruncate", real_ftruncate)
    disk.free()
    if repair == "next append":
        archive.append(record(1))
    else:
        with caplog.at_level(logging.WARNING):
            archive = Archive(path, resume=True)
        assert "dropping a truncated last line" in caplog.text and len(archive) == 1
        archive.append(record(1))
    assert [r.key for r in read_records(path)] == ["k0", "k1"]
    assert [json.loads(line)["key"] for line in path.read_text().splitlines()] == ["k0", "k1"]  # no fragment


class FakeTrainer:
    """What save_trainer_checkpoint needs of a Lightning Trainer: `save_checkpoint(path, weights_only)`."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def save_checkpoint(self, path: Path, weights_only: bool = False) -> None:
        torch.save(self.state, path)


class OsWriteTrainer(FakeTrainer):
    """Writes its checkpoint through os.write (where DiskFull strikes), as Lightning's file writes its bytes."""

    def save_checkpoint(self, path: Path, weights_only: bool = False) -> None:
        buffer = io.BytesIO()
        torch.save(self.state, buffer)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            data = memoryview(buffer.getbuffer())
            while data:
                data = data[os.write(fd, data) :]
        finally:
            os.close(fd)


SAVERS: dict[str, Callable[[Path, dict[str, Any]], None]] = {
    "save_state": save_state,
    "save_trainer_checkpoint": lambda path, state: save_trainer_checkpoint(OsWriteTrainer(state), path),
}


@pytest.mark.parametrize("saver", list(SAVERS))
def test_a_checkpoint_that_fills_the_disk_keeps_the_previous_one_loadable_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, saver: str
) -> None:
    save = SAVERS[saver]
    path = tmp_path / ("search_state.pt" if saver == "save_state" else "supernet.ckpt")
    save(path, {"step": 1})
    disk = DiskFull(monkeypatch, tmp_path, path.with_suffix(".tmp").name)
    with pytest.raises(RunDirWriteError) as err:
        save(path, {"step": 2, "weights": torch.zeros(50_000)})  # 200 kB: several writes
    assert disk.half_written == 1
    assert str(err.value).startswith(f"cannot write {path}: {NO_SPACE}; free space on the disk of {tmp_path}")
    assert torch.load(path, weights_only=False) == {"step": 1}  # the previous checkpoint, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # the half temp file is gone
    disk.free()
    save(path, {"step": 2})
    assert torch.load(path, weights_only=False) == {"step": 2}


def test_a_lightning_style_checkpoint_write_error_is_one_line(tmp_path: Path) -> None:
    """A trainer whose own write fails (Lightning raises the OSError of its file) gets the same line."""

    class Failing(FakeTrainer):
        def save_checkpoint(self, path: Path, weights_only: bool = False) -> None:
            Path(path).write_bytes(b"PK\x03\x04 half a zip")
            raise OSError(errno.ENOSPC, NO_SPACE, str(path))

    path = tmp_path / "supernet.ckpt"
    save_trainer_checkpoint(FakeTrainer({"step": 1}), path)
    with pytest.raises(RunDirWriteError, match=f"^cannot write {path}: {NO_SPACE};"):
        save_trainer_checkpoint(Failing({}), path)
    assert torch.load(path, weights_only=False) == {"step": 1} and leftovers(tmp_path) == []


def test_results_json_on_a_full_disk_keeps_its_previous_content_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "results.json"
    atomic_write_text(path, json.dumps({"status": "running"}))
    disk = DiskFull(monkeypatch, tmp_path, ".results.json.tmp")
    with pytest.raises(RunDirWriteError, match=f"^cannot write {path}: {NO_SPACE}; free space"):
        atomic_write_text(path, json.dumps({"status": "finished", "pad": "x" * 10_000}))
    assert disk.half_written == 1
    assert json.loads(path.read_text()) == {"status": "running"} and leftovers(tmp_path) == []


def test_an_atomic_write_fsyncs_the_file_before_the_rename_and_the_dir_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the first fsync a power loss after the rename can leave an empty file in place of both."""
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(f"fsync {fd_path(fd).name}")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append(f"replace {Path(src).name} -> {Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write_text(tmp_path / "results.json", "{}")
    save_state(tmp_path / "search_state.pt", {"step": 1})
    assert events == [
        "fsync .results.json.tmp",
        "replace .results.json.tmp -> results.json",
        f"fsync {tmp_path.name}",
        "fsync search_state.tmp",
        "replace search_state.tmp -> search_state.pt",
        f"fsync {tmp_path.name}",
    ]


# --- a whole run on a full disk --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[tuple[str, float]]]:
    """The search of SEARCH run once without a fault: (results, archive's (key, score) pairs)."""
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    results = run(compose_config(*SEARCH, run_dir=run_dir))
    return results, [(r["key"], r["score"]) for r in archive_lines(run_dir)]


# (file whose writes fail, writes allowed before, the path the error names)
FULL_DISK_CASES = {
    "archive": ("archive.jsonl", 3, "archive.jsonl"),
    "strategy state": ("search_state.tmp", 1, "search_state.pt"),
    "results.json at the end": (".results.json.tmp", 2, "results.json"),
}


@pytest.mark.parametrize("case", list(FULL_DISK_CASES))
def test_a_search_on_a_full_disk_ends_in_one_line_and_resumes_to_the_uninterrupted_result(
    compose_cfg: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    uninterrupted: tuple[dict[str, Any], list[tuple[str, float]]],
    case: str,
) -> None:
    failing, allow, named = FULL_DISK_CASES[case]
    run_dir = tmp_path / "full"
    disk = DiskFull(monkeypatch, run_dir.parent, failing, allow)
    with pytest.raises(SystemExit) as exit_:
        run_task(compose_cfg(*SEARCH, run_dir=run_dir))  # what run.py runs: a user error is one line, exit 2
    assert exit_.value.code == 2 and disk.half_written == 1
    expected = (
        f"error: cannot write {run_dir / named}: {NO_SPACE}; free space on the disk of {run_dir} and "
        f"{resume_line(run_dir)}"
    )
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == expected and "Traceback" not in err
    results = json.loads((run_dir / "results.json").read_text())  # valid JSON whatever failed
    if failing == ".results.json.tmp":  # the last write failed: the one before it stands
        assert results["status"] == "running"
    else:
        assert results["status"] == "failed" and results["error"] == f"RunDirWriteError: {expected[7:]}"
    kept = archive_lines(run_dir)  # whole records only
    assert leftovers(run_dir) == []

    disk.free()
    resumed = run(compose_cfg(*SEARCH, "resume=true", run_dir=run_dir))
    assert archive_lines(run_dir)[: len(kept)] == kept  # nothing archived before the fault changed
    fresh, fresh_scores = uninterrupted
    assert [(r["key"], r["score"]) for r in archive_lines(run_dir)] == fresh_scores  # nothing lost or redone
    assert len(fresh_scores) == 8 and resumed["status"] == "finished" and resumed["genotype"] == fresh["genotype"]
    assert [a["status"] for a in resumed["attempts"]] == ["running" if failing.startswith(".results") else "failed"]


def test_when_the_whole_disk_is_full_the_run_still_ends_in_its_one_line(
    compose_cfg: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The archive fails, then results.json cannot record the failure either: the archive's line is the
    error, results.json keeps its last valid content, no temp file is left."""
    run_dir = tmp_path / "full"
    # Every write under tmp_path counts: results.json twice at the start, the first batch's two records,
    # the strategy's state; the disk is full from the next record on.
    disk = DiskFull(monkeypatch, run_dir.parent, None, allow=5)
    with pytest.raises(RunDirWriteError) as err, caplog.at_level(logging.DEBUG, logger="naslab.pipeline"):
        run(compose_cfg(*SEARCH, run_dir=run_dir))
    assert disk.refused >= 1  # results.json was refused too
    assert str(err.value).startswith(f"cannot write {run_dir / 'archive.jsonl'}: {NO_SPACE};")
    assert "results.json keeps its previous content: cannot write" in caplog.text
    assert json.loads((run_dir / "results.json").read_text())["status"] == "running"
    assert len(archive_lines(run_dir)) == 2 and leftovers(run_dir) == []
    disk.free()
    assert run(compose_cfg(*SEARCH, "resume=true", run_dir=run_dir))["search"]["num_evaluated"] == 8


@pytest.mark.parametrize("inside", [True, False], ids=["a file of the run", "a file elsewhere"])
def test_a_library_that_cannot_open_a_file_of_the_run_is_one_line_too(
    compose_cfg: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inside: bool
) -> None:
    """Files the run writes through libraries (pictures, Lightning's checkpoints) raise the plain OSError of
    their open(), with its filename: inside the run dir it becomes the same one line; a file elsewhere (the
    user's data, a genotype) keeps its own error, which names it."""
    run_dir = tmp_path / "run"
    target = run_dir / "normal.png" if inside else tmp_path / "elsewhere" / "normal.png"

    def draw(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EACCES, DENIED, str(target))

    monkeypatch.setattr("naslab.pipeline.draw_genotype_pictures", draw)
    with pytest.raises(OSError) as err:
        run(compose_cfg(*SEARCH, run_dir=run_dir))
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "failed" and len(archive_lines(run_dir)) == 8  # the search itself is kept
    if inside:
        assert isinstance(err.value, RunDirWriteError)
        assert str(err.value) == f"cannot write {target}: {DENIED}; make {run_dir} writable and {resume_line(run_dir)}"
    else:
        assert type(err.value) is PermissionError and results["error"].startswith("PermissionError: ")


# --- a run dir that cannot be written ------------------------------------------------------------------------


class ReadOnly:
    """Makes dirs read-only: a real chmod 555, or (`simulated`) os.open refusing to create files in them
    as a read-only dir does; `undo()` makes them writable again."""

    def __init__(self, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.how, self.monkeypatch = how, monkeypatch
        self.dirs: list[Path] = []
        self.simulated: list[ReadOnlyDir] = []

    def __call__(self, directory: Path) -> None:
        if self.how == "chmod":
            directory.chmod(0o555)
            self.dirs.append(directory)
        else:
            self.simulated.append(ReadOnlyDir(self.monkeypatch, directory))

    def undo(self) -> None:
        for directory in self.dirs:
            directory.chmod(0o755)
        for simulated in self.simulated:
            simulated.active = False


@pytest.fixture(params=["chmod", "simulated"])
def read_only(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReadOnly]:
    """A real chmod (skipped where it does not stop this process: root) and the simulated read-only dir
    (runs everywhere)."""
    if request.param == "chmod" and not chmod_bites(tmp_path_factory.mktemp("probe")):
        pytest.skip(f"a read-only dir does not stop uid {os.geteuid()}; the simulated case covers it")
    made = ReadOnly(request.param, monkeypatch)
    yield made
    made.undo()  # tmp_path can be removed


def test_a_read_only_run_dir_is_refused_before_anything_is_built(
    compose_cfg: Callable[..., Any], tmp_path: Path, read_only: ReadOnly
) -> None:
    run_dir = tmp_path / "ro"
    run_dir.mkdir()
    read_only(run_dir)
    with pytest.raises(RunDirWriteError) as err:
        run(compose_cfg(*SEARCH, run_dir=run_dir))
    assert str(err.value) == (
        f"cannot write {run_dir / 'results.json'}: {DENIED}; make {run_dir} writable and {resume_line(run_dir)}"
    )
    assert sorted(os.listdir(run_dir)) == []  # refused at the first write: no archive, nothing evaluated


def test_a_run_dir_that_turns_read_only_mid_search_ends_in_one_line_and_resumes(
    compose_cfg: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    read_only: ReadOnly,
) -> None:
    run_dir = tmp_path / "ro"
    real_append = Archive.append

    def append(self: Archive, rec: ArchiveRecord) -> None:
        real_append(self, rec)
        if len(self) == 3:  # mid-batch: the next new file (the strategy's checkpoint) is refused
            read_only(run_dir)

    monkeypatch.setattr(Archive, "append", append)
    with pytest.raises(RunDirWriteError) as err:
        run(compose_cfg(*SEARCH, run_dir=run_dir))
    assert str(err.value) == (
        f"cannot write {run_dir / 'search_state.pt'}: {DENIED}; make {run_dir} writable and {resume_line(run_dir)}"
    )
    assert len(archive_lines(run_dir)) == 4  # the archive (an existing file) took the batch's second record
    assert json.loads((run_dir / "results.json").read_text())["status"] == "running"  # it could not be replaced
    assert leftovers(run_dir) == []

    monkeypatch.setattr(Archive, "append", real_append)
    read_only.undo()
    resumed = run(compose_cfg(*SEARCH, "resume=true", run_dir=run_dir))
    assert resumed["status"] == "finished" and len(archive_lines(run_dir)) == 8


def test_run_py_refuses_an_unwritable_run_dir_in_one_line_before_hydra_writes(
    tmp_path: Path, read_only: ReadOnly
) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    read_only(parent)
    with pytest.raises(RunDirWriteError) as err:
        prepare(["mode=search", f"hydra.run.dir={parent / 'run'}"], Path(CONF_DIR))
    assert str(err.value) == (
        f"cannot write {parent / 'run'}: {DENIED} (in {parent}); make {parent} writable or choose another hydra.run.dir"
    )
    assert os.listdir(parent) == []


def test_the_run_dir_probe_refuses_a_file_in_the_way_and_leaves_nothing_behind(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(RunDirWriteError) as err:
        prepare(["mode=search", f"hydra.run.dir={tmp_path / 'taken' / 'run'}"], Path(CONF_DIR))
    assert str(err.value) == (
        f"cannot write {tmp_path / 'taken' / 'run'}: {tmp_path / 'taken'} is a file, not a dir; "
        f"move {tmp_path / 'taken'} away or choose another hydra.run.dir"
    )
    from naslab.launch import Command

    check_run_dir_writable(Command.parse([f"hydra.run.dir={tmp_path / 'new' / 'run'}"]))  # writable: passes
    assert sorted(os.listdir(tmp_path)) == ["taken"]  # the probe's file is gone, no dir was made


def test_run_py_refuses_a_run_dir_it_cannot_make_in_one_line_and_exit_2(tmp_path: Path) -> None:
    """What a user sees, through `run.py` itself (this refusal also holds as root): one line, exit 2."""
    (tmp_path / "taken").write_text("a file")
    done = run_py(["mode=search", f"hydra.run.dir={tmp_path / 'taken' / 'run'}"], timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: cannot write {tmp_path / 'taken' / 'run'}: {tmp_path / 'taken'} is a file, not a dir; "
        f"move {tmp_path / 'taken'} away or choose another hydra.run.dir"
    ]
    assert sorted(os.listdir(tmp_path)) == ["taken"] and (tmp_path / "taken").read_text() == "a file"


def test_a_log_file_on_a_full_disk_drops_its_records_but_a_bad_log_call_is_still_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """run.log on a full disk must not print "Logging error" tracebacks over the run's one-line error;
    a log call with bad arguments is a bug and keeps its report."""
    from naslab.lifecycle import quiet_full_log_files

    handler = logging.FileHandler(tmp_path / "run.log")
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        quiet_full_log_files()

        def full(*_: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        def record(message: str, *args: object) -> logging.LogRecord:
            return logging.LogRecord("naslab", logging.WARNING, __file__, 1, message, args, None)

        handler.stream.write = full  # type: ignore[method-assign]
        handler.emit(record("a record the disk has no room for"))
        assert "Logging error" not in capsys.readouterr().err
        handler.emit(record("%d apples", "three"))  # a bug in a log call
        assert "Logging error" in capsys.readouterr().err
    finally:
        root.removeHandler(handler)
        handler.close()


def test_a_damaged_results_json_is_moved_aside_with_a_warning_on_resume(
    compose_cfg, tmp_path: Path, uninterrupted, caplog: pytest.LogCaptureFixture
) -> None:
    """results.json carries a run's earlier attempts: a damaged one is kept as results.json.damaged and said
    so, never overwritten silently; the search itself resumes from its archive."""
    run_dir = tmp_path / "run"
    run(compose_cfg(*SEARCH, "search.num_architectures=4", run_dir=run_dir))
    (run_dir / "results.json").write_text('{"status": "finish')  # cut mid-write by something else
    caplog.set_level(logging.WARNING, logger="naslab.pipeline")
    resumed = run(compose_cfg(*SEARCH, "resume=true", run_dir=run_dir))
    assert (run_dir / "results.json.damaged").read_text() == '{"status": "finish'
    assert any("results.json is unreadable: moved to results.json.damaged" in r.getMessage() for r in caplog.records)
    assert (
        resumed["status"] == "finished" and json.loads((run_dir / "results.json").read_text())["status"] == "finished"
    )
    assert [(r["key"], r["score"]) for r in archive_lines(run_dir)] == uninterrupted[1]  # 4 kept, 4 more searched
