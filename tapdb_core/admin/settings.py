"""Settings of the admin web UI, read once when the app is built."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping

import attrs

from tapdb_core.errors import ConfigurationError

LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost", "::1", "testserver")
PRODUCTION_ENVS = frozenset({"prod", "production"})


@attrs.frozen(kw_only=True)
class CognitoSettings:
    """Where the Cognito user pool lives; the app client has no secret here
    (a client secret would be one more thing to leak)."""

    user_pool_id: str
    app_client_id: str
    region: str
    endpoint_url: str | None = None
    """Only for tests and emulators (moto server); empty means AWS itself."""


@attrs.frozen(kw_only=True)
class AdminSettings:
    """Everything :func:`tapdb_core.admin.create_app` needs.

    ``production`` refuses to build an app without a session secret and an
    explicit allowed-hosts list; development defaults to loopback hosts only and
    a random per-process secret (sessions end when the process does).
    """

    database_url: str
    env: str = "dev"
    session_secret: str | None = None
    production: bool = False
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    allowed_origins: tuple[str, ...] = ()
    https_only: bool = False
    """Secure cookies and HSTS; set when served over HTTPS."""
    session_max_age: int = 8 * 3600
    """Seconds a login lasts, whatever the activity (absolute expiry)."""
    auth_mode: str = "local"
    """``local`` (tapdb_user passwords) or ``cognito``."""
    cognito: CognitoSettings | None = None
    pool_size: int = 5
    graph_node_cap: int = 400
    page_size: int = 50
    login_failures_before_delay: int = 3
    login_max_delay: float = 60.0

    def effective_secret(self) -> str:
        return self.session_secret or _PROCESS_SECRET

    def check(self) -> None:
        """Refuse settings that would be unsafe to serve."""
        if self.auth_mode not in ("local", "cognito"):
            raise ConfigurationError(f"unknown auth mode {self.auth_mode!r}: use local or cognito")
        if self.auth_mode == "cognito" and self.cognito is None:
            raise ConfigurationError("auth mode cognito needs a user pool and an app client")
        if self.production or self.env in PRODUCTION_ENVS:
            if not self.session_secret or len(self.session_secret) < 32:
                raise ConfigurationError(
                    "production mode needs a session secret of at least 32 characters "
                    "(TAPDB_SESSION_SECRET)"
                )
            explicit = [h for h in self.allowed_hosts if h not in LOOPBACK_HOSTS]
            if not explicit or "*" in self.allowed_hosts:
                raise ConfigurationError(
                    "production mode needs an explicit allowed-hosts list "
                    "(TAPDB_ADMIN_ALLOWED_HOSTS), without '*'"
                )
            if "*" in self.allowed_origins:
                raise ConfigurationError("'*' is refused as an allowed origin")

    @property
    def is_production(self) -> bool:
        return self.production or self.env in PRODUCTION_ENVS


_PROCESS_SECRET = secrets.token_urlsafe(48)


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (value or "").split(",") if p.strip())


def settings_from_env(
    database_url: str, env: str, environ: Mapping[str, str] | None = None
) -> AdminSettings:
    """Settings from ``TAPDB_*`` variables (what ``tapdb ui start`` passes on)."""
    e = os.environ if environ is None else environ
    cognito = None
    if e.get("TAPDB_COGNITO_USER_POOL_ID") and e.get("TAPDB_COGNITO_APP_CLIENT_ID"):
        cognito = CognitoSettings(
            user_pool_id=e["TAPDB_COGNITO_USER_POOL_ID"],
            app_client_id=e["TAPDB_COGNITO_APP_CLIENT_ID"],
            region=e.get("TAPDB_COGNITO_REGION") or e.get("AWS_REGION") or "us-east-1",
            endpoint_url=e.get("TAPDB_COGNITO_ENDPOINT_URL") or None,
        )
    hosts = _csv(e.get("TAPDB_ADMIN_ALLOWED_HOSTS")) or LOOPBACK_HOSTS
    return AdminSettings(
        database_url=database_url,
        env=env,
        session_secret=e.get("TAPDB_SESSION_SECRET") or None,
        production=e.get("TAPDB_ADMIN_PRODUCTION", "").lower() in ("1", "true", "yes"),
        allowed_hosts=hosts,
        allowed_origins=_csv(e.get("TAPDB_ADMIN_ALLOWED_ORIGINS")),
        https_only=e.get("TAPDB_ADMIN_HTTPS", "").lower() in ("1", "true", "yes"),
        auth_mode=e.get("TAPDB_ADMIN_AUTH", "cognito" if cognito else "local"),
        cognito=cognito,
    )
