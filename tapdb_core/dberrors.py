"""Driver errors become tapdb errors in one place, keyed on constraint names."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import psycopg
from sqlalchemy.exc import DBAPIError, OperationalError

from tapdb_core.errors import (
    ConflictError,
    CycleError,
    DatabaseUnavailableError,
    TapdbError,
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


def translate(exc: DBAPIError) -> TapdbError | None:
    """The tapdb error for a driver error, or None when it is not one of ours."""
    orig = exc.orig
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
