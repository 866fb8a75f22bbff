"""Revision 0011: triggers that neither re-plan nor walk when there is nothing to find.

* tapdb_euid_format pins its own search_path: it no longer re-plans when the
  session's path differs from the audit trigger's, and a function in the
  caller's path cannot change how an EUID is computed.
* The audit triggers read their prefix and sequence directly, and create the
  prefix's sequence when it is missing.
* The cycle walk is skipped when no new edge's child has an edge out of it
  (a plate's wells); it still runs, and still refuses cycles, otherwise.

The race between two transactions linking childless nodes in opposite
directions (the case the shortcut must not open) is
tests/integration/test_isolation_guarantees.py::test_racing_opposite_links_never_commit_a_cycle,
at every isolation level.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from tapdb_core import euid, instances
from tests.integration.sqlhelpers import add_instance, add_template, explaining, link

PLATE96 = "container/plate/fixed-plate-96/1.0/"

# Built-in names a body computing an EUID may use; each shadow returns nonsense.
SHADOWS = (
    "CREATE FUNCTION shadow.substr(text, integer, integer) RETURNS text"
    " LANGUAGE sql IMMUTABLE AS $$ SELECT 'Q'::text $$",
    "CREATE FUNCTION shadow.strpos(text, text) RETURNS integer"
    " LANGUAGE sql IMMUTABLE AS $$ SELECT 1 $$",
    "CREATE FUNCTION shadow.ltrim(text, text) RETURNS text"
    " LANGUAGE sql IMMUTABLE AS $$ SELECT 'Q'::text $$",
    "CREATE FUNCTION shadow.length(text) RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT 1 $$",
    "CREATE FUNCTION shadow.get_byte(bytea, integer) RETURNS integer"
    " LANGUAGE sql IMMUTABLE AS $$ SELECT 7 $$",
    "CREATE FUNCTION shadow.encode(bytea, text) RETURNS text"
    " LANGUAGE sql IMMUTABLE AS $$ SELECT 'Q'::text $$",
    "CREATE FUNCTION shadow.chr(integer) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'Q'::text $$",
    "CREATE FUNCTION shadow.ascii(text) RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT 1 $$",
    "CREATE FUNCTION shadow.left(text, integer) RETURNS text"
    " LANGUAGE sql IMMUTABLE AS $$ SELECT 'Q'::text $$",
    "CREATE FUNCTION shadow.right(text, integer) RETURNS text"
    " LANGUAGE sql IMMUTABLE AS $$ SELECT 'Q'::text $$",
)


def test_a_function_in_the_callers_search_path_cannot_change_an_euid(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA shadow"))
        for statement in SHADOWS:
            conn.execute(text(statement))
        tpl = add_template(conn, "shadowed", "SQ")
    with engine.begin() as conn:
        # shadow first, pg_catalog explicitly after it: unqualified built-ins resolve to shadow
        conn.execute(text("SET LOCAL search_path = shadow, pg_catalog, public"))
        assert conn.execute(text("SELECT substr('abc', 1, 1)")).scalar_one() == "Q"
        uuid, stored = add_instance(conn, tpl, "shadowed")
        seq = conn.execute(
            text("SELECT euid_seq FROM generic_instance WHERE uuid = :u"), {"u": uuid}
        ).scalar_one()
        audited = conn.execute(
            text(
                "SELECT euid_prefix, euid_seq, euid FROM audit_log"
                " WHERE rel_table_name = 'generic_instance' AND rel_table_uuid_fk = :u"
            ),
            {"u": uuid},
        ).one()
    assert stored == euid.encode("SQ", seq)
    assert audited.euid == euid.encode(audited.euid_prefix, audited.euid_seq)


def test_an_audit_prefix_without_a_sequence_gets_one_on_first_use(engine: Engine) -> None:
    with engine.begin() as conn:
        tpl = add_template(conn, "prefixed", "PQ")
        conn.execute(text("SELECT tapdb_set_identity_prefix('audit_log', 'ZQ')"))
        # the prefix's sequence is missing (as after a restore of the config row alone)
        conn.execute(text("DROP SEQUENCE tapdb_euid_seq_zq"))
        uuid, _ = add_instance(conn, tpl, "first")
        conn.execute(
            text("UPDATE generic_instance SET bstatus = 'done' WHERE uuid = :u"), {"u": uuid}
        )
        rows = conn.execute(
            text(
                "SELECT operation_type, euid_prefix, euid_seq, euid FROM audit_log"
                " WHERE rel_table_uuid_fk = :u AND rel_table_name = 'generic_instance'"
                " ORDER BY uuid"
            ),
            {"u": uuid},
        ).all()
        assert conn.execute(text("SELECT to_regclass('tapdb_euid_seq_zq')")).scalar() is not None
    assert [(r.operation_type, r.euid_prefix) for r in rows] == [
        ("INSERT", "ZQ"),
        ("UPDATE", "ZQ"),
    ]
    assert [r.euid_seq for r in rows] == [1, 2]
    assert all(r.euid == euid.encode("ZQ", r.euid_seq) for r in rows)


def _walks(plans: list[str]) -> list[str]:
    return [p for p in plans if "Recursive Union" in p]


def test_a_plates_edges_into_new_wells_run_no_cycle_walk(seeded_engine: Engine) -> None:
    with seeded_engine.connect() as conn:
        with conn.begin():
            plans = explaining(conn)
            tree = instances.create_tree(conn, PLATE96, "no walk")
    assert len(tree.lineages) == 96
    assert plans, "auto_explain captured nothing"
    assert [p for p in plans if "generic_instance_lineage" in p], plans
    assert not _walks(plans), _walks(plans)


def test_an_edge_into_a_node_with_children_still_walks_and_refuses_a_cycle(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        tpl = add_template(conn, "walked", "WQ")
        a, _ = add_instance(conn, tpl, "a")
        b, _ = add_instance(conn, tpl, "b")
        c, _ = add_instance(conn, tpl, "c")
        link(conn, b, c)
    with engine.connect() as conn:
        with conn.begin():
            plans = explaining(conn)
            link(conn, a, b)  # b has an edge out of it: the walk runs, finds nothing
        assert _walks(plans)
        with conn.begin():
            with pytest.raises(DBAPIError, match="lineage cycle refused"):
                link(conn, c, a)  # c -> a -> b -> c


def test_two_new_edges_closing_a_cycle_in_one_statement_are_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        tpl = add_template(conn, "pair", "RQ")
    with engine.begin() as conn:
        # both nodes new in this transaction: no guard, and each child has the other edge
        a, _ = add_instance(conn, tpl, "a")
        b, _ = add_instance(conn, tpl, "b")
        with pytest.raises(DBAPIError, match="lineage cycle refused"):
            with conn.begin_nested():
                conn.execute(
                    text(
                        "INSERT INTO generic_instance_lineage"
                        " (parent_instance_uuid, child_instance_uuid, relationship_type)"
                        " VALUES (:a, :b, 'x'), (:b, :a, 'x')"
                    ),
                    {"a": a, "b": b},
                )
        # a soft-deleted edge out of the child cannot close a cycle: no refusal
        edge = link(conn, a, b)
        conn.execute(text("DELETE FROM generic_instance_lineage WHERE euid = :e"), {"e": edge})
        link(conn, b, a)
        live = conn.execute(
            text(
                "SELECT count(*) FROM generic_instance_lineage"
                " WHERE NOT is_deleted AND parent_instance_uuid IN (:a, :b)"
            ),
            {"a": a, "b": b},
        ).scalar_one()
    assert live == 1
