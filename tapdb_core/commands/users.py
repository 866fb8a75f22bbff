"""tapdb user accounts. Every value is a bound parameter, so any username
(``o'brien``) is stored verbatim.

USER arguments are read as an EUID when they have the form of one, else as a
username; usernames of that form are refused. An old account whose username is
EUID-shaped is reported (a :class:`~tapdb_core.errors.TapdbWarning`) when a
command reaches another account (or none) instead.
"""

from __future__ import annotations

from sqlalchemy import Connection

from tapdb_core import users
from tapdb_core.commands._messages import warn
from tapdb_core.commands._oplog import oplog
from tapdb_core.commands._session import session
from tapdb_core.commands._target import Target
from tapdb_core.commands.schema import Confirm
from tapdb_core.values import User


def warn_if_shadowed(conn: Connection, key: str) -> None:
    """Say so when ``key`` is read as an EUID while an old account has it as username."""
    other = users.shadowed_username(conn, key)
    if other is not None:
        warn(
            f"{key!r} is read as an EUID, not as the username of user {other.euid} "
            f"(an account from before EUID-shaped usernames were refused): address that "
            "account by its EUID"
        )


def list_users(target: Target, *, include_inactive: bool = False) -> list[User]:
    with session(target) as s, s.begin() as conn:
        return users.list_users(conn, include_inactive=include_inactive)


def get_user(target: Target, user: str) -> User:
    """One user by username or EUID."""
    with session(target) as s, s.begin() as conn:
        warn_if_shadowed(conn, user)
        return users.get_user(conn, user)


def create_user(
    target: Target,
    username: str,
    *,
    role: str = "user",
    email: str | None = None,
    display_name: str | None = None,
    password: str | None = None,
    require_password_change: bool = False,
) -> User:
    with session(target) as s, s.begin() as conn:
        user = users.create_user(
            conn,
            username,
            role=role,
            email=email,
            display_name=display_name,
            password=password,
            require_password_change=require_password_change,
        )
    oplog(target, "user add", user.euid)
    return user


def set_user_role(target: Target, user: str, role: str) -> User:
    with session(target) as s, s.begin() as conn:
        warn_if_shadowed(conn, user)
        changed = users.set_role(conn, user, role)
    oplog(target, "user set-role", changed.euid)
    return changed


def activate_user(target: Target, user: str) -> User:
    with session(target) as s, s.begin() as conn:
        warn_if_shadowed(conn, user)
        changed = users.activate(conn, user)
    oplog(target, "user activate", changed.euid)
    return changed


def deactivate_user(target: Target, user: str) -> User:
    with session(target) as s, s.begin() as conn:
        warn_if_shadowed(conn, user)
        changed = users.deactivate(conn, user)
    oplog(target, "user deactivate", changed.euid)
    return changed


def set_user_password(
    target: Target, user: str, password: str, *, require_change: bool = False
) -> User:
    with session(target) as s, s.begin() as conn:
        changed = users.set_password(conn, user, password, require_change=require_change)
    oplog(target, "user set-password", changed.euid)
    return changed


def delete_user(target: Target, user: str, *, confirm: Confirm | None = None) -> User:
    """Delete a user permanently (the audit trail keeps it); ``confirm(action)``
    is called once the user is found (it raises to stop)."""
    with session(target) as s:
        with s.begin() as conn:
            warn_if_shadowed(conn, user)
            found = users.get_user(conn, user)
        if confirm is not None:
            confirm(f"delete user {found.username!r} ({found.euid}) from {target.database!r}")
        with s.begin() as conn:
            deleted = users.delete_user(conn, user)
    oplog(target, "user delete", deleted.euid)
    return deleted
