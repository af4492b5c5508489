"""The errors a user can cause and fix, kept apart from bugs.

`run.py` prints a `UserError` as one line (`error: <message>`) and exits 2; any other exception is a
bug and keeps its traceback. Each class also derives from the builtin a caller would catch
(`ValueError`, `FileNotFoundError`, `KeyError`), so code that handles those keeps working.
`HYDRA_FULL_ERROR=1` shows the traceback of a user error too.
"""

from __future__ import annotations

import errno
import shlex
from pathlib import Path

# The causes of a failed write that the user fixes on their side (disk full, a quota, a read-only or
# foreign dir), as opposed to a bug: such a write error is one line, not a traceback.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS})


class UserError(Exception):
    """A mistake in the command, the config or the files a run was given; the message says which and the fix."""

    def __str__(self) -> str:  # KeyError would quote its message; every user error prints as plain text
        return str(self.args[0]) if self.args else ""


class ConfigError(UserError, ValueError):
    """A setting with a bad value, a missing setting, or settings that do not go together."""


class GenotypeError(UserError, ValueError):
    """A malformed genotype, or one of another space; the message names the offending field."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or dir the command names is missing or does not hold what it should (a study dir, a table)."""


class MissingDataError(MissingFileError):
    """A dataset's files are not where the datamodule expects them.

    The message is a single line that names the dataset, the expected path and how to obtain the
    files, because this error is usually read in a cluster log where the traceback is truncated.
    """


class RunExistsError(UserError, FileExistsError):
    """A new run was pointed at a dir that already holds a run (its records would be overwritten)."""


class CorruptStateError(UserError, ValueError):
    """A run's saved state (an archive line in the middle of the file, a checkpoint) cannot be read: the
    message names the file and what to do; nothing is reset silently."""


class TrainingDivergedError(UserError, FloatingPointError):
    """A training loop's loss or weights became NaN or infinite, most often a learning rate too high for the
    network: the message names the loop, the epoch, the last good checkpoint and the setting to lower.
    Nothing is reset: the archive and the checkpoints written before the divergence are kept as they were."""


class RunDirWriteError(UserError, OSError):
    """A file of the run (the archive, a checkpoint, results.json, the run dir itself) could not be written:
    the disk is full, the dir is read-only or not the user's.

    Raised by the run's own writers (naslab.records, naslab.archive, naslab.search.base), whose writes
    are atomic or undone, so the previous version of the file stays valid. The message is one line
    naming the path, the cause and the fix; `then` says how to go on (the pipeline names the resume
    command once it knows the run dir; `or ...` offers an alternative to the fix instead). An OSError
    too: `except OSError` keeps catching it.
    """

    def __init__(
        self,
        path: str | Path,
        reason: str,
        code: int | None = None,
        *,
        directory: str | Path | None = None,
        then: str = "continue the run with resume=true",
    ) -> None:
        super().__init__(f"cannot write {path}: {reason}")
        self.errno, self.strerror, self.filename = code, reason, str(path)  # as OSError(code, reason, path) has them
        self.path, self.reason, self.then = Path(path), reason, then
        self.directory = Path(directory) if directory is not None else Path(path).parent

    @classmethod
    def from_os_error(cls, path: str | Path, err: BaseException, **kwargs: object) -> "RunDirWriteError":
        """The one-line error for `err`, raised while writing `path`; a RunDirWriteError is returned as it is."""
        if isinstance(err, RunDirWriteError):
            return err
        code = getattr(err, "errno", None)
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        return cls(path, reason, code, **kwargs)  # type: ignore[arg-type]

    def resume_with(self, run_dir: str | Path) -> None:
        """Names the exact command that continues the run in `run_dir` once the cause is fixed."""
        self.then = f"continue with: python run.py hydra.run.dir={shlex.quote(str(run_dir))} resume=true"

    def _joined_then(self) -> str:
        return self.then if self.then.startswith("or ") else f"and {self.then}"

    def fix(self) -> str:
        if self.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return f"free space on the disk of {self.directory}"
        if self.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"make {self.directory} writable"
        if self.errno == errno.ENOTDIR:
            return f"move {self.directory} away"
        return f"fix {self.directory}"

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}; {self.fix()} {self._joined_then()}"

    def __reduce__(self) -> tuple[object, ...]:  # a pickled copy (from a worker process) keeps every field
        return (_rebuild_write_error, (str(self.path), self.reason, self.errno, str(self.directory), self.then))


def _rebuild_write_error(path: str, reason: str, code: int | None, directory: str, then: str) -> RunDirWriteError:
    return RunDirWriteError(path, reason, code, directory=directory, then=then)


class SearchFailedError(UserError, RuntimeError):
    """Every architecture a search evaluated failed (NaN loss, out of memory, ...): nothing to choose from.
    The message gives the first trial's error and the archive that records them all."""


class UnknownNameError(UserError, KeyError):
    """A name that is not registered (an op, a published genotype, a backend)."""


class RunInterrupted(BaseException):
    """SIGINT or SIGTERM asked the run to stop (naslab.interrupt).

    A BaseException, like KeyboardInterrupt: the `except Exception` of a trial that records a failed
    evaluation must not swallow it, so the interrupted trial is not recorded at all and is evaluated
    again on resume.
    """

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
