"""Database handle: an engine, a per-transaction audit user, a schema revision check."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from tapdb_core import migrate
from tapdb_core.config import load_config, normalise_url
from tapdb_core.dberrors import translate, translated
from tapdb_core.errors import SchemaVersionError


def set_audit_user(conn: Connection, user: str | None) -> None:
    """Name the user the audit trail records for the rest of this transaction."""
    conn.execute(text("SELECT set_config('tapdb.audit_user', :user, true)"), {"user": user or ""})


def check_schema(bind: Connection | Engine) -> None:
    """Fail clearly when the database is not at the revision this code needs."""
    try:
        current = migrate.current_revision(bind)
    except DBAPIError as exc:
        ours = translate(exc)
        if ours is None:
            raise
        raise ours from exc
    head = migrate.head_revision()
    if current != head:
        raise SchemaVersionError(
            f"database is at {current or 'no revision (empty)'}, this code needs {head}: "
            "run `tapdb db schema migrate`"
        )


@attrs.define
class Database:
    """An engine plus tapdb's conventions. Transactions stay the caller's."""

    engine: Engine
    app_username: str | None = None
    _schema_checked: bool = attrs.field(default=False, alias="_schema_checked")

    def ensure_schema(self) -> None:
        if not self._schema_checked:
            check_schema(self.engine)
            self._schema_checked = True

    @contextmanager
    def begin(self, user: str | None = None) -> Iterator[Connection]:
        """A transaction (committed on success) with the audit user set for it only."""
        self.ensure_schema()
        with translated(), self.engine.begin() as conn:
            set_audit_user(conn, user or self.app_username)
            yield conn

    @contextmanager
    def connect(self, user: str | None = None) -> Iterator[Connection]:
        """A connection whose first transaction the caller commits or rolls back."""
        self.ensure_schema()
        with translated(), self.engine.connect() as conn:
            set_audit_user(conn, user or self.app_username)
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def connect(
    url_or_env: str | None = None,
    *,
    app_username: str | None = None,
    pool_size: int = 5,
    max_overflow: int = 10,
    pool_timeout: float = 30,
    pool_recycle: int = 1800,
    echo: bool = False,
    **engine_kwargs: Any,
) -> Database:
    """Open a :class:`Database` from a URL, or from an environment's config (``dev``...)."""
    if url_or_env and "://" in url_or_env:
        url = normalise_url(url_or_env)
    else:
        url = load_config(url_or_env).url()
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_recycle=pool_recycle,
        pool_pre_ping=True,
        echo=echo,
        **engine_kwargs,
    )
    return Database(engine=engine, app_username=app_username)
