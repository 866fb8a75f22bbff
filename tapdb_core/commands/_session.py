"""What every command shares: the target (where the database is), who runs the
command, one ``session(target)`` that opens and disposes engines, the schema
check, and the explanation of a failure to connect."""

from __future__ import annotations

import datetime as dt
import getpass
import os
import re
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import attrs
import psycopg
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from tapdb_core import config as tconfig
from tapdb_core import migrate
from tapdb_core.db import Database, check_schema, connect_args
from tapdb_core.errors import (
    DatabaseMissingError,
    DatabaseUnavailableError,
    LoginRefusedError,
    SchemaNotReadyError,
    SchemaVersionError,
    TapdbError,
    TapdbWarning,
    TransientError,
    UsageError,
)

KNOWN_ENVS: Final = ("dev", "test", "prod")
PROTECTED_ENVS: Final = frozenset({"prod", "production"})
DEFAULT_CONNECT_TIMEOUT: Final = 10
_ENV_VAR_RE: Final = re.compile(
    r"^TAPDB_([A-Z][A-Z0-9_]*?)_(" + "|".join(f.upper() for f in tconfig.FIELDS) + r")$"
)


def one_line(message: str) -> str:
    """Collapse a (possibly multi-line) message into one line."""
    parts = [p.strip() for p in str(message).splitlines() if p.strip()]
    return " | ".join(parts)


def warn(message: str) -> None:
    warnings.warn(one_line(message), TapdbWarning, stacklevel=3)


# --------------------------------------------------------------------------- targets


@attrs.frozen(kw_only=True)
class Target:
    """Where an environment's database really is (``DATABASE_URL`` applied)."""

    env: str
    url: URL
    from_database_url: bool
    audit_user: str = ""
    """``audit_user`` of the environment's config (or ``TAPDB_<ENV>_AUDIT_USER``)."""
    audit_as: str | None = None
    """Who this command acts as, given explicitly (the CLI's ``--as``); wins over all."""

    @classmethod
    def from_url(cls, url: str | URL, *, env: str = "dev", audit_as: str | None = None) -> Target:
        """A target for a database URL (``postgresql://...``)."""
        parsed = url if isinstance(url, URL) else make_url(tconfig.normalise_url(url))
        return cls(env=env, url=parsed, from_database_url=True, audit_as=audit_as)

    @property
    def host(self) -> str:
        socket_dir = self.url.query.get("host")
        if self.url.host:
            return self.url.host
        if isinstance(socket_dir, str):
            return socket_dir
        return "localhost"

    @property
    def port(self) -> int:
        if self.url.port:
            return self.url.port
        raw = self.url.query.get("port")  # unix-socket form: ?host=/dir&port=N
        return int(raw) if isinstance(raw, str) and raw.isdigit() else 5432

    @property
    def user(self) -> str:
        return self.url.username or ""

    @property
    def password(self) -> str:
        return self.url.password or ""

    @property
    def database(self) -> str:
        if not self.url.database:
            raise UsageError("DATABASE_URL names no database (postgresql://user@host:port/NAME)")
        return self.url.database

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def protected(self) -> bool:
        return self.env in PROTECTED_ENVS

    def masked_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def with_database(self, database: str) -> URL:
        return self.url.set(database=database)


def target_of(cfg: tconfig.DatabaseConfig, *, audit_as: str | None = None) -> Target:
    return Target(
        env=cfg.env,
        url=make_url(cfg.url()),
        from_database_url=bool(cfg.url_override),
        audit_user=cfg.get("audit_user"),
        audit_as=audit_as,
    )


def env_sections(path: Path | None) -> dict[str, dict[str, Any]]:
    """Environment sections of a config file (either file shape)."""
    if path is None:
        return {}
    data = tconfig.read_config_file(path)
    envs = data.get("environments", data)
    if not isinstance(envs, Mapping):
        return {}
    return {str(k): dict(v) for k, v in envs.items() if isinstance(v, Mapping)}


def config_file(config: str | Path | None, database_name: str | None) -> Path | None:
    """The config file in use: ``config`` (must exist), else the first found."""
    if config:
        path = Path(config).expanduser()
        if not path.exists():
            raise UsageError(f"config file {path} (from --config) does not exist")
        return path
    return next((p for p in tconfig.config_search_path(database_name) if p.exists()), None)


def configured_envs(path: Path | None) -> set[str]:
    """Environment names defined in the config file or by TAPDB_<ENV>_<FIELD> variables."""
    names = set(env_sections(path))
    for key, value in os.environ.items():
        match = _ENV_VAR_RE.match(key)
        if match and value and not match.group(1).startswith("PG"):
            names.add(match.group(1).lower())
    return names


def resolve_config(
    env: str,
    *,
    source: str = "argument",
    config: str | Path | None = None,
    database_name: str | None = None,
) -> tconfig.DatabaseConfig:
    """Validate the environment name (a known one or one the configuration
    defines) and resolve its settings."""
    try:
        tconfig.active_env(env)
    except TapdbError as exc:
        raise UsageError(str(exc)) from None
    path = config_file(config, database_name)
    known = configured_envs(path)
    if env not in KNOWN_ENVS and env not in known:
        others = sorted(set(KNOWN_ENVS) | known)
        where = f" or define it in {path}" if path else " or define it in a config file"
        raise UsageError(
            f"unknown environment {env!r} (from {source}): use one of {', '.join(others)}{where}"
        )
    cfg = tconfig.load_config(env, database_name=database_name, config_file=config)
    _warn_if_readable(cfg.config_file)
    return cfg


def target_for(
    env: str = "dev",
    *,
    config: str | Path | None = None,
    database_name: str | None = None,
    audit_as: str | None = None,
) -> Target:
    """The target of environment ``env`` (resolved as ``tapdb`` resolves it)."""
    cfg = resolve_config(env, config=config, database_name=database_name)
    return target_of(cfg, audit_as=audit_as)


_warned: set[Path] = set()


def _warn_if_readable(path: Path | None) -> None:
    """A config file may hold passwords: say so when others can read it (once)."""
    if path is None or path in _warned:
        return
    _warned.add(path)
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return
    if mode & 0o077:
        warn(
            f"config file {path} is readable by other users (mode {mode:04o}); "
            f"it may hold passwords: chmod 600 {path}"
        )


# --------------------------------------------------------------------------- who am I


def actor_and_source(target: Target | None = None) -> tuple[str, str]:
    """Who the audit trail records and why: ``audit_as`` (``--as``), then
    ``$TAPDB_AUDIT_USER``, then ``audit_user`` of the environment's config, then
    the OS user. The one place that answers "who am I"."""
    if target is not None and target.audit_as is not None:
        if not target.audit_as.strip():
            raise UsageError("--as needs a non-empty user name")
        return target.audit_as.strip(), "--as"
    from_env = os.environ.get("TAPDB_AUDIT_USER", "").strip()
    if from_env:
        return from_env, "$TAPDB_AUDIT_USER"
    if target is not None and target.audit_user.strip():
        return target.audit_user.strip(), f"audit_user of environment {target.env}"
    try:
        return os.environ.get("USER") or getpass.getuser(), "$USER"
    except (KeyError, OSError):
        return "tapdb-cli", "default"


def actor(target: Target | None = None) -> str:
    """Who runs the command, for the audit trail."""
    return actor_and_source(target)[0]


# --------------------------------------------------------------------------- effects
# A command that failed with a retryable error may be run again from the start
# (the CLI does) only while it has done nothing a rerun would repeat.

_effect: list[str] = []


def had_effect(what: str) -> None:
    """Record something the running command did that running it again would repeat."""
    if not _effect:
        _effect.append(what)


def forget_effects() -> None:
    _effect.clear()


def has_effects() -> bool:
    return bool(_effect)


# --------------------------------------------------------------------------- engines


def connect_timeout() -> int:
    raw = os.environ.get("TAPDB_CONNECT_TIMEOUT", "")
    try:
        return max(1, int(raw)) if raw else DEFAULT_CONNECT_TIMEOUT
    except ValueError:
        raise UsageError(
            f"TAPDB_CONNECT_TIMEOUT must be a number of seconds, not {raw!r}"
        ) from None


def make_engine(url: URL, *, autocommit: bool = False) -> Engine:
    kwargs: dict[str, Any] = {
        "poolclass": NullPool,
        # keepalives and tcp_user_timeout: a frozen link fails the command, not hangs it
        "connect_args": {
            **connect_args(connect_timeout=connect_timeout()),
            "application_name": "tapdb-cli",
        },
    }
    if autocommit:
        kwargs["isolation_level"] = "AUTOCOMMIT"
        # its statements (CREATE DATABASE ...) take effect at once: no rerun after
        had_effect("an autocommit connection")
    engine = create_engine(url, **kwargs)
    event.listen(engine, "commit", _on_commit)
    return engine


_READ_ONLY: Final = "tapdb_cli_read_only"


def _on_commit(conn: Connection) -> None:
    # any commit counts as an effect unless transaction() saw that nothing was written
    if not conn.info.pop(_READ_ONLY, False):
        had_effect("a commit")


# --------------------------------------------------------------------------- connection errors


def _driver_error(exc: BaseException) -> BaseException | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, psycopg.Error):
            return current
        if isinstance(current, DBAPIError) and isinstance(current.orig, BaseException):
            return current.orig
        current = current.__cause__ or current.__context__
    return None


_DB_MISSING_RE: Final = re.compile(r'database "([^"]*)" does not exist')
_LOGIN_MARKERS: Final = (
    "password authentication failed",
    "no password supplied",
    "authentication failed",
    "pg_hba.conf",
)
_ROLE_MISSING_RE: Final = re.compile(r'role "([^"]*)" does not exist')


def is_connection_error(exc: BaseException) -> bool:
    """True for a failure to open a connection (as opposed to a failing statement)."""
    if isinstance(exc, TransientError):
        return False  # an open connection broke: the server was reachable
    if isinstance(exc, DatabaseUnavailableError):
        return True
    orig = _driver_error(exc)
    return isinstance(orig, psycopg.OperationalError) and getattr(orig, "sqlstate", None) is None


def _reason(message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "no details"
    if "failed:" in first:
        first = first.rsplit("failed:", 1)[1]
    return first.replace("FATAL:", "").strip() or "no details"


def explain_connection_error(exc: BaseException, target: Target | None) -> TapdbError:
    """Say which of unreachable / no such database / login refused happened."""
    orig = _driver_error(exc)
    message = str(orig if orig is not None else exc)
    where = f"the server at {target.where}" if target else "the server"
    env = target.env if target else "ENV"
    missing = _DB_MISSING_RE.search(message)
    if missing:
        return DatabaseMissingError(
            f"database {missing.group(1)!r} does not exist on {where}: "
            f"create it with `tapdb db create {env}` (or `tapdb db setup {env}`)"
        )
    role = _ROLE_MISSING_RE.search(message)
    if role or any(marker in message for marker in _LOGIN_MARKERS):
        user = target.user if target else "?"
        return LoginRefusedError(
            f"{where} refused the login as user {user!r} ({_reason(message)}): "
            f"check the user and password settings (`tapdb --env {env} info`)"
        )
    return DatabaseUnavailableError(
        f"{where} is unreachable ({_reason(message)}): start it "
        f"(`tapdb pg start-local {env}` for a local cluster) or check host and port "
        f"(`tapdb --env {env} info`)"
    )


@contextmanager
def connection_errors(target: Target) -> Iterator[None]:
    """Turn a failure to connect into a one-line explanation."""
    try:
        yield
    except (DBAPIError, psycopg.Error, DatabaseUnavailableError) as exc:
        if is_connection_error(exc):
            raise explain_connection_error(exc, target) from exc
        raise


# --------------------------------------------------------------------------- the schema check


def require_schema(conn: Connection, target: Target) -> None:
    """Fail with the command to run when the database is not at the code's
    revision. :func:`tapdb_core.db.check_schema` decides; this only names the
    environment in the advice."""
    try:
        check_schema(conn)
    except SchemaNotReadyError:
        raise
    except SchemaVersionError:
        current = migrate.current_revision(conn)
        if current is not None and not migrate.is_known_revision(current):
            raise  # newer code migrated it: migrating is the wrong advice
        if current is None:
            raise SchemaNotReadyError(
                f"database {target.database!r} on {target.where} has no tapdb schema: "
                f"run `tapdb db schema apply {target.env}` (or `tapdb db setup {target.env}`)"
            ) from None
        raise SchemaNotReadyError(
            f"database {target.database!r} is at revision {current}, this tapdb needs "
            f"{migrate.head_revision()}: run `tapdb db schema migrate {target.env}`"
        ) from None


# --------------------------------------------------------------------------- sessions


@attrs.frozen
class Session:
    """An open engine on a target's database; transactions record the command's actor."""

    target: Target
    engine: Engine

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A plain connection (no audit user), connection failures explained."""
        with connection_errors(self.target), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction with the audit user set, committed on success; driver
        errors become tapdb errors."""
        database = Database(engine=self.engine, _schema_checked=True)  # session() checked
        with connection_errors(self.target), database.begin(user=actor(self.target)) as conn:
            yield conn
            if conn.execute(text("SELECT txid_current_if_assigned() IS NULL")).scalar():
                conn.info[_READ_ONLY] = True  # read only: committing it changes nothing


@contextmanager
def session(target: Target, *, need_schema: bool = True) -> Iterator[Session]:
    """An engine on the target database, checked to answer (and, with
    ``need_schema``, to be at the code's revision), disposed on exit. The one
    place commands open and close engines."""
    engine = make_engine(target.url)
    try:
        with connection_errors(target), engine.connect() as conn:
            if need_schema:
                require_schema(conn, target)
            else:
                conn.execute(text("SELECT 1"))
        yield Session(target=target, engine=engine)
    finally:
        engine.dispose()


@contextmanager
def admin_session(target: Target) -> Iterator[Session]:
    """An autocommit session on the server's maintenance database (``postgres``,
    else ``template1``), for CREATE/DROP DATABASE."""
    last: TapdbError | None = None
    for name in ("postgres", "template1"):
        engine = make_engine(target.with_database(name), autocommit=True)
        try:
            try:
                with connection_errors(target), engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
            except DatabaseMissingError as exc:
                last = exc
                continue
            yield Session(target=target, engine=engine)
            return
        finally:
            engine.dispose()
    assert last is not None
    raise last


def database_exists(admin: Session, name: str) -> bool:
    with admin.connect() as conn:
        found = conn.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).first()
    return found is not None


# --------------------------------------------------------------------------- the operations log


def oplog(target: Target, operation: str, details: str = "") -> None:
    """One line per destructive or database operation in ~/.config/tapdb/operations.log."""
    path = Path(os.environ.get("TAPDB_OPLOG") or "~/.config/tapdb/operations.log").expanduser()
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    line = (
        f"{stamp} | {actor(target)} | {target.env} | {operation} | {target.masked_url()} {details}"
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(one_line(line) + "\n")
    except OSError as exc:
        print(
            f"tapdb: warning: could not write the operations log {path}: {exc.strerror}",
            file=sys.stderr,
        )
