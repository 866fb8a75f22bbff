"""CSRF tokens, safe redirects, login throttling and security headers."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import attrs
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def csrf_token(session: MutableMapping[str, Any]) -> str:
    """The session's CSRF token, made on first use."""
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_ok(session: MutableMapping[str, Any], presented: str | None) -> bool:
    expected = session.get("csrf")
    if not isinstance(expected, str) or not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def safe_next(value: str | None, default: str = "/") -> str:
    """A redirect target only when it is a path on this site.

    ``//host``, ``/\\host``, schemes, and anything with a network location or a
    control character are refused (browsers read ``/\\evil`` as ``//evil``).
    """
    if not value or not isinstance(value, str):
        return default
    if not value.startswith("/") or value.startswith("//") or value.startswith("/\\"):
        return default
    if any(ord(ch) < 32 or ch == "\\" for ch in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


@attrs.define
class LoginThrottle:
    """Slows repeated failed logins per user name and per client address.

    After ``free`` failures a key must wait ``2 ** (failures - free)`` seconds
    (capped) since its last failure before another attempt is even checked;
    a success clears the user's key. State is per process.
    """

    free: int = 3
    max_delay: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, tuple[int, float]] = attrs.field(factory=dict)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def _delay(self, count: int) -> float:
        if count < self.free:
            return 0.0
        return float(min(self.max_delay, 2 ** (count - self.free + 1)))

    def wait_for(self, *keys: str) -> float:
        """Seconds to wait before these keys may try again (0: go ahead)."""
        now = self.clock()
        with self._lock:
            waits = []
            for key in keys:
                count, last = self._failures.get(key, (0, 0.0))
                waits.append(max(0.0, last + self._delay(count) - now))
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) > 100_000:
                self._failures.clear()  # bounded memory under a spray of names
            for key in keys:
                count, _ = self._failures.get(key, (0, 0.0))
                self._failures[key] = (count + 1, now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


@attrs.define
class RevokedSessions:
    """Session ids logged out before their cookie expires (per process)."""

    max_age: float
    clock: Callable[[], float] = time.time
    _revoked: dict[str, float] = attrs.field(factory=dict)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def revoke(self, sid: str) -> None:
        now = self.clock()
        with self._lock:
            self._revoked = {k: v for k, v in self._revoked.items() if v > now}
            self._revoked[sid] = now + self.max_age

    def is_revoked(self, sid: str) -> bool:
        with self._lock:
            return sid in self._revoked


class SecurityHeaders:
    """Adds CSP and friends to every response (HSTS only under HTTPS)."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = CSP
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "same-origin"
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
                if self.hsts:
                    headers["Strict-Transport-Security"] = "max-age=31536000"
            await send(message)

        await self.app(scope, receive, send_wrapper)
