"""User-facing errors.

Library code raises these with a message that names the file, record, key or value at
fault; the CLI prints the message (no traceback) and exits non-zero. Anything else that
escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class FacescaleError(Exception):
    """An error caused by the user's input (data, config, arguments). Exit code 1."""

    exit_code = 1


class ConfigError(FacescaleError):
    """A config that does not parse, an unknown key or a value of the wrong type. Exit code 2."""

    exit_code = 2


class DataError(FacescaleError):
    """Missing, unreadable, corrupt or inconsistent data; the message names the file and record."""
