"""The fast schema check never accepts what jsonschema rejects (and agrees on the seeds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from tapdb_core.fastschema import compile_schema, json_equal

SEEDS = Path(__file__).resolve().parents[2] / "seeds"

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from(["", "A1", "H12", "Q1", "P24", "abc", "x" * 40, "ng/uL", "created"]),
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _seed_schemas() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    found = []
    for path in sorted(SEEDS.glob("*/*.json")):
        for template in json.loads(path.read_text())["templates"]:
            schema = template.get("json_addl_schema")
            if schema:
                props = template.get("json_addl", {}).get("properties", {})
                found.append((template["subtype"], schema, props))
    return found


SEED_SCHEMAS = _seed_schemas()


def test_every_seed_schema_compiles() -> None:
    assert SEED_SCHEMAS
    assert [name for name, schema, _ in SEED_SCHEMAS if compile_schema(schema) is None] == []


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.sampled_from(SEED_SCHEMAS),
    overrides=st.dictionaries(
        st.sampled_from(
            [
                "address",
                "row_name",
                "col_name",
                "row_idx",
                "col_idx",
                "concentration",
                "volume_ul",
                "status",
                "name",
                "din",
                "a260_280",
                "format",
                "rows",
            ]
        ),
        JSON,
        max_size=4,
    ),
)
def test_fast_check_agrees_with_jsonschema_on_seed_schemas(
    case: tuple[str, dict[str, Any], dict[str, Any]], overrides: dict[str, Any]
) -> None:
    _, schema, defaults = case
    instance = {"properties": {**defaults, **overrides}, "action_groups": {}, "audit_log": []}
    fast = compile_schema(schema)
    assert fast is not None
    expected = Draft202012Validator(
        schema, format_checker=Draft202012Validator.FORMAT_CHECKER
    ).is_valid(instance)
    assert fast(instance) == expected


SCHEMAS = st.recursive(
    st.one_of(
        st.builds(
            lambda t: {"type": t},
            st.sampled_from(["string", "number", "integer", "boolean", "null", "object", "array"]),
        ),
        st.builds(lambda n: {"minimum": n}, st.integers(-5, 5)),
        st.builds(lambda n: {"exclusiveMaximum": n}, st.integers(-5, 5)),
        st.builds(lambda n: {"maxLength": n}, st.integers(0, 5)),
        st.builds(lambda p: {"pattern": p}, st.sampled_from(["^[A-H]", "1$", "^$", "b"])),
        st.builds(lambda e: {"enum": e}, st.lists(JSON_SCALARS, min_size=1, max_size=3)),
        st.builds(lambda c: {"const": c}, JSON_SCALARS),
        st.builds(
            lambda r: {"required": r},
            st.lists(st.sampled_from(["a", "b"]), max_size=2, unique=True),
        ),
        st.just({"uniqueItems": True}),
        st.booleans(),
    ),
    lambda inner: st.one_of(
        st.builds(
            lambda p: {"type": "object", "properties": p},
            st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
        ),
        st.builds(lambda i: {"items": i, "maxItems": 3}, inner),
        st.builds(lambda a: {"properties": {"a": True}, "additionalProperties": a}, inner),
        st.builds(
            lambda d: {"dependentRequired": {"a": d}},
            st.lists(st.sampled_from(["b", "c"]), max_size=2),
        ),
    ),
    max_leaves=6,
)


@settings(max_examples=600, deadline=None)
@given(schema=SCHEMAS, instance=JSON)
def test_fast_check_agrees_with_jsonschema_on_random_schemas(schema: Any, instance: Any) -> None:
    fast = compile_schema(schema)
    assert fast is not None
    assert fast(instance) == Draft202012Validator(schema).is_valid(instance)


@pytest.mark.parametrize(
    "schema", [{"$ref": "#/x"}, {"anyOf": [{}]}, {"format": "date"}, {"not": {}}, {"type": "thing"}]
)
def test_unsupported_keywords_fall_back(schema: dict[str, Any]) -> None:
    assert compile_schema(schema) is None


def test_json_equality_keeps_booleans_apart_from_numbers() -> None:
    assert json_equal(1, 1.0)
    assert not json_equal(True, 1)
    assert not json_equal(0, False)
    assert json_equal({"a": [1, "x"]}, {"a": [1.0, "x"]})
    assert not json_equal("1", 1)


PACK_SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "tapdb_core" / "packs" / "pack.schema.json").read_text()
)
SEED_TEMPLATES = [
    t for path in sorted(SEEDS.glob("*/*.json")) for t in json.loads(path.read_text())["templates"]
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    template=st.sampled_from(SEED_TEMPLATES),
    key=st.sampled_from(
        [
            "name",
            "category",
            "instance_prefix",
            "is_singleton",
            "json_addl",
            "json_addl_schema",
            "bogus_key",
            "version",
            "bstatus",
        ]
    ),
    value=JSON,
    inner=st.sampled_from(
        [None, "instantiation_layouts", "action_imports", "expected_inputs", "properties"]
    ),
)
def test_fast_check_agrees_with_jsonschema_on_the_pack_schema(
    template: dict[str, Any], key: str, value: Any, inner: str | None
) -> None:
    mutated = json.loads(json.dumps(template))
    if inner is not None and isinstance(mutated.get("json_addl"), dict):
        mutated["json_addl"][inner] = value
    else:
        mutated[key] = value
    for document in ({"templates": [template]}, {"templates": [mutated]}, {"templates": []}):
        fast = compile_schema(PACK_SCHEMA)
        assert fast is not None
        assert fast(document) == Draft202012Validator(PACK_SCHEMA).is_valid(document)
