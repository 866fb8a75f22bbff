"""A fast yes/no check for the common subset of JSON Schema that template packs use.

``jsonschema`` costs ~50-100 µs per instance, which dominated planning a
96-well plate (every well validated). ``compile_schema`` turns a schema that
uses only the keywords below into a plain Python predicate (a few µs). It is
only ever used to say "valid" quickly: when it says "invalid", or when the
schema uses anything else, the caller runs ``jsonschema`` for the verdict and
the messages. So the predicate must never accept what ``jsonschema`` rejects;
``tests/unit/test_fastschema.py`` checks that property-based against
``jsonschema`` on the seed schemas.

Supported (draft 2020-12 semantics): type, properties, required,
additionalProperties, propertyNames, dependentRequired, items (single schema),
minItems, maxItems, uniqueItems, minimum, maximum, exclusiveMinimum,
exclusiveMaximum, minLength, maxLength, pattern, enum, const, if/then/else,
``$ref`` to ``#/$defs/NAME`` of the same document, boolean schemas;
annotations ($schema, $id, $comment, title, description, default, examples,
deprecated, readOnly, writeOnly, $defs).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

Predicate = Callable[[Any], bool]

_ANNOTATIONS: Final = frozenset(
    {
        "$schema",
        "$id",
        "$comment",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$defs",
    }
)


class _Unsupported(Exception):
    pass


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_TYPE_CHECKS: Final[dict[str, Predicate]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": _is_number,
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: booleans are not numbers, 1 equals 1.0, containers deeply."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if a is None or b is None:
        return a is None and b is None
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    return False


class _Context:
    """The root document, for ``$ref`` to its ``$defs`` (compiled once, recursion-safe)."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.defs: dict[str, Predicate] = {}

    def ref(self, target: Any) -> Predicate:
        prefix = "#/$defs/"
        if not isinstance(target, str) or not target.startswith(prefix):
            raise _Unsupported
        name = target[len(prefix) :]
        if "/" in name or "~" in name or "%" in name:
            raise _Unsupported
        defs = self.root.get("$defs") if isinstance(self.root, Mapping) else None
        if not isinstance(defs, Mapping) or name not in defs:
            raise _Unsupported
        if name not in self.defs:
            slot: list[Predicate] = []

            def late(v: Any) -> bool:  # lets a definition refer to itself
                return slot[0](v)

            self.defs[name] = late
            slot.append(_compile(defs[name], self))
        return self.defs[name]


def _type_check(value: Any) -> Predicate:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(n in _TYPE_CHECKS for n in names):
        raise _Unsupported
    tests = [_TYPE_CHECKS[n] for n in names]

    def check(v: Any) -> bool:
        return any(t(v) for t in tests)

    return check


def _properties(value: Any, ctx: _Context) -> Predicate:
    if not isinstance(value, Mapping):
        raise _Unsupported
    subs = {name: _compile(sub, ctx) for name, sub in value.items()}

    def check(v: Any) -> bool:
        return not isinstance(v, dict) or all(c(v[n]) for n, c in subs.items() if n in v)

    return check


def _additional(schema: Mapping[str, Any], value: Any, ctx: _Context) -> Predicate:
    if "patternProperties" in schema:
        raise _Unsupported
    known = frozenset(schema.get("properties", {}))
    extra = _compile(value, ctx)

    def check(v: Any) -> bool:
        return not isinstance(v, dict) or all(extra(x) for n, x in v.items() if n not in known)

    return check


def _required(value: Any) -> Predicate:
    if not isinstance(value, list):
        raise _Unsupported
    names = list(value)

    def check(v: Any) -> bool:
        return not isinstance(v, dict) or all(n in v for n in names)

    return check


def _dependent_required(value: Any) -> Predicate:
    if not isinstance(value, Mapping):
        raise _Unsupported
    deps = {k: list(d) for k, d in value.items()}

    def check(v: Any) -> bool:
        if not isinstance(v, dict):
            return True
        return all(all(n in v for n in need) for k, need in deps.items() if k in v)

    return check


def _items(schema: Mapping[str, Any], value: Any, ctx: _Context) -> Predicate:
    if "prefixItems" in schema:
        raise _Unsupported
    each = _compile(value, ctx)

    def check(v: Any) -> bool:
        return not isinstance(v, list) or all(each(i) for i in v)

    return check


def _length(key: str, value: Any) -> Predicate:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Unsupported
    kind: type = list if key.endswith("Items") else str
    at_least = key.startswith("min")

    def check(v: Any) -> bool:
        if not isinstance(v, kind):
            return True
        size = len(v)  # type: ignore[arg-type]
        return size >= value if at_least else size <= value

    return check


def _unique(value: Any) -> Predicate | None:
    if value is False:
        return None
    if value is not True:
        raise _Unsupported

    def check(v: Any) -> bool:
        if not isinstance(v, list):
            return True
        return not any(json_equal(v[i], v[j]) for i in range(len(v)) for j in range(i))

    return check


_BOUNDS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "minimum": lambda a, b: bool(a >= b),
    "maximum": lambda a, b: bool(a <= b),
    "exclusiveMinimum": lambda a, b: bool(a > b),
    "exclusiveMaximum": lambda a, b: bool(a < b),
}


def _bound(key: str, value: Any) -> Predicate:
    if not _is_number(value):
        raise _Unsupported
    compare = _BOUNDS[key]

    def check(v: Any) -> bool:
        return not _is_number(v) or compare(v, value)

    return check


def _pattern(value: Any) -> Predicate:
    if not isinstance(value, str):
        raise _Unsupported
    try:
        regex = re.compile(value)
    except re.error:
        raise _Unsupported from None

    def check(v: Any) -> bool:
        return not isinstance(v, str) or regex.search(v) is not None

    return check


def _enum(value: Any) -> Predicate:
    if not isinstance(value, list):
        raise _Unsupported
    # Scalars go into typed sets (a bool never matches a number, 1 matches 1.0);
    # only containers need the slow deep comparison.
    strings = {o for o in value if isinstance(o, str)}
    bools = {o for o in value if isinstance(o, bool)}
    numbers = {o for o in value if _is_number(o)}
    allow_null = any(o is None for o in value)
    containers = [o for o in value if isinstance(o, (list, dict))]

    def check(v: Any) -> bool:
        if isinstance(v, str):
            return v in strings
        if isinstance(v, bool):
            return v in bools
        if _is_number(v):
            return v in numbers
        if v is None:
            return allow_null
        return any(json_equal(v, o) for o in containers)

    return check


def _const(value: Any) -> Predicate:
    def check(v: Any) -> bool:
        return json_equal(v, value)

    return check


def _always(result: bool) -> Predicate:
    def check(_v: Any) -> bool:
        return result

    return check


def _property_names(value: Any, ctx: _Context) -> Predicate:
    name_ok = _compile(value, ctx)

    def check(v: Any) -> bool:
        return not isinstance(v, dict) or all(name_ok(n) for n in v)

    return check


def _conditional(schema: Mapping[str, Any], ctx: _Context) -> Predicate:
    condition = _compile(schema["if"], ctx)
    then = _compile(schema.get("then", True), ctx)
    otherwise = _compile(schema.get("else", True), ctx)

    def check(v: Any) -> bool:
        return then(v) if condition(v) else otherwise(v)

    return check


def _compile(schema: Any, ctx: _Context) -> Predicate:
    if schema is True or schema is False:
        return _always(schema)
    if not isinstance(schema, Mapping):
        raise _Unsupported
    checks: list[Predicate] = []
    for key in set(schema) - _ANNOTATIONS:
        value = schema[key]
        check: Predicate | None
        if key == "type":
            check = _type_check(value)
        elif key == "properties":
            check = _properties(value, ctx)
        elif key == "additionalProperties":
            check = _additional(schema, value, ctx)
        elif key == "propertyNames":
            check = _property_names(value, ctx)
        elif key == "if":
            check = _conditional(schema, ctx)
        elif key in ("then", "else"):
            check = None  # applied through "if"; ignored without it, as the spec says
        elif key == "$ref":
            check = ctx.ref(value)
        elif key == "required":
            check = _required(value)
        elif key == "dependentRequired":
            check = _dependent_required(value)
        elif key == "items":
            check = _items(schema, value, ctx)
        elif key in ("minItems", "maxItems", "minLength", "maxLength"):
            check = _length(key, value)
        elif key == "uniqueItems":
            check = _unique(value)
        elif key in _BOUNDS:
            check = _bound(key, value)
        elif key == "pattern":
            check = _pattern(value)
        elif key == "enum":
            check = _enum(value)
        elif key == "const":
            check = _const(value)
        else:
            raise _Unsupported
        if check is not None:
            checks.append(check)

    def check_all(v: Any) -> bool:
        return all(c(v) for c in checks)

    return check_all


def compile_schema(schema: Any) -> Predicate | None:
    """A predicate that says True only for instances the schema accepts; None
    when the schema uses something this module does not handle."""
    try:
        return _compile(schema, _Context(schema))
    except (_Unsupported, RecursionError):
        return None
