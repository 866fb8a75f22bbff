"""Trigger functions keep good plans as their tables grow under a long-lived connection.

plpgsql caches a generic plan per session after a few executions. A plan made
while a table was tiny (a sequential scan is cheapest then) was kept by
pooled connections while the table grew: the cycle guard's "is any child
older than this transaction" check scanned all of generic_instance for every
link (measured: 4 ms at 6,000 instances, 26 ms at 55,000, linear beyond).
These tests capture the plans the functions really run (auto_explain of
nested statements) after the table has grown under the same connection.
"""

from __future__ import annotations

from sqlalchemy import Engine, text

from tapdb_core import instances, lineage
from tests.integration.sqlhelpers import explaining

DNA = "content/sample/dna/1.0/"


def test_the_cycle_guard_probes_by_index_after_the_table_grew(seeded_engine: Engine) -> None:
    with seeded_engine.connect() as conn:
        # a tiny table: the session plans (and caches) the guard's statements now
        with conn.begin():
            few = [instances.create(conn, DNA, f"early-{i}") for i in range(4)]
        for i in range(8):
            with conn.begin():
                lineage.link(conn, few[i % 2].euid, few[2 + i % 2].euid, f"early-{i}")
        # the table grows elsewhere, as it does under a long-lived pooled connection
        with seeded_engine.begin() as other:
            instances.create_many(other, DNA, (f"bulk-{i}" for i in range(20_000)))
        with conn.begin():
            late = [instances.create(conn, DNA, f"late-{i}") for i in range(2)]
        with conn.begin():
            plans = explaining(conn)
            lineage.link(conn, few[0].euid, late[0].euid, "late")
            lineage.link(conn, late[1].euid, few[1].euid, "late")
    guard = [p for p in plans if "created_xid" in p]
    assert guard, plans
    assert not [p for p in guard if "Seq Scan on generic_instance" in p], guard


def _statements(plans: list[str], marker: str) -> list[str]:
    return [p for p in plans if marker in p]


def test_a_big_first_update_does_not_make_later_soft_deletes_jit_compile(
    seeded_engine: Engine,
) -> None:
    """Revision 0009: the audit trigger's transition-table estimates froze at the
    session's first UPDATE; after a big one every one-row audit statement (each row
    of a soft DELETE) was JIT-compiled, ~300 ms a row."""
    with seeded_engine.begin() as conn:
        instances.create_many(conn, DNA, (f"status-{i}" for i in range(3_000)))
    with seeded_engine.connect() as conn:
        with conn.begin():
            conn.execute(
                text("SET LOCAL jit_above_cost = 100000")
            )  # the server default, explicitly
            conn.execute(
                text("UPDATE generic_instance SET bstatus = 'active' WHERE name LIKE 'status-%'")
            )
            plans = explaining(conn)
            conn.execute(
                text(
                    "DELETE FROM generic_instance WHERE uuid IN (SELECT uuid FROM generic_instance"
                    " WHERE name LIKE 'status-%' ORDER BY uuid LIMIT 5)"
                )
            )
    audited = _statements(plans, "INSERT INTO audit_log")
    assert len(audited) >= 5, plans
    assert not [p for p in audited if "JIT:" in p], audited


def test_a_small_first_update_does_not_make_a_later_big_one_quadratic(
    seeded_engine: Engine,
) -> None:
    with seeded_engine.begin() as conn:
        made = [instances.create(conn, DNA, f"first-{i}") for i in range(2)]
        instances.create_many(conn, DNA, (f"many-{i}" for i in range(3_000)))
    with seeded_engine.connect() as conn:
        with conn.begin():
            conn.execute(
                text("UPDATE generic_instance SET bstatus = 'one' WHERE euid = :e"),
                {"e": made[0].euid},
            )
            plans = explaining(conn)
            conn.execute(
                text("UPDATE generic_instance SET bstatus = 'many' WHERE name LIKE 'many-%'")
            )
    (audit,) = [p for p in _statements(plans, "INSERT INTO audit_log") if "old_rows" in p]
    assert "Hash Join" in audit or "Merge Join" in audit, audit
    assert "JIT:" not in audit
