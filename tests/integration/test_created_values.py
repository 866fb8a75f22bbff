"""The values create/create_tree hand out: what the database wrote, each with
documents of its own, built lazily for a tree's children and edges; and plans
that follow a template change made anywhere."""

from __future__ import annotations

import json

from sqlalchemy import Engine, text

from tapdb_core import instances
from tapdb_core.values import Lineage

PLATE = "container/plate/fixed-plate-96/1.0/"
DNA = "content/sample/dna/1.0/"


def test_a_trees_values_are_what_was_written(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        tree = instances.create_tree(conn, PLATE, "P-values")
    with seeded_engine.begin() as conn:
        stored = [instances.get(conn, i.euid) for i in tree.instances]
        edges = conn.execute(
            text("SELECT * FROM generic_instance_lineage WHERE parent_instance_uuid = :p"),
            {"p": tree.root.uuid},
        ).all()
    assert len(tree.instances) == 97 and tree.instances[0] is tree.root
    assert list(tree.instances) == stored
    assert tree.instances is tree.instances and tree.lineages is tree.lineages  # built once
    by_child = {e.child_instance_uuid: Lineage.from_row(e) for e in edges}
    assert [by_child[i.uuid] for i in tree.instances[1:]] == list(tree.lineages)
    assert all(e.json_addl == {} and e.name.startswith(tree.root.euid) for e in tree.lineages)


def test_created_values_share_no_document_with_each_other_or_later_trees(
    seeded_engine: Engine,
) -> None:
    with seeded_engine.begin() as conn:
        first = instances.create_tree(conn, PLATE, "P-first")
        a1, a2 = first.instances[1], first.instances[2]
        a1.json_addl["properties"]["address"] = "Z99"
        a1.json_addl["audit_log"].append("changed")
        group = sorted(a1.json_addl["action_groups"])[0]
        key = sorted(a1.json_addl["action_groups"][group])[0]
        a1.json_addl["action_groups"][group][key]["action_executed"] = 7
        first.lineages[0].json_addl["changed"] = True
    with seeded_engine.begin() as conn:
        second = instances.create_tree(conn, PLATE, "P-second")
        b1 = second.instances[1]
        stored = instances.get(conn, a1.euid)
    for value in (b1, stored):
        assert value.json_addl["properties"]["address"] == "A1"
        assert value.json_addl["audit_log"] == []
        assert value.json_addl["action_groups"][group][key]["action_executed"] == 0
    assert a2.json_addl["audit_log"] == []
    assert second.lineages[0].json_addl == {} and first.lineages[1].json_addl == {}


def test_a_single_instance_owns_its_document(seeded_engine: Engine) -> None:
    properties = {"concentration": 1.5, "volume_ul": 10, "comments": "x"}
    with seeded_engine.begin() as conn:
        one = instances.create(conn, DNA, "S-1", properties)
        one.json_addl["properties"]["volume_ul"] = 99
        group = sorted(one.json_addl["action_groups"])[0]
        one.json_addl["action_groups"][group].clear()
        two = instances.create(conn, DNA, "S-2", properties)
    assert properties["volume_ul"] == 10
    assert two.json_addl["properties"]["volume_ul"] == 10
    assert two.json_addl["action_groups"][group]


def test_a_layout_changed_elsewhere_reaches_the_next_tree(seeded_engine: Engine) -> None:
    """The wells' documents are remembered across plans; a change of the plate's
    layout made with plain SQL by another connection is planned from, not the
    remembered documents (the write proves the template generation)."""
    with seeded_engine.begin() as conn:
        instances.create_tree(conn, PLATE, "P-before")
        instances.create_tree(conn, PLATE, "P-before-2")
    with seeded_engine.begin() as other:
        layouts = other.execute(
            text(
                "SELECT json_addl -> 'instantiation_layouts' FROM generic_template"
                " WHERE category = 'container' AND type = 'plate'"
                " AND subtype = 'fixed-plate-96' AND version = '1.0'"
            )
        ).scalar_one()
        layouts[0]["child_templates"][0]["json_addl"]["properties"]["address"] = "H12"
        other.execute(
            text(
                "UPDATE generic_template SET json_addl = jsonb_set(json_addl,"
                " '{instantiation_layouts}', CAST(:l AS jsonb))"
                " WHERE category = 'container' AND type = 'plate'"
                " AND subtype = 'fixed-plate-96' AND version = '1.0'"
            ),
            {"l": json.dumps(layouts)},
        )
    with seeded_engine.begin() as conn:
        after = instances.create_tree(conn, PLATE, "P-after")
        stored = instances.get(conn, after.instances[1].euid)
    assert after.instances[1].json_addl["properties"]["address"] == "H12"
    assert stored.json_addl["properties"]["address"] == "H12"
    assert after.instances[2].json_addl["properties"]["address"] == "A2"


def test_a_written_plan_and_its_values_share_nothing(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        planned = instances.plan(conn, DNA, "S-planned", {"volume_ul": 10})
        made = instances.write_plan(conn, planned).root
        made.json_addl["properties"]["volume_ul"] = 99
        made.json_addl["audit_log"].append("changed")
    assert planned.root.json_addl["properties"]["volume_ul"] == 10
    assert planned.root.json_addl["audit_log"] == []
