"""One exception hierarchy for everything tapdb_core raises on purpose.

Where daylily-tapdb raised ``ValueError`` our equivalents also subclass
``ValueError`` so existing ``except ValueError`` code keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs


class TapdbError(Exception):
    """Root of every error tapdb_core raises on purpose."""

    #: exit code the CLI uses for this kind of error
    exit_code: int = 1
    #: True when running the same transaction again may well succeed
    #: (:meth:`tapdb_core.db.Database.run_in_transaction` retries exactly these)
    retryable: bool = False


class ConfigurationError(TapdbError):
    """Settings, environment or installation are wrong or incomplete."""

    exit_code = 2


class SchemaVersionError(ConfigurationError):
    """The database is not at the Alembic revision this code needs."""


class EUIDError(TapdbError, ValueError):
    """A string is not a valid EUID, or a prefix/domain code is not valid."""

    exit_code = 2


class TemplateCodeError(TapdbError, ValueError):
    """A template code is not ``category/type/subtype/version``."""

    exit_code = 2


class NotFoundError(TapdbError, LookupError):
    """The object asked for does not exist (or is soft-deleted)."""


class TemplateNotFoundError(NotFoundError, ValueError):
    """No live template matches the code or EUID."""


class InstanceNotFoundError(NotFoundError, ValueError):
    """No live instance matches the EUID."""


class UserNotFoundError(NotFoundError, ValueError):
    """No user matches the username or EUID."""


@attrs.frozen(kw_only=True)
class Violation:
    """One problem found while validating data: where it is and what is wrong."""

    path: str
    """JSON pointer of the offending value, e.g. ``/properties/volume_ul``."""
    message: str

    def __str__(self) -> str:
        return f"{self.path or '/'}: {self.message}"


class ValidationError(TapdbError, ValueError):
    """Input breaks a rule; carries every violation found, not just the first."""

    exit_code = 2

    def __init__(self, message: str, violations: Sequence[Violation] = ()) -> None:
        self.violations: tuple[Violation, ...] = tuple(violations)
        detail = "; ".join(str(v) for v in self.violations)
        super().__init__(f"{message}: {detail}" if detail else message)


class CycleError(TapdbError, ValueError):
    """A lineage edge would close a cycle (or is a self-loop)."""


class ConflictError(TapdbError):
    """A uniqueness rule was broken (duplicate code, second live singleton, ...)."""


class DatabaseUnavailableError(TapdbError):
    """The PostgreSQL server cannot be reached."""


class PostgresRuntimeError(TapdbError):
    """The local PostgreSQL runtime could not be found, started or stopped."""


class TransientError(TapdbError):
    """The transaction failed because of what ran beside it or of the connection,
    not because of what it asked for; it was rolled back, nothing of it is stored.

    ``retryable`` says whether running the whole transaction again is the right
    answer; ``except TransientError`` catches the non-retryable kinds too.
    """

    retryable = True


class SerializationError(TransientError):
    """PostgreSQL could not serialize the transaction (SQLSTATE 40001), or it
    raced a concurrent commit it cannot see: run the whole transaction again."""


class DeadlockError(TransientError):
    """PostgreSQL broke a deadlock by aborting this transaction (SQLSTATE 40P01)."""


class LockTimeoutError(TransientError):
    """A lock was not granted within ``lock_timeout`` (or NOWAIT) (SQLSTATE 55P03)."""


class StatementTimeoutError(TransientError):
    """A statement ran longer than ``statement_timeout`` (SQLSTATE 57014).

    Not retryable: the same statement is likely to take as long again, so a
    blind retry only multiplies the wait. Callers who know better may retry.
    """

    retryable = False


class ConnectionLostError(TransientError):
    """The connection broke while the transaction was open (server shut down,
    backend terminated, network failure): it was rolled back by the server."""


class CommitOutcomeUnknownError(ConnectionLostError):
    """The connection broke while COMMIT was in flight: the transaction may or
    may not have committed. Not retryable: a retry could apply the work twice;
    check the data first."""

    retryable = False


class StaleTemplateError(TransientError):
    """A template changed (or was deleted) after it was read and validated
    against, before the write that relied on it: run the transaction again."""


class DataLossRefusedError(ConfigurationError):
    """A schema operation would drop stored data or application objects and
    was not explicitly allowed to."""


# --------------------------------------------------------------------------- commands
# raised by tapdb_core.commands (and the ``tapdb`` CLI on top of it)


class CommandError(TapdbError):
    """A command failed for a reason the user can act on (exit code 1)."""

    exit_code = 1


class UsageError(TapdbError):
    """Bad input to a command: an argument, flag or setting (exit code 2)."""

    exit_code = 2


class RefusedError(TapdbError):
    """A destructive command was not confirmed (exit code 1)."""

    exit_code = 1


class DatabaseMissingError(CommandError):
    """The server is up but the database does not exist."""


class LoginRefusedError(CommandError):
    """The server refused the user or password."""


class SchemaNotReadyError(SchemaVersionError):
    """A command needs the schema at head and the database has none, or an older
    revision: the message names the command to run (exit code 1)."""

    exit_code = 1


class TapdbWarning(UserWarning):
    """Something a command noticed and went on with (the CLI prints it as
    ``tapdb: warning: ...``)."""
