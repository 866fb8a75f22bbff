"""tapdb users: accounts with roles and scrypt-hashed passwords.

Passwords are hashed with ``hashlib.scrypt`` (n=2**14, r=8, p=1, 16-byte salt)
and verified with ``hmac.compare_digest``. The hash is stored as
``scrypt$n$r$p$salt_hex$hash_hex`` so parameters can be raised later.

A user is addressed by username or EUID, decided by shape alone: a string that
is a valid EUID is looked up only as an EUID, anything else only as a username.
:func:`create_user` refuses usernames that are valid EUIDs, so one string can
never name two accounts. Rows written before that rule may still hold such a
username; :func:`shadowed_username` finds them, so callers can say that the
EUID won and how to reach the other account.
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
from tapdb_core.inputcheck import check_optional_text, check_text
from tapdb_core.tables import tapdb_user as u
from tapdb_core.values import User

ROLES: Final = ("admin", "user")
_N, _R, _P, _DKLEN = 2**14, 8, 1, 32
#: verified against when there is no usable hash, so every verification costs
#: one scrypt of the current parameters; its digest matches no password
_DUMMY_HASH: Final = f"scrypt${_N}${_R}${_P}${'5a' * 16}${'00' * _DKLEN}"


def _check_password_input(password: object) -> str:
    if not isinstance(password, str) or not password:
        raise ValidationError(
            "password must not be empty", [Violation(path="/password", message="empty")]
        )
    return check_text("/password", password, required=False)


def hash_password(password: str) -> str:
    _check_password_input(password)
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def _parse_hash(stored: str | None) -> tuple[bytes, int, int, int, bytes] | None:
    """(salt, n, r, p, digest) of a stored scrypt hash; None if absent or malformed."""
    if not stored:
        return None
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return None
        parsed = (bytes.fromhex(salt), int(n), int(r), int(p), bytes.fromhex(digest))
    except (ValueError, TypeError):
        return None
    return parsed if parsed[4] else None


def _scrypt_matches(password: str, parsed: tuple[bytes, int, int, int, bytes]) -> bool:
    salt, n, r, p, expected = parsed
    try:
        actual = hashlib.scrypt(
            password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r, p=p, dklen=len(expected)
        )
    except (ValueError, TypeError, MemoryError):  # parameters scrypt refuses
        return False
    return hmac.compare_digest(actual, expected)


def check_password(password: str, stored: str | None) -> bool:
    """True when ``password`` matches ``stored``; always exactly one scrypt."""
    parsed = _parse_hash(stored)
    usable = parsed is not None and isinstance(password, str) and bool(password)
    matched = _scrypt_matches(
        password if isinstance(password, str) else "",
        parsed if parsed is not None else _dummy(),
    )
    return usable and matched


def _dummy() -> tuple[bytes, int, int, int, bytes]:
    parsed = _parse_hash(_DUMMY_HASH)
    assert parsed is not None
    return parsed


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ValidationError(
            f"invalid role {role!r}", [Violation(path="/role", message="must be admin or user")]
        )
    return role


def is_euid_key(username_or_euid: str) -> bool:
    """True when the string is looked up as an EUID (never as a username)."""
    return euids.is_valid(username_or_euid)


def _where(key: str) -> object:
    check_text("/user", key)
    return u.c.euid == key if is_euid_key(key) else u.c.username == key


def _not_found(conn: Connection, key: str) -> UserNotFoundError:
    shadowed = shadowed_username(conn, key)
    if shadowed is not None:
        return UserNotFoundError(
            f"user {key!r} not found: {key!r} is read as an EUID and no user has it; "
            f"the user named {key!r} is {shadowed.euid} (address it by that EUID)"
        )
    return UserNotFoundError(f"user {key!r} not found")


def shadowed_username(conn: Connection, username_or_euid: str) -> User | None:
    """The user whose *username* is ``username_or_euid`` when that string is an EUID
    (so lookups reach another account, or none). Only rows created before such
    usernames were refused can match; None otherwise."""
    if not isinstance(username_or_euid, str) or not is_euid_key(username_or_euid):
        return None
    row = conn.execute(
        select(u).where(u.c.username == username_or_euid, u.c.euid != username_or_euid)
    ).one_or_none()
    return None if row is None else User.from_row(row)


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
    check_text("/username", username)
    if is_euid_key(username):
        raise ValidationError(
            f"username {username!r} is refused: it is a valid EUID, and user lookups read "
            "EUID-shaped strings as EUIDs",
            [Violation(path="/username", message=f"{username!r} has the form of an EUID")],
        )
    check_optional_text("/email", email)
    check_optional_text("/display_name", display_name, required=False)
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
        raise _not_found(conn, username_or_euid)
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
        raise _not_found(conn, username_or_euid)
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
    """True when the password matches an active user's.

    The work does not depend on the account: one query, then exactly one scrypt,
    against a dummy hash of the same cost when the user is unknown, inactive or
    has no password, so timing does not tell which of these is the case.
    """
    if not isinstance(password, str):
        raise ValidationError(
            "password must be a string", [Violation(path="/password", message="not a string")]
        )
    check_text("/password", password, required=False)
    row = conn.execute(
        select(u.c.password_hash, u.c.is_active).where(_where(username_or_euid))  # type: ignore[arg-type]
    ).one_or_none()
    stored = row.password_hash if row is not None and row.is_active else None
    return check_password(password, stored)


def delete_user(conn: Connection, username_or_euid: str) -> User:
    """Remove an account (the audit trail keeps its full last state)."""
    with translated():
        row = conn.execute(delete(u).where(_where(username_or_euid)).returning(*u.c)).one_or_none()  # type: ignore[arg-type]
    if row is None:
        raise _not_found(conn, username_or_euid)
    return User.from_row(row)
