"""tapdb users: accounts with roles and scrypt-hashed passwords.

Passwords are hashed with ``hashlib.scrypt`` (n=2**14, r=8, p=1, 16-byte salt)
and verified with ``hmac.compare_digest``. The hash is stored as
``scrypt$n$r$p$salt_hex$hash_hex`` so parameters can be raised later.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

from sqlalchemy import Connection, delete, select, update

from tapdb_core import euid as euids
from tapdb_core.dberrors import translated
from tapdb_core.errors import UserNotFoundError, ValidationError, Violation
from tapdb_core.tables import tapdb_user as u
from tapdb_core.values import User

ROLES: Final = ("admin", "user")
_N, _R, _P, _DKLEN = 2**14, 8, 1, 32


def hash_password(password: str) -> str:
    if not isinstance(password, str) or not password:
        raise ValidationError(
            "password must not be empty", [Violation(path="/password", message="empty")]
        )
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str | None) -> bool:
    if not stored or not password:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = bytes.fromhex(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ValidationError(
            f"invalid role {role!r}", [Violation(path="/role", message="must be admin or user")]
        )
    return role


def _where(key: str) -> object:
    return u.c.euid == key if euids.is_valid(key) else u.c.username == key


def create_user(
    conn: Connection,
    username: str,
    *,
    role: str = "user",
    email: str | None = None,
    display_name: str | None = None,
    password: str | None = None,
    require_password_change: bool = False,
) -> User:
    if not isinstance(username, str) or not username.strip():
        raise ValidationError(
            "username must not be empty", [Violation(path="/username", message=repr(username))]
        )
    _check_role(role)
    with translated():
        row = conn.execute(
            u.insert()
            .values(
                username=username,
                role=role,
                email=email,
                display_name=display_name,
                password_hash=hash_password(password) if password is not None else None,
                require_password_change=require_password_change,
            )
            .returning(*u.c)
        ).one()
    return User.from_row(row)


def get_user(conn: Connection, username_or_euid: str) -> User:
    row = conn.execute(select(u).where(_where(username_or_euid))).one_or_none()  # type: ignore[arg-type]
    if row is None:
        raise UserNotFoundError(f"user {username_or_euid!r} not found")
    return User.from_row(row)


def list_users(conn: Connection, *, include_inactive: bool = True) -> list[User]:
    query = select(u).order_by(u.c.username)
    if not include_inactive:
        query = query.where(u.c.is_active.is_(True))
    return [User.from_row(r) for r in conn.execute(query)]


def _change(conn: Connection, username_or_euid: str, **values: object) -> User:
    with translated():
        row = conn.execute(
            update(u).where(_where(username_or_euid)).values(**values).returning(*u.c)  # type: ignore[arg-type]
        ).one_or_none()
    if row is None:
        raise UserNotFoundError(f"user {username_or_euid!r} not found")
    return User.from_row(row)


def set_role(conn: Connection, username_or_euid: str, role: str) -> User:
    return _change(conn, username_or_euid, role=_check_role(role))


def activate(conn: Connection, username_or_euid: str) -> User:
    return _change(conn, username_or_euid, is_active=True)


def deactivate(conn: Connection, username_or_euid: str) -> User:
    return _change(conn, username_or_euid, is_active=False)


def set_password(
    conn: Connection, username_or_euid: str, password: str, *, require_change: bool = False
) -> User:
    return _change(
        conn,
        username_or_euid,
        password_hash=hash_password(password),
        require_password_change=require_change,
    )


def verify_password(conn: Connection, username_or_euid: str, password: str) -> bool:
    """True when the password matches an active user's (constant-time comparison)."""
    row = conn.execute(
        select(u.c.password_hash, u.c.is_active).where(_where(username_or_euid))  # type: ignore[arg-type]
    ).one_or_none()
    if row is None or not row.is_active:
        # spend the same work so timing does not reveal which usernames exist
        check_password(password or "x", hash_password("timing-equaliser"))
        return False
    return check_password(password, row.password_hash)


def delete_user(conn: Connection, username_or_euid: str) -> User:
    """Remove an account (the audit trail keeps its full last state)."""
    with translated():
        row = conn.execute(delete(u).where(_where(username_or_euid)).returning(*u.c)).one_or_none()  # type: ignore[arg-type]
    if row is None:
        raise UserNotFoundError(f"user {username_or_euid!r} not found")
    return User.from_row(row)
