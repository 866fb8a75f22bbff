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
