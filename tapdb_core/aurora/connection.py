"""Connections to an Aurora cluster: IAM tokens or a Secrets Manager password per new
DBAPI connection, TLS verification, and a read-only engine on the reader endpoint.

The password is never part of a URL: a SQLAlchemy ``do_connect`` hook asks a
password provider for it each time the pool opens a connection. With IAM auth that
is a fresh token (valid 15 minutes, needed only to log in), so pooled connections
keep working however long the pool lives. With a secret the password is cached
for a short while and fetched again after an authentication failure, so a
rotated secret does not break a running application.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Protocol

import attrs
import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL

from tapdb_core import config as tconfig
from tapdb_core.aurora import aws
from tapdb_core.aurora.ca import ensure_ca_bundle
from tapdb_core.errors import ConfigurationError

AUTH_MODES: Final = ("iam", "secret")
SSL_MODES: Final = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DEFAULT_SECRET_TTL: Final = 300.0
#: keys of an environment's section that describe an Aurora cluster (besides host,
#: port, user and database, which every environment has)
AURORA_KEYS: Final = (
    "reader_host",
    "region",
    "cluster_id",
    "auth",
    "sslmode",
    "sslrootcert",
    "secret_arn",
    "admin_user",
    "stack",
    "policy_arn",
)


class PasswordProvider(Protocol):
    def __call__(self) -> str: ...


@attrs.frozen(kw_only=True)
class AuroraSettings:
    """Connection settings of an Aurora environment. Holds no password."""

    env: str
    host: str
    port: int = 5432
    database: str = "tapdb"
    user: str = "tapdb_app"
    region: str = ""
    reader_host: str = ""
    cluster_id: str = ""
    auth: str = "iam"
    sslmode: str = "verify-full"
    sslrootcert: str = ""
    secret_arn: str = ""
    admin_user: str = ""
    stack: str = ""
    policy_arn: str = ""

    def __attrs_post_init__(self) -> None:
        if self.auth not in AUTH_MODES:
            raise ConfigurationError(
                f"environment {self.env}: auth must be one of {', '.join(AUTH_MODES)}, "
                f"not {self.auth!r}"
            )
        if self.sslmode not in SSL_MODES:
            raise ConfigurationError(
                f"environment {self.env}: sslmode must be one of {', '.join(SSL_MODES)}"
            )

    def to_section(self) -> dict[str, Any]:
        """What ``create``/``bootstrap`` write into the environment's config."""
        out: dict[str, Any] = {
            "engine_type": "aurora",
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "user": self.user,
        }
        for key in AURORA_KEYS:
            value = getattr(self, key)
            if value:
                out[key] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env, **self.to_section()}


def settings_from_section(env: str, section: Mapping[str, Any]) -> AuroraSettings:
    def text(key: str, default: str = "") -> str:
        value = section.get(key)
        return default if value is None else str(value)

    host = text("host")
    if not host:
        raise ConfigurationError(f"environment {env} has no host: run `tapdb aurora create {env}`")
    try:
        port = int(text("port", "5432"))
    except ValueError:
        raise ConfigurationError(
            f"environment {env}: port {section.get('port')!r} is not a number"
        ) from None
    kwargs = {key: text(key) for key in AURORA_KEYS}
    kwargs["auth"] = kwargs["auth"] or "iam"
    kwargs["sslmode"] = kwargs["sslmode"] or "verify-full"
    return AuroraSettings(
        env=env,
        host=host,
        port=port,
        database=text("database", "tapdb"),
        user=text("user", "tapdb_app"),
        **kwargs,
    )


def load_settings(
    env: str | None = None,
    *,
    config_file: str | Path | None = None,
    database_name: str | None = None,
) -> AuroraSettings:
    """An Aurora environment's settings: host, port, user and database resolved as for
    every environment (``TAPDB_<ENV>_*`` variables win), the rest from its config file."""
    cfg = tconfig.load_config(env, config_file=config_file, database_name=database_name)
    section: dict[str, Any] = {}
    if cfg.config_file is not None:
        data = tconfig.read_config_file(cfg.config_file)
        envs = data.get("environments", data)
        raw = envs.get(cfg.env, {}) if isinstance(envs, Mapping) else {}
        section = dict(raw) if isinstance(raw, Mapping) else {}
    if section.get("engine_type", cfg.get("engine_type")) != "aurora":
        raise ConfigurationError(
            f"environment {cfg.env} is not an Aurora environment (engine_type "
            f"{cfg.get('engine_type')!r}): run `tapdb aurora create {cfg.env}` first"
        )
    for key in ("host", "port", "user", "database"):
        section[key] = cfg.get(key)
    return settings_from_section(cfg.env, section)


# ------------------------------------------------------------------ providers


@attrs.define(repr=False)
class IamTokenProvider:
    """A new ``rds-db:connect`` token (signed locally, no network call) per call."""

    rds: Any
    host: str
    port: int
    user: str
    region: str

    def __call__(self) -> str:
        token: str = self.rds.generate_db_auth_token(
            DBHostname=self.host, Port=self.port, DBUsername=self.user, Region=self.region
        )
        return token

    def __repr__(self) -> str:
        return f"IamTokenProvider(user={self.user!r}, host={self.host!r}, region={self.region!r})"


@attrs.define(repr=False)
class SecretPasswordProvider:
    """The ``password`` key of a Secrets Manager secret, cached for ``ttl`` seconds;
    :meth:`invalidate` forgets it (after an authentication failure)."""

    secrets: Any
    secret_id: str
    ttl: float = DEFAULT_SECRET_TTL
    clock: Callable[[], float] = time.monotonic
    fetches: int = 0
    _cached: tuple[str, float] | None = None
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def __call__(self) -> str:
        with self._lock:
            now = self.clock()
            if self._cached is not None and now - self._cached[1] < self.ttl:
                return self._cached[0]
            raw = aws.call("GetSecretValue", self.secrets.get_secret_value, SecretId=self.secret_id)
            self.fetches += 1
            try:
                password = json.loads(raw["SecretString"])["password"]
            except (KeyError, TypeError, ValueError):
                raise ConfigurationError(
                    f"secret {self.secret_id} holds no JSON object with a 'password' key"
                ) from None
            self._cached = (str(password), now)
            return str(password)

    def invalidate(self) -> None:
        with self._lock:
            self._cached = None

    def __repr__(self) -> str:
        return f"SecretPasswordProvider(secret_id={self.secret_id!r})"


_AUTH_FAILED: Final = ("password authentication failed", "PAM authentication failed")


def _is_auth_failure(exc: BaseException) -> bool:
    message = str(exc)
    return isinstance(exc, psycopg.OperationalError) and any(m in message for m in _AUTH_FAILED)


def attach_password_provider(engine: Engine, provider: PasswordProvider) -> None:
    """Every new DBAPI connection of ``engine`` logs in with ``provider()``; after an
    authentication failure a provider with ``invalidate()`` is asked once more."""

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        cparams["password"] = provider()
        try:
            return dialect.connect(*cargs, **cparams)
        except psycopg.OperationalError as exc:
            invalidate = getattr(provider, "invalidate", None)
            if not _is_auth_failure(exc) or invalidate is None:
                raise
            invalidate()
            cparams["password"] = provider()
            return dialect.connect(*cargs, **cparams)


def provider_for(
    settings: AuroraSettings,
    *,
    user: str | None = None,
    host: str | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
) -> PasswordProvider:
    """The password provider of ``settings.auth`` (boto3 clients from the settings' region)."""
    target = aws.aws_target(settings.region or None, None, profile, endpoint_url)
    if settings.auth == "iam":
        return IamTokenProvider(
            rds=aws.client(target, "rds"),
            host=host or settings.host,
            port=settings.port,
            user=user or settings.user,
            region=target.region,
        )
    if not settings.secret_arn:
        raise ConfigurationError(
            f"environment {settings.env} uses auth secret but has no secret_arn in its config"
        )
    return SecretPasswordProvider(
        secrets=aws.client(target, "secretsmanager"), secret_id=settings.secret_arn
    )


def ssl_args(
    settings: AuroraSettings, *, fetch: Callable[[str], bytes] | None = None
) -> dict[str, Any]:
    """libpq TLS parameters: ``sslmode`` and, for verify-ca/verify-full, a checked CA bundle."""
    args: dict[str, Any] = {"sslmode": settings.sslmode}
    if settings.sslmode in ("verify-ca", "verify-full"):
        given = Path(settings.sslrootcert).expanduser() if settings.sslrootcert else None
        path = ensure_ca_bundle(given) if fetch is None else ensure_ca_bundle(given, fetch=fetch)
        args["sslrootcert"] = str(path)
    return args


def make_engine(
    settings: AuroraSettings,
    *,
    provider: PasswordProvider | None = None,
    read_only: bool = False,
    user: str | None = None,
    database: str | None = None,
    connect_args: Mapping[str, Any] | None = None,
    fetch_ca: Callable[[str], bytes] | None = None,
    **engine_kwargs: Any,
) -> Engine:
    """An engine on the writer (or, ``read_only``, the reader endpoint with read-only
    transactions). Its URL holds no password: ``provider`` (default: from the settings)
    supplies one per new connection."""
    from tapdb_core.db import connect_args as base_connect_args

    host = (settings.reader_host or settings.host) if read_only else settings.host
    login = user or settings.user
    url = URL.create(
        "postgresql+psycopg",
        username=login,
        host=host,
        port=settings.port,
        database=database or settings.database,
    )
    args: dict[str, Any] = {**base_connect_args(), **ssl_args(settings, fetch=fetch_ca)}
    if read_only:
        options = args.get("options", "")
        args["options"] = (options + " -c default_transaction_read_only=on").strip()
    args.update(connect_args or {})
    engine_kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(url, connect_args=args, **engine_kwargs)
    attach_password_provider(engine, provider or provider_for(settings, user=login, host=host))
    return engine


def open_database(settings: AuroraSettings, *, read_only: bool = False, **kwargs: Any) -> Any:
    """A :class:`tapdb_core.db.Database` on the writer, or (``read_only``) a handle on the
    reader endpoint for walks, finds and history; writes through it fail."""
    from tapdb_core.db import Database

    return Database(engine=make_engine(settings, read_only=read_only, **kwargs))
