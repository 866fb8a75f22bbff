"""One ``session(target)`` that opens, checks and disposes engines, and the
autocommit session on the server's maintenance database.

The rest of what every command shares lives beside this module: the target
(:mod:`._target`), environments (:mod:`._environments`), who runs the command
(:mod:`._actor`), effects (:mod:`._effects`), engines (:mod:`._engine`), the
explanation of a failure to connect (:mod:`._connection_errors`), the schema
check (:mod:`._schema_check`), the operations log (:mod:`._oplog`) and messages
(:mod:`._messages`). They are re-exported here because callers reach them as
``_session.<name>``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import attrs
from sqlalchemy import Connection, Engine, text

from tapdb_core.commands._actor import actor as actor
from tapdb_core.commands._actor import actor_and_source as actor_and_source
from tapdb_core.commands._connection_errors import connection_errors as connection_errors
from tapdb_core.commands._connection_errors import (
    explain_connection_error as explain_connection_error,
)
from tapdb_core.commands._connection_errors import is_connection_error as is_connection_error
from tapdb_core.commands._effects import forget_effects as forget_effects
from tapdb_core.commands._effects import had_effect as had_effect
from tapdb_core.commands._effects import has_effects as has_effects
from tapdb_core.commands._engine import DEFAULT_CONNECT_TIMEOUT as DEFAULT_CONNECT_TIMEOUT
from tapdb_core.commands._engine import connect_timeout as connect_timeout
from tapdb_core.commands._engine import make_engine as make_engine
from tapdb_core.commands._engine import mark_read_only
from tapdb_core.commands._environments import KNOWN_ENVS as KNOWN_ENVS
from tapdb_core.commands._environments import config_file as config_file
from tapdb_core.commands._environments import configured_envs as configured_envs
from tapdb_core.commands._environments import env_sections as env_sections
from tapdb_core.commands._environments import resolve_config as resolve_config
from tapdb_core.commands._environments import target_for as target_for
from tapdb_core.commands._messages import one_line as one_line
from tapdb_core.commands._messages import warn as warn
from tapdb_core.commands._oplog import oplog as oplog
from tapdb_core.commands._schema_check import require_schema as require_schema
from tapdb_core.commands._target import PROTECTED_ENVS as PROTECTED_ENVS
from tapdb_core.commands._target import Target as Target
from tapdb_core.commands._target import target_of as target_of
from tapdb_core.db import Database
from tapdb_core.errors import DatabaseMissingError, TapdbError


@attrs.frozen
class Session:
    """An open engine on a target's database; transactions record the command's actor."""

    target: Target
    engine: Engine

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A plain connection (no audit user), connection failures explained."""
        with connection_errors(self.target), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction with the audit user set, committed on success; driver
        errors become tapdb errors."""
        database = Database(engine=self.engine, _schema_checked=True)  # session() checked
        with connection_errors(self.target), database.begin(user=actor(self.target)) as conn:
            yield conn
            if conn.execute(text("SELECT txid_current_if_assigned() IS NULL")).scalar():
                mark_read_only(conn)  # read only: committing it changes nothing


@contextmanager
def session(target: Target, *, need_schema: bool = True) -> Iterator[Session]:
    """An engine on the target database, checked to answer (and, with
    ``need_schema``, to be at the code's revision), disposed on exit. The one
    place commands open and close engines."""
    engine = make_engine(target.url)
    try:
        with connection_errors(target), engine.connect() as conn:
            if need_schema:
                require_schema(conn, target)
            else:
                conn.execute(text("SELECT 1"))
        yield Session(target=target, engine=engine)
    finally:
        engine.dispose()


@contextmanager
def admin_session(target: Target) -> Iterator[Session]:
    """An autocommit session on the server's maintenance database (``postgres``,
    else ``template1``), for CREATE/DROP DATABASE."""
    last: TapdbError | None = None
    for name in ("postgres", "template1"):
        engine = make_engine(target.with_database(name), autocommit=True)
        try:
            try:
                with connection_errors(target), engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
            except DatabaseMissingError as exc:
                last = exc
                continue
            yield Session(target=target, engine=engine)
            return
        finally:
            engine.dispose()
    assert last is not None
    raise last


def database_exists(admin: Session, name: str) -> bool:
    with admin.connect() as conn:
        found = conn.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).first()
    return found is not None
