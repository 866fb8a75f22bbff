"""Who is asking: the session user (local or Cognito login) or a host's user."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import attrs
from sqlalchemy import Connection
from starlette.requests import Request

from tapdb_core import users
from tapdb_core.errors import NotFoundError

ROLES = ("admin", "user")


@attrs.frozen(kw_only=True)
class AdminUser:
    """The person behind a request, as the UI sees them."""

    username: str
    role: str
    euid: str = ""
    must_change_password: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


UserProvider = Callable[[Request], "AdminUser | None"]
"""A host application's own login: returns its user for a request, or None."""


def start_session(request: Request, user_euid: str, source: str) -> None:
    """A fresh session (new id, new CSRF token) for a successful login: nothing
    from the anonymous session survives (no fixation)."""
    request.session.clear()
    request.session["sid"] = secrets.token_urlsafe(24)
    request.session["uid"] = user_euid
    request.session["src"] = source
    request.session["at"] = int(time.time())
    request.session["csrf"] = secrets.token_urlsafe(32)


def session_user(
    conn: Connection, session: dict[str, Any], max_age: int, is_revoked: Callable[[str], bool]
) -> AdminUser | None:
    """The active user of a valid, unexpired, not-logged-out session; re-read from
    the database on every request so a deactivation or role change takes effect
    at once."""
    uid, sid, at = session.get("uid"), session.get("sid"), session.get("at")
    if not isinstance(uid, str) or not isinstance(sid, str) or not isinstance(at, int):
        return None
    if time.time() - at > max_age or is_revoked(sid):
        return None
    try:
        user = users.get_user(conn, uid)
    except NotFoundError:
        return None
    if not user.is_active:
        return None
    return AdminUser(
        username=user.username,
        role=user.role,
        euid=user.euid,
        must_change_password=user.require_password_change,
    )
