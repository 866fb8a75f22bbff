"""Instantiation layouts parsed once (tapdb_core.layouts) for pack validation and planning."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from tapdb_core import layouts, planning
from tapdb_core import packs as packs_api
from tapdb_core.errors import ValidationError
from tapdb_core.layouts import (
    DEFAULT_NAME_PATTERN,
    LayoutChild,
    LayoutProblem,
    ParsedLayouts,
    parse_layouts,
)
from tapdb_core.packs import validate_packs
from tapdb_core.planning import plan_instance
from tapdb_core.values import Template

PACKS_DIR = Path(layouts.__file__).parent / "packs"


def _template(code: str, json_addl: dict[str, Any]) -> dict[str, Any]:
    category, type_, subtype, version = code.strip("/").split("/")
    return {
        "name": subtype,
        "polymorphic_discriminator": "generic_template",
        "category": category,
        "type": type_,
        "subtype": subtype,
        "version": version,
        "instance_prefix": "GX",
        "json_addl": json_addl,
    }


# -- parsing into values ----------------------------------------------------------------


def test_entries_parse_into_typed_children_with_defaults_and_pointers() -> None:
    parsed = parse_layouts(
        {
            "instantiation_layouts": [
                {
                    "name_pattern": "{parent_name}-{i}",
                    "child_templates": [
                        "content/sample/dna/1.0",
                        {
                            "template_code": "content/sample/dna/*",
                            "count": 3,
                            "name_pattern": "{parent_euid}.{child_index}",
                            "json_addl": {"properties": {"a": 1}},
                        },
                    ],
                },
                {"relationship_type": "holds", "child_templates": ["content/sample/rna/2.0/"]},
            ]
        }
    )
    assert parsed.problems == ()
    assert [layout.relationship_type for layout in parsed.layouts] == ["contains", "holds"]
    first, second, third = parsed.children
    assert first == LayoutChild(
        layout=0,
        entry=0,
        code="content/sample/dna/1.0",
        template_code="content/sample/dna/1.0/",
        pointer="/instantiation_layouts/0/child_templates/0",
        code_pointer="/instantiation_layouts/0/child_templates/0",
        count=1,
        name_pattern="{parent_name}-{i}",
        name_pattern_pointer="/instantiation_layouts/0/name_pattern",
        relationship_type="contains",
        json_addl=None,
    )
    assert second.template_code == "content/sample/dna/*/"
    assert second.code_pointer == "/instantiation_layouts/0/child_templates/1/template_code"
    assert (second.count, second.name_pattern) == (3, "{parent_euid}.{child_index}")
    assert second.name_pattern_pointer == "/instantiation_layouts/0/child_templates/1/name_pattern"
    assert second.json_addl == {"properties": {"a": 1}}
    assert second.what == "instantiation_layouts[0].child_templates[1]"
    assert (third.layout, third.entry, third.relationship_type) == (1, 0, "holds")
    assert (third.name_pattern, third.name_pattern_pointer) == (
        DEFAULT_NAME_PATTERN,
        "/instantiation_layouts/1/child_templates/0",
    )


@pytest.mark.parametrize("json_addl", [{}, {"instantiation_layouts": None}, {"properties": {}}])
def test_absent_layouts_parse_to_nothing(json_addl: dict[str, Any]) -> None:
    assert parse_layouts(json_addl) == ParsedLayouts()


def test_layouts_that_are_not_a_list_are_one_problem() -> None:
    parsed = parse_layouts({"instantiation_layouts": {"child_templates": []}})
    assert parsed.layouts == ()
    assert parsed.problems == (
        LayoutProblem(
            pointer="/instantiation_layouts", message="must be a list of layouts, got object"
        ),
    )


def test_every_written_pattern_is_checked_even_one_every_child_overrides() -> None:
    parsed = parse_layouts(
        {
            "instantiation_layouts": [
                {
                    "name_pattern": "{parent_name}-{n}-{m}",
                    "child_templates": [
                        {"template_code": "a/b/c/1.0", "name_pattern": "{i}"},
                        {"template_code": "not a code", "name_pattern": "{oops"},
                    ],
                }
            ]
        }
    )
    assert [(p.pointer, p.kind) for p in parsed.problems] == [
        ("/instantiation_layouts/0/name_pattern", "name_pattern"),
        ("/instantiation_layouts/0/child_templates/1/name_pattern", "name_pattern"),
        ("/instantiation_layouts/0/child_templates/1/template_code", "shape"),
    ]
    unknown, malformed = (p.message for p in parsed.problems_of("name_pattern"))
    assert "uses unknown placeholders {m}, {n}; known:" in unknown and "{i}" in unknown
    assert malformed.startswith("malformed name_pattern '{oops'")
    # the child whose code does not parse is left out, the other one stays
    assert [c.code for c in parsed.children] == ["a/b/c/1.0"]


def test_i_is_the_alias_of_child_index() -> None:
    assert "i" in layouts.NAME_PATTERN_PLACEHOLDERS
    assert layouts.placeholder_problem("Sample-{i}") is None
    assert layouts.placeholder_problem("{child_index}.{parent_name.upper}") is None


# -- one set of rules ------------------------------------------------------------------------


def test_packs_and_planning_share_the_rules() -> None:
    assert packs_api.deep_merge is layouts.deep_merge is planning.deep_merge
    assert packs_api.json_pointer is layouts.json_pointer
    assert packs_api.NAME_PATTERN_PLACEHOLDERS is planning.NAME_PLACEHOLDERS
    assert packs_api.MAX_LAYOUT_DEPTH == planning.MAX_DEPTH == layouts.MAX_LAYOUT_DEPTH == 10


@pytest.mark.parametrize(
    ("where", "pattern"),
    [
        ("layout", "{parent_name}-{n}"),
        ("child", "{parent_name}-{well}"),
        ("child", "x{0}"),
        ("layout", "{parent_name"),
    ],
)
def test_a_bad_pattern_gets_the_same_message_and_pointer_from_packs_and_planning(
    tmp_path: Path, where: str, pattern: str
) -> None:
    child: Any = "generic/thing/child/1.0"
    layout: dict[str, Any] = {}
    if where == "layout":
        layout["name_pattern"] = pattern
    else:
        child = {"template_code": "generic/thing/child/1.0", "name_pattern": pattern}
    layout["child_templates"] = [child]
    parent = _template("generic/thing/parent/1.0", {"instantiation_layouts": [layout]})
    kid = _template("generic/thing/child/1.0", {})
    (tmp_path / "generic").mkdir()
    (tmp_path / "generic" / "things.json").write_text(
        json.dumps({"templates": [parent, kid]}), encoding="utf-8"
    )

    report = validate_packs(tmp_path)
    (issue,) = report.errors
    templates = {
        f"{t['category']}/{t['type']}/{t['subtype']}/{t['version']}/": Template(
            uuid=i, euid=f"GT-{i}", **t
        )
        for i, t in enumerate([parent, kid], start=1)
    }
    with pytest.raises(ValidationError) as exc:
        plan_instance(templates.__getitem__, "generic/thing/parent/1.0/", "P")
    (violation,) = exc.value.violations

    assert issue.pointer == "/templates/0/json_addl" + violation.path
    assert issue.message == violation.message
    assert pattern in issue.message


# -- the import order: load, then validate, then seed -----------------------------------------


def _imported(module: str) -> set[str]:
    tree = ast.parse((PACKS_DIR / f"{module}.py").read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):  # top-level, TYPE_CHECKING and function-local imports alike
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_load_imports_neither_validate_nor_seed_and_validate_not_seed() -> None:
    assert not {"tapdb_core.packs.validate", "tapdb_core.packs.seed"} & _imported("load")
    assert "tapdb_core.packs.seed" not in _imported("validate")
    assert not {m for m in _imported("load") | _imported("validate") if m == "tapdb_core.packs"}
