"""The explanation of a failure to connect: unreachable, no such database, or
login refused, each with the command that helps."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import psycopg
from sqlalchemy.exc import DBAPIError

from tapdb_core.commands._target import Target
from tapdb_core.errors import (
    DatabaseMissingError,
    DatabaseUnavailableError,
    LoginRefusedError,
    TapdbError,
    TransientError,
)


def _driver_error(exc: BaseException) -> BaseException | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, psycopg.Error):
            return current
        if isinstance(current, DBAPIError) and isinstance(current.orig, BaseException):
            return current.orig
        current = current.__cause__ or current.__context__
    return None


_DB_MISSING_RE: Final = re.compile(r'database "([^"]*)" does not exist')
_LOGIN_MARKERS: Final = (
    "password authentication failed",
    "no password supplied",
    "authentication failed",
    "pg_hba.conf",
)
_ROLE_MISSING_RE: Final = re.compile(r'role "([^"]*)" does not exist')


def is_connection_error(exc: BaseException) -> bool:
    """True for a failure to open a connection (as opposed to a failing statement)."""
    if isinstance(exc, TransientError):
        return False  # an open connection broke: the server was reachable
    if isinstance(exc, DatabaseUnavailableError):
        return True
    orig = _driver_error(exc)
    return isinstance(orig, psycopg.OperationalError) and getattr(orig, "sqlstate", None) is None


def _reason(message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "no details"
    if "failed:" in first:
        first = first.rsplit("failed:", 1)[1]
    return first.replace("FATAL:", "").strip() or "no details"


def explain_connection_error(exc: BaseException, target: Target | None) -> TapdbError:
    """Say which of unreachable / no such database / login refused happened."""
    orig = _driver_error(exc)
    message = str(orig if orig is not None else exc)
    where = f"the server at {target.where}" if target else "the server"
    env = target.env if target else "ENV"
    missing = _DB_MISSING_RE.search(message)
    if missing:
        return DatabaseMissingError(
            f"database {missing.group(1)!r} does not exist on {where}: "
            f"create it with `tapdb db create {env}` (or `tapdb db setup {env}`)"
        )
    role = _ROLE_MISSING_RE.search(message)
    if role or any(marker in message for marker in _LOGIN_MARKERS):
        user = target.user if target else "?"
        return LoginRefusedError(
            f"{where} refused the login as user {user!r} ({_reason(message)}): "
            f"check the user and password settings (`tapdb --env {env} info`)"
        )
    return DatabaseUnavailableError(
        f"{where} is unreachable ({_reason(message)}): start it "
        f"(`tapdb pg start-local {env}` for a local cluster) or check host and port "
        f"(`tapdb --env {env} info`)"
    )


@contextmanager
def connection_errors(target: Target) -> Iterator[None]:
    """Turn a failure to connect into a one-line explanation."""
    try:
        yield
    except (DBAPIError, psycopg.Error, DatabaseUnavailableError) as exc:
        if is_connection_error(exc):
            raise explain_connection_error(exc, target) from exc
        raise
