"""Planning instance creation (no database): json_addl, names, layouts, limits, schemas."""

from __future__ import annotations

import copy
import itertools
import re
from collections import Counter
from typing import Any

import pytest

from tapdb_core.codes import TemplateCode, version_sort_key
from tapdb_core.errors import TemplateNotFoundError, ValidationError, Violation
from tapdb_core.planning import (
    InstancePlan,
    PlannedEdge,
    deep_merge,
    materialise_actions,
    plan_instance,
    validate_json_addl,
)
from tapdb_core.values import Template

_uuids = itertools.count(1)


def make_template(code: str, **fields: Any) -> Template:
    parsed = TemplateCode.parse(code)
    uuid = next(_uuids)
    values: dict[str, Any] = {
        "uuid": uuid,
        "euid": f"GT-{uuid}",
        "name": f"{parsed.subtype} template",
        "polymorphic_discriminator": fields.pop("polymorphic_discriminator", "generic_template"),
        "category": parsed.category,
        "type": parsed.type,
        "subtype": parsed.subtype,
        "version": parsed.version,
        "instance_prefix": "GX",
    }
    values.update(fields)
    return Template(**values)


class Resolver:
    """Dict-backed resolver; ``*`` means the newest version; counts calls per code."""

    def __init__(self, *templates: Template) -> None:
        self.templates = {t.template_code: t for t in templates}
        self.calls: Counter[str] = Counter()

    def add(self, *templates: Template) -> None:
        self.templates.update((t.template_code, t) for t in templates)

    def __call__(self, code: str) -> Template:
        self.calls[code] += 1
        parsed = TemplateCode.parse(code)
        if parsed.is_wildcard:
            prefix = f"{parsed.category}/{parsed.type}/{parsed.subtype}/"
            found = [t for c, t in self.templates.items() if c.startswith(prefix)]
            if found:
                return max(found, key=lambda t: version_sort_key(t.version))
        elif str(parsed) in self.templates:
            return self.templates[str(parsed)]
        raise TemplateNotFoundError(f"template {code} not found")


def layout(*children: Any, **fields: Any) -> dict[str, Any]:
    return {"child_templates": list(children), **fields}


def with_layouts(code: str, *layouts: Any, **fields: Any) -> Template:
    json_addl = fields.pop("json_addl", {})
    return make_template(
        code, json_addl={**json_addl, "instantiation_layouts": list(layouts)}, **fields
    )


def violation_paths(exc: pytest.ExceptionInfo[ValidationError]) -> list[str]:
    return [v.path for v in exc.value.violations]


CREATE_NOTE = make_template(
    "action/core/create-note/1.0/",
    polymorphic_discriminator="action_template",
    json_addl={
        "action_definition": {
            "action_name": "Create note",
            "method_name": "do_action_create_note",
            "capture_data": "yes",
            "captured_data": {"fields": [{"name": "note", "type": "text"}]},
        }
    },
)
SET_STATUS = make_template(
    "action/core/set-status/1.0/",
    polymorphic_discriminator="action_template",
    json_addl={
        "action_definition": {
            "action_name": "Set status",
            "action_enabled": False,
            "action_executed": 7,  # tracking fields always start fresh
        }
    },
)
START_RUN = make_template(
    "action/workflow/start-run/1.0/",
    polymorphic_discriminator="action_template",
    json_addl={"action_definition": {"action_name": "Start run"}},
)
SAMPLE = make_template(
    "content/sample/dna/1.0/",
    polymorphic_discriminator="content_template",
    json_addl={"properties": {"concentration": 0, "tags": ["raw"]}},
)


# -- deep_merge -----------------------------------------------------------------------------


def test_deep_merge_merges_nested_objects_and_does_not_touch_inputs() -> None:
    base = {"properties": {"a": 1, "nested": {"x": 1, "y": 2}}, "list": [1, 2], "keep": True}
    override = {"properties": {"nested": {"y": 20, "z": 30}, "b": 2}, "list": [3]}
    base_before, override_before = copy.deepcopy(base), copy.deepcopy(override)

    merged = deep_merge(base, override)

    assert merged == {
        "properties": {"a": 1, "nested": {"x": 1, "y": 20, "z": 30}, "b": 2},
        "list": [3],
        "keep": True,
    }
    assert base == base_before and override == override_before
    merged["properties"]["nested"]["x"] = 99
    merged["list"].append(4)
    assert base == base_before and override == override_before


# -- the root -------------------------------------------------------------------------------


def test_root_properties_are_a_deep_copy_shallow_merged_with_the_callers() -> None:
    template = make_template(
        "container/tube/tube-2ml/1.0/",
        json_addl={"properties": {"volume": 0, "meta": {"lot": "L1"}, "tags": ["a"]}},
    )
    caller: dict[str, Any] = {"volume": 5, "colour": "red", "extra": {"k": [1]}}

    plan = plan_instance(Resolver(template), "container/tube/tube-2ml/1.0", "T1", caller)

    root = plan.root
    assert root.index == 0 and root.depth == 0 and root.parent_index is None
    assert root.json_addl == {
        "properties": {
            "volume": 5,
            "meta": {"lot": "L1"},
            "tags": ["a"],
            "colour": "red",
            "extra": {"k": [1]},
        },
        "action_groups": {},
        "audit_log": [],
    }
    root.json_addl["properties"]["meta"]["lot"] = "changed"
    root.json_addl["properties"]["tags"].append("b")
    assert template.json_addl["properties"] == {"volume": 0, "meta": {"lot": "L1"}, "tags": ["a"]}
    caller["extra"]["k"].append(2)
    assert root.json_addl["properties"]["extra"] == {"k": [1]}
    assert root.render_name(None) == "T1" and root.literal_name == "T1"


def test_caller_properties_replace_whole_values_shallowly() -> None:
    template = make_template(
        "generic/generic/generic/1.0/", json_addl={"properties": {"m": {"a": 1, "b": 2}}}
    )
    plan = plan_instance(Resolver(template), "generic/generic/generic/1.0/", "G", {"m": {"a": 9}})
    assert plan.root.json_addl["properties"] == {"m": {"a": 9}}


def test_discriminator_status_and_singleton_come_from_the_template() -> None:
    plain = make_template(
        "container/box/box-81/1.0/", polymorphic_discriminator="container_template"
    )
    explicit = make_template(
        "workflow/assay/wgs/1.0/",
        polymorphic_discriminator="workflow_template",
        instance_polymorphic_identity="assay_instance",
        is_singleton=True,
        json_addl={"default_status": "in_progress"},
    )
    resolve = Resolver(plain, explicit)

    box = plan_instance(resolve, "container/box/box-81/1.0/", "B").root
    assay = plan_instance(resolve, "workflow/assay/wgs/1.0/", "W").root

    assert (box.polymorphic_discriminator, box.bstatus, box.is_singleton) == (
        "container_instance",
        "created",
        False,
    )
    assert (assay.polymorphic_discriminator, assay.bstatus, assay.is_singleton) == (
        "assay_instance",
        "in_progress",
        True,
    )
    assert box.template is plain


def test_unknown_root_template_is_not_found() -> None:
    with pytest.raises(TemplateNotFoundError, match=re.escape("container/nope/x/1.0/")):
        plan_instance(Resolver(), "container/nope/x/1.0", "X")


def test_properties_must_be_a_mapping() -> None:
    template = make_template("generic/generic/generic/1.0/")
    with pytest.raises(ValidationError, match="properties must be an object"):
        plan_instance(Resolver(template), "generic/generic/generic/1.0/", "G", ["a"])  # type: ignore[arg-type]


# -- actions --------------------------------------------------------------------------------


def test_actions_are_materialised_per_group_with_tracking_fields() -> None:
    template = make_template(
        "container/plate/plate-96/1.0/",
        json_addl={
            "action_imports": {
                "create_note": "action/core/create-note/1.0/",
                "set_status": "action/core/set-status/1.0/",
                "start_run": "action/workflow/start-run/1.0/",
                "note_again": "action/core/create-note/1.0/",
            }
        },
    )
    resolve = Resolver(CREATE_NOTE, SET_STATUS, START_RUN)

    groups = materialise_actions(resolve, template)

    assert sorted(groups) == ["core_actions", "workflow_actions"]
    assert sorted(groups["core_actions"]) == ["create_note", "note_again", "set_status"]
    note = groups["core_actions"]["create_note"]
    assert note == {
        "action_template_uuid": CREATE_NOTE.uuid,
        "action_template_euid": CREATE_NOTE.euid,
        "action_template_code": "action/core/create-note/1.0/",
        "action_name": "Create note",
        "method_name": "do_action_create_note",
        "capture_data": "yes",
        "captured_data": {"fields": [{"name": "note", "type": "text"}]},
        "action_executed": 0,
        "executed_datetime": [],
        "action_enabled": True,
    }
    status = groups["core_actions"]["set_status"]
    assert status["action_enabled"] is False and status["action_executed"] == 0
    assert groups["workflow_actions"]["start_run"]["action_template_uuid"] == START_RUN.uuid
    # each distinct code resolved once
    assert resolve.calls["action/core/create-note/1.0/"] == 1
    # copies, not the action template's own objects
    note["captured_data"]["fields"].append({"name": "x"})
    assert len(CREATE_NOTE.json_addl["action_definition"]["captured_data"]["fields"]) == 1
    assert groups["core_actions"]["note_again"]["captured_data"]["fields"] == [
        {"name": "note", "type": "text"}
    ]


def test_plan_puts_actions_in_every_node_without_sharing() -> None:
    well = make_template(
        "container/well/well-96/1.0/",
        json_addl={"action_imports": {"create_note": "action/core/create-note/1.0/"}},
    )
    plate = with_layouts(
        "container/plate/plate-96/1.0/",
        layout({"template_code": "container/well/well-96/1.0/", "count": 3}),
        json_addl={"action_imports": {"create_note": "action/core/create-note/1.0/"}},
    )
    resolve = Resolver(CREATE_NOTE, well, plate)

    plan = plan_instance(resolve, "container/plate/plate-96/1.0/", "P")

    assert resolve.calls["action/core/create-note/1.0/"] == 1
    assert resolve.calls["container/well/well-96/1.0/"] == 1
    tracked = [n.json_addl["action_groups"]["core_actions"]["create_note"] for n in plan.nodes]
    assert len(tracked) == 4 and all(t["action_executed"] == 0 for t in tracked)
    tracked[1]["executed_datetime"].append("2024-01-01")
    tracked[1]["captured_data"]["fields"].clear()
    assert [t["executed_datetime"] for t in tracked] == [[], ["2024-01-01"], [], []]
    assert tracked[2]["captured_data"]["fields"] == [{"name": "note", "type": "text"}]


def test_unknown_action_template_is_not_found() -> None:
    template = make_template(
        "generic/generic/generic/1.0/", json_addl={"action_imports": {"x": "action/core/nope/1.0/"}}
    )
    with pytest.raises(TemplateNotFoundError, match=re.escape("action/core/nope/1.0/")):
        plan_instance(Resolver(template), "generic/generic/generic/1.0/", "G")


# -- layouts: forms, counts, names ----------------------------------------------------------


def plate_96(well_schema: dict[str, Any] | None = None) -> Resolver:
    rows, cols = "ABCDEFGH", range(1, 13)
    children = [
        {
            "template_code": "container/well/well-96/1.0/",
            "name_pattern": "{parent_name}_" + f"{r}{c}",
            "json_addl": {"properties": {"address": f"{r}{c}", "row_idx": ri, "col_idx": c - 1}},
        }
        for ri, r in enumerate(rows)
        for c in cols
    ]
    plate = with_layouts(
        "container/plate/plate-96/1.0/",
        layout(*children),
        json_addl={"properties": {"format": 96}},
        polymorphic_discriminator="container_template",
    )
    well = make_template(
        "container/well/well-96/1.0/",
        polymorphic_discriminator="container_template",
        json_addl={"properties": {"volume_ul": 0, "max_volume_ul": 360}, "default_status": "empty"},
        json_addl_schema=well_schema,
    )
    return Resolver(plate, well)


def test_96_well_plate_gets_addresses_by_deep_merge() -> None:
    resolve = plate_96()

    plan = plan_instance(resolve, "container/plate/plate-96/1.0/", "PLT")

    assert len(plan.nodes) == 97 and len(plan.edges) == 96
    wells = plan.nodes[1:]
    assert [w.render_name("CX-1") for w in wells[:3]] == ["PLT_A1", "PLT_A2", "PLT_A3"]
    assert wells[-1].render_name("CX-1") == "PLT_H12"
    assert wells[13].json_addl["properties"] == {
        "volume_ul": 0,
        "max_volume_ul": 360,
        "address": "B2",
        "row_idx": 1,
        "col_idx": 1,
    }
    assert all(
        w.bstatus == "empty" and w.polymorphic_discriminator == "container_instance" for w in wells
    )
    assert all(w.parent_index == 0 and w.depth == 1 for w in wells)
    assert {e.relationship_type for e in plan.edges} == {"contains"}
    assert [e.child_index for e in plan.edges] == list(range(1, 97))
    assert resolve.calls["container/well/well-96/1.0/"] == 1
    wells[0].json_addl["properties"]["volume_ul"] = 50
    assert wells[1].json_addl["properties"]["volume_ul"] == 0
    assert resolve.templates["container/well/well-96/1.0/"].json_addl["properties"] == {
        "volume_ul": 0,
        "max_volume_ul": 360,
    }


def test_string_and_object_children_counts_and_placeholders() -> None:
    box = with_layouts(
        "container/box/box-9/1.0/",
        layout(
            "content/sample/dna/1.0/",
            {"template_code": "content/sample/dna/1.0", "count": 3},
        ),
        layout(
            {
                "template_code": "content/sample/dna/1.0/",
                "count": 2,
                "name_pattern": "{parent_name}|{parent_euid}|{index}|{layout_index}|"
                "{child_index}|{child_subtype}|{child_template_code}",
            },
            relationship_type="holds",
        ),
    )
    resolve = Resolver(box, SAMPLE)

    plan = plan_instance(resolve, "container/box/box-9/1.0/", "Box")

    children = plan.nodes[1:]
    assert len(children) == 6
    assert [c.render_name("CX-7") for c in children[:4]] == [
        "Box_dna_1",
        "Box_dna_2",
        "Box_dna_3",
        "Box_dna_4",
    ]
    assert [c.render_name("CX-7") for c in children[4:]] == [
        "Box|CX-7|5|2|1|dna|content/sample/dna/1.0/",
        "Box|CX-7|6|2|2|dna|content/sample/dna/1.0/",
    ]
    assert [(c.name_context["layout_index"], c.name_context["child_index"]) for c in children] == [
        (1, 1),
        (1, 1),
        (1, 2),
        (1, 3),
        (2, 1),
        (2, 2),
    ]
    assert children[0].name_context == {
        "parent_name": "Box",
        "index": 1,
        "layout_index": 1,
        "child_index": 1,
        "i": 1,
        "child_subtype": "dna",
        "child_template_code": "content/sample/dna/1.0/",
    }
    assert "parent_euid" not in children[4].name_context
    assert [e.relationship_type for e in plan.edges] == ["contains"] * 4 + ["holds"] * 2
    assert children[0].json_addl["properties"] == {"concentration": 0, "tags": ["raw"]}
    children[0].json_addl["properties"]["tags"].append("x")
    assert children[1].json_addl["properties"]["tags"] == ["raw"]
    assert children[1].json_addl is not children[2].json_addl
    assert children[1].polymorphic_discriminator == "content_instance"


def test_child_pattern_beats_layout_pattern_which_beats_the_default() -> None:
    rack = with_layouts(
        "container/rack/rack-4/1.0/",
        layout(
            "content/sample/dna/1.0/",
            {"template_code": "content/sample/dna/1.0/", "name_pattern": "own-{index}"},
            name_pattern="{parent_name}-slot{child_index}",
        ),
        layout("content/sample/dna/1.0/"),
    )
    plan = plan_instance(Resolver(rack, SAMPLE), "container/rack/rack-4/1.0/", "R")
    assert [n.render_name("CX-1") for n in plan.nodes[1:]] == ["R-slot1", "own-2", "R_dna_3"]
    assert [n.name_pattern for n in plan.nodes[1:]] == [
        "{parent_name}-slot{child_index}",
        "own-{index}",
        "{parent_name}_{child_subtype}_{index}",
    ]


def test_wildcard_child_resolves_to_the_newest_version() -> None:
    newer = make_template("content/sample/dna/1.10/", json_addl={"properties": {"v": "1.10"}})
    older = make_template("content/sample/dna/1.9/", json_addl={"properties": {"v": "1.9"}})
    tube = with_layouts("container/tube/tube-2ml/1.0/", layout("content/sample/dna/*"))
    plan = plan_instance(Resolver(tube, older, newer), "container/tube/tube-2ml/1.0/", "T")
    child = plan.nodes[1]
    assert child.template is newer
    assert child.name_context["child_template_code"] == "content/sample/dna/1.10/"
    assert child.json_addl["properties"] == {"v": "1.10"}


@pytest.mark.parametrize(
    ("pattern", "unknown"),
    [("{parent_name}_{well}", "{well}"), ("{parent_name}_{}", "{}"), ("x{0}", "{0}")],
)
def test_unknown_placeholder_is_refused_at_planning_time(pattern: str, unknown: str) -> None:
    box = with_layouts(
        "container/box/box-9/1.0/",
        layout(
            "content/sample/dna/1.0/",
            {"template_code": "content/sample/dna/1.0/", "name_pattern": pattern},
        ),
    )
    with pytest.raises(ValidationError) as exc:
        plan_instance(Resolver(box, SAMPLE), "container/box/box-9/1.0/", "B")
    message = str(exc.value)
    assert "container/box/box-9/1.0/" in message
    assert repr(pattern) in message and unknown in message
    assert violation_paths(exc) == ["/instantiation_layouts/0/child_templates/1/name_pattern"]


def test_a_bad_layout_pattern_is_refused_even_when_every_child_has_its_own() -> None:
    """As pack validation does: every pattern written is checked, used or not."""
    box = with_layouts(
        "container/box/box-9/1.0/",
        layout(
            {"template_code": "content/sample/dna/1.0/", "name_pattern": "{parent_name}-{i}"},
            name_pattern="{parent_name}_{well}",
        ),
    )
    with pytest.raises(ValidationError, match=r"unknown placeholder \{well\}") as exc:
        plan_instance(Resolver(box, SAMPLE), "container/box/box-9/1.0/", "B")
    assert violation_paths(exc) == ["/instantiation_layouts/0/name_pattern"]


def test_unrenderable_pattern_is_refused_at_planning_time() -> None:
    box = with_layouts(
        "container/box/box-9/1.0/",
        layout("content/sample/dna/1.0/", name_pattern="{parent_name}_{child_subtype:d}"),
    )
    with pytest.raises(ValidationError, match=r"container/box/box-9/1\.0/.*child_subtype:d") as exc:
        plan_instance(Resolver(box, SAMPLE), "container/box/box-9/1.0/", "B")
    assert violation_paths(exc) == ["/instantiation_layouts/0/name_pattern"]


# -- nesting ----------------------------------------------------------------------------------


def test_nested_layouts_are_planned_breadth_first() -> None:
    plate = with_layouts(
        "container/plate/plate-2/1.0/",
        layout({"template_code": "container/well/well-2/1.0/", "count": 2}),
    )
    well = with_layouts(
        "container/well/well-2/1.0/",
        layout(
            {
                "template_code": "content/sample/dna/1.0/",
                "count": 2,
                "name_pattern": "{parent_name}.s{child_index}",
            },
            relationship_type="holds",
        ),
    )
    plan = plan_instance(Resolver(plate, well, SAMPLE), "container/plate/plate-2/1.0/", "P")

    assert [n.depth for n in plan.nodes] == [0, 1, 1, 2, 2, 2, 2]
    assert [n.parent_index for n in plan.nodes] == [None, 0, 0, 1, 1, 2, 2]
    assert [n.index for n in plan.nodes] == list(range(7))
    assert [n.template.subtype for n in plan.nodes] == [
        "plate-2",
        "well-2",
        "well-2",
        "dna",
        "dna",
        "dna",
        "dna",
    ]
    assert plan.edges == (
        PlannedEdge(parent_index=0, child_index=1, relationship_type="contains"),
        PlannedEdge(parent_index=0, child_index=2, relationship_type="contains"),
        PlannedEdge(parent_index=1, child_index=3, relationship_type="holds"),
        PlannedEdge(parent_index=1, child_index=4, relationship_type="holds"),
        PlannedEdge(parent_index=2, child_index=5, relationship_type="holds"),
        PlannedEdge(parent_index=2, child_index=6, relationship_type="holds"),
    )
    # breadth first: every parent comes before its children
    assert all(n.parent_index is None or n.parent_index < n.index for n in plan.nodes)
    assert not any(n.needs_parent_name for n in plan.nodes)
    assert plan.nodes[3].name_context["parent_name"] == "P_well-2_1"
    names = [n.render_name("CX-1") for n in plan.nodes]
    assert names == [
        "P",
        "P_well-2_1",
        "P_well-2_2",
        "P_well-2_1.s1",
        "P_well-2_1.s2",
        "P_well-2_2.s1",
        "P_well-2_2.s2",
    ]


def test_parent_name_depending_on_an_euid_must_be_passed_when_rendering() -> None:
    tube = with_layouts(
        "container/tube/tube-2ml/1.0/",
        layout("content/sample/dna/1.0/", name_pattern="{parent_euid}-{index}"),
    )
    sample = with_layouts(
        "content/sample/dna/1.0/",
        layout("content/sample/rna/1.0/", name_pattern="{parent_name}/rna"),
    )
    rna = make_template("content/sample/rna/1.0/")
    plan = plan_instance(Resolver(tube, sample, rna), "container/tube/tube-2ml/1.0/", "T")

    dna_node, rna_node = plan.nodes[1], plan.nodes[2]
    assert dna_node.render_name("CX-5") == "CX-5-1"
    assert not dna_node.needs_parent_name and rna_node.needs_parent_name
    assert "parent_name" not in rna_node.name_context
    with pytest.raises(ValidationError, match="parent_name"):
        rna_node.render_name("MX-1")
    assert rna_node.render_name("MX-1", parent_name="CX-5-1") == "CX-5-1/rna"
    with pytest.raises(ValidationError, match="EUID"):
        dna_node.render_name(None)


def chain_of(length: int) -> Resolver:
    """t0 contains t1 contains ... t(length-1)."""
    templates = [
        with_layouts(f"generic/chain/t{i}/1.0/", layout(f"generic/chain/t{i + 1}/1.0/"))
        for i in range(length - 1)
    ]
    templates.append(make_template(f"generic/chain/t{length - 1}/1.0/"))
    return Resolver(*templates)


def test_ten_levels_of_layouts_are_allowed() -> None:
    plan = plan_instance(chain_of(11), "generic/chain/t0/1.0/", "C")
    assert [n.depth for n in plan.nodes] == list(range(11))


def test_eleven_levels_of_layouts_are_refused_naming_the_chain() -> None:
    resolve = chain_of(12)
    with pytest.raises(ValidationError) as exc:
        plan_instance(resolve, "generic/chain/t0/1.0/", "C")
    message = str(exc.value)
    assert "deeper than 10 levels" in message
    assert " -> ".join(f"generic/chain/t{i}/1.0/" for i in range(12)) in message
    assert violation_paths(exc) == ["/instantiation_layouts/0/child_templates/0"]
    # the same templates are fine one level down, or with children switched off
    assert len(plan_instance(resolve, "generic/chain/t1/1.0/", "C").nodes) == 11
    assert (
        len(plan_instance(resolve, "generic/chain/t0/1.0/", "C", create_children=False).nodes) == 1
    )


def test_max_depth_can_be_lowered() -> None:
    resolve = chain_of(4)
    assert len(plan_instance(resolve, "generic/chain/t0/1.0/", "C", max_depth=3).nodes) == 4
    with pytest.raises(ValidationError, match="deeper than 2 levels"):
        plan_instance(resolve, "generic/chain/t0/1.0/", "C", max_depth=2)


def test_template_cycle_is_refused_naming_the_cycle() -> None:
    a = with_layouts("a/b/c/1.0/", layout("x/y/z/1.0/"))
    x = with_layouts("x/y/z/1.0/", layout("a/b/c/1.0/"))
    with pytest.raises(ValidationError) as exc:
        plan_instance(Resolver(a, x), "a/b/c/1.0", "A")
    assert str(exc.value).startswith("template cycle: a/b/c/1.0/ -> x/y/z/1.0/ -> a/b/c/1.0/")


def test_cycle_below_the_root_names_only_the_cycle() -> None:
    root = with_layouts("r/r/r/1.0/", layout("a/b/c/1.0/"))
    a = with_layouts("a/b/c/1.0/", layout("a/b/c/1.0/"))
    with pytest.raises(ValidationError) as exc:
        plan_instance(Resolver(root, a), "r/r/r/1.0/", "R")
    assert str(exc.value).startswith("template cycle: a/b/c/1.0/ -> a/b/c/1.0/")


def test_create_children_false_plans_only_the_root() -> None:
    resolve = plate_96()
    plan = plan_instance(resolve, "container/plate/plate-96/1.0/", "P", create_children=False)
    assert isinstance(plan, InstancePlan)
    assert len(plan.nodes) == 1 and plan.edges == ()
    assert plan.nodes == (plan.root,)
    assert resolve.calls["container/well/well-96/1.0/"] == 0


# -- bad layouts ------------------------------------------------------------------------------


def test_count_below_one_is_refused_with_a_pointer() -> None:
    box = with_layouts(
        "container/box/box-9/1.0/",
        layout(
            "content/sample/dna/1.0/",
            {"template_code": "content/sample/dna/1.0/", "count": 2},
            {"template_code": "content/sample/dna/1.0/", "count": 0},
        ),
    )
    with pytest.raises(ValidationError) as exc:
        plan_instance(Resolver(box, SAMPLE), "container/box/box-9/1.0/", "B")
    assert exc.value.violations == (
        Violation(
            path="/instantiation_layouts/0/child_templates/2/count", message="must be >= 1, got 0"
        ),
    )
    assert "container/box/box-9/1.0/" in str(exc.value)


def test_all_layout_problems_are_reported_at_once() -> None:
    box = with_layouts(
        "container/box/box-9/1.0/",
        layout(
            {"template_code": "content/sample/dna/1.0/", "count": "2"},
            {"template_code": "content/sample/dna/1.0/", "count": True},
            {"count": 1},
            "not-a-code",
            42,
            relationship_type="   ",
        ),
        "not a layout",
        {"name_pattern": "x"},
    )
    with pytest.raises(ValidationError) as exc:
        plan_instance(Resolver(box, SAMPLE), "container/box/box-9/1.0/", "B")
    assert violation_paths(exc) == [
        "/instantiation_layouts/0/relationship_type",
        "/instantiation_layouts/0/child_templates/0/count",
        "/instantiation_layouts/0/child_templates/1/count",
        "/instantiation_layouts/0/child_templates/2/template_code",
        "/instantiation_layouts/0/child_templates/3",
        "/instantiation_layouts/0/child_templates/4",
        "/instantiation_layouts/1",
        "/instantiation_layouts/2/child_templates",
    ]


@pytest.mark.parametrize("blank", ["", "  ", None, 3])
def test_blank_relationship_type_is_refused(blank: object) -> None:
    box = with_layouts(
        "container/box/box-9/1.0/", layout("content/sample/dna/1.0/", relationship_type=blank)
    )
    with pytest.raises(ValidationError, match="non-blank") as exc:
        plan_instance(Resolver(box, SAMPLE), "container/box/box-9/1.0/", "B")
    assert violation_paths(exc) == ["/instantiation_layouts/0/relationship_type"]


def test_layouts_must_be_a_list() -> None:
    box = make_template(
        "container/box/box-9/1.0/",
        json_addl={"instantiation_layouts": {"child_templates": ["content/sample/dna/1.0/"]}},
    )
    with pytest.raises(ValidationError) as exc:
        plan_instance(Resolver(box, SAMPLE), "container/box/box-9/1.0/", "B")
    assert violation_paths(exc) == ["/instantiation_layouts"]
    # ... but only when children are wanted
    assert (
        len(
            plan_instance(
                Resolver(box, SAMPLE), "container/box/box-9/1.0/", "B", create_children=False
            ).nodes
        )
        == 1
    )


def test_unknown_child_template_is_not_found_and_named() -> None:
    box = with_layouts(
        "container/box/box-9/1.0/", layout("content/sample/dna/1.0/", "content/sample/nope/2.0")
    )
    with pytest.raises(TemplateNotFoundError) as exc:
        plan_instance(Resolver(box, SAMPLE), "container/box/box-9/1.0/", "B")
    message = str(exc.value)
    assert "content/sample/nope/2.0" in message
    assert "container/box/box-9/1.0/" in message
    assert "/instantiation_layouts/0/child_templates/1" in message


# -- json_addl_schema -------------------------------------------------------------------------

TUBE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "properties": {
            "type": "object",
            "properties": {
                "volume_ul": {"type": "number", "minimum": 0},
                "label": {"type": "string"},
            },
            "required": ["volume_ul"],
        },
        "audit_log": {"type": "array"},
    },
}


def test_schema_valid_json_addl_passes() -> None:
    tube = make_template(
        "container/tube/tube-2ml/1.0/",
        json_addl={"properties": {"volume_ul": 0}},
        json_addl_schema=TUBE_SCHEMA,
    )
    plan = plan_instance(
        Resolver(tube), "container/tube/tube-2ml/1.0/", "T", {"label": "ok", "volume_ul": 5}
    )
    assert plan.root.json_addl["properties"] == {"volume_ul": 5, "label": "ok"}
    validate_json_addl(tube, plan.root.json_addl, where="check")


def test_every_schema_violation_is_reported_at_once_with_paths() -> None:
    tube = make_template(
        "container/tube/tube-2ml/1.0/",
        json_addl={"properties": {"volume_ul": 0}},
        json_addl_schema=TUBE_SCHEMA,
    )
    with pytest.raises(ValidationError) as exc:
        plan_instance(
            Resolver(tube), "container/tube/tube-2ml/1.0/", "T", {"volume_ul": -1, "label": 5}
        )
    assert violation_paths(exc) == ["/properties/label", "/properties/volume_ul"]
    assert '5 is not of type "string"' in exc.value.violations[0].message
    assert "minimum" in exc.value.violations[1].message
    assert "json_addl violates the schema of container/tube/tube-2ml/1.0/" in str(exc.value)
    assert "'T'" in str(exc.value)


def test_validate_json_addl_directly() -> None:
    tube = make_template("container/tube/tube-2ml/1.0/", json_addl_schema=TUBE_SCHEMA)
    with pytest.raises(ValidationError, match=r"^here: json_addl violates") as exc:
        validate_json_addl(tube, {"properties": {}, "audit_log": {}}, where="here")
    assert violation_paths(exc) == ["/audit_log", "/properties"]
    assert '"volume_ul" is a required property' in exc.value.violations[1].message
    validate_json_addl(make_template("generic/generic/generic/1.0/"), {"anything": 1}, where="x")


def test_invalid_schema_is_reported() -> None:
    tube = make_template("container/tube/tube-2ml/1.0/", json_addl_schema={"type": "no-such-type"})
    with pytest.raises(ValidationError, match="not a valid JSON Schema"):
        validate_json_addl(tube, {}, where="x")


def test_child_schema_violation_stops_the_whole_plan() -> None:
    schema = {
        "type": "object",
        "properties": {
            "properties": {
                "type": "object",
                "properties": {"address": {"type": "string", "pattern": "^[A-H](?:[1-9]|1[0-2])$"}},
            }
        },
    }
    resolve = plate_96(well_schema=schema)
    plan = plan_instance(resolve, "container/plate/plate-96/1.0/", "P")
    assert len(plan.nodes) == 97

    plate = resolve.templates["container/plate/plate-96/1.0/"]
    bad_layouts = copy.deepcopy(plate.json_addl["instantiation_layouts"])
    bad_layouts[0]["child_templates"][5]["json_addl"]["properties"]["address"] = "Z9"
    bad_plate = make_template(
        "container/plate/plate-96/2.0/", json_addl={"instantiation_layouts": bad_layouts}
    )
    resolve.add(bad_plate)
    with pytest.raises(ValidationError) as exc:
        plan_instance(resolve, "container/plate/plate-96/2.0/", "P")
    assert violation_paths(exc) == ["/properties/address"]
    assert "container/well/well-96/1.0/" in str(exc.value)
    assert "/instantiation_layouts/0/child_templates/5" in str(exc.value)


# -- many children ----------------------------------------------------------------------------


def test_a_384_well_plate_resolves_each_code_once() -> None:
    rows, cols = "ABCDEFGHIJKLMNOP", range(1, 25)
    plate = with_layouts(
        "container/plate/plate-384/1.0/",
        layout(
            *(
                {
                    "template_code": "container/well/well-384/1.0/",
                    "name_pattern": "{parent_name}_" + f"{r}{c}",
                    "json_addl": {"properties": {"address": f"{r}{c}"}},
                }
                for r in rows
                for c in cols
            )
        ),
        json_addl={"action_imports": {"create_note": "action/core/create-note/1.0/"}},
    )
    well = make_template(
        "container/well/well-384/1.0/",
        json_addl={
            "properties": {"volume_ul": 0},
            "action_imports": {
                "create_note": "action/core/create-note/1.0/",
                "set_status": "action/core/set-status/1.0/",
            },
        },
        json_addl_schema={
            "type": "object",
            "properties": {
                "properties": {"properties": {"address": {"pattern": "^[A-P][0-9]{1,2}$"}}}
            },
        },
    )
    resolve = Resolver(plate, well, CREATE_NOTE, SET_STATUS)

    plan = plan_instance(resolve, "container/plate/plate-384/1.0/", "P")

    assert len(plan.nodes) == 385
    assert plan.nodes[-1].json_addl["properties"] == {"volume_ul": 0, "address": "P24"}
    assert set(resolve.calls.values()) == {1}
