"""Instance data is checked by jsonschema-rs, whose verdicts equal jsonschema's.

Property-based: schemas from the keyword set packs use (with nested ``$id``
resources, ``$ref``/``$defs``, conditionals, combinators, ``propertyNames`` and
formats) and instances; the verdict of :mod:`tapdb_core.schemacheck` must be
the ``jsonschema`` library's on every one. Known, deliberate differences are
tested by name at the end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema.validators
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tapdb_core import schemacheck
from tapdb_core.errors import ValidationError
from tapdb_core.packs.validate import _fast_pack_check
from tapdb_core.planning import validate_json_addl
from tapdb_core.values import Template

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "seeds"

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

# The counterexample: the nested "$id" starts a new resource, so its
# "#/$defs/x" is the integer one, not the root's string one.
NESTED_ID_SCHEMA: dict[str, Any] = {
    "$defs": {"x": {"type": "string"}},
    "properties": {
        "a": {"$id": "urn:sub", "$defs": {"x": {"type": "integer"}}, "$ref": "#/$defs/x"}
    },
}


def jsonschema_verdict(schema: Any, instance: Any) -> bool:
    """The reference: jsonschema's validator for the schema's draft, formats asserted."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return bool(cls(schema, format_checker=cls.FORMAT_CHECKER).is_valid(instance))


def _ref_beside_id_below_root(schema: Any, *, root: bool = True) -> bool:
    """A subschema (not the root) holding both "$id" and "$ref": jsonschema 4.26
    resolves such a "$ref" against the wrong base under "not"/"if"/"then"/"else",
    and under "oneOf" depending on the order of the branches (the two tests below);
    the library follows the spec, so the property leaves these shapes to them."""
    if isinstance(schema, list):
        return any(_ref_beside_id_below_root(s, root=False) for s in schema)
    if not isinstance(schema, dict):
        return False
    if not root and "$id" in schema and "$ref" in schema:
        return True
    return any(_ref_beside_id_below_root(sub, root=False) for sub in schema.values())


def test_jsonschema_mis_resolves_refs_beside_an_id_under_not_and_if() -> None:
    """Found by the property test: "$ref" next to "$id" resolves in that "$id"'s
    resource (draft 2020-12, section 8.2.1), so "#/$defs/a" below is the
    integer, and "x" is valid under "not". jsonschema 4.26 resolves it against
    the root (the string) and says invalid; the library follows the spec."""
    schema = {
        "$id": "urn:root",
        "$defs": {"a": {"type": "string"}},
        "not": {"$id": "urn:sub", "$defs": {"a": {"type": "integer"}}, "$ref": "#/$defs/a"},
    }
    assert our_verdict(schema, "x") is True
    assert our_verdict(schema, 1) is False


def test_jsonschema_verdict_on_a_ref_beside_an_id_depends_on_branch_order() -> None:
    """Found by the property test: under "oneOf", jsonschema 4.26 resolves the
    second branch's "$ref" (beside its own "$id") against the root when another
    branch is evaluated first, and says null is valid under both branches. By
    the spec "#/$defs/a" is that resource's string, so null matches only the
    first branch and is valid; the library says so in either order."""
    first = {"propertyNames": {"type": "string"}}
    second = {"$id": "urn:sub1", "$defs": {"a": {"type": "string"}}, "$ref": "#/$defs/a"}
    root = {"$id": "urn:root", "$defs": {"a": {"type": "null"}}}
    one_order = {**root, "oneOf": [first, second]}
    other_order = {**root, "oneOf": [second, first]}
    assert our_verdict(one_order, None) is True
    assert our_verdict(other_order, None) is True
    assert our_verdict(one_order, "x") is False  # a string matches both branches
    assert jsonschema_verdict(other_order, None) is True  # jsonschema agrees in this order


def our_verdict(schema: Any, instance: Any) -> bool:
    return not schemacheck.violations(schemacheck.compiled(schema), instance)


def template_with(schema: Any) -> Template:
    return Template(
        uuid=1,
        euid="GT-1",
        name="t",
        polymorphic_discriminator="generic_template",
        category="generic",
        type="generic",
        subtype="t",
        version="1.0",
        instance_prefix="GX",
        json_addl_schema=schema,
    )


# -- strategies ------------------------------------------------------------------------------

# Strings without a newline: a pattern's "$" also matches before a final
# newline in Python's re, not in ECMA-262 (see the named test below).
TEXT = st.text(
    alphabet=st.sampled_from("abcxzAH019 -_.@:/é"),
    max_size=8,
)
FORMAT_STRINGS = st.sampled_from(
    [
        "2024-01-31",
        "2024-02-30",
        "2024-1-1",
        "2024-01-31T10:00:00Z",
        "a@example.com",
        "@",
        "a b@c.d",
        "nope",
        "https://example.com/x?y=1",
        "urn:x",
        "rel/path",
        "http://exa mple.com",
        "1.2.3.4",
        "01.2.3.4",
        "12345678-1234-1234-1234-123456789abc",
        "A1",
        "H12",
        "",
    ]
)
STRINGS = st.one_of(TEXT, FORMAT_STRINGS)
NUMBERS = st.one_of(
    st.integers(-10, 10),
    st.sampled_from([0.5, -1.5, 2.0, 1e20, 3.25]),
    st.integers(-(2**70), 2**70),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, STRINGS)
KEYS = st.sampled_from(["a", "b", "c", "x", "A1", "é"])
INSTANCES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=10,
)

TYPES = st.sampled_from(["string", "number", "integer", "boolean", "null", "object", "array"])
PATTERNS = st.sampled_from(
    ["^[A-H]", "1$", "^$", "b", "^[A-P][0-9]{1,2}$", "\\d", "^a.*z$", "é", "^[^@]+@", "x|y"]
)
LEAVES = st.one_of(
    st.builds(lambda t: {"type": t}, TYPES),
    st.builds(lambda ts: {"type": ts}, st.lists(TYPES, min_size=1, max_size=3, unique=True)),
    st.builds(lambda n: {"minimum": n}, NUMBERS),
    st.builds(lambda n: {"maximum": n}, NUMBERS),
    st.builds(lambda n: {"exclusiveMinimum": n}, st.integers(-5, 5)),
    st.builds(lambda n: {"exclusiveMaximum": n}, st.integers(-5, 5)),
    st.builds(lambda n: {"minLength": n}, st.integers(0, 4)),
    st.builds(lambda n: {"maxLength": n}, st.integers(0, 4)),
    st.builds(lambda n: {"minItems": n}, st.integers(0, 3)),
    st.builds(lambda p: {"pattern": p}, PATTERNS),
    st.builds(
        lambda f: {"format": f},
        st.sampled_from(["date", "email", "uri", "date-time", "ipv4", "uuid", "hostname"]),
    ),
    st.builds(lambda e: {"enum": e}, st.lists(INSTANCES, min_size=1, max_size=3)),
    st.builds(lambda c: {"const": c}, INSTANCES),
    st.builds(lambda r: {"required": r}, st.lists(KEYS, max_size=2, unique=True)),
    st.booleans(),
    st.just({}),
)


def _compound(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(
            lambda p, t: {"type": "object", "properties": p} if t else {"properties": p},
            st.dictionaries(KEYS, inner, max_size=3),
            st.booleans(),
        ),
        st.builds(
            lambda p, a: {"properties": p, "additionalProperties": a},
            st.dictionaries(KEYS, inner, max_size=2),
            inner,
        ),
        st.builds(lambda i, n: {"items": i, "minItems": n}, inner, st.integers(0, 2)),
        st.builds(lambda n: {"propertyNames": n}, inner),
        st.builds(lambda i, t, e: {"if": i, "then": t, "else": e}, inner, inner, inner),
        st.builds(lambda i, t: {"if": i, "then": t}, inner, inner),
        st.builds(
            lambda k, subs: {k: subs},
            st.sampled_from(["allOf", "anyOf", "oneOf"]),
            st.lists(inner, min_size=1, max_size=3),
        ),
        st.builds(
            lambda a, b: {**a, **b} if isinstance(a, dict) and isinstance(b, dict) else a,
            inner,
            inner,
        ),
    )


# Definitions hold no "$ref" (no reference cycles); bodies refer to "#/$defs/a"
# and "#/$defs/b" of the resource they are in, or to the root's by its "$id".
DEFINITIONS = st.recursive(LEAVES, _compound, max_leaves=4)
REFS = st.builds(
    lambda target: {"$ref": target},
    st.sampled_from(["#/$defs/a", "#/$defs/b", "urn:root#/$defs/a", "urn:root#/$defs/b"]),
)


def _inline(body: Any) -> dict[str, Any]:
    """``body``'s keywords to merge into a resource, or ``allOf: [body]`` when they clash."""
    if isinstance(body, dict) and not {"$id", "$defs", "$schema"} & body.keys():
        return body
    return {"allOf": [body]}


def _with_resource(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A nested resource: its own "$id" and "$defs"; a "$ref" in it resolves there."""
    return st.builds(
        lambda a, b, body, extra: {
            "$id": "urn:sub",  # renumbered so every resource is distinct
            "$defs": {"a": a, "b": b},
            **_inline(body),
            **extra,
        },
        DEFINITIONS,
        DEFINITIONS,
        st.one_of(REFS, inner),
        st.one_of(st.just({}), st.builds(lambda t: {"type": t}, TYPES)),
    )


BODIES = st.recursive(
    st.one_of(LEAVES, REFS),
    lambda inner: st.one_of(_compound(inner), _with_resource(inner)),
    max_leaves=8,
)


def _renumber(schema: Any, counter: list[int]) -> Any:
    if isinstance(schema, dict):
        out = {k: _renumber(v, counter) for k, v in schema.items() if k != "$id"}
        if "$id" in schema:
            counter[0] += 1
            out["$id"] = f"urn:sub{counter[0]}"
        return out
    if isinstance(schema, list):
        return [_renumber(v, counter) for v in schema]
    return schema


SCHEMAS = st.builds(
    lambda a, b, body, declared: {
        **({"$schema": declared} if declared else {}),
        "$id": "urn:root",
        "$defs": {"a": a, "b": b},
        **_inline(_renumber(body, [0])),
    },
    DEFINITIONS,
    DEFINITIONS,
    BODIES,
    st.sampled_from([None, None, DRAFT_2020_12, DRAFT_07]),
)


# -- the property ----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=SCHEMAS, instance=INSTANCES)
def test_verdict_equals_jsonschemas(schema: dict[str, Any], instance: Any) -> None:
    # jsonschema (4.26) resolves some "$ref"s beside a sibling "$id" against the
    # wrong base; the library is right there (see _ref_beside_id_below_root)
    assume(not _ref_beside_id_below_root(schema))
    expected = jsonschema_verdict(schema, instance)
    found = schemacheck.violations(schemacheck.compiled(schema), instance)
    assert (not found) == expected, (schema, instance, found)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    outer=DEFINITIONS,
    inner=DEFINITIONS,
    target=st.sampled_from(["#/$defs/x", "urn:root#/$defs/x", "urn:sub#/$defs/x"]),
    value=INSTANCES,
)
def test_a_reference_resolves_in_its_own_resource(
    outer: Any, inner: Any, target: str, value: Any
) -> None:
    """The issue's shape, generalised: which "x" a "$ref" means depends on the nearest "$id"."""
    schema = {
        "$id": "urn:root",
        "$defs": {"x": outer},
        "properties": {"p": {"$id": "urn:sub", "$defs": {"x": inner}, "$ref": target}},
    }
    instance = {"p": value}
    assert our_verdict(schema, instance) == jsonschema_verdict(schema, instance)


def _seed_cases() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    found = []
    for path in sorted(SEEDS.glob("*/*.json")):
        for template in json.loads(path.read_text())["templates"]:
            schema = template.get("json_addl_schema")
            if schema:
                props = template.get("json_addl", {}).get("properties", {})
                found.append((template["subtype"], schema, props))
    return found


SEED_CASES = _seed_cases()
SEED_KEYS = st.sampled_from(
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
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.sampled_from(SEED_CASES),
    overrides=st.dictionaries(SEED_KEYS, INSTANCES, max_size=4),
)
def test_seed_schemas_agree_with_jsonschema(
    case: tuple[str, dict[str, Any], dict[str, Any]], overrides: dict[str, Any]
) -> None:
    _, schema, defaults = case
    instance = {"properties": {**defaults, **overrides}, "action_groups": {}, "audit_log": []}
    assert our_verdict(schema, instance) == jsonschema_verdict(schema, instance)


def test_every_seed_default_is_valid() -> None:
    assert SEED_CASES
    for _, schema, defaults in SEED_CASES:
        assert our_verdict(schema, {"properties": defaults, "action_groups": {}, "audit_log": []})


PACK_SCHEMA = json.loads((ROOT / "tapdb_core" / "packs" / "pack.schema.json").read_text())
SEED_TEMPLATES = [
    t for path in sorted(SEEDS.glob("*/*.json")) for t in json.loads(path.read_text())["templates"]
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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
    value=INSTANCES,
    inner=st.sampled_from(
        [None, "instantiation_layouts", "action_imports", "expected_inputs", "properties"]
    ),
)
def test_the_pack_documents_quick_yes_is_jsonschemas(
    template: dict[str, Any], key: str, value: Any, inner: str | None
) -> None:
    mutated = json.loads(json.dumps(template))
    if inner is not None and isinstance(mutated.get("json_addl"), dict):
        mutated["json_addl"][inner] = value
    else:
        mutated[key] = value
    reference = jsonschema.Draft202012Validator(PACK_SCHEMA)
    documents: list[dict[str, Any]] = [
        {"templates": [template]},
        {"templates": [mutated]},
        {"templates": []},
    ]
    for document in documents:
        assert _fast_pack_check().is_valid(document) == reference.is_valid(document)


# -- by name ---------------------------------------------------------------------------------


def test_a_nested_id_starts_a_new_resource() -> None:
    assert not jsonschema_verdict(NESTED_ID_SCHEMA, {"a": "hi"})
    assert schemacheck.violations(schemacheck.compiled(NESTED_ID_SCHEMA), {"a": "hi"}) == [
        ("/a", '"hi" is not of type "integer"')
    ]
    assert our_verdict(NESTED_ID_SCHEMA, {"a": 3})
    with pytest.raises(ValidationError) as exc:
        validate_json_addl(template_with(NESTED_ID_SCHEMA), {"a": "hi"}, where="w")
    assert [v.path for v in exc.value.violations] == ["/a"]


def test_every_violation_is_reported_sorted_by_pointer() -> None:
    schema = {
        "properties": {
            "b": {"type": "string"},
            "a": {"items": {"minimum": 0}},
            "a/~": {"const": 1},
        },
        "required": ["z"],
    }
    found = schemacheck.violations(
        schemacheck.compiled(schema), {"b": 1, "a": [-1, 0, -2], "a/~": 2}
    )
    assert [path for path, _ in found] == ["/", "/a/0", "/a/2", "/a~1~0", "/b"]


def test_remote_and_file_references_are_refused_without_fetching() -> None:
    for target in ("https://example.com/s.json", "file:///etc/passwd", "other.json"):
        with pytest.raises(schemacheck.SchemaUnusable, match=r"Retrieval is disabled|not present"):
            schemacheck.compiled({"$ref": target})


def test_unusable_schemas_are_reported_with_their_pointer() -> None:
    with pytest.raises(ValidationError, match="not a valid JSON Schema") as exc:
        validate_json_addl(template_with({"properties": {"a": {"type": "nope"}}}), {}, where="w")
    assert [v.path for v in exc.value.violations] == ["/properties/a/type"]
    for bad in ({"$ref": "#/$defs/missing"}, {"pattern": "("}, {"$schema": "urn:unknown"}):
        with pytest.raises(ValidationError, match="not a valid JSON Schema"):
            validate_json_addl(template_with(bad), {}, where="w")


def test_absurdly_deep_schemas_are_refused() -> None:
    for depth in (900, 5000):
        schema: Any = {"type": "integer"}
        for _ in range(depth):
            schema = {"items": schema}
        with pytest.raises(schemacheck.SchemaUnusable):
            schemacheck.compiled(schema)


def test_a_catastrophic_pattern_takes_no_time() -> None:
    """jsonschema-rs matches in linear time (no backtracking blow-up); asserted by
    finishing at all, not by a clock."""
    validator = schemacheck.compiled({"pattern": "^(a+)+$"})
    assert [p for p, _ in schemacheck.violations(validator, "a" * 5000 + "b")] == ["/"]


def test_formats_are_asserted_as_jsonschema_asserts_them() -> None:
    date = schemacheck.compiled({"format": "date"})
    assert schemacheck.violations(date, "2024-02-30") == [("/", '"2024-02-30" is not a "date"')]
    assert schemacheck.violations(date, "2024-02-29") == []
    # jsonschema checks neither "uri" (without its optional packages) nor more
    # of an email than its "@": neither does an instance write
    assert our_verdict({"format": "uri"}, "rel/path") == jsonschema_verdict(
        {"format": "uri"}, "rel/path"
    )
    assert our_verdict({"format": "email"}, "@") == jsonschema_verdict({"format": "email"}, "@")


def test_validators_are_cached_by_content() -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"n": {"maximum": 3}}}
    first = schemacheck.compiled(schema)
    assert schemacheck.compiled(json.loads(json.dumps(schema))) is first
    schema["properties"]["n"]["maximum"] = 5  # a changed schema is a new validator
    assert schemacheck.compiled(schema) is not first
    assert our_verdict(schema, {"n": 4})


def test_mappings_and_tuples_are_read_as_json() -> None:
    from types import MappingProxyType

    validator = schemacheck.compiled({"properties": {"a": {"type": "array", "maxItems": 1}}})
    assert schemacheck.violations(validator, MappingProxyType({"a": (1,)})) == []
    assert [p for p, _ in schemacheck.violations(validator, MappingProxyType({"a": (1, 2)}))] == [
        "/a"
    ]


def test_dollar_does_not_match_before_a_final_newline() -> None:
    """ECMA-262, as JSON Schema asks: stricter than jsonschema (Python's re) here."""
    schema = {"pattern": "^A1$"}
    assert not our_verdict(schema, "A1\n")
    assert jsonschema_verdict(schema, "A1\n")
