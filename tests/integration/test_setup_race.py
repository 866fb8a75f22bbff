"""Concurrent `tapdb db setup` on one new database: every run succeeds (issue 8, low item).

Four processes migrate the same empty database to head at once (behind a
Barrier); the migration lock makes them take turns, and the later ones find
nothing left to do. Processes, not threads: Alembic keeps the running
migration context in module globals, so runs in threads of one process would
trample each other whatever the database does; `tapdb db setup` runs are
processes anyway.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from tapdb_core import migrate

RUNS = 4


def _setup(url: str, barrier: Any, results: Any) -> None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            barrier.wait()
            with conn.begin():
                migrate.upgrade(conn)
        results.put("ok")
    except BaseException as exc:  # reported by the test
        results.put(f"{type(exc).__name__}: {exc}")
    finally:
        engine.dispose()


def test_concurrent_upgrades_of_an_empty_database_all_succeed(empty_db_url: URL) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(RUNS, timeout=120)
    results = context.Queue()
    url = empty_db_url.render_as_string(hide_password=False)
    processes = [context.Process(target=_setup, args=(url, barrier, results)) for _ in range(RUNS)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert outcomes == ["ok"] * RUNS, outcomes
    engine = create_engine(empty_db_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            assert migrate.current_revision(conn) == migrate.head_revision()
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    finally:
        engine.dispose()
