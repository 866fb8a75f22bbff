"""The database a backup or restore is about, as its two kinds of client reach it:
SQLAlchemy (the URL normalised, an engine without a pool for one operation) and
PostgreSQL's client programs (pg_dump, pg_restore: found beside the server binaries,
given the connection through libpq's environment so the password is never on argv).
"""

from __future__ import annotations

import os
from typing import Final

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from tapdb_core.backup_errors import BackupError
from tapdb_core.config import normalise_url
from tapdb_core.pgbinaries import find_binaries

__all__ = ["libpq_env", "major", "target_url", "tool", "unpooled_engine"]

#: URL query parameters libpq also reads from the environment (pg_dump gets them there)
_LIBPQ_QUERY: Final = dict(
    pair.split("=")
    for pair in "sslmode=PGSSLMODE sslrootcert=PGSSLROOTCERT sslcert=PGSSLCERT sslkey=PGSSLKEY "
    "connect_timeout=PGCONNECT_TIMEOUT application_name=PGAPPNAME options=PGOPTIONS "
    "target_session_attrs=PGTARGETSESSIONATTRS passfile=PGPASSFILE host=PGHOST port=PGPORT".split()
)


def target_url(url: str | URL) -> URL:
    raw = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
    return make_url(normalise_url(raw))


def unpooled_engine(url: URL) -> Engine:
    return create_engine(url, poolclass=NullPool)


def libpq_env(url: URL) -> dict[str, str]:
    """The connection for pg_dump as libpq variables: the password never goes on argv."""
    env = dict(os.environ)
    for key, value in url.query.items():
        if key not in _LIBPQ_QUERY or not isinstance(value, str):
            raise BackupError(f"connection parameter {key!r} cannot be passed to pg_dump")
        env[_LIBPQ_QUERY[key]] = value
    given = {"PGHOST": url.host, "PGPORT": url.port, "PGUSER": url.username}
    given.update(PGPASSWORD=url.password, PGDATABASE=url.database)
    env.update((var, str(value)) for var, value in given.items() if value)
    return env


def tool(name: str) -> str:
    """A PostgreSQL client program, from the server binaries' installation if there."""
    return str(find_binaries().tool(name))


def major(version: str) -> int:
    """``"15.18"`` -> 15."""
    return int(version.split(".")[0])
