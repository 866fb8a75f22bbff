"""Bulk creation through COPY (tapdb_core.bulk): every guarantee of create() holds."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from tapdb_core import euid, instances
from tapdb_core.bulk import BulkRow, BulkRowError, bulk_create
from tapdb_core.errors import EUIDError, ValidationError

DNA = "content/sample/dna/1.0/"


def _rows(n: int, start: int = 0) -> Iterator[tuple[str, dict[str, object]]]:
    return ((f"B-{i}", {"concentration": i % 50}) for i in range(start, start + n))


def test_every_instance_gets_exactly_one_insert_audit_row(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        assert bulk_create(conn, DNA, _rows(1234), batch_size=500) == 1234
    with seeded_engine.connect() as conn:
        per_instance = conn.execute(
            text(
                "SELECT i.euid, count(a.uuid) FROM generic_instance i"
                " LEFT JOIN audit_log a ON a.rel_table_name = 'generic_instance'"
                "  AND a.rel_table_uuid_fk = i.uuid AND a.operation_type = 'INSERT'"
                "  AND a.rel_table_euid_fk = i.euid"
                " WHERE i.name LIKE 'B-%' GROUP BY i.euid"
            )
        ).all()
    assert len(per_instance) == 1234
    assert {count for _, count in per_instance} == {1}


def test_euids_are_unique_valid_in_row_order_and_continue_afterwards(
    seeded_engine: Engine,
) -> None:
    with seeded_engine.begin() as conn:
        before = instances.create(conn, DNA, "before")
        bulk_create(conn, DNA, _rows(1100), batch_size=300)
        after = instances.create(conn, DNA, "after")
    with seeded_engine.connect() as conn:
        made = conn.execute(
            text(
                "SELECT name, euid, euid_seq FROM generic_instance WHERE name LIKE 'B-%'"
                " ORDER BY euid_seq"
            )
        ).all()
    assert len({r.euid for r in made}) == 1100
    for r in made:
        euid.parse(r.euid)
    # row order is EUID order, and the rows sit between the instances around them
    assert [r.name for r in made] == [f"B-{i}" for i in range(1100)]
    seqs = [r.euid_seq for r in made]
    assert euid.parse(before.euid).seq < seqs[0] and seqs[-1] < euid.parse(after.euid).seq


def test_rows_store_what_create_would_store(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        one = instances.create(conn, DNA, "single", {"concentration": 7, "comments": "x"})
        bulk_create(conn, DNA, [("bulk", {"concentration": 7, "comments": "x"}), "bare"])
        bulk, bare = (instances.find(conn, template_code=DNA, limit=None))[1:]
        plain = instances.create(conn, DNA, "plain")
    assert bulk.json_addl == one.json_addl
    assert (bulk.bstatus, bulk.template_uuid) == (one.bstatus, one.template_uuid)
    assert bare.json_addl == plain.json_addl


def test_a_bad_row_in_the_middle_refuses_its_whole_batch_naming_line_and_field(
    seeded_engine: Engine,
) -> None:
    rows = [BulkRow(f"F-{i}", {"concentration": i}, line=i + 2) for i in range(250)]
    rows[160] = BulkRow("F-160", {"concentration": -5}, line=162)  # schema: minimum 0
    with seeded_engine.connect() as conn, conn.begin():
        with pytest.raises(BulkRowError) as exc:
            bulk_create(conn, DNA, rows, batch_size=100)
        # the first batch was written in this transaction, nothing of the second
        written = conn.execute(
            text("SELECT count(*) FROM generic_instance WHERE name LIKE 'F-%'")
        ).scalar_one()
        assert written == 100
        conn.rollback()
    assert exc.value.line == 162
    assert exc.value.field == "/properties/concentration"
    assert "line 162" in str(exc.value) and "/properties/concentration" in str(exc.value)
    with seeded_engine.connect() as conn:
        assert (
            conn.execute(
                text(
                    "SELECT count(*) FROM audit_log a JOIN generic_instance i"
                    " ON i.uuid = a.rel_table_uuid_fk WHERE i.name LIKE 'F-%'"
                )
            ).scalar_one()
            == 0
        )


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (BulkRow("", None, line=3), "/name"),
        (BulkRow("nul\x00", None, line=3), "/name"),
        (BulkRow("x", {"notes": float("nan")}, line=3), "/properties/notes"),
        (BulkRow("x", {"concentration": "lots"}, line=3), "/properties/concentration"),
    ],
)
def test_bad_rows_name_line_and_field(seeded_engine: Engine, bad: BulkRow, field: str) -> None:
    with pytest.raises(BulkRowError) as exc, seeded_engine.begin() as conn:
        bulk_create(conn, DNA, [BulkRow("ok", None, line=2), bad])
    assert (exc.value.line, exc.value.field) == (3, field)
    assert isinstance(exc.value, ValidationError)
    with seeded_engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM generic_instance WHERE name = 'ok'")
            ).scalar_one()
            == 0
        )


def test_the_template_stays_share_locked_until_commit(seeded_engine: Engine) -> None:
    with seeded_engine.connect() as conn, conn.begin():
        bulk_create(conn, DNA, _rows(10))
        with seeded_engine.connect() as other, other.begin():
            other.execute(text("SET LOCAL lock_timeout = '200ms'"))
            with pytest.raises(OperationalError, match="lock timeout"):
                other.execute(
                    text(
                        "UPDATE generic_template SET json_addl_schema = NULL"
                        " WHERE category = 'content' AND type = 'sample' AND subtype = 'dna'"
                        " AND version = '1.0'"
                    )
                )


def test_a_template_changed_elsewhere_is_read_again_and_its_new_schema_applies(
    seeded_engine: Engine,
) -> None:
    with seeded_engine.begin() as conn:
        bulk_create(conn, DNA, ["warm the cache"])
    tight = '{"type": "object", "properties": {"properties": {"type": "object", "properties": {"concentration": {"maximum": 10}}}}}'
    with seeded_engine.begin() as other:
        other.execute(
            text(
                "UPDATE generic_template SET json_addl_schema = CAST(:s AS jsonb)"
                " WHERE category = 'content' AND type = 'sample' AND subtype = 'dna'"
                " AND version = '1.0'"
            ),
            {"s": tight},
        )
    with pytest.raises(BulkRowError) as exc, seeded_engine.begin() as conn:
        bulk_create(conn, DNA, [("too much", {"concentration": 11})])
    assert exc.value.field == "/properties/concentration"


def _peak_bytes(n: int, batch_size: int, engine: Engine) -> int:
    with engine.connect() as conn, conn.begin():
        bulk_create(conn, DNA, _rows(200), batch_size=batch_size)  # warm caches first
        tracemalloc.start()
        try:
            bulk_create(conn, DNA, _rows(n, start=10_000_000), batch_size=batch_size)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        conn.rollback()
    return peak


def test_memory_is_bounded_by_the_batch_not_the_total(seeded_engine: Engine) -> None:
    small = _peak_bytes(1_000, 250, seeded_engine)
    large = _peak_bytes(20_000, 250, seeded_engine)
    # twenty times the rows, the same batch: the peak must not grow with the total
    assert large < 2 * small + 256 * 1024, (small, large)


# -- keyset paging over what bulk loads wrote (instances.find(after=...)) ---------------


def test_keyset_pages_walk_every_live_row_once_in_creation_order(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        bulk_create(conn, DNA, _rows(230), batch_size=100)
        doomed = instances.find(conn, template_code=DNA, limit=None)[57].euid
        instances.delete(conn, doomed)
    with seeded_engine.connect() as conn:
        everything = [i.euid for i in instances.find(conn, template_code=DNA, limit=None)]
        pages: list[list[str]] = []
        after: str | None = None
        while page := [
            i.euid for i in instances.find(conn, template_code=DNA, limit=50, after=after)
        ]:
            pages.append(page)
            after = page[-1]
        by_offset = [
            [i.euid for i in instances.find(conn, template_code=DNA, limit=50, offset=k * 50)]
            for k in range(len(pages))
        ]
        unknown = euid.encode("MX", 10**9)
        assert instances.find(conn, after=unknown) == []
        with pytest.raises(EUIDError):
            instances.find(conn, after="not an euid")
    assert doomed not in everything
    assert [e for page in pages for e in page] == everything
    assert len(everything) == 229 and [len(p) for p in pages] == [50, 50, 50, 50, 29]
    assert pages == by_offset


def test_find_by_property_is_served_by_the_properties_gin_index(seeded_engine: Engine) -> None:
    """The filter must be the index's own expression (json_addl -> 'properties'), else
    every property search reads the whole table."""
    from sqlalchemy import event

    statements: list[tuple[str, object]] = []
    with seeded_engine.begin() as conn:
        bulk_create(conn, DNA, ((f"G-{i}", {"barcode": f"BC-{i}"}) for i in range(300)))
        event.listen(
            conn, "before_cursor_execute", lambda c, cur, s, p, *a: statements.append((s, p))
        )
        found = instances.find(conn, properties={"barcode": "BC-123"})
        assert [i.name for i in found] == ["G-123"]
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        conn.execute(text("SET LOCAL enable_indexscan = off"))
        statement, params = statements[0]
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("EXPLAIN " + statement, params)
        plan = "\n".join(r[0] for r in cursor.fetchall())
    assert "ix_generic_instance_properties" in plan, plan
