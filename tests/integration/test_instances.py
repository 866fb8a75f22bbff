"""Instances through the library: trees from layouts, schema validation, bulk, queries."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine, func, select, text

from tapdb_core import audit, euid, instances, lineage, templates
from tapdb_core.errors import (
    CycleError,
    InstanceNotFoundError,
    TemplateNotFoundError,
    ValidationError,
)
from tapdb_core.tables import audit_log, generic_instance, generic_instance_lineage
from tapdb_core.templates import TemplateSpec

PLATE96 = "container/plate/fixed-plate-96/1.0/"
DNA = "content/sample/dna/1.0/"


def _count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_plate_with_96_wells_in_a_handful_of_statements(seeded_engine: Engine) -> None:
    statements: list[str] = []

    from sqlalchemy import event

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    with seeded_engine.begin() as conn:
        event.listen(conn, "before_cursor_execute", count)
        instances.create_tree(conn, PLATE96, "PLATE-000")
        cold = len(statements)
        statements.clear()
        tree = instances.create_tree(conn, PLATE96, "PLATE-001")
        event.remove(conn, "before_cursor_execute", count)
    # cold: one read per distinct template (plate, well, their actions), then
    # warm: one statement locks the templates, inserts the action sets (once,
    # shared by the wells), draws the sequence values, inserts every instance and edge
    assert cold <= 3 + 12
    assert len(statements) == 1, statements
    (statement,) = statements
    for part in (
        "FOR SHARE",
        "INSERT INTO tapdb_action_set",
        "nextval",
        "INSERT INTO generic_instance ",
        "INSERT INTO generic_instance_lineage",
    ):
        assert part in statement
    root = tree.root
    assert euid.parse(root.euid).prefix == "CX"
    assert root.name == "PLATE-001" and root.polymorphic_discriminator == "container_instance"
    wells = tree.instances[1:]
    assert len(wells) == 96 and len(tree.lineages) == 96
    assert {euid.parse(w.euid).prefix for w in wells} == {"CWX"}
    addresses = {w.properties["address"] for w in wells}
    assert {"A1", "H12", "D7"} <= addresses and len(addresses) == 96
    a1 = next(w for w in wells if w.properties["address"] == "A1")
    assert a1.properties["row_name"] == "A" and a1.properties["col_idx"] == 0
    with seeded_engine.connect() as conn:
        kids = lineage.children(conn, root)
    assert len(kids) == 96 and {k.relationship_type for k in kids} == {"contains"}


def test_properties_merge_and_schema_violations_write_nothing(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        sample = instances.create(
            conn, DNA, "Sample-001", {"concentration": 25.5, "volume_ul": 100}
        )
    assert sample.properties["concentration"] == 25.5
    assert sample.properties["volume_ul"] == 100
    assert "din" in sample.properties  # template default kept
    before = _count(seeded_engine, generic_instance), _count(seeded_engine, audit_log)
    with pytest.raises(ValidationError) as err, seeded_engine.begin() as conn:
        instances.create(conn, DNA, "bad", {"concentration": -1, "volume_ul": "lots"})
    paths = sorted(v.path for v in err.value.violations)
    assert paths == ["/properties/concentration", "/properties/volume_ul"]
    assert isinstance(err.value, ValueError)
    with pytest.raises(ValidationError), seeded_engine.begin() as conn:
        instances.update_properties(conn, sample.euid, {"concentration": -5})
    assert (_count(seeded_engine, generic_instance), _count(seeded_engine, audit_log)) == before
    with seeded_engine.begin() as conn:
        updated = instances.update_properties(conn, sample.euid, {"concentration": 30})
    assert updated.properties["concentration"] == 30 and updated.properties["volume_ul"] == 100


def test_unknown_template_and_wildcard_versions(seeded_engine: Engine) -> None:
    with (
        pytest.raises(TemplateNotFoundError, match=r"nope/nope/nope/1\.0"),
        seeded_engine.begin() as conn,
    ):
        instances.create(conn, "nope/nope/nope/1.0", "x")
    spec = TemplateSpec(
        name="DNA v1.10",
        polymorphic_discriminator="content_template",
        category="content",
        type="sample",
        subtype="dna",
        version="1.10",
        instance_prefix="MX",
    )
    with seeded_engine.begin() as conn:
        templates.upsert_template(conn, spec)
        newest = instances.create(conn, "content/sample/dna/*", "newest")
    assert newest.version == "1.10"  # 1.10 is newer than 1.0 (and than 1.9)


def test_bulk_create_streams_batches_and_validates(seeded_engine: Engine) -> None:
    rows = ((f"S-{i}", {"concentration": i % 7}) for i in range(2500))
    with seeded_engine.begin() as conn:
        made = instances.create_many(conn, DNA, rows, batch_size=1000)
        found = instances.find(conn, template_code=DNA, properties={"concentration": 3}, limit=None)
    assert made == 2500
    assert len(found) == len([i for i in range(2500) if i % 7 == 3])
    before = _count(seeded_engine, generic_instance)
    bad = [("ok", {"concentration": 1}), ("bad", {"concentration": -1})]
    with pytest.raises(ValidationError, match="bulk row 1"), seeded_engine.begin() as conn:
        instances.create_many(conn, DNA, bad)
    assert _count(seeded_engine, generic_instance) == before


def test_find_filters_and_pagination(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        made = [instances.create(conn, DNA, f"S{i}", {"concentration": i}) for i in range(5)]
        instances.set_status(conn, made[0].euid, "qc_failed")
        instances.delete(conn, made[1].euid)
        assert [i.euid for i in instances.find(conn, bstatus="qc_failed")] == [made[0].euid]
        live = instances.find(conn, category="content", type="sample", subtype="dna")
        assert made[1].euid not in {i.euid for i in live}
        everything = instances.find(conn, template_code=DNA, include_deleted=True)
        assert made[1].euid in {i.euid for i in everything}
        page = instances.find(conn, template_code=DNA, limit=2, offset=1)
        assert [i.euid for i in page] == [made[2].euid, made[3].euid]
        with pytest.raises(InstanceNotFoundError):
            instances.get(conn, made[1].euid)
        assert instances.get(conn, made[1].euid, include_deleted=True).is_deleted


def test_cascade_soft_delete_along_relationship_types(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        tree = instances.create_tree(conn, PLATE96, "P")
        sample = instances.create(conn, DNA, "S")
        lineage.link(conn, tree.instances[1], sample, "derived_from")
        deleted = instances.delete(
            conn, tree.root.euid, cascade=True, relationship_types=["contains"]
        )
    assert len(deleted) == 97 and sample.euid not in deleted
    with seeded_engine.begin() as conn:
        assert not instances.get(conn, sample.euid).is_deleted
        history = audit.history(conn, tree.root.euid)
    assert [h.operation_type for h in history][-1] == "DELETE"


def test_singleton_race_returns_the_same_instance(seeded_engine: Engine) -> None:
    code = "workflow/assay/accessioning/1.0/"
    results: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        try:
            with seeded_engine.begin() as conn:
                barrier.wait(timeout=10)
                inst = instances.get_or_create_singleton(conn, code, "Accessioning")
                conn.execute(text("SELECT pg_sleep(0.3)"))
                results.append(inst.euid)
        except BaseException as exc:  # report anything to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert len(results) == 2 and results[0] == results[1]
    with seeded_engine.connect() as conn:
        live = instances.find(conn, template_code=code)
    assert len(live) == 1
    with pytest.raises(ValidationError, match="not a singleton"), seeded_engine.begin() as conn:
        instances.get_or_create_singleton(conn, DNA, "x")


def test_lineage_walks_paths_graphs_and_cycles(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        a, b, c, d = (instances.create(conn, DNA, n) for n in "abcd")
        lineage.link(conn, a, b, "derived_from")
        lineage.link(conn, b, c)
        lineage.link(conn, a, c)  # c is at depth 1 and 2: reported once, at 1
        lineage.link(conn, c, d)
        down = lineage.descendants(conn, a)
        assert [(r.instance.euid, r.depth) for r in down] == [(b.euid, 1), (c.euid, 1), (d.euid, 2)]
        assert [r.instance.euid for r in lineage.descendants(conn, a, max_depth=1)] == [
            b.euid,
            c.euid,
        ]
        only = lineage.descendants(conn, a, relationship_types=["derived_from"])
        assert [r.instance.euid for r in only] == [b.euid]
        up = lineage.ancestors(conn, d.euid)
        assert [(r.instance.euid, r.depth) for r in up] == [(c.euid, 1), (a.euid, 2), (b.euid, 2)]
        assert [i.euid for i in lineage.path(conn, a, d)] == [a.euid, c.euid, d.euid]
        assert lineage.path(conn, d, a) == []
        with pytest.raises(CycleError, match="cycle"):
            with conn.begin_nested():
                lineage.link(conn, d, a)
        with pytest.raises(CycleError):
            with conn.begin_nested():
                lineage.link(conn, a, a)
        lineage.unlink(conn, b, c)
        assert [r.instance.euid for r in lineage.parents(conn, c)] == [a.euid]
        graph = lineage.graph(conn, c, depth=1)
        cy = graph.to_cytoscape()
        assert {n["data"]["id"] for n in cy["nodes"]} == {a.euid, c.euid, d.euid}
        assert {(e["data"]["source"], e["data"]["target"]) for e in cy["edges"]} == {
            (a.euid, c.euid),
            (c.euid, d.euid),
        }
        dot = graph.to_dot()
        assert dot.startswith("digraph") and f'"{a.euid}" -> "{c.euid}"' in dot


def test_edges_written_by_library_have_names_and_types(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        a = instances.create(conn, DNA, "a")
        b = instances.create(conn, DNA, "b")
        edge = lineage.link(conn, a.euid, b.euid, "derived_from", {"note": "split"})
        row = conn.execute(
            select(generic_instance_lineage).where(generic_instance_lineage.c.euid == edge.euid)
        ).one()
    assert row.name == f"{a.euid}->{b.euid}"
    assert row.parent_type == "content_instance" and row.json_addl == {"note": "split"}


def test_link_to_missing_or_deleted_instance_names_it(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        a = instances.create(conn, DNA, "a")
        b = instances.create(conn, DNA, "b")
        instances.delete(conn, b.euid)
    ghost = euid.encode("MX", 999_999)
    with seeded_engine.begin() as conn:
        with pytest.raises(InstanceNotFoundError, match=ghost):
            lineage.link(conn, a.euid, ghost)
        with pytest.raises(InstanceNotFoundError, match=b.euid):
            lineage.link(conn, a, b)
        with pytest.raises(euid.EUIDError):
            lineage.link(conn, "not-an-euid", a)
