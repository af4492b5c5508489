"""The errors a user can cause and fix, kept apart from bugs.

`run.py` prints a `UserError` as one line (`error: <message>`) and exits 2; any other exception is a
bug and keeps its traceback. Each class also derives from the builtin a caller would catch
(`ValueError`, `FileNotFoundError`, `KeyError`), so code that handles those keeps working.
`HYDRA_FULL_ERROR=1` shows the traceback of a user error too.
"""

from __future__ import annotations


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
