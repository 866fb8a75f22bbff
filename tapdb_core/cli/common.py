"""What every command shares: environment and target resolution, connections,
error wording, output helpers, confirmation gates and password input.

Data goes to stdout, progress to stderr (only on a terminal), errors are one line
on stderr (printed by :mod:`tapdb_core.cli.main`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TextIO

import attrs
import psycopg
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from tapdb_core import config as tconfig
from tapdb_core.convert import to_json
from tapdb_core.errors import DatabaseUnavailableError, TapdbError, TransientError

KNOWN_ENVS: Final = ("dev", "test", "prod")
PROTECTED_ENVS: Final = frozenset({"prod", "production"})
DEFAULT_CONNECT_TIMEOUT: Final = 10
_ENV_VAR_RE: Final = re.compile(
    r"^TAPDB_([A-Z][A-Z0-9_]*?)_(" + "|".join(f.upper() for f in tconfig.FIELDS) + r")$"
)


# --------------------------------------------------------------------------- errors


class CliError(TapdbError):
    """A command failed for a reason the user can act on (exit code 1)."""

    exit_code = 1


class UsageError(TapdbError):
    """Bad input on the command line (exit code 2)."""

    exit_code = 2


class RefusedError(TapdbError):
    """A destructive command was not confirmed (exit code 1)."""

    exit_code = 1


class DatabaseMissingError(CliError):
    """The server is up but the database does not exist."""


class LoginRefusedError(CliError):
    """The server refused the user or password."""


def one_line(message: str) -> str:
    """Collapse a (possibly multi-line) message into one line."""
    parts = [p.strip() for p in str(message).splitlines() if p.strip()]
    return " | ".join(parts)


# --------------------------------------------------------------------------- output


def _json_default(value: object) -> object:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def print_json(data: object, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    had_effect("output")
    out.write(json.dumps(data, indent=2, default=_json_default, ensure_ascii=False) + "\n")


def out(line: str = "") -> None:
    """A line of data (stdout)."""
    had_effect("output")
    print(line, file=sys.stdout)


def warn(message: str) -> None:
    """A warning (stderr, always)."""
    print(f"tapdb: warning: {one_line(message)}", file=sys.stderr)


def note(message: str) -> None:
    """Extra information for a human (stderr, always)."""
    print(message, file=sys.stderr)


def progress(message: str) -> None:
    """A progress step: stderr, and only when stderr is a terminal."""
    if sys.stderr.isatty():
        print(f"... {message}", file=sys.stderr, flush=True)


def count_progress(label: str) -> Any:
    """A ``progress(done, total)`` callback that redraws one line on a terminal."""

    def report(done: int, total: int) -> None:
        if sys.stderr.isatty():
            end = "\n" if done >= total else ""
            print(f"\r... {label} {done}/{total}", end=end, file=sys.stderr, flush=True)

    return report


def as_dict(value: object) -> dict[str, Any]:
    """A JSON-ready dict of a result object of unknown shape (to_dict, attrs, mapping)."""
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        result = to_dict()
        if isinstance(result, Mapping):
            return dict(result)
    if attrs.has(type(value)):
        data = to_json(value)
        if isinstance(data, dict):
            return data
    if isinstance(value, Mapping):
        return dict(value)
    return {"result": str(value)}


# --------------------------------------------------------------------------- environments


def _config_file_for(args: argparse.Namespace) -> Path | None:
    explicit = getattr(args, "config", None)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.exists():
            raise UsageError(f"config file {path} (from --config) does not exist")
        return path
    database_name = getattr(args, "database_name", None)
    return next((p for p in tconfig.config_search_path(database_name) if p.exists()), None)


def env_sections(path: Path | None) -> dict[str, dict[str, Any]]:
    """Environment sections of a config file (either file shape)."""
    if path is None:
        return {}
    data = tconfig.read_config_file(path)
    envs = data.get("environments", data)
    if not isinstance(envs, Mapping):
        return {}
    return {str(k): dict(v) for k, v in envs.items() if isinstance(v, Mapping)}


def configured_envs(args: argparse.Namespace) -> tuple[set[str], Path | None]:
    """Environment names defined in the config file or by TAPDB_<ENV>_<FIELD> variables."""
    path = _config_file_for(args)
    names = set(env_sections(path))
    for key, value in os.environ.items():
        match = _ENV_VAR_RE.match(key)
        if match and value and not match.group(1).startswith("PG"):
            names.add(match.group(1).lower())
    return names, path


def env_name(args: argparse.Namespace, positional: str | None = None) -> tuple[str, str]:
    """The environment to use and where the choice came from."""
    if positional:
        return positional, "argument"
    chosen = getattr(args, "active_env", None)
    if chosen:
        return chosen, "--env"
    if os.environ.get("TAPDB_ENV"):
        return os.environ["TAPDB_ENV"], "$TAPDB_ENV"
    return "dev", "default"


def resolve_config(
    args: argparse.Namespace, positional: str | None = None
) -> tconfig.DatabaseConfig:
    """Validate the environment name and resolve its settings."""
    name, source = env_name(args, positional)
    try:
        tconfig.active_env(name)
    except TapdbError as exc:
        raise UsageError(str(exc)) from None
    known, path = configured_envs(args)
    if name not in KNOWN_ENVS and name not in known:
        others = sorted(set(KNOWN_ENVS) | known)
        where = f" or define it in {path}" if path else " or define it in a config file"
        raise UsageError(
            f"unknown environment {name!r} (from {source}): use one of {', '.join(others)}{where}"
        )
    cfg = tconfig.load_config(
        name,
        database_name=getattr(args, "database_name", None),
        config_file=getattr(args, "config", None),
    )
    _warn_if_readable(cfg.config_file)
    return cfg


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


@attrs.frozen(kw_only=True)
class Target:
    """Where an environment's database really is (``DATABASE_URL`` applied)."""

    env: str
    url: URL
    from_database_url: bool
    audit_user: str = ""
    """``audit_user`` of the environment's config (or ``TAPDB_<ENV>_AUDIT_USER``)."""

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


def target_of(cfg: tconfig.DatabaseConfig) -> Target:
    return Target(
        env=cfg.env,
        url=make_url(cfg.url()),
        from_database_url=bool(cfg.url_override),
        audit_user=cfg.get("audit_user"),
    )


def resolve_target(args: argparse.Namespace, positional: str | None = None) -> Target:
    cfg = resolve_config(args, positional)
    target = target_of(cfg)
    remember(target)
    return target


# --------------------------------------------------------------------------- connections

_last_target: list[Target] = []


def remember(target: Target) -> None:
    """The target errors are explained against (``server at host:port ...``)."""
    _last_target[:] = [target]


def last_target() -> Target | None:
    return _last_target[0] if _last_target else None


def connect_timeout() -> int:
    raw = os.environ.get("TAPDB_CONNECT_TIMEOUT", "")
    try:
        return max(1, int(raw)) if raw else DEFAULT_CONNECT_TIMEOUT
    except ValueError:
        raise UsageError(
            f"TAPDB_CONNECT_TIMEOUT must be a number of seconds, not {raw!r}"
        ) from None


def make_engine(url: URL, *, autocommit: bool = False) -> Engine:
    from tapdb_core.db import connect_args

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


def ping(engine: Engine, target: Target) -> None:
    """Open and close one connection, explaining a failure."""
    with connection_errors(target), engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def admin_engine(target: Target) -> Engine:
    """An autocommit engine on the server's maintenance database (``postgres``, else
    ``template1``) for CREATE/DROP DATABASE."""
    last: TapdbError | None = None
    for name in ("postgres", "template1"):
        engine = make_engine(target.with_database(name), autocommit=True)
        try:
            ping(engine, target)
        except DatabaseMissingError as exc:
            engine.dispose()
            last = exc
            continue
        return engine
    assert last is not None
    raise last


def database_exists(admin: Engine, name: str) -> bool:
    with admin.connect() as conn:
        found = conn.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).first()
    return found is not None


_audit_as: list[str] = []


def set_audit_as(user: str | None) -> None:
    """The ``--as USER`` of this command (None: not given)."""
    if user is not None and not user.strip():
        raise UsageError("--as needs a non-empty user name")
    _audit_as[:] = [user.strip()] if user is not None else []


def actor_and_source(target: Target | None = None) -> tuple[str, str]:
    """Who the audit trail records and why: ``--as``, then ``$TAPDB_AUDIT_USER``,
    then ``audit_user`` of the environment's config, then the OS user."""
    if _audit_as:
        return _audit_as[0], "--as"
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


# --------------------------------------------------------------------------- prompts


def stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _ask(prompt: str) -> str:
    sys.stderr.write(prompt)
    sys.stderr.flush()
    had_effect("read stdin")
    line = sys.stdin.readline()
    if not line:
        raise RefusedError("aborted: no answer (end of input)")
    return line.rstrip("\n")


def add_guard_options(parser: argparse.ArgumentParser, *, prod_name: bool = True) -> None:
    parser.add_argument(
        "-f",
        "--force",
        "--yes",
        "-y",
        dest="force",
        action="store_true",
        help="do not ask for confirmation (needed when not on a terminal)",
    )
    if prod_name:
        parser.add_argument(
            "--confirm-name",
            metavar="NAME",
            help="the database name, typed out (required for prod when not on a terminal)",
        )


def confirm_destructive(
    args: argparse.Namespace,
    target: Target,
    action: str,
    *,
    prod_name: bool = True,
    confirm_flag: str = "--force",
) -> None:
    """Gate a destructive action on a database; raise :class:`RefusedError` unless confirmed.

    On a terminal the user answers y/N (skipped with ``--force``); elsewhere
    ``--force`` is required. For a protected environment (prod) the database name
    must also be typed on the terminal or given with ``--confirm-name``: ``--force``
    never skips that.
    """
    what = f"{action} (environment {target.env}, database {target.database!r} on {target.where})"
    gate(
        args,
        what,
        type_name=target.database if prod_name and target.protected else None,
        confirm_flag=confirm_flag,
    )


def gate(
    args: argparse.Namespace,
    what: str,
    *,
    type_name: str | None = None,
    confirm_flag: str = "--force",
) -> None:
    """Confirmation for ``what``; with ``type_name`` the user must type that name."""
    force = bool(getattr(args, "force", False))
    interactive = stdin_is_tty()
    if type_name is not None:
        given = getattr(args, "confirm_name", None)
        if given is not None:
            if given != type_name:
                raise RefusedError(
                    f"refused to {what}: --confirm-name {given!r} is not the database name"
                )
            return
        if not interactive:
            raise RefusedError(
                f"refused to {what}: this environment needs the database name typed out; "
                f"not on a terminal, so pass --confirm-name {type_name}"
            )
        typed = _ask(f"{what}\nThis cannot be undone. Type the database name to confirm: ")
        if typed.strip() != type_name:
            raise RefusedError(
                f"aborted: {typed.strip()!r} is not {type_name!r}; nothing was changed"
            )
        return
    if force:
        return
    if not interactive:
        raise RefusedError(f"refused to {what} without confirmation: pass {confirm_flag}")
    answer = _ask(f"{what}\nThis cannot be undone. Continue? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise RefusedError("aborted: not confirmed; nothing was changed")


def read_new_password(args: argparse.Namespace, who: str) -> str:
    """A password from stdin (``--password-stdin``) or a hidden prompt with confirmation."""
    had_effect("read a password")
    if getattr(args, "password_stdin", False):
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin: stdin held no password (empty line)")
        return password
    if not stdin_is_tty():
        raise UsageError(
            "not on a terminal, so no password prompt: pipe the password with --password-stdin"
        )
    first = getpass.getpass(f"New password for {who}: ")
    if not first:
        raise UsageError("empty password refused")
    second = getpass.getpass("Repeat the password: ")
    if first != second:
        raise UsageError("the two passwords differ; nothing was changed")
    return first


# --------------------------------------------------------------------------- files


def write_private_file(path: Path, content: str) -> None:
    """Write ``content`` atomically to a file created with mode 0600 from the start."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
        warn(f"could not write the operations log {path}: {exc.strerror}")


# --------------------------------------------------------------------------- databases


def require_schema(engine: Engine, target: Target) -> None:
    """Fail with the command to run when the database is not at the code's revision."""
    from tapdb_core import migrate
    from tapdb_core.db import require_known_revision

    with connection_errors(target), engine.connect() as conn:
        current = migrate.current_revision(conn)
    require_known_revision(current)
    head = migrate.head_revision()
    if current is None:
        raise CliError(
            f"database {target.database!r} on {target.where} has no tapdb schema: "
            f"run `tapdb db schema apply {target.env}` (or `tapdb db setup {target.env}`)"
        )
    if current != head:
        raise CliError(
            f"database {target.database!r} is at revision {current}, this tapdb needs {head}: "
            f"run `tapdb db schema migrate {target.env}`"
        )


def open_engine(target: Target, *, need_schema: bool = True) -> Engine:
    """An engine on the target database, checked to answer (and to be migrated)."""
    engine = make_engine(target.url)
    try:
        ping(engine, target)
        if need_schema:
            require_schema(engine, target)
    except BaseException:
        engine.dispose()
        raise
    return engine


@contextmanager
def transaction(engine: Engine, target: Target) -> Iterator[Any]:
    """A transaction with the audit user set, committed on success; driver errors
    become tapdb errors (retryable ones included: :func:`run_command` runs the
    whole command again for those while it has had no effects)."""
    from tapdb_core.db import Database

    database = Database(engine=engine, _schema_checked=True)  # open_engine checked it
    with connection_errors(target), database.begin(user=actor(target)) as conn:
        yield conn
        if conn.execute(text("SELECT txid_current_if_assigned() IS NULL")).scalar():
            conn.info[_READ_ONLY] = True  # read only: committing it changes nothing


# --------------------------------------------------------------------------- retries

CLI_RETRIES: Final = 3
_effects: list[str] = []


def had_effect(what: str) -> None:
    """Record something this command did that running it again would repeat."""
    _effects.append(what)


def run_command(run: Callable[[], int]) -> int:
    """``run()``, run again from the start when it fails with a retryable error
    (deadlock, serialization failure, lost connection ...), as long as it has
    not yet committed a write, read stdin or printed data: a command is one
    :meth:`~tapdb_core.db.Database.run_in_transaction` ``fn`` until it has had
    effects. Afterwards the error is reported (it says to run the command again)."""
    from tapdb_core.db import retrying

    _effects.clear()

    def may_retry(exc: TapdbError) -> bool:
        if _effects:
            return False
        progress(f"{one_line(str(exc))}: running the command again")
        return True

    return retrying(run, retries=CLI_RETRIES, may_retry=may_retry)
