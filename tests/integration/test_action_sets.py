"""Action definitions stored once by reference (revision 0006), copied on write.

Readers, the audit trail and the action machinery must see exactly what they
saw when every instance carried its own copy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from sqlalchemy import URL, Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from tapdb_core import action_sets, instances, lineage, migrate
from tapdb_core.actions import ActionDispatcher
from tapdb_core.audit import history
from tapdb_core.errors import SerializationError, TapdbError
from tapdb_core.planning import materialise_actions
from tapdb_core.templates import TemplateSpec, get_template, upsert_templates
from tapdb_core.values import Instance

PLATE = "container/plate/fixed-plate-96/1.0/"
DNA = "content/sample/dna/1.0/"


class AnyAction(ActionDispatcher):
    """A handler for every action key: counts and succeeds."""

    def __getattr__(self, name: str) -> Callable[..., dict[str, Any]]:
        if not name.startswith("do_action_"):
            raise AttributeError(name)
        return lambda instance, action_ds, captured: {"status": "success"}


def _stored(conn: Connection, euid: str) -> Any:
    return conn.execute(
        text(
            "SELECT json_addl, action_set_digest,"
            " tapdb_instance_json_addl(json_addl, action_set_digest) AS effective"
            " FROM generic_instance WHERE euid = :e"
        ),
        {"e": euid},
    ).one()


def _first_action(instance: Instance) -> tuple[str, str]:
    groups = instance.json_addl["action_groups"]
    group = sorted(groups)[0]
    return group, sorted(groups[group])[0]


def test_a_plate_stores_its_action_definitions_once_and_reads_them_back_whole(
    seeded_engine: Engine,
) -> None:
    with seeded_engine.begin() as conn:
        tree = instances.create_tree(conn, PLATE, "P-1")
        plate = get_template(conn, PLATE)
        expected_plate_groups = materialise_actions(lambda c: get_template(conn, c), plate)
        rows = conn.execute(
            text(
                "SELECT json_addl ? 'action_groups' AS own_copy, action_set_digest"
                " FROM generic_instance WHERE uuid = ANY(:u)"
            ),
            {"u": [i.uuid for i in tree.instances]},
        ).all()
        digests = {r.action_set_digest for r in rows}
        sets = conn.execute(
            text("SELECT digest, action_groups FROM tapdb_action_set WHERE digest = ANY(:d)"),
            {"d": list(digests)},
        ).all()
        read_back = instances.get(conn, tree.root.euid)
        well = instances.get(conn, tree.instances[5].euid)
    assert len(rows) == 97 and not any(r.own_copy for r in rows)
    # plate and wells import different actions: two sets for 97 instances
    assert None not in digests and len(digests) == 2 and len(sets) == 2
    assert {s.digest for s in sets} == {action_sets.digest(s.action_groups) for s in sets}
    assert read_back.json_addl["action_groups"] == expected_plate_groups
    assert read_back.json_addl == tree.root.json_addl
    assert well.json_addl == tree.instances[5].json_addl
    assert well.json_addl["action_groups"]


def test_every_reader_sees_the_effective_json_addl(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        tree = instances.create_tree(conn, PLATE, "P-2")
        root, well = tree.root, tree.instances[1]
        stored = _stored(conn, well.euid)
        by_find = instances.find(conn, template_code=PLATE, limit=None)
        children = lineage.children(conn, root.euid)
        descendants = lineage.descendants(conn, root.euid)
        parents = lineage.parents(conn, well.euid)
        path = lineage.path(conn, root.euid, well.euid)
    assert "action_groups" not in stored.json_addl and stored.action_set_digest
    assert stored.effective == well.json_addl
    assert [i.json_addl for i in by_find if i.euid == root.euid] == [root.json_addl]
    assert {r.instance.euid: r.instance.json_addl for r in children} == {
        i.euid: i.json_addl for i in tree.instances[1:]
    }
    assert all(r.instance.json_addl["action_groups"] for r in descendants)
    assert parents[0].instance.json_addl == root.json_addl
    assert [i.json_addl for i in path] == [root.json_addl, well.json_addl]


def test_a_raw_instance_row_is_refused_by_the_value_class(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        created = instances.create(conn, DNA, "raw")
        row = conn.execute(
            text("SELECT * FROM generic_instance WHERE uuid = :u"), {"u": created.uuid}
        ).one()
    with pytest.raises(TapdbError, match="without its action set"):
        Instance.from_row(row)


def test_counting_an_execution_copies_the_definitions_into_that_instance_only(
    seeded_engine: Engine,
) -> None:
    with seeded_engine.begin() as conn:
        tree = instances.create_tree(conn, PLATE, "P-3")
        well, other = tree.instances[1], tree.instances[2]
        group, key = _first_action(well)
        before = _stored(conn, well.euid)
        required = well.json_addl["action_groups"][group][key].get("required_fields") or []
        captured = {field: "given" for field in required}
        result = AnyAction().execute_action(conn, well.euid, group, key, captured_data=captured)
        after = _stored(conn, well.euid)
        untouched = _stored(conn, other.euid)
        read = instances.get(conn, well.euid)
        changes = [
            e
            for e in history(conn, well.euid)
            if e.operation_type == "UPDATE" and e.column_name in ("json_addl", "action_set_digest")
        ]
    assert result["status"] == "success", result
    assert after.action_set_digest is None and "action_groups" in after.json_addl
    assert untouched.action_set_digest == before.action_set_digest
    assert read.json_addl["action_groups"][group][key]["action_executed"] == 1
    before_groups = before.effective["action_groups"]
    assert before_groups[group][key]["action_executed"] == 0
    # the audit trail records the effective document, as before revision 0006
    assert [e.column_name for e in changes] == ["json_addl"]
    assert changes[0].old_value == before.effective
    assert changes[0].new_value == read.json_addl


def test_writing_the_effective_document_back_keeps_the_reference(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        created = instances.create(conn, DNA, "keep", {"concentration": 1.0})
        digest = _stored(conn, created.euid).action_set_digest
        updated = instances.update_properties(conn, created.euid, {"concentration": 2.5})
        kept = _stored(conn, created.euid)
        conn.execute(
            text(
                "UPDATE generic_instance SET json_addl = jsonb_set("
                " tapdb_instance_json_addl(json_addl, action_set_digest),"
                " '{action_groups}', '{\"mine\": {}}')"
                " WHERE euid = :e"
            ),
            {"e": created.euid},
        )
        replaced = _stored(conn, created.euid)
        history_rows = [e.column_name for e in history(conn, created.euid)]
    assert updated.properties["concentration"] == 2.5
    assert updated.json_addl["action_groups"] == created.json_addl["action_groups"]
    assert kept.action_set_digest == digest and "action_groups" not in kept.json_addl
    # different action_groups written with plain SQL: the written copy wins
    assert replaced.action_set_digest is None
    assert replaced.json_addl["action_groups"] == {"mine": {}}
    assert "action_set_digest" not in history_rows


def test_action_sets_are_immutable_and_never_removed(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        instances.create(conn, DNA, "s")
    for statement in (
        "UPDATE tapdb_action_set SET action_groups = '{}'",
        "DELETE FROM tapdb_action_set",
        "TRUNCATE tapdb_action_set CASCADE",
    ):
        with seeded_engine.begin() as conn, pytest.raises(DBAPIError, match="refused"):
            conn.execute(text(statement))


def test_a_row_cannot_both_reference_a_set_and_carry_its_own_copy(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        created = instances.create(conn, DNA, "both")
    with seeded_engine.begin() as conn, pytest.raises(IntegrityError, match="action_set"):
        conn.execute(
            text(
                "INSERT INTO generic_instance (euid_prefix, euid_seq, name, template_uuid,"
                " json_addl, action_set_digest)"
                " SELECT euid_prefix, euid_seq + 100000, 'x', template_uuid,"
                " '{\"action_groups\": {}}', action_set_digest"
                " FROM generic_instance WHERE uuid = :u"
            ),
            {"u": created.uuid},
        )


def test_existing_instances_keep_the_definitions_they_were_created_with(
    seeded_engine: Engine,
) -> None:
    with seeded_engine.begin() as conn:
        first = instances.create(conn, DNA, "old")
        group, key = _first_action(first)
        code = first.json_addl["action_groups"][group][key]["action_template_code"]
        action = get_template(conn, code)
        spec = TemplateSpec(
            name=action.name,
            polymorphic_discriminator=action.polymorphic_discriminator,
            category=action.category,
            type=action.type,
            subtype=action.subtype,
            version=action.version,
            instance_prefix=action.instance_prefix,
            json_addl={
                **action.json_addl,
                "action_definition": {
                    **action.json_addl["action_definition"],
                    "comment": "changed later",
                },
            },
        )
        upsert_templates(conn, [spec])
        second = instances.create(conn, DNA, "new")
        again = instances.get(conn, first.euid)
        digests = conn.execute(
            text(
                "SELECT count(DISTINCT action_set_digest) FROM generic_instance WHERE uuid IN (:a, :b)"
            ),
            {"a": first.uuid, "b": second.uuid},
        ).scalar()
    assert "comment" not in again.json_addl["action_groups"][group][key]
    assert second.json_addl["action_groups"][group][key]["comment"] == "changed later"
    assert digests == 2


def test_soft_delete_audits_the_effective_record(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        created = instances.create(conn, DNA, "gone")
        instances.delete(conn, created.euid)
        (entry,) = [e for e in history(conn, created.euid) if e.operation_type == "DELETE"]
    assert entry.old_value["json_addl"] == created.json_addl
    assert "action_set_digest" not in entry.old_value


def test_bulk_rows_reference_the_template_set(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        made = instances.create_many(conn, DNA, [f"b{i}" for i in range(50)])
        stats = conn.execute(
            text(
                "SELECT count(*) AS n, count(DISTINCT action_set_digest) AS sets,"
                " bool_or(json_addl ? 'action_groups') AS own"
                " FROM generic_instance WHERE name LIKE 'b%' AND template_uuid = :t"
            ),
            {"t": get_template(conn, DNA).uuid},
        ).one()
        one = instances.find(conn, template_code=DNA, limit=1)[0]
        single = instances.create(conn, DNA, "single")
    assert made == 50 and stats.n == 50 and stats.sets == 1 and not stats.own
    assert one.json_addl["action_groups"] == single.json_addl["action_groups"]


def _race_box(engine: Engine, subtype: str) -> str:
    """A new template whose actions no instance uses yet; its code."""
    with engine.begin() as conn:
        upsert_templates(
            conn,
            [
                TemplateSpec(
                    name=f"Race box {subtype}",
                    polymorphic_discriminator="container_template",
                    category="container",
                    type="box",
                    subtype=subtype,
                    version="1.0",
                    instance_prefix="CX",
                    json_addl={
                        "properties": {},
                        "action_imports": {
                            "note": "action/core/create-note/1.0/",
                            subtype: "action/core/set-status/1.0/",
                        },
                    },
                )
            ],
        )
    return f"container/box/{subtype}/1.0/"


def _waiting_on_a_lock(engine: Engine, marker: str) -> bool:
    """Whether the session running ``marker``'s transaction waits on a lock (polled)."""
    deadline = threading.Event()
    timer = threading.Timer(60, deadline.set)
    timer.start()
    try:
        with engine.connect() as conn:
            while not deadline.is_set():
                waiting = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE application_name = :m AND wait_event_type = 'Lock'"
                    ),
                    {"m": marker},
                ).scalar()
                conn.rollback()
                if waiting:
                    return True
                deadline.wait(0.01)
        return False
    finally:
        timer.cancel()


def test_first_use_of_a_set_by_two_transactions_at_read_committed(seeded_engine: Engine) -> None:
    """The second writer waits for the first's uncommitted set, then references it."""
    code = _race_box(seeded_engine, "race-rc")
    marker = "tapdb-race-rc-second"
    outcomes: list[BaseException | str] = []
    first_inserted = threading.Event()

    def second() -> None:
        assert first_inserted.wait(timeout=60)
        try:
            with seeded_engine.connect() as conn, conn.begin():
                conn.execute(
                    text("SELECT set_config('application_name', :m, false)"), {"m": marker}
                )
                instances.create(conn, code, "second")
            outcomes.append("second ok")
        except BaseException as exc:
            outcomes.append(exc)

    worker = threading.Thread(target=second)
    worker.start()
    try:
        with seeded_engine.connect() as conn:
            with conn.begin():
                instances.create(conn, code, "first")
                first_inserted.set()
                blocked = _waiting_on_a_lock(seeded_engine, marker)
            outcomes.append("first ok")
    finally:
        first_inserted.set()
        worker.join(timeout=120)
    assert blocked
    assert outcomes == ["first ok", "second ok"], outcomes
    with seeded_engine.begin() as conn:
        digests = (
            conn.execute(
                text(
                    "SELECT DISTINCT action_set_digest FROM generic_instance"
                    " WHERE name IN ('first', 'second') AND subtype = 'race-rc'"
                )
            )
            .scalars()
            .all()
        )
    assert len(digests) == 1 and digests[0] is not None


def test_first_use_of_a_set_committed_after_a_repeatable_read_snapshot_is_retryable(
    seeded_engine: Engine,
) -> None:
    code = _race_box(seeded_engine, "race-rr")
    with seeded_engine.connect() as late:
        late = late.execution_options(isolation_level="REPEATABLE READ")
        with late.begin():
            late.execute(text("SELECT 1"))  # the snapshot is taken here
            with seeded_engine.begin() as conn:
                instances.create(conn, code, "first")
            with pytest.raises(SerializationError):
                instances.create(late, code, "second")
        with late.begin():  # the retry sees the set
            assert instances.create(late, code, "second").json_addl["action_groups"]


def test_downgrade_gives_every_instance_its_copy_back(empty_db_url: URL) -> None:
    engine = create_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            migrate.upgrade(conn)
            upsert_templates(
                conn,
                [
                    TemplateSpec(
                        name="Act",
                        polymorphic_discriminator="action_template",
                        category="action",
                        type="core",
                        subtype="act",
                        version="1.0",
                        instance_prefix="XX",
                        json_addl={"action_definition": {"action_name": "act"}},
                    ),
                    TemplateSpec(
                        name="Box",
                        polymorphic_discriminator="container_template",
                        category="container",
                        type="box",
                        subtype="b",
                        version="1.0",
                        instance_prefix="CX",
                        json_addl={
                            "properties": {},
                            "action_imports": {"act": "action/core/act/1.0/"},
                        },
                    ),
                ],
            )
            made = instances.create(conn, "container/box/b/1.0/", "box")
            audit_rows = conn.execute(text("SELECT count(*) FROM audit_log")).scalar()
        with engine.begin() as conn:
            migrate.downgrade(conn, "0005")
            row = conn.execute(
                text("SELECT json_addl, modified_dt FROM generic_instance WHERE uuid = :u"),
                {"u": made.uuid},
            ).one()
            audit_after = conn.execute(text("SELECT count(*) FROM audit_log")).scalar()
        assert row.json_addl == made.json_addl
        assert row.modified_dt == made.modified_dt
        assert audit_after == audit_rows  # a storage change is not an edit
        with engine.begin() as conn:
            migrate.upgrade(conn)
            assert instances.get(conn, made.euid).json_addl == made.json_addl
            assert isinstance(made.json_addl["action_groups"], Mapping)
    finally:
        engine.dispose()


def test_values_read_from_one_set_share_nothing(seeded_engine: Engine) -> None:
    """Each set is decoded once per process; every value still gets its own copy."""
    with seeded_engine.begin() as conn:
        tree = instances.create_tree(conn, PLATE, "P-copies")
        first, second = lineage.children(conn, tree.root.euid)[:2]
        group, key = _first_action(first.instance)
        first.instance.json_addl["action_groups"][group][key]["action_executed"] = 99
        again = instances.get(conn, first.instance.euid)
    assert second.instance.json_addl["action_groups"][group][key]["action_executed"] == 0
    assert again.json_addl["action_groups"][group][key]["action_executed"] == 0


def test_created_values_and_plans_never_share_their_action_definitions(
    seeded_engine: Engine,
) -> None:
    """Plans share one materialised copy per template internally; nothing handed
    out shares it, so changing a value cannot reach another value or a later write."""
    with seeded_engine.begin() as conn:
        tree = instances.create_tree(conn, PLATE, "P-own")
        first, second = tree.instances[1], tree.instances[2]
        group, key = _first_action(first)
        first.json_addl["action_groups"][group][key]["action_executed"] = 42
        planned = instances.plan(conn, PLATE, "P-plan")
        planned.nodes[1].json_addl["action_groups"][group][key]["comment"] = "changed"
        later = instances.create_tree(conn, PLATE, "P-later")
        stored = _stored(conn, later.instances[1].euid)
    assert second.json_addl["action_groups"][group][key]["action_executed"] == 0
    assert "comment" not in planned.nodes[2].json_addl["action_groups"][group][key]
    well = later.instances[1].json_addl["action_groups"][group][key]
    assert well["action_executed"] == 0 and "comment" not in well
    assert stored.effective["action_groups"][group][key]["action_executed"] == 0
