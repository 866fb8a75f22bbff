"""Driver errors become tapdb errors in one place, keyed on constraint names."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import psycopg
from sqlalchemy.exc import DBAPIError, OperationalError

from tapdb_core.errors import (
    ConflictError,
    ConnectionLostError,
    CycleError,
    DatabaseUnavailableError,
    DeadlockError,
    LockTimeoutError,
    SerializationError,
    StatementTimeoutError,
    TapdbError,
    TransientError,
    ValidationError,
)

_BY_CONSTRAINT: Final[dict[str, tuple[type[TapdbError], str]]] = {
    "ck_generic_instance_lineage_acyclic": (CycleError, "lineage cycle refused"),
    "ck_generic_instance_lineage_no_self_loop": (
        CycleError,
        "lineage self-loop refused: an instance cannot be its own parent",
    ),
    "uq_generic_template_code": (ConflictError, "a template with this code already exists"),
    "uq_generic_template_euid": (ConflictError, "a template with this EUID already exists"),
    "uq_generic_instance_euid": (ConflictError, "an instance with this EUID already exists"),
    "uq_generic_instance_live_singleton": (
        ConflictError,
        "this singleton template already has a live instance",
    ),
    "uq_generic_instance_lineage_live_edge": (
        ConflictError,
        "this edge (parent, child, relationship type) already exists",
    ),
    "uq_tapdb_user_username": (ConflictError, "a user with this username already exists"),
    "uq_tapdb_user_email": (ConflictError, "a user with this email already exists"),
    "ck_generic_instance_lineage_relationship_type": (
        ValidationError,
        "relationship_type must not be blank",
    ),
    "ck_tapdb_user_role": (ValidationError, "role must be 'admin' or 'user'"),
    "ck_generic_template_instance_prefix": (
        ValidationError,
        "instance_prefix must match ^[A-HJ-KMNP-TV-Z]{2,3}$",
    ),
}


_UNREACHABLE: Final = (
    "connection refused",
    "could not connect",
    "could not translate host name",
    "timeout expired",
    "no such file or directory",
    "network is unreachable",
    "no route to host",
)


_RETRY_HINT: Final = "the transaction was rolled back; run it again"

# SQLSTATEs that say "what ran beside you (or the link) failed this transaction",
# whatever constraint or statement was involved.
_TRANSIENT: Final[dict[str, tuple[type[TransientError], str]]] = {
    "40001": (SerializationError, _RETRY_HINT),
    "40P01": (DeadlockError, _RETRY_HINT),
    "55P03": (LockTimeoutError, _RETRY_HINT),
    "57P01": (ConnectionLostError, "the server ended the connection; " + _RETRY_HINT),
    "57P02": (ConnectionLostError, "the server crashed; " + _RETRY_HINT),
    "57P03": (ConnectionLostError, "the server is not accepting connections yet"),
    "57P05": (ConnectionLostError, "the server ended the idle session; " + _RETRY_HINT),
    "25P03": (ConnectionLostError, "the server ended the idle transaction; " + _RETRY_HINT),
}


def _transient(exc: DBAPIError, orig: BaseException | None) -> TransientError | None:
    sqlstate = getattr(orig, "sqlstate", None)
    primary = ""
    if isinstance(orig, psycopg.Error):
        primary = (orig.diag.message_primary or str(orig)).strip()
    if sqlstate in _TRANSIENT:
        cls, hint = _TRANSIENT[sqlstate]
        return cls(f"{primary}: {hint}" if primary else hint)
    # query_canceled also means a user's cancel request, which is no timeout
    if sqlstate == "57014" and "timeout" in primary:
        return StatementTimeoutError(f"{primary} (statement_timeout): nothing was stored")
    if exc.connection_invalidated:
        # an open connection broke (no SQLSTATE): the server rolled back
        text = one_line(str(orig if orig is not None else exc))
        return ConnectionLostError(f"connection to the database lost ({text}): {_RETRY_HINT}")
    return None


def one_line(message: str) -> str:
    return " | ".join(p.strip() for p in message.splitlines() if p.strip())


def translate(exc: DBAPIError) -> TapdbError | None:
    """The tapdb error for a driver error, or None when it is not one of ours."""
    orig = exc.orig
    transient = _transient(exc, orig)
    if transient is not None:
        return transient
    if isinstance(exc, OperationalError) and isinstance(orig, psycopg.OperationalError):
        if getattr(orig, "sqlstate", None) is None:
            text = str(orig).strip()
            lowered = text.lower()
            if any(m in lowered for m in _UNREACHABLE):
                return DatabaseUnavailableError(f"database server unreachable: {text}")
            # the server answered: a missing database, a rejected login, ...
            return DatabaseUnavailableError(f"cannot connect: {text}")
    if not isinstance(orig, psycopg.Error):
        return None
    diag = orig.diag
    constraint = diag.constraint_name or ""
    detail = (diag.message_primary or str(orig)).strip()
    if constraint in _BY_CONSTRAINT:
        cls, summary = _BY_CONSTRAINT[constraint]
        message = detail if cls is CycleError and "cycle" in detail else summary
        if diag.message_detail:
            message = f"{message} ({diag.message_detail.strip()})"
        return cls(message)
    return None


@contextmanager
def translated() -> Iterator[None]:
    """Re-raise driver errors we understand as tapdb errors (with the cause chained)."""
    try:
        yield
    except DBAPIError as exc:
        ours = translate(exc)
        if ours is None:
            raise
        raise ours from exc
