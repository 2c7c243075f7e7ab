"""Errors a person can act on. Each message says what is wrong and where (key, file, line).

A leaf: imports nothing of the kit (config.py, utils.py and files.py import their errors from here)."""
from __future__ import annotations


class ConfigError(ValueError):
    """A bad configuration value or key; the message names the key."""


class ParameterError(ConfigError):
    """A notebook parameter or an ablation name that does not exist, or has a value of the wrong type."""


class DataError(ValueError):
    """Bad or missing data: a missing path, misaligned rewrite files, an unreadable source, a corrupt run file."""


class WriteError(OSError):
    """A file could not be written: "disk full at PATH", "cannot write PATH" (the partial file is removed)."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class FolderBusyError(RuntimeError):
    """Another process holds a run folder's lock (the message names its pid)."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf (a learning rate too high, bad data): the message names the step."""


class RankTimeout(RuntimeError):
    """A torchrun rank stopped answering: a collective timed out (the message names the rank(s))."""


# What the CLI prints as a one-line error instead of a traceback (`--debug` / LACLIP_LITE_DEBUG=1 shows it).
# The OSErrors are the ones a person causes and can fix: a missing path, a folder that is a file, no permission.
UserError = (ConfigError, DataError, WriteError, FolderBusyError, TrainingDiverged, RankTimeout,
             FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError)
