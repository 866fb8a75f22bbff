"""What the database guarantees to anyone writing plain SQL (no library involved)."""

from __future__ import annotations

import threading

import meridian_euid
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError, InternalError, ProgrammingError

from tapdb_core import euid
from tests.integration.sqlhelpers import add_instance, add_template, link, set_audit_user

EUID_RE = r"^[A-HJ-KMNP-TV-Z]{2,3}-[1-9A-HJ-KMNP-TV-Z][0-9A-HJ-KMNP-TV-Z]*[0-9A-HJ-KMNP-TV-Z]$"


def test_euids_assigned_in_meridian_form_with_correct_check(engine: Engine) -> None:
    with engine.begin() as conn:
        tpl = add_template(conn, "p96", "CX")
        plate, plate_euid = add_instance(conn, tpl, "plate")
        _, well_euid = add_instance(conn, tpl, "well")
        edge_euid = link(conn, plate, _)
        tpl_euid = conn.execute(
            text("SELECT euid FROM generic_template WHERE uuid = :u"), {"u": tpl}
        ).scalar_one()
        user_euid = conn.execute(
            text("INSERT INTO tapdb_user (username) VALUES ('ann') RETURNING euid")
        ).scalar_one()
        audit_euids = conn.execute(text("SELECT euid FROM audit_log")).scalars().all()
    for value, prefix in [
        (tpl_euid, "GT"),
        (plate_euid, "CX"),
        (well_euid, "CX"),
        (edge_euid, "GN"),
        (user_euid, "TDA"),
    ]:
        parsed = euid.parse(value)
        assert parsed.prefix == prefix
        assert value.rsplit("-", 1)[1][-1] == meridian_euid.compute_check_character(
            value.replace("-", "")[:-1]
        )
    assert euid.parse(plate_euid).seq + 1 == euid.parse(well_euid).seq
    assert audit_euids and all(euid.parse(a).prefix == "ADT" for a in audit_euids)


def test_new_instance_prefix_gets_its_sequence_when_template_is_written(engine: Engine) -> None:
    with engine.begin() as conn:
        assert conn.execute(text("SELECT to_regclass('tapdb_euid_seq_qz')")).scalar() is None
        tpl = add_template(conn, "fresh", "QZ")
        assert conn.execute(text("SELECT to_regclass('tapdb_euid_seq_qz')")).scalar() is not None
        _, first = add_instance(conn, tpl)
    assert first == euid.encode("QZ", 1)


@pytest.mark.parametrize("prefix", ["TUS", "GT", "GN", "TDA", "ADT", "cx", "C", "ABCD", "IO"])
def test_bad_or_reserved_instance_prefix_is_refused(engine: Engine, prefix: str) -> None:
    with pytest.raises(DBAPIError) as err, engine.begin() as conn:
        add_template(conn, "bad", prefix)
    message = str(err.value.orig)
    assert prefix in message or "instance_prefix" in message


def test_supplied_euid_is_refused_and_supplied_sequence_moves_the_sequence(engine: Engine) -> None:
    with engine.begin() as conn:
        tpl = add_template(conn, "p", "CX")
    with pytest.raises(ProgrammingError, match="generated column"), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO generic_instance (name, template_uuid, euid) VALUES ('x', :t, 'CX-19')"
            ),
            {"t": tpl},
        )
    with engine.begin() as conn:
        supplied = conn.execute(
            text(
                "INSERT INTO generic_instance (name, template_uuid, euid_seq)"
                " VALUES ('x', :t, 500) RETURNING euid"
            ),
            {"t": tpl},
        ).scalar_one()
        _, after = add_instance(conn, tpl)
    assert supplied == euid.encode("CX", 500)
    assert euid.parse(after).seq == 501


def test_instance_prefix_must_be_the_templates(engine: Engine) -> None:
    with engine.begin() as conn:
        tpl = add_template(conn, "p", "CX")
        add_template(conn, "q", "MX")
    with pytest.raises(IntegrityError, match="instance_prefix"), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO generic_instance (name, template_uuid, euid_prefix) VALUES ('x', :t, 'MX')"
            ),
            {"t": tpl},
        )


def test_domain_form_when_a_meridian_domain_is_set(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("SELECT tapdb_set_meridian_domain('R7')"))
    with engine.begin() as conn:
        tpl = add_template(conn, "p", "CX")
        _, value = add_instance(conn, tpl)
    assert value.startswith("R7-CX-")
    assert meridian_euid.validate(value) == value
    assert euid.parse(value).domain == "R7"
    with engine.begin() as conn:
        conn.execute(text("SELECT tapdb_set_meridian_domain(NULL)"))
        _, plain = add_instance(conn, tpl)
        kept = conn.execute(
            text("SELECT euid FROM generic_instance WHERE euid = :e"), {"e": value}
        ).scalar_one()
    assert plain.startswith("CX-") and kept == value
    with pytest.raises(DBAPIError, match="domain"), engine.begin() as conn:
        conn.execute(text("SELECT tapdb_set_meridian_domain('bad!')"))


def test_audit_rows_with_changed_by_and_no_noise(engine: Engine) -> None:
    with engine.begin() as conn:
        set_audit_user(conn, "alice")
        tpl = add_template(conn, "p", "CX")
        uuid, obj = add_instance(conn, tpl)
    with engine.begin() as conn:
        set_audit_user(conn, "bob")
        conn.execute(
            text("UPDATE generic_instance SET bstatus = 'ready', name = name WHERE uuid = :u"),
            {"u": uuid},
        )
        conn.execute(
            text("UPDATE generic_instance SET bstatus = 'ready' WHERE uuid = :u"), {"u": uuid}
        )
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE generic_instance SET name = 'renamed' WHERE uuid = :u"), {"u": uuid}
        )
        rows = conn.execute(
            text(
                "SELECT operation_type, column_name, old_value, new_value, changed_by"
                " FROM audit_log WHERE rel_table_euid_fk = :e ORDER BY uuid"
            ),
            {"e": obj},
        ).all()
        session_user = conn.execute(text("SELECT session_user")).scalar_one()
    assert [tuple(r) for r in rows] == [
        ("INSERT", None, None, None, "alice"),
        ("UPDATE", "bstatus", "created", "ready", "bob"),
        ("UPDATE", "name", "obj", "renamed", session_user),
    ]


def test_modified_dt_maintained_and_identity_immutable(engine: Engine) -> None:
    with engine.begin() as conn:
        tpl = add_template(conn, "p", "CX")
        uuid, _ = add_instance(conn, tpl)
        created = conn.execute(
            text("SELECT modified_dt FROM generic_instance WHERE uuid = :u"), {"u": uuid}
        ).scalar_one()
    with engine.begin() as conn:
        conn.execute(text("UPDATE generic_instance SET bstatus = 'x' WHERE uuid = :u"), {"u": uuid})
        modified = conn.execute(
            text("SELECT modified_dt FROM generic_instance WHERE uuid = :u"), {"u": uuid}
        ).scalar_one()
    assert modified > created
    with pytest.raises(DBAPIError, match="cannot be changed"), engine.begin() as conn:
        conn.execute(text("UPDATE generic_instance SET euid_seq = 99 WHERE uuid = :u"), {"u": uuid})


def test_delete_is_soft_with_full_old_record_audited(engine: Engine) -> None:
    with engine.begin() as conn:
        tpl = add_template(conn, "p", "CX")
        a, a_euid = add_instance(conn, tpl, "a")
        b, _ = add_instance(conn, tpl, "b")
        edge = link(conn, a, b)
    with engine.begin() as conn:
        set_audit_user(conn, "carol")
        conn.execute(text("DELETE FROM generic_instance WHERE uuid = :u"), {"u": a})
        conn.execute(text("DELETE FROM generic_instance_lineage WHERE euid = :e"), {"e": edge})
        conn.execute(text("DELETE FROM generic_template WHERE uuid = :u"), {"u": tpl})
    with engine.begin() as conn:
        conn.execute(
            text("DELETE FROM generic_instance WHERE uuid = :u"), {"u": a}
        )  # again: no new rows
        flags = conn.execute(
            text(
                "SELECT (SELECT is_deleted FROM generic_instance WHERE uuid = :a),"
                " (SELECT is_deleted FROM generic_instance_lineage WHERE euid = :e),"
                " (SELECT is_deleted FROM generic_template WHERE uuid = :t),"
                " (SELECT count(*) FROM generic_instance)"
            ),
            {"a": a, "e": edge, "t": tpl},
        ).one()
        deletes = conn.execute(
            text(
                "SELECT old_value, changed_by FROM audit_log"
                " WHERE operation_type = 'DELETE' AND rel_table_euid_fk = :e"
            ),
            {"e": a_euid},
        ).all()
    assert tuple(flags) == (True, True, True, 2)
    assert len(deletes) == 1
    old_record, who = deletes[0]
    assert who == "carol"
    assert old_record["euid"] == a_euid and old_record["name"] == "a"
    assert old_record["is_deleted"] is False


@pytest.mark.parametrize(
    "table", ["generic_template", "generic_instance", "generic_instance_lineage", "audit_log"]
)
def test_truncate_is_refused(engine: Engine, table: str) -> None:
    with pytest.raises(DBAPIError, match="TRUNCATE"), engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {table} CASCADE"))


def test_audit_log_is_append_only(engine: Engine) -> None:
    with engine.begin() as conn:
        add_template(conn, "p", "CX")
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log"))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET changed_by = 'mallory'"))


def test_self_loop_and_cycles_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        tpl = add_template(conn, "p", "CX")
        a, _ = add_instance(conn, tpl, "a")
        b, _ = add_instance(conn, tpl, "b")
        c, _ = add_instance(conn, tpl, "c")
        link(conn, a, b)
        link(conn, b, c)
    with pytest.raises(IntegrityError, match="self_loop"), engine.begin() as conn:
        link(conn, a, a)
    with pytest.raises(DBAPIError, match="cycle"), engine.begin() as conn:
        link(conn, c, a)
    # a different relationship type still closes a cycle
    with pytest.raises(DBAPIError, match="cycle"), engine.begin() as conn:
        link(conn, c, a, "derived_from")


def test_undeleting_an_edge_that_closes_a_cycle_is_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        tpl = add_template(conn, "p", "CX")
        a, _ = add_instance(conn, tpl, "a")
        b, _ = add_instance(conn, tpl, "b")
        back = link(conn, b, a)
        conn.execute(text("DELETE FROM generic_instance_lineage WHERE euid = :e"), {"e": back})
        link(conn, a, b)
    with pytest.raises(DBAPIError, match="cycle"), engine.begin() as conn:
        conn.execute(
            text("UPDATE generic_instance_lineage SET is_deleted = false WHERE euid = :e"),
            {"e": back},
        )


def _race(engine: Engine, first: tuple[int, int], second: tuple[int, int]) -> list[str]:
    """Insert two edges from two transactions that overlap in time; report outcomes.

    Both start together and hold their transaction open for a while after
    inserting, so without the guard both inserts would pass their checks
    before either commits.
    """
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def worker(edge: tuple[int, int]) -> None:
        try:
            with engine.begin() as conn:
                barrier.wait(timeout=10)
                link(conn, *edge)
                conn.execute(text("SELECT pg_sleep(0.5)"))
        except DBAPIError as exc:
            outcomes.append("cycle" if "cycle" in str(exc.orig) else f"error: {exc.orig}")
        else:
            outcomes.append("ok")

    threads = [threading.Thread(target=worker, args=(e,)) for e in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return sorted(outcomes)


def test_racing_transactions_cannot_build_a_cycle_together(engine: Engine) -> None:
    with engine.begin() as conn:
        tpl = add_template(conn, "p", "CX")
        a, _ = add_instance(conn, tpl, "a")
        b, _ = add_instance(conn, tpl, "b")
        c, _ = add_instance(conn, tpl, "c")
        d, _ = add_instance(conn, tpl, "d")
        link(conn, b, c)  # committed path b -> c
    # A->B and B->A at the same time: exactly one may win.
    outcomes = _race(engine, (a, b), (b, a))
    assert outcomes == ["cycle", "ok"], outcomes
    # a longer cycle through a committed edge: d -> b and c -> d race
    outcomes = _race(engine, (d, b), (c, d))
    assert outcomes == ["cycle", "ok"], outcomes
    with engine.begin() as conn:
        count = conn.execute(
            text("SELECT count(*) FROM generic_instance_lineage WHERE NOT is_deleted")
        ).scalar_one()
    assert count == 3


def test_new_children_under_new_parent_do_not_wait_for_the_cycle_lock(engine: Engine) -> None:
    with engine.begin() as conn:
        tpl = add_template(conn, "p", "CX")
        x, _ = add_instance(conn, tpl, "x")
        y, _ = add_instance(conn, tpl, "y")
    holder = engine.connect()
    try:
        holder.begin()
        link(holder, x, y)  # edge into an existing node: takes the cycle-guard lock
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '2s'"))
            plate, _ = add_instance(conn, tpl, "plate")
            wells = (
                conn.execute(
                    text(
                        "INSERT INTO generic_instance (name, template_uuid)"
                        " SELECT 'w' || g, :t FROM generate_series(1, 96) g RETURNING uuid"
                    ),
                    {"t": tpl},
                )
                .scalars()
                .all()
            )
            conn.execute(
                text(
                    "INSERT INTO generic_instance_lineage (parent_instance_uuid, child_instance_uuid)"
                    " SELECT :p, unnest(CAST(:w AS bigint[]))"
                ),
                {"p": plate, "w": list(wells)},
            )
            # an existing parent over a new child is fine too
            link(conn, x, plate)
        # while an edge into an existing node must wait, and times out
        with pytest.raises(DBAPIError, match="lock timeout"), engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '200ms'"))
            link(conn, plate, y)
    finally:
        holder.rollback()
        holder.close()


def test_repeatable_read_waiter_gets_serialization_failure(engine: Engine) -> None:
    with engine.begin() as conn:
        tpl = add_template(conn, "p", "CX")
        a, _ = add_instance(conn, tpl, "a")
        b, _ = add_instance(conn, tpl, "b")
        c, _ = add_instance(conn, tpl, "c")
    holder = engine.connect()
    result: list[str] = []
    try:
        holder.begin()
        link(holder, a, b)

        def waiter() -> None:
            rr = engine.connect().execution_options(isolation_level="REPEATABLE READ")
            try:
                with rr.begin():
                    link(rr, b, c)
            except (DBAPIError, InternalError) as exc:
                result.append(type(exc.orig).__name__)
            else:
                result.append("ok")
            finally:
                rr.close()

        thread = threading.Thread(target=waiter)
        thread.start()
        thread.join(timeout=1)
        assert thread.is_alive()  # it waits for the guard
        holder.commit()
        thread.join(timeout=10)
    finally:
        holder.close()
    assert result == ["SerializationFailure"]


def test_live_singleton_and_live_edge_uniqueness(engine: Engine) -> None:
    with engine.begin() as conn:
        tpl = add_template(conn, "single", "CX", singleton=True)
        conn.execute(
            text(
                "INSERT INTO generic_instance (name, template_uuid, is_singleton) VALUES ('s', :t, true)"
            ),
            {"t": tpl},
        )
    with (
        pytest.raises(IntegrityError, match="uq_generic_instance_live_singleton"),
        engine.begin() as conn,
    ):
        conn.execute(
            text(
                "INSERT INTO generic_instance (name, template_uuid, is_singleton) VALUES ('s', :t, true)"
            ),
            {"t": tpl},
        )
    with engine.begin() as conn:
        a, _ = add_instance(conn, tpl, "a")
        b, _ = add_instance(conn, tpl, "b")
        edge = link(conn, a, b)
    with (
        pytest.raises(IntegrityError, match="uq_generic_instance_lineage_live_edge"),
        engine.begin() as conn,
    ):
        link(conn, a, b)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM generic_instance_lineage WHERE euid = :e"), {"e": edge})
        link(conn, a, b)  # the deleted edge no longer counts
