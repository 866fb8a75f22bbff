"""The schema check of a command: the database must be at the code's revision,
else the error names the command to run."""

from __future__ import annotations

from sqlalchemy import Connection

from tapdb_core import migrate
from tapdb_core.commands._target import Target
from tapdb_core.db import check_schema
from tapdb_core.errors import SchemaNotReadyError, SchemaVersionError


def require_schema(conn: Connection, target: Target) -> None:
    """Fail with the command to run when the database is not at the code's
    revision. :func:`tapdb_core.db.check_schema` decides; this only names the
    environment in the advice."""
    try:
        check_schema(conn)
    except SchemaNotReadyError:
        raise
    except SchemaVersionError:
        current = migrate.current_revision(conn)
        if current is not None and not migrate.is_known_revision(current):
            raise  # newer code migrated it: migrating is the wrong advice
        if current is None:
            raise SchemaNotReadyError(
                f"database {target.database!r} on {target.where} has no tapdb schema: "
                f"run `tapdb db schema apply {target.env}` (or `tapdb db setup {target.env}`)"
            ) from None
        raise SchemaNotReadyError(
            f"database {target.database!r} is at revision {current}, this tapdb needs "
            f"{migrate.head_revision()}: run `tapdb db schema migrate {target.env}`"
        ) from None
