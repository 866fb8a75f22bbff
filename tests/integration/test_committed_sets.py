"""A one-instance write skips the action-set insert once a write saw the set committed.

Sets are never updated or deleted, so a set some committed transaction wrote
stays. The statement that inserts a missing set also reports whether the set
was there, committed, before it; only then does the process stop inserting it.
A set inserted by the same transaction (an earlier statement, a savepoint)
may still roll back and is never taken as committed. A database recreated
under a running process loses its sets: the write fails on its foreign key,
the process forgets that database's sets and the error is transient.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL

from tapdb_core import instances, migrate
from tapdb_core.errors import StaleTemplateError, TransientError
from tapdb_core.packs import seed_packs

DNA = "content/sample/dna/1.0/"
SET_INSERT = "INSERT INTO tapdb_action_set"


@pytest.fixture
def statements(seeded_engine: Engine) -> Iterator[list[str]]:
    """Every statement the engine sends from now on, as sent."""
    sent: list[str] = []

    def capture(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        sent.append(statement)

    event.listen(seeded_engine, "before_cursor_execute", capture)
    yield sent
    event.remove(seeded_engine, "before_cursor_execute", capture)


def _creates(sent: list[str]) -> list[str]:
    return [s for s in sent if "INSERT INTO generic_instance" in s]


def test_the_insert_is_skipped_only_after_a_write_saw_the_set_committed(
    seeded_engine: Engine, statements: list[str]
) -> None:
    for i in range(3):
        with seeded_engine.begin() as conn:
            instances.create(conn, DNA, f"s-{i}")
    first, second, third = _creates(statements)
    assert SET_INSERT in first  # the set is new: inserted here
    assert SET_INSERT in second  # there, committed: this write learns so
    assert SET_INSERT not in third
    with seeded_engine.connect() as conn:
        sets = conn.execute(text("SELECT count(*) FROM tapdb_action_set")).scalar_one()
        linked = conn.execute(
            text("SELECT count(DISTINCT action_set_digest) FROM generic_instance")
        ).scalar_one()
    assert sets == linked == 1


def test_a_set_this_transaction_inserted_is_never_taken_as_committed(
    seeded_engine: Engine, statements: list[str]
) -> None:
    with seeded_engine.connect() as conn:
        with conn.begin():
            instances.create(conn, DNA, "first")  # inserts the set
            instances.create(conn, DNA, "second")  # sees it, in progress
            with conn.begin_nested():
                instances.create(conn, DNA, "third")
            instances.create(conn, DNA, "fourth")
            conn.rollback()
        with conn.begin():
            made = instances.create(conn, DNA, "after the rollback")
        assert made.json_addl["action_groups"]
    assert all(SET_INSERT in s for s in _creates(statements))


def test_a_set_inserted_in_a_savepoint_is_not_taken_as_committed(
    seeded_engine: Engine, statements: list[str]
) -> None:
    with seeded_engine.connect() as conn:
        with conn.begin():
            with conn.begin_nested():
                instances.create(conn, DNA, "in a savepoint")
            instances.create(conn, DNA, "after it")  # its xmin is the savepoint's
            instances.create(conn, DNA, "and again")
            conn.rollback()
        with conn.begin():
            instances.create(conn, DNA, "new transaction")
    assert all(SET_INSERT in s for s in _creates(statements))


def _seed(url: URL) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            migrate.upgrade(conn)
            seed_packs(conn)
    finally:
        engine.dispose()


def test_a_database_recreated_under_the_process_costs_one_transient_error(
    empty_db_url: URL, admin_engine: Engine
) -> None:
    _seed(empty_db_url)
    engine = create_engine(empty_db_url)
    try:
        for i in range(3):
            with engine.begin() as conn:
                instances.create(conn, DNA, f"before-{i}")  # the third skips the insert
        engine.dispose()
        name = empty_db_url.database
        with admin_engine.connect() as admin:
            admin.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            admin.execute(text(f'CREATE DATABASE "{name}"'))
        _seed(empty_db_url)
        errors: list[TransientError] = []
        for _attempt in range(4):
            try:
                with engine.begin() as conn:
                    made = instances.create(conn, DNA, "after")
                break
            except TransientError as exc:
                errors.append(exc)
        else:
            pytest.fail(f"never succeeded: {errors}")
        assert made.json_addl["action_groups"]
        set_errors = [e for e in errors if not isinstance(e, StaleTemplateError)]
        assert len(set_errors) == 1, errors
        assert "no longer in the database" in str(set_errors[0])
        assert set_errors[0].retryable
    finally:
        engine.dispose()
