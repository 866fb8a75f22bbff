"""Database handle: an engine, a per-transaction audit user, a schema revision check,
and a retry loop for transactions that lost a race."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, TypeVar

import attrs
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from tapdb_core import migrate, template_cache
from tapdb_core.config import load_config, normalise_url
from tapdb_core.dberrors import translate, translated
from tapdb_core.errors import (
    CommitOutcomeUnknownError,
    ConnectionLostError,
    SchemaVersionError,
    TapdbError,
    ValidationError,
    Violation,
)

T = TypeVar("T")

ISOLATION_LEVELS: Final = frozenset({"READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"})

#: seconds; libpq gives up opening a connection after this
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
#: TCP keepalive probes: the first after this many idle seconds ...
DEFAULT_KEEPALIVES_IDLE: Final = 10
#: ... then one every this many seconds ...
DEFAULT_KEEPALIVES_INTERVAL: Final = 5
#: ... and the link is dead after this many unanswered ones (about 25 s in all)
DEFAULT_KEEPALIVES_COUNT: Final = 3
#: seconds sent data may stay unacknowledged before the kernel drops the link
DEFAULT_TCP_USER_TIMEOUT: Final = 30.0


def set_audit_user(conn: Connection, user: str | None) -> None:
    """Name the user the audit trail records for the rest of this transaction."""
    conn.execute(text("SELECT set_config('tapdb.audit_user', :user, true)"), {"user": user or ""})


_START = text(
    "SELECT set_config('tapdb.audit_user', :user, true),"
    " (SELECT generation FROM tapdb_template_generation WHERE id = 1) AS generation"
)


def start_transaction(conn: Connection, user: str | None, *, at_head: bool = True) -> None:
    """Set the audit user and, in the same round trip, read the template
    generation the template cache checks once per transaction. ``at_head=False``
    (a database not known to be migrated, e.g. before ``db setup``) only sets the
    user; the cache then reads the generation itself if it is used."""
    if not at_head:
        set_audit_user(conn, user)
        return
    generation = conn.execute(_START, {"user": user or ""}).one().generation
    template_cache.note_generation(conn, int(generation))


def require_known_revision(current: str | None) -> None:
    """Refuse a database stamped with a revision this code has never heard of:
    migrating it cannot work, and advising to is wrong."""
    if current is not None and not migrate.is_known_revision(current):
        raise SchemaVersionError(
            f"database is at revision {current}, which this code does not know: it was "
            "migrated by newer tapdb_core code (upgrade tapdb_core) or is not a tapdb database"
        )


def check_schema(bind: Connection | Engine) -> None:
    """Fail clearly when the database is not at the revision this code needs."""
    try:
        current = migrate.current_revision(bind)
    except DBAPIError as exc:
        ours = translate(exc)
        if ours is None:
            raise
        raise ours from exc
    require_known_revision(current)
    head = migrate.head_revision()
    if current != head:
        raise SchemaVersionError(
            f"database is at {current or 'no revision (empty)'}, this code needs {head}: "
            "run `tapdb db schema migrate`"
        )


def _isolation(level: str | None) -> str | None:
    if level is None:
        return None
    normalised = " ".join(level.replace("_", " ").upper().split())
    if normalised not in ISOLATION_LEVELS:
        raise ValidationError(
            "unknown isolation level",
            [
                Violation(
                    path="/isolation_level",
                    message=f"{level!r} is not one of {sorted(ISOLATION_LEVELS)}",
                )
            ],
        )
    return normalised


def default_backoff(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): full jitter under
    a cap that doubles from 20 ms to 1 s, so racers that collided spread out."""
    cap = min(1.0, 0.02 * (2**attempt))
    return random.uniform(0.0, cap)  # noqa: S311 - spreading retries, not a secret


def retrying(
    fn: Callable[[], T],
    *,
    retries: int = 3,
    backoff: Callable[[int], float] = default_backoff,
    sleep: Callable[[float], None] = time.sleep,
    may_retry: Callable[[TapdbError], bool] | None = None,
) -> T:
    """``fn()``, called again (up to ``retries`` more times) while it raises a
    :class:`TapdbError` whose ``retryable`` is true; the last error is re-raised.

    ``fn`` must be safe to repeat: a whole transaction, never part of one.
    ``may_retry`` can veto a retry (the CLI does once a command has had effects).
    """
    if retries < 0:
        raise ValidationError(
            "retries must be >= 0", [Violation(path="/retries", message=str(retries))]
        )
    attempt = 0
    while True:
        try:
            return fn()
        except TapdbError as exc:
            if not exc.retryable or attempt >= retries:
                raise
            if may_retry is not None and not may_retry(exc):
                raise
        sleep(backoff(attempt))
        attempt += 1


@attrs.define
class Database:
    """An engine plus tapdb's conventions. Transactions stay the caller's."""

    engine: Engine
    app_username: str | None = None
    _schema_checked: bool = attrs.field(default=False, alias="_schema_checked")
    #: the revision check really ran and passed (``_schema_checked=True`` given by
    #: a caller only says "do not check", e.g. for ``db setup`` on an empty database)
    _at_head: bool = attrs.field(default=False, init=False)

    def ensure_schema(self) -> None:
        if not self._schema_checked:
            check_schema(self.engine)
            self._schema_checked = True
            self._at_head = True

    @contextmanager
    def begin(
        self, user: str | None = None, *, isolation_level: str | None = None
    ) -> Iterator[Connection]:
        """A transaction (committed on success) with the audit user set for it only.

        ``isolation_level`` is ``"READ COMMITTED"`` (PostgreSQL's default),
        ``"REPEATABLE READ"`` or ``"SERIALIZABLE"``; under the last two, expect
        :class:`~tapdb_core.errors.SerializationError` and retry
        (:meth:`run_in_transaction` does). A connection lost during COMMIT raises
        :class:`~tapdb_core.errors.CommitOutcomeUnknownError`: it may have committed.
        """
        level = _isolation(isolation_level)
        self.ensure_schema()
        body_done = False
        try:
            with translated(), self.engine.connect() as conn:
                if level is not None:
                    conn.execution_options(isolation_level=level)
                with conn.begin():
                    start_transaction(conn, user or self.app_username, at_head=self._at_head)
                    yield conn
                    body_done = True
        except ConnectionLostError as exc:
            if not body_done:
                raise
            raise CommitOutcomeUnknownError(
                f"{exc}; the connection was lost during COMMIT, so the transaction may "
                "or may not have committed: check before running it again"
            ) from exc

    @contextmanager
    def connect(self, user: str | None = None) -> Iterator[Connection]:
        """A connection whose first transaction the caller commits or rolls back."""
        self.ensure_schema()
        with translated(), self.engine.connect() as conn:
            start_transaction(conn, user or self.app_username, at_head=self._at_head)
            yield conn

    def run_in_transaction(
        self,
        fn: Callable[[Connection], T],
        *,
        retries: int = 3,
        user: str | None = None,
        isolation_level: str | None = None,
        backoff: Callable[[int], float] = default_backoff,
        sleep: Callable[[float], None] = time.sleep,
    ) -> T:
        """``fn(conn)`` in a fresh :meth:`begin` transaction, run again from the
        start (up to ``retries`` more times, after a short jittered pause) when it
        fails with a retryable error: deadlock, serialization failure, lock
        timeout, lost connection. Returns what ``fn`` returns; re-raises the last
        error when out of retries. ``fn`` must not have effects outside the
        transaction (they would repeat).
        """

        def attempt() -> T:
            with self.begin(user, isolation_level=isolation_level) as conn:
                return fn(conn)

        return retrying(attempt, retries=retries, backoff=backoff, sleep=sleep)

    def dispose(self) -> None:
        self.engine.dispose()


def _millis(name: str, seconds: float | None) -> int | None:
    if seconds is None:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValidationError(
            f"{name} must be a number of seconds >= 0",
            [Violation(path=f"/{name}", message=repr(seconds))],
        )
    # 0 means "no limit" to PostgreSQL; a tiny positive value must not round to it
    return max(1, round(seconds * 1000)) if seconds > 0 else 0


def connect_args(
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    statement_timeout: float | None = None,
    lock_timeout: float | None = None,
    keepalives_idle: int = DEFAULT_KEEPALIVES_IDLE,
    keepalives_interval: int = DEFAULT_KEEPALIVES_INTERVAL,
    keepalives_count: int = DEFAULT_KEEPALIVES_COUNT,
    tcp_user_timeout: float = DEFAULT_TCP_USER_TIMEOUT,
) -> dict[str, Any]:
    """libpq connection parameters so that a dead server or a frozen link fails a
    call within about half a minute instead of hanging (all times in seconds)."""
    args: dict[str, Any] = {
        # libpq takes whole seconds here (and treats 1 as 2)
        "connect_timeout": max(1, math.ceil(connect_timeout)),
        "keepalives": 1,
        "keepalives_idle": keepalives_idle,
        "keepalives_interval": keepalives_interval,
        "keepalives_count": keepalives_count,
        "tcp_user_timeout": _millis("tcp_user_timeout", tcp_user_timeout),
    }
    options = [
        f"-c {name}={ms}"
        for name, ms in (
            ("statement_timeout", _millis("statement_timeout", statement_timeout)),
            ("lock_timeout", _millis("lock_timeout", lock_timeout)),
        )
        if ms is not None
    ]
    if options:
        args["options"] = " ".join(options)
    return args


def connect(
    url_or_env: str | None = None,
    *,
    app_username: str | None = None,
    pool_size: int = 5,
    max_overflow: int = 10,
    pool_timeout: float = 30,
    pool_recycle: int = 1800,
    echo: bool = False,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    statement_timeout: float | None = None,
    lock_timeout: float | None = None,
    keepalives_idle: int = DEFAULT_KEEPALIVES_IDLE,
    keepalives_interval: int = DEFAULT_KEEPALIVES_INTERVAL,
    keepalives_count: int = DEFAULT_KEEPALIVES_COUNT,
    tcp_user_timeout: float = DEFAULT_TCP_USER_TIMEOUT,
    **engine_kwargs: Any,
) -> Database:
    """Open a :class:`Database` from a URL, or from an environment's config (``dev``...).

    All times are in seconds (fractions allowed). ``statement_timeout`` and
    ``lock_timeout`` (default: none, the server's setting) apply to every
    statement of every connection; exceeding them raises
    :class:`~tapdb_core.errors.StatementTimeoutError` (not retryable) and
    :class:`~tapdb_core.errors.LockTimeoutError` (retryable). TCP keepalives and
    ``tcp_user_timeout`` make a call on a dead or frozen network link fail in
    about 30 s (:class:`~tapdb_core.errors.ConnectionLostError`). Entries of an
    explicit ``connect_args`` win over these.
    """
    if url_or_env and "://" in url_or_env:
        url = normalise_url(url_or_env)
    else:
        url = load_config(url_or_env).url()
    ours = connect_args(
        connect_timeout=connect_timeout,
        statement_timeout=statement_timeout,
        lock_timeout=lock_timeout,
        keepalives_idle=keepalives_idle,
        keepalives_interval=keepalives_interval,
        keepalives_count=keepalives_count,
        tcp_user_timeout=tcp_user_timeout,
    )
    given: Mapping[str, Any] = engine_kwargs.pop("connect_args", None) or {}
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_recycle=pool_recycle,
        pool_pre_ping=True,
        echo=echo,
        connect_args={**ours, **given},
        **engine_kwargs,
    )
    return Database(engine=engine, app_username=app_username)
