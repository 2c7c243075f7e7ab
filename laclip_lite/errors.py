"""Errors a person can act on. Each message says what is wrong and where (key, file, line)."""
from __future__ import annotations

from laclip_lite.config import ConfigError


class DataError(ValueError):
    """Bad or missing data: a missing path, misaligned rewrite files, an unreadable source."""


# What the CLI prints as a one-line error instead of a traceback.
UserError = (ConfigError, DataError, FileNotFoundError, NotADirectoryError)
