"""Retryable errors come out as tapdb errors, ``run_in_transaction`` retries them,
and connections carry timeouts and keepalives (real PostgreSQL, real races)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from tapdb_core import instances
from tapdb_core.db import Database, connect
from tapdb_core.errors import (
    CommitOutcomeUnknownError,
    ConflictError,
    ConnectionLostError,
    DeadlockError,
    LockTimeoutError,
    SerializationError,
    StatementTimeoutError,
    TapdbError,
    TransientError,
    ValidationError,
)

ISOLATIONS = ["READ COMMITTED", "REPEATABLE READ"]
SINGLETON = "workflow/assay/accessioning/1.0/"


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def db(engine: Engine) -> Iterator[Database]:
    """A library handle on a fresh database with a two-row scratch table."""
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE retry_probe (id int PRIMARY KEY, v int NOT NULL)"))
        conn.execute(text("INSERT INTO retry_probe VALUES (1, 0), (2, 0)"))
    handle = connect(_url(engine), pool_size=8)
    yield handle
    handle.dispose()


def _value(conn: Connection, row: int = 1) -> int:
    return int(
        conn.execute(text("SELECT v FROM retry_probe WHERE id = :i"), {"i": row}).scalar_one()
    )


def _bump_elsewhere(engine: Engine, row: int = 1) -> None:
    with engine.begin() as other:
        other.execute(text("UPDATE retry_probe SET v = v + 1 WHERE id = :i"), {"i": row})


def _run_threads(workers: list[Callable[[], Any]]) -> tuple[list[Any], list[BaseException]]:
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def wrap(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                value = fn()
            except BaseException as exc:  # reported to the main thread
                with lock:
                    errors.append(exc)
            else:
                with lock:
                    results.append(value)

        return run

    threads = [threading.Thread(target=wrap(w)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    return results, errors


def test_deadlock_between_two_connections_is_a_retryable_deadlock_error(
    db: Database,
) -> None:
    barrier = threading.Barrier(2, timeout=30)

    def worker(first: int, second: int) -> Callable[[], str]:
        def run() -> str:
            with db.begin() as conn:
                conn.execute(text("UPDATE retry_probe SET v = v + 1 WHERE id = :i"), {"i": first})
                barrier.wait()  # both hold one row: each now waits for the other's
                conn.execute(text("UPDATE retry_probe SET v = v + 1 WHERE id = :i"), {"i": second})
            return "committed"

        return run

    results, errors = _run_threads([worker(1, 2), worker(2, 1)])
    assert results == ["committed"]
    assert len(errors) == 1
    err = errors[0]
    assert isinstance(err, DeadlockError) and isinstance(err, TransientError), repr(err)
    assert err.retryable is True
    assert "deadlock" in str(err) and "run it again" in str(err)


@pytest.mark.parametrize("level", ["REPEATABLE READ", "SERIALIZABLE"])
def test_concurrent_update_under_snapshot_isolation_is_a_serialization_error(
    db: Database, engine: Engine, level: str
) -> None:
    with pytest.raises(SerializationError) as info, db.begin(isolation_level=level) as conn:
        assert _value(conn) == 0  # the snapshot is taken here
        _bump_elsewhere(engine)
        conn.execute(text("UPDATE retry_probe SET v = v + 10 WHERE id = 1"))
    assert info.value.retryable is True
    with engine.connect() as conn:
        assert _value(conn) == 1  # only the other transaction's change is stored


def test_isolation_level_is_applied_and_reset(db: Database) -> None:
    show = text("SELECT current_setting('transaction_isolation')")
    with db.begin(isolation_level="repeatable_read") as conn:
        assert conn.execute(show).scalar() == "repeatable read"
    for _ in range(3):  # every pooled connection is back at the default
        with db.begin() as conn:
            assert conn.execute(show).scalar() == "read committed"
    with pytest.raises(ValidationError, match="isolation_level"), db.begin(isolation_level="dirty"):
        pass


def test_run_in_transaction_retries_real_serialization_failures_then_succeeds(
    db: Database, engine: Engine
) -> None:
    attempts: list[int] = []
    pauses: list[float] = []

    def work(conn: Connection) -> int:
        attempts.append(1)
        seen = _value(conn)
        if len(attempts) <= 2:
            _bump_elsewhere(engine)  # a writer commits after our snapshot
        conn.execute(text("UPDATE retry_probe SET v = :v WHERE id = 1"), {"v": seen + 100})
        return seen

    seen = db.run_in_transaction(
        work, isolation_level="REPEATABLE READ", retries=3, sleep=pauses.append
    )
    assert len(attempts) == 3 and len(pauses) == 2
    assert seen == 2  # the third attempt saw both interfering commits
    with engine.connect() as conn:
        assert _value(conn) == 102


def test_run_in_transaction_reraises_the_last_error_when_out_of_retries(
    db: Database, engine: Engine
) -> None:
    attempts: list[int] = []

    def work(conn: Connection) -> None:
        attempts.append(1)
        _value(conn)
        _bump_elsewhere(engine)
        conn.execute(text("UPDATE retry_probe SET v = 0 WHERE id = 1"))

    with pytest.raises(SerializationError):
        db.run_in_transaction(
            work, isolation_level="REPEATABLE READ", retries=2, sleep=lambda _s: None
        )
    assert len(attempts) == 3
    with engine.connect() as conn:
        assert _value(conn) == 3  # none of our updates was stored


def test_run_in_transaction_does_not_retry_errors_that_are_not_retryable(db: Database) -> None:
    attempts: list[int] = []

    def work(conn: Connection) -> None:
        attempts.append(1)
        conn.execute(text("UPDATE retry_probe SET v = 5 WHERE id = 1"))
        raise ConflictError("not a race")

    with pytest.raises(ConflictError):
        db.run_in_transaction(work, retries=5, sleep=lambda _s: None)
    assert attempts == [1]
    with db.begin() as conn:
        assert _value(conn) == 0


def test_lock_timeout_gives_a_retryable_lock_timeout_error(engine: Engine, db: Database) -> None:
    impatient = connect(_url(engine), lock_timeout=0.2)
    try:
        with engine.connect() as holder:
            holder.begin()
            holder.execute(text("SELECT 1 FROM retry_probe WHERE id = 1 FOR UPDATE"))
            with impatient.begin() as conn:
                assert conn.execute(text("SHOW lock_timeout")).scalar() == "200ms"
            with pytest.raises(LockTimeoutError) as info, impatient.begin() as conn:
                conn.execute(text("UPDATE retry_probe SET v = 1 WHERE id = 1"))
            holder.rollback()
        assert info.value.retryable is True and "lock timeout" in str(info.value)
    finally:
        impatient.dispose()


def test_statement_timeout_is_honoured_and_not_retryable(engine: Engine) -> None:
    impatient = connect(_url(engine), statement_timeout=0.2)
    attempts: list[int] = []

    def slow(conn: Connection) -> None:
        attempts.append(1)
        conn.execute(text("SELECT pg_sleep(30)"))

    try:
        with impatient.begin() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "200ms"
        with pytest.raises(StatementTimeoutError) as info:
            impatient.run_in_transaction(slow, retries=3, sleep=lambda _s: None)
    finally:
        impatient.dispose()
    assert attempts == [1]
    assert info.value.retryable is False and isinstance(info.value, TransientError)


def _terminate(engine: Engine, pid: int) -> None:
    with engine.connect() as admin:
        # the timeout makes the call wait until the backend is really gone
        assert admin.execute(text("SELECT pg_terminate_backend(:p, 30000)"), {"p": pid}).scalar()
        admin.commit()


def test_terminated_backend_mid_transaction_is_a_retryable_connection_lost_error(
    db: Database, engine: Engine
) -> None:
    with pytest.raises(ConnectionLostError) as info, db.begin() as conn:
        conn.execute(text("UPDATE retry_probe SET v = 7 WHERE id = 1"))
        _terminate(engine, int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one()))
        conn.execute(text("SELECT 1"))
    assert type(info.value) is ConnectionLostError and info.value.retryable is True
    with engine.connect() as conn:
        assert _value(conn) == 0

    attempts: list[int] = []

    def work(conn: Connection) -> int:
        attempts.append(1)
        conn.execute(text("UPDATE retry_probe SET v = v + 1 WHERE id = 1"))
        if len(attempts) == 1:
            _terminate(engine, int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one()))
            conn.execute(text("SELECT 1"))
        return len(attempts)

    assert db.run_in_transaction(work, sleep=lambda _s: None) == 2
    with engine.connect() as conn:
        assert _value(conn) == 1  # the lost attempt left nothing behind


def test_connection_lost_at_commit_is_not_retryable(db: Database, engine: Engine) -> None:
    attempts: list[int] = []

    def work(conn: Connection) -> None:
        attempts.append(1)
        conn.execute(text("UPDATE retry_probe SET v = 9 WHERE id = 1"))
        # the body is done; the link dies before COMMIT gets an answer
        _terminate(engine, int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one()))

    with pytest.raises(CommitOutcomeUnknownError) as info:
        db.run_in_transaction(work, retries=3, sleep=lambda _s: None)
    assert attempts == [1] and info.value.retryable is False
    assert "may or may not have committed" in str(info.value)


def test_connections_carry_keepalives_and_a_tcp_user_timeout(engine: Engine) -> None:
    handle = connect(_url(engine), connect_timeout=7)
    try:
        raw = handle.engine.raw_connection()
        try:
            pg = raw.driver_connection
            assert pg is not None
            params = pg.info.get_parameters()
            assert params["keepalives"] == "1" and params["tcp_user_timeout"] == "30000"
            assert params["connect_timeout"] == "7"
            if pg.info.host.startswith("/") or not hasattr(socket, "TCP_USER_TIMEOUT"):
                pytest.skip("needs a TCP connection on Linux to read the socket options")
            sock = socket.socket(fileno=os.dup(pg.pgconn.socket))
            try:
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 5
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 30000
            finally:
                sock.detach()
        finally:
            raw.close()
    finally:
        handle.dispose()


def test_timeouts_must_be_sane(engine: Engine) -> None:
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValidationError, match="statement_timeout"):
            connect(_url(engine), statement_timeout=bad)


# --------------------------------------------------------------------------- singletons


@pytest.mark.parametrize("level", ISOLATIONS)
def test_eight_racing_singleton_get_or_create_agree(seeded_engine: Engine, level: str) -> None:
    handle = connect(_url(seeded_engine), pool_size=8)
    barrier = threading.Barrier(8, timeout=30)

    def racer() -> str:
        first = [True]

        def work(conn: Connection) -> str:
            if first[0]:
                first[0] = False
                # every racer has its snapshot (begin ran a statement) before any inserts
                barrier.wait()
            return instances.get_or_create_singleton(conn, SINGLETON, "Accessioning").euid

        return handle.run_in_transaction(work, isolation_level=level, retries=10)

    try:
        results, errors = _run_threads([racer] * 8)
    finally:
        handle.dispose()
    assert errors == []
    assert len(results) == 8 and len(set(results)) == 1
    with seeded_engine.connect() as conn:
        live = instances.find(conn, template_code=SINGLETON)
    assert [i.euid for i in live] == results[:1]


def test_singleton_conflict_under_repeatable_read_is_retryable(seeded_engine: Engine) -> None:
    handle = connect(_url(seeded_engine))
    try:
        with pytest.raises(SerializationError, match="retry the transaction") as info:
            with handle.begin(isolation_level="REPEATABLE READ") as conn:
                conn.execute(text("SELECT 1"))  # snapshot before the other commits
                with handle.begin() as other:
                    instances.get_or_create_singleton(other, SINGLETON, "Winner")
                instances.get_or_create_singleton(conn, SINGLETON, "Loser")
        assert isinstance(info.value, TapdbError) and info.value.retryable
    finally:
        handle.dispose()


# --------------------------------------------------------------------------- the CLI


def test_cli_reruns_a_command_only_while_it_has_had_no_effects(
    db: Database, engine: Engine
) -> None:
    from tapdb_core.cli import common

    target = common.Target(env="dev", url=engine.url, from_database_url=True)
    calls: list[str] = []

    def command(write: bool, fail_after: str) -> Callable[[], int]:
        def run() -> int:
            calls.append(fail_after)
            cli_engine = common.make_engine(target.url)
            try:
                with common.transaction(cli_engine, target) as conn:
                    conn.execute(text("SELECT v FROM retry_probe WHERE id = 1"))
                    if write:
                        conn.execute(text("UPDATE retry_probe SET v = v + 1 WHERE id = 1"))
            finally:
                cli_engine.dispose()
            if fail_after == "output":
                common.out("partial result")
            if len(calls) == 1:
                raise DeadlockError(f"lost a race after a {'write' if write else 'read'}")
            return 0

        return run

    assert common.run_command(command(write=False, fail_after="read")) == 0
    assert len(calls) == 2  # a read-only transaction is no effect: run again
    for write, after in ((True, "write"), (False, "output")):
        calls.clear()
        with pytest.raises(DeadlockError):
            common.run_command(command(write=write, fail_after=after))
        assert len(calls) == 1, after
    with engine.connect() as conn:
        assert _value(conn) == 1  # the write was done once
