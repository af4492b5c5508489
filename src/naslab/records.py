"""A run's records on disk, shared by the command line (no torch) and the pipeline: atomic writes,
tolerant JSON reads, whether a results.json says its run finished, and where a `genotype=` value's
genotype.json is."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

from naslab.errors import RunDirWriteError

log = logging.getLogger(__name__)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """os.write until every byte is written: a write may be short (a signal, a nearly full disk), and the
    next one then raises the cause (ENOSPC). The run's writers go through this one function."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: Path) -> None:
    """Makes a rename in `directory` durable (best effort: some file systems cannot fsync a dir)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_quietly(path: Path) -> None:
    """Removes a temporary file a failed write left; a file that cannot be removed stays (it is never read)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        log.warning("could not remove %s after a failed write: %s", path, err.strerror or err)


def atomic_write(path: Path, write: Callable[[Path], None], tmp: Path | None = None) -> None:
    """Has `write(tmp)` make the file at `tmp`, fsyncs it and renames it over `path`: a kill, a power
    loss or a full disk leaves the previous file (or none), never half of one or an empty one.

    A failed write removes `tmp` and raises RunDirWriteError, one line naming `path` and the cause
    (an OSError still: callers that catch OSError keep working). The fsyncs (the file before the
    rename, its dir after) cost a few milliseconds per checkpoint; without the first, a power loss
    after the rename can leave an empty file in place of both versions.
    """
    path = Path(path)
    tmp = tmp or path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        remove_quietly(tmp)
        raise RunDirWriteError.from_os_error(path, err) from err
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes | bytearray | memoryview, tmp: Path | None = None) -> None:
    """`data` written to `path` atomically and durably (atomic_write)."""

    def write(target: Path) -> None:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)

    atomic_write(path, write, tmp)


def atomic_write_text(path: Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file, an fsync and a rename: a run killed while
    writing (or a full disk) leaves the previous file (or none), never half of one."""
    atomic_write_bytes(path, text.encode())


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file's content, or None when it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def genotype_file(ref: str) -> Path | None:
    """The genotype.json a `genotype=` value points to (a run dir holds one), or None for a published name."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return path / "genotype.json"
    return path if path.suffix == ".json" or path.exists() else None


def finished(results: dict[str, Any] | None) -> bool:
    """Whether a results.json says its run completed (runs from before `status` existed: no error and
    the mode's last stage present)."""
    if not results:
        return False
    if "status" in results:
        return results["status"] == "finished"
    if results.get("error"):
        return False
    mode = results.get("mode")
    last_stage = {"search": "search", "train": "final", "search_train": "final", "summary": "final"}
    return bool(results.get(last_stage.get(str(mode), "genotype")))


def describe_finished(run_dir: Path, results: dict[str, Any]) -> str:
    final = results.get("final") or {}
    search = results.get("search") or {}
    parts = [f"mode={results.get('mode')}"]
    if search.get("best_score") is not None:
        parts.append(f"best search score {search['best_score']:.4f}")
    if final.get("test_accuracy") is not None:
        parts.append(f"test accuracy {final['test_accuracy']:.4f}")
    if final.get("test_perplexity") is not None:
        parts.append(f"test perplexity {final['test_perplexity']:.2f}")
    return f"{run_dir} finished already ({', '.join(parts)}); nothing to resume, every record is unchanged"
