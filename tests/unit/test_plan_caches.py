"""What planning remembers across plans (by template identity, or under a
resolver's token), and what it never hands out shared."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest

from tapdb_core.codes import TemplateCode
from tapdb_core.errors import TemplateNotFoundError, ValidationError
from tapdb_core.planning import is_shared_document, plan_instance
from tapdb_core.values import Template

_uuids = itertools.count(10_000)

PLATE = "container/plate/plate-4/1.0/"
WELL = "container/well/well-4/1.0/"
NOTE = "action/core/create-note/1.0/"


def template(code: str, **fields: Any) -> Template:
    parsed = TemplateCode.parse(code)
    uuid = next(_uuids)
    return Template(
        uuid=uuid,
        euid=f"GT-{uuid}",
        name=parsed.subtype,
        polymorphic_discriminator=f"{parsed.category}_template",
        category=parsed.category,
        type=parsed.type,
        subtype=parsed.subtype,
        version=parsed.version,
        instance_prefix="GX",
        **fields,
    )


def note(name: str = "Create note") -> Template:
    return template(NOTE, json_addl={"action_definition": {"action_name": name}})


def well(volume: int = 0) -> Template:
    return template(
        WELL,
        json_addl={"properties": {"volume_ul": volume}, "action_imports": {"note": NOTE}},
        json_addl_schema={
            "type": "object",
            "properties": {"properties": {"properties": {"address": {"pattern": "^[A-B][12]$"}}}},
        },
    )


def plate() -> Template:
    children = [
        {
            "template_code": WELL,
            "name_pattern": "{parent_name}_" + address,
            "json_addl": {"properties": {"address": address}},
        }
        for address in ("A1", "A2", "B1", "B2")
    ]
    return template(
        PLATE,
        json_addl={
            "properties": {"format": 4},
            "action_imports": {"note": NOTE},
            "instantiation_layouts": [{"child_templates": children}],
        },
        json_addl_schema={
            "type": "object",
            "properties": {"properties": {"properties": {"format": {"type": "integer"}}}},
        },
    )


class Resolver:
    """Dict-backed; counts calls per code; ``token`` (when set) is offered as
    :meth:`cache_token`, the promise a write resolver makes."""

    def __init__(self, *templates: Template) -> None:
        self.templates = {t.template_code: t for t in templates}
        self.calls: Counter[str] = Counter()

    def __call__(self, code: str) -> Template:
        self.calls[code] += 1
        try:
            return self.templates[str(TemplateCode.parse(code))]
        except KeyError:
            raise TemplateNotFoundError(f"template {code} not found") from None


class TokenResolver(Resolver):
    def __init__(self, *templates: Template) -> None:
        super().__init__(*templates)
        self.token: object = 1

    def cache_token(self) -> object:
        return self.token


def test_shared_plans_reuse_each_layout_childs_validated_document() -> None:
    resolve = Resolver(plate(), well(), note())
    first = plan_instance(resolve, PLATE, "P1", share_actions=True)
    second = plan_instance(resolve, PLATE, "P2", share_actions=True)

    assert [n.json_addl["properties"]["address"] for n in second.nodes[1:]] == [
        "A1",
        "A2",
        "B1",
        "B2",
    ]
    assert all(
        a.json_addl is b.json_addl for a, b in zip(first.nodes[1:], second.nodes[1:], strict=True)
    )
    assert all(is_shared_document(n.json_addl) for n in second.nodes[1:])
    # the root carries the caller's name and properties: its own every time
    assert first.root.json_addl is not second.root.json_addl
    assert not is_shared_document(second.root.json_addl)
    assert [n.render_name(None) for n in second.nodes[1:3]] == ["P2_A1", "P2_A2"]


def test_plans_handed_out_share_nothing_with_the_shared_ones_or_each_other() -> None:
    resolve = Resolver(plate(), well(), note())
    shared = plan_instance(resolve, PLATE, "P1", share_actions=True)
    own = plan_instance(resolve, PLATE, "P2")
    other = plan_instance(resolve, PLATE, "P3")

    for node in own.nodes[1:]:
        assert not is_shared_document(node.json_addl)
    own.nodes[1].json_addl["properties"]["address"] = "Z9"
    own.nodes[1].json_addl["action_groups"]["core_actions"]["note"]["action_executed"] = 3
    own.root.json_addl["action_groups"]["core_actions"]["note"]["action_name"] = "changed"
    again = plan_instance(resolve, PLATE, "P4", share_actions=True)

    for plan in (shared, other, again):
        assert plan.nodes[1].json_addl["properties"]["address"] == "A1"
        assert (
            plan.nodes[1].json_addl["action_groups"]["core_actions"]["note"]["action_executed"] == 0
        )
        assert plan.root.json_addl["action_groups"]["core_actions"]["note"]["action_name"] == (
            "Create note"
        )


def test_a_new_template_object_is_planned_afresh() -> None:
    resolve = Resolver(plate(), well(volume=0), note("Create note"))
    before = plan_instance(resolve, PLATE, "P1", share_actions=True)

    resolve.templates[WELL] = well(volume=5)
    after_well = plan_instance(resolve, PLATE, "P2", share_actions=True)
    resolve.templates[NOTE] = note("Write a note")
    after_note = plan_instance(resolve, PLATE, "P3", share_actions=True)

    assert before.nodes[1].json_addl["properties"]["volume_ul"] == 0
    assert after_well.nodes[1].json_addl["properties"] == {"volume_ul": 5, "address": "A1"}
    assert after_well.nodes[1].template is resolve.templates[WELL]
    names = [
        n.json_addl["action_groups"]["core_actions"]["note"]["action_name"]
        for n in after_note.nodes
    ]
    assert names == ["Write a note"] * 5


def test_without_a_token_every_plan_resolves_each_code_once() -> None:
    resolve = Resolver(plate(), well(), note())
    for name in ("P1", "P2", "P3"):
        plan_instance(resolve, PLATE, name, share_actions=True)
    assert resolve.calls == Counter({PLATE: 3, WELL: 3, NOTE: 3})


def test_an_unchanged_token_spares_resolving_and_a_new_one_resolves_again() -> None:
    resolve = TokenResolver(plate(), well(), note("Create note"))
    plan_instance(resolve, PLATE, "P1", share_actions=True)
    plan_instance(resolve, PLATE, "P2", share_actions=True)
    # the root is always resolved; what it led to is reused under the same token
    assert resolve.calls == Counter({PLATE: 2, WELL: 1, NOTE: 1})

    resolve.templates[NOTE] = note("Write a note")
    resolve.token = 2
    moved = plan_instance(resolve, PLATE, "P3", share_actions=True)

    assert resolve.calls == Counter({PLATE: 3, WELL: 2, NOTE: 2})
    assert {
        n.json_addl["action_groups"]["core_actions"]["note"]["action_name"] for n in moved.nodes
    } == {"Write a note"}


def test_the_root_is_validated_every_time_and_children_stay_checked() -> None:
    resolve = Resolver(plate(), well(), note())
    plan_instance(resolve, PLATE, "P1", share_actions=True)
    with pytest.raises(ValidationError, match="P2"):
        plan_instance(resolve, PLATE, "P2", {"format": "four"}, share_actions=True)
    # a child layout that breaks the well's schema is refused, however often planned
    bad = plate()
    bad.json_addl["instantiation_layouts"][0]["child_templates"][0]["json_addl"] = {
        "properties": {"address": "Q7"}
    }
    resolve.templates[PLATE] = bad
    for _ in range(2):
        with pytest.raises(ValidationError, match="child node 1"):
            plan_instance(resolve, PLATE, "P3", share_actions=True)
