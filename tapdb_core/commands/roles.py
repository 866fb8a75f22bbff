"""Database roles: the application role and an optional read-only role."""

from __future__ import annotations

import psycopg
from sqlalchemy.exc import DBAPIError

from tapdb_core import roles
from tapdb_core.commands._messages import one_line
from tapdb_core.commands._oplog import oplog
from tapdb_core.commands._session import session
from tapdb_core.commands._target import Target
from tapdb_core.errors import CommandError, TapdbError, UsageError


def _insufficient_privilege(exc: BaseException) -> str | None:
    """The server's message when ``exc`` (or what it wraps) is SQLSTATE 42501."""
    current: BaseException | None = exc
    while current is not None:
        orig = getattr(current, "orig", current)
        if getattr(orig, "sqlstate", None) == "42501":
            return str(orig)
        current = current.__cause__
    return None


def check_role_names(app_role: str, readonly_role: str | None) -> None:
    """Refuse bad role names (:class:`UsageError`) before anything connects."""
    try:
        roles.check_role_name(app_role, "--app-role")
        if readonly_role is not None:
            roles.check_role_name(readonly_role, "--readonly-role")
            if readonly_role == app_role:
                raise roles.RoleNameError("--app-role and --readonly-role must differ")
    except roles.RoleNameError as exc:
        raise UsageError(str(exc)) from None


def grant_roles(
    target: Target,
    *,
    app_role: str,
    readonly_role: str | None = None,
    app_password: str | None = None,
    readonly_password: str | None = None,
) -> roles.RolesResult:
    """Create (if missing) and grant the roles; run it as the schema owner or a superuser."""
    check_role_names(app_role, readonly_role)
    try:
        with session(target) as s, s.begin() as conn:
            result = roles.grant_roles(
                conn,
                app_role=app_role,
                readonly_role=readonly_role,
                app_password=app_password,
                readonly_password=readonly_password,
            )
    except (DBAPIError, TapdbError, psycopg.Error) as exc:
        denied = _insufficient_privilege(exc)
        if denied is None:
            raise
        raise CommandError(
            f"user {target.user!r} may not create or grant roles on database "
            f"{target.database!r} ({one_line(denied)}): run `tapdb db roles` as the "
            "schema owner or a superuser"
        ) from None
    oplog(target, "db roles", ", ".join(f"{r.kind}={r.name}" for r in result.roles))
    return result
