"""Guarantees that hold at every isolation level (revision 0002): the cycle guard
under snapshot isolation, EUIDs never reissued, atomic sequence bumps, no
secrets in the audit trail, TRUNCATE/DELETE guards."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tapdb_core import euid, migrate
from tapdb_core.errors import DataLossRefusedError
from tests.integration.sqlhelpers import add_instance, add_template, link

SNAPSHOT_LEVELS = ["REPEATABLE READ", "SERIALIZABLE"]
ALL_LEVELS = ["READ COMMITTED", *SNAPSHOT_LEVELS]


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


@pytest.fixture
def nodes(engine: Engine) -> list[int]:
    """Four committed instances a, b, c, d with no edges."""
    with engine.begin() as conn:
        tpl = add_template(conn, "node", "NQ")
        return [add_instance(conn, tpl, name)[0] for name in "abcd"]


def _cycle_exists(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text(
                    """
                    WITH RECURSIVE walk(start, node) AS (
                        SELECT parent_instance_uuid, child_instance_uuid
                          FROM generic_instance_lineage WHERE NOT is_deleted
                        UNION
                        SELECT w.start, l.child_instance_uuid FROM walk w
                          JOIN generic_instance_lineage l
                            ON l.parent_instance_uuid = w.node AND NOT l.is_deleted
                    )
                    SELECT EXISTS (SELECT 1 FROM walk WHERE start = node)
                    """
                )
            ).scalar()
        )


def _open(engine: Engine, level: str) -> Connection:
    conn = engine.connect().execution_options(isolation_level=level)
    conn.begin()
    # take the snapshot now, as the reported race does
    conn.execute(text("SELECT count(*) FROM generic_instance_lineage")).scalar()
    return conn


@pytest.mark.parametrize("level", SNAPSHOT_LEVELS)
def test_snapshot_that_missed_a_committed_edge_cannot_close_a_cycle(
    engine: Engine, nodes: list[int], level: str
) -> None:
    a, b, _, _ = nodes
    t1, t2 = _open(engine, level), _open(engine, level)
    try:
        link(t1, a, b)
        t1.commit()
        with pytest.raises(DBAPIError) as err:
            link(t2, b, a)
        assert _sqlstate(err.value) == "40001", err.value
        t2.rollback()
    finally:
        t1.close()
        t2.close()
    assert not _cycle_exists(engine)


@pytest.mark.parametrize("level", SNAPSHOT_LEVELS)
def test_repointing_or_undeleting_an_edge_is_guarded_too(
    engine: Engine, nodes: list[int], level: str
) -> None:
    a, b, c, d = nodes
    with engine.begin() as conn:
        link(conn, c, a)  # the edge T2 will re-point
        link(conn, b, c)  # the edge T3 will un-delete
        conn.execute(
            text("DELETE FROM generic_instance_lineage WHERE parent_instance_uuid = :b"), {"b": b}
        )
    # T2: re-point c->a to b->a; T1 committed a->b after T2's snapshot
    t1, t2 = _open(engine, level), _open(engine, level)
    try:
        link(t1, a, b)
        t1.commit()
        with pytest.raises(DBAPIError) as err:
            t2.execute(
                text(
                    "UPDATE generic_instance_lineage SET parent_instance_uuid = :b"
                    " WHERE parent_instance_uuid = :c AND child_instance_uuid = :a"
                ),
                {"a": a, "b": b, "c": c},
            )
        assert _sqlstate(err.value) == "40001"
        t2.rollback()
        # T3 un-deletes d->c while T4 (committed after T3's snapshot) adds c->d
        with engine.begin() as conn:
            link(conn, d, c)
            conn.execute(
                text("DELETE FROM generic_instance_lineage WHERE parent_instance_uuid = :d"),
                {"d": d},
            )
        t3, t4 = _open(engine, level), _open(engine, level)
        try:
            link(t4, c, d)
            t4.commit()
            with pytest.raises(DBAPIError) as err:
                t3.execute(
                    text(
                        "UPDATE generic_instance_lineage SET is_deleted = false"
                        " WHERE parent_instance_uuid = :d AND child_instance_uuid = :c"
                    ),
                    {"c": c, "d": d},
                )
            assert _sqlstate(err.value) == "40001"
            t3.rollback()
        finally:
            t3.close()
            t4.close()
    finally:
        t1.close()
        t2.close()
    assert not _cycle_exists(engine)


def test_read_committed_sees_the_committed_edge_and_refuses_the_cycle(
    engine: Engine, nodes: list[int]
) -> None:
    a, b, _, _ = nodes
    t1, t2 = _open(engine, "READ COMMITTED"), _open(engine, "READ COMMITTED")
    try:
        link(t1, a, b)
        t1.commit()
        with pytest.raises(DBAPIError, match="cycle"):
            link(t2, b, a)
        t2.rollback()
    finally:
        t1.close()
        t2.close()


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_racing_opposite_links_never_commit_a_cycle(
    engine: Engine, level: str, nodes: list[int]
) -> None:
    """Many rounds of two transactions that take their snapshots together, then
    link in opposite directions: whatever the interleaving, at most one wins."""
    with engine.begin() as conn:
        tpl = add_template(conn, "race", "RQ")
        pairs = [(add_instance(conn, tpl)[0], add_instance(conn, tpl)[0]) for _ in range(25)]
    outcomes: list[str] = []
    lock = threading.Lock()

    def racer(barrier: threading.Barrier, parent: int, child: int) -> None:
        with engine.connect().execution_options(isolation_level=level) as conn:
            conn.begin()
            conn.execute(text("SELECT 1 FROM generic_instance_lineage LIMIT 1")).all()
            barrier.wait()  # both snapshots taken before either links
            try:
                link(conn, parent, child)
                conn.commit()
                result = "ok"
            except DBAPIError as exc:
                conn.rollback()
                state = _sqlstate(exc)
                result = "cycle" if "cycle" in str(exc.orig) else f"sqlstate {state}"
        with lock:
            outcomes.append(result)

    for x, y in pairs:
        barrier = threading.Barrier(2)
        threads = [
            threading.Thread(target=racer, args=(barrier, x, y)),
            threading.Thread(target=racer, args=(barrier, y, x)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not _cycle_exists(engine)
    assert set(outcomes) <= {"ok", "cycle", "sqlstate 40001", "sqlstate 40P01"}, outcomes
    assert outcomes.count("ok") == len(pairs)  # exactly one of each pair wins


def test_linking_to_a_row_another_transaction_updates_does_not_wait(
    engine: Engine, nodes: list[int]
) -> None:
    """The library locks rows it updates FOR NO KEY UPDATE; the foreign-key check
    of a new edge only needs KEY SHARE, so the two never wait on each other."""
    from tapdb_core import instances

    a, b, _, _ = nodes
    with engine.connect() as conn:
        a_euid = conn.execute(
            text("SELECT euid FROM generic_instance WHERE uuid = :a"), {"a": a}
        ).scalar_one()
    holder = engine.connect()
    holder.begin()
    try:
        instances.set_status(holder, a_euid, "in_use")  # row lock held until commit
        with engine.begin() as other:
            other.execute(text("SET LOCAL lock_timeout = '5s'"))
            link(other, b, a)  # would wait (and time out) behind FOR UPDATE
        holder.commit()
    finally:
        holder.close()


# -- EUIDs are never reissued -------------------------------------------------------


def test_downgrade_refuses_to_drop_data_and_says_what(engine: Engine) -> None:
    with engine.begin() as conn:
        tpl = add_template(conn, "keep", "KQ")
        add_instance(conn, tpl)
        conn.execute(text("CREATE VIEW app_plates AS SELECT euid FROM generic_instance"))
    with pytest.raises(DataLossRefusedError) as err, engine.begin() as conn:
        migrate.downgrade(conn, "base")
    message = str(err.value)
    assert "generic_instance (1 rows)" in message
    assert "generic_template (1 rows)" in message
    assert "app_plates" in message
    assert "allow_data_loss" in message
    with engine.connect() as conn:
        assert migrate.current_revision(conn) == migrate.head_revision()
        assert conn.execute(text("SELECT count(*) FROM generic_instance")).scalar() == 1


def test_downgrade_of_an_empty_database_needs_no_permission(empty_db_url: URL) -> None:
    engine = create_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            migrate.upgrade(conn)
        with engine.begin() as conn:
            migrate.downgrade(conn, "base")
            assert migrate.current_revision(conn) is None
    finally:
        engine.dispose()


def test_euids_continue_after_downgrade_and_upgrade(empty_db_url: URL) -> None:
    engine = create_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            migrate.upgrade(conn)
            tpl = add_template(conn, "first", "KQ")
            issued = {add_instance(conn, tpl)[1] for _ in range(3)}
            conn.execute(text("INSERT INTO tapdb_user (username) VALUES ('ann')"))
            template_euid = conn.execute(
                text("SELECT euid FROM generic_template WHERE uuid = :u"), {"u": tpl}
            ).scalar_one()
        with engine.begin() as conn:
            migrate.downgrade(conn, "base", allow_data_loss=True)
        with engine.begin() as conn:
            migrate.upgrade(conn)
            tpl = add_template(conn, "first", "KQ")
            again = {add_instance(conn, tpl)[1] for _ in range(3)}
            new_template_euid = conn.execute(
                text("SELECT euid FROM generic_template WHERE uuid = :u"), {"u": tpl}
            ).scalar_one()
            user_euid = conn.execute(
                text("INSERT INTO tapdb_user (username) VALUES ('bob') RETURNING euid")
            ).scalar_one()
        assert not issued & again
        assert min(euid.parse(e).seq for e in again) == 4
        assert new_template_euid != template_euid
        assert euid.parse(user_euid).seq == 2
    finally:
        engine.dispose()


def test_alembic_cli_downgrade_needs_allow_data_loss(db_url: URL, engine: Engine) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    with engine.begin() as conn:
        add_template(conn, "cli", "KQ")
    url = db_url.render_as_string(hide_password=False)
    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}

    def alembic(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "alembic", "-x", f"url={url}", *args],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    refused = alembic("downgrade", "base")
    assert refused.returncode != 0
    assert "generic_template (1 rows)" in refused.stderr
    with engine.connect() as conn:
        assert migrate.current_revision(conn) == migrate.head_revision()
    allowed = alembic("-x", "allow_data_loss=true", "downgrade", "base")
    assert allowed.returncode == 0, allowed.stderr
    with engine.connect() as conn:
        assert migrate.current_revision(conn) is None


# -- sequence bumps are atomic and monotonic ----------------------------------------


def _bump(conn: Connection, value: int) -> None:
    conn.execute(text("SELECT tapdb_bump_euid_sequence_v2('KQ', :v)"), {"v": value})


def _last(conn: Connection) -> int:
    return int(conn.execute(text("SELECT last_value FROM tapdb_euid_seq_kq")).scalar_one())


def test_sequence_bump_never_moves_backwards(engine: Engine) -> None:
    with engine.begin() as conn:
        add_template(conn, "bump", "KQ")
        _bump(conn, 100)
        _bump(conn, 50)
        assert _last(conn) == 100


def test_while_a_bump_is_uncommitted_nobody_draws_from_that_sequence(engine: Engine) -> None:
    """The bump reads and moves the sequence under the lock nextval() conflicts
    with, so no value can be drawn between its check and its set."""
    with engine.begin() as conn:
        tpl = add_template(conn, "bump", "KQ")
        add_instance(conn, tpl)
    loader = engine.connect()
    loader.begin()
    try:
        _bump(loader, 500)
        with pytest.raises(DBAPIError) as err, engine.begin() as writer:
            writer.execute(text("SET LOCAL lock_timeout = '200ms'"))
            add_instance(writer, tpl)
        assert _sqlstate(err.value) == "55P03"  # lock_not_available: it waited
        loader.commit()
    finally:
        loader.close()
    with engine.begin() as writer:
        assert euid.parse(add_instance(writer, tpl)[1]).seq == 501


def test_loaders_far_ahead_and_concurrent_writers_never_collide(engine: Engine) -> None:
    """Loaders supply blocks of euid_seq values ahead of the sequence while
    writers draw from it. A bump that moved the sequence backwards made writers
    draw values loaders had stored ('EUID already exists')."""
    with engine.begin() as conn:
        tpl = add_template(conn, "load", "KQ")
    errors: list[str] = []
    rounds = 20
    barrier = threading.Barrier(6)

    def writer() -> None:
        for _ in range(rounds):
            barrier.wait()
            try:
                with engine.begin() as conn:
                    add_instance(conn, tpl)
            except DBAPIError as exc:
                errors.append(str(exc.orig))

    def loader(offset: int) -> None:
        for _ in range(rounds):
            barrier.wait()
            try:
                with engine.begin() as conn:
                    start = _last(conn) + 100 + offset
                    conn.execute(
                        text(
                            "INSERT INTO generic_instance (name, template_uuid, euid_prefix,"
                            " euid_seq) SELECT 'loaded', :t, 'KQ', s"
                            " FROM generate_series(CAST(:a AS bigint), :a + 9) s"
                        ),
                        {"t": tpl, "a": start},
                    )
            except DBAPIError as exc:
                # two loaders may supply the same block: a real duplicate of theirs
                if _sqlstate(exc) not in ("23505", "40P01"):
                    errors.append(str(exc.orig))

    threads = [threading.Thread(target=writer) for _ in range(4)]
    threads += [threading.Thread(target=loader, args=(k * 5,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engine.connect() as conn:
        top = conn.execute(
            text("SELECT max(euid_seq) FROM generic_instance WHERE euid_prefix = 'KQ'")
        ).scalar_one()
        assert _last(conn) >= top


# -- secrets, TRUNCATE and DELETE guards -------------------------------------------


def test_password_hashes_never_reach_the_audit_trail(engine: Engine) -> None:
    from tapdb_core import audit, users

    with engine.begin() as conn:
        users.create_user(conn, "carol", password="first secret 1")
        users.set_password(conn, "carol", "second secret 2")
        hashes = conn.execute(
            text("SELECT password_hash FROM tapdb_user WHERE username = 'carol'")
        ).scalar_one()
        user_euid = users.get_user(conn, "carol").euid
        users.delete_user(conn, "carol")
    with engine.connect() as conn:
        dump = conn.execute(
            text(
                "SELECT coalesce(string_agg(old_value::text || new_value::text, ''), '')"
                " FROM audit_log WHERE rel_table_euid_fk = :e"
            ),
            {"e": user_euid},
        ).scalar_one()
        entries = audit.history(conn, user_euid)
    assert hashes not in dump
    assert "scrypt" not in dump
    changed = [e for e in entries if e.column_name == "password_hash"]
    assert changed and all(e.new_value == "[redacted]" for e in changed)
    deleted = [e for e in entries if e.operation_type == "DELETE"]
    assert deleted and deleted[0].old_value["password_hash"] == "[redacted]"


def test_migration_scrubs_hashes_audited_before_it(empty_db_url: URL) -> None:
    engine = create_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            migrate.upgrade(conn, "0001")
            conn.execute(text("INSERT INTO tapdb_user (username) VALUES ('dan')"))
            conn.execute(
                text("UPDATE tapdb_user SET password_hash = 'scrypt$old' WHERE username = 'dan'")
            )
            conn.execute(text("DELETE FROM tapdb_user WHERE username = 'dan'"))
            leaked = conn.execute(
                text(
                    "SELECT count(*) FROM audit_log WHERE old_value::text || coalesce(new_value::text, '') LIKE '%scrypt$old%'"
                )
            ).scalar_one()
            assert leaked == 2
        with engine.begin() as conn:
            migrate.upgrade(conn)
            leaked = conn.execute(
                text(
                    "SELECT count(*) FROM audit_log WHERE coalesce(old_value::text, '') || coalesce(new_value::text, '') LIKE '%scrypt%'"
                )
            ).scalar_one()
            assert leaked == 0
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "statement",
    [
        "TRUNCATE tapdb_user",
        "TRUNCATE tapdb_identity_prefix_config",
        "DELETE FROM tapdb_identity_prefix_config",
        "TRUNCATE tapdb_lineage_guard",
        "DELETE FROM tapdb_lineage_guard",
    ],
)
def test_rows_everything_depends_on_cannot_be_removed(engine: Engine, statement: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO tapdb_user (username) VALUES ('erin')"))
    with pytest.raises(DBAPIError, match="refused"), engine.begin() as conn:
        conn.execute(text(statement))
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM tapdb_user")).scalar() == 1
        # and writes keep working
        conn.execute(text("INSERT INTO tapdb_user (username) VALUES ('fred')"))


def test_template_row_version_moves_on_every_update_and_is_not_audited(engine: Engine) -> None:
    with engine.begin() as conn:
        tpl = add_template(conn, "versioned", "KQ")
        version: Callable[[], int] = lambda: int(  # noqa: E731
            conn.execute(
                text("SELECT row_version FROM generic_template WHERE uuid = :u"), {"u": tpl}
            ).scalar_one()
        )
        assert version() == 1
        conn.execute(text("UPDATE generic_template SET bstatus = 'x' WHERE uuid = :u"), {"u": tpl})
        conn.execute(text("UPDATE generic_template SET bstatus = 'x' WHERE uuid = :u"), {"u": tpl})
        assert version() == 3
        columns = (
            conn.execute(
                text(
                    "SELECT column_name FROM audit_log WHERE rel_table_uuid_fk = :u"
                    " AND rel_table_name = 'generic_template' AND operation_type = 'UPDATE'"
                ),
                {"u": tpl},
            )
            .scalars()
            .all()
        )
    assert columns == ["bstatus"]
