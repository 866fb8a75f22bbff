"""The engines commands open: no pool, a connect timeout, and every commit
that wrote something recorded as an effect."""

from __future__ import annotations

import os
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from tapdb_core.commands._effects import had_effect
from tapdb_core.db import connect_args
from tapdb_core.errors import UsageError

DEFAULT_CONNECT_TIMEOUT: Final = 10


def connect_timeout() -> int:
    raw = os.environ.get("TAPDB_CONNECT_TIMEOUT", "")
    try:
        return max(1, int(raw)) if raw else DEFAULT_CONNECT_TIMEOUT
    except ValueError:
        raise UsageError(
            f"TAPDB_CONNECT_TIMEOUT must be a number of seconds, not {raw!r}"
        ) from None


def make_engine(url: URL, *, autocommit: bool = False) -> Engine:
    kwargs: dict[str, Any] = {
        "poolclass": NullPool,
        # keepalives and tcp_user_timeout: a frozen link fails the command, not hangs it
        "connect_args": {
            **connect_args(connect_timeout=connect_timeout()),
            "application_name": "tapdb-cli",
        },
    }
    if autocommit:
        kwargs["isolation_level"] = "AUTOCOMMIT"
        # its statements (CREATE DATABASE ...) take effect at once: no rerun after
        had_effect("an autocommit connection")
    engine = create_engine(url, **kwargs)
    event.listen(engine, "commit", _on_commit)
    return engine


_READ_ONLY: Final = "tapdb_cli_read_only"


def mark_read_only(conn: Connection) -> None:
    """Committing ``conn``'s transaction changes nothing: it is no effect."""
    conn.info[_READ_ONLY] = True


def _on_commit(conn: Connection) -> None:
    # any commit counts as an effect unless mark_read_only() saw that nothing was written
    if not conn.info.pop(_READ_ONLY, False):
        had_effect("a commit")
