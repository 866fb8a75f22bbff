"""The errors of backup, verify and restore (tapdb_core.backup, .dumpfile, .restore)."""

from __future__ import annotations

from tapdb_core.errors import TapdbError

__all__ = [
    "BackupError",
    "IncompatibleBackupError",
    "InvalidBackupError",
    "RestoreTargetNotEmptyError",
]


class BackupError(TapdbError):
    """A backup or restore could not be done; nothing was written."""


class InvalidBackupError(BackupError, ValueError):
    """The file is not a tapdb backup, or it is truncated or corrupt."""

    exit_code = 2


class IncompatibleBackupError(BackupError):
    """The backup does not fit this tapdb_core or this target (revision, PostgreSQL major)."""


class RestoreTargetNotEmptyError(BackupError):
    """The target database already holds tapdb objects (pass ``clean=True``)."""
