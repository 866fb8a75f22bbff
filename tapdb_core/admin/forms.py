"""The create-instance form generated from a template's ``json_addl_schema``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from tapdb_core.values import Template

SKIPPED = frozenset({"name"})
"""The instance name has its own field."""


@attrs.frozen(kw_only=True)
class Field:
    key: str
    kind: str
    """text, number, integer, boolean, choice, json, const"""
    required: bool = False
    choices: tuple[str, ...] = ()
    default: str = ""
    description: str = ""
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None


def _property_schema(template: Template) -> tuple[Mapping[str, Any], set[str]]:
    schema = template.json_addl_schema or {}
    props = schema.get("properties", {}).get("properties", {})
    if not isinstance(props, Mapping):
        return {}, set()
    required = props.get("required", [])
    return props.get("properties", {}) or {}, set(required if isinstance(required, list) else [])


def _kind(spec: Mapping[str, Any], default: Any) -> str:
    if "const" in spec:
        return "const"
    if "enum" in spec:
        return "choice"
    types = spec.get("type")
    names = {types} if isinstance(types, str) else set(types or [])
    names.discard("null")
    if names == {"boolean"}:
        return "boolean"
    if names == {"integer"}:
        return "integer"
    if names <= {"number", "integer"} and names:
        return "number"
    if names & {"object", "array"}:
        return "json"
    if not names and isinstance(default, (dict, list)):
        return "json"
    return "text"


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def fields_for(template: Template) -> list[Field]:
    """One field per property the schema (else the template's defaults) names."""
    defaults = template.json_addl.get("properties", {})
    defaults = defaults if isinstance(defaults, Mapping) else {}
    specs, required = _property_schema(template)
    keys = list(specs) + [k for k in defaults if k not in specs]
    fields = []
    for key in keys:
        if key in SKIPPED:
            continue
        spec = specs.get(key, {})
        spec = spec if isinstance(spec, Mapping) else {}
        default = defaults.get(key, spec.get("const", spec.get("default")))
        fields.append(
            Field(
                key=key,
                kind=_kind(spec, default),
                required=key in required,
                choices=tuple(_shown(v) for v in spec.get("enum", []) or []),
                default=_shown(default),
                description=str(spec.get("description", "")),
                pattern=spec.get("pattern") if isinstance(spec.get("pattern"), str) else None,
                minimum=spec.get("minimum"),
                maximum=spec.get("maximum"),
            )
        )
    return fields


def parse_value(field: Field, raw: str) -> tuple[bool, Any, str | None]:
    """(present, value, error) for one submitted field."""
    raw = raw.strip()
    if raw == "":
        return False, None, "required" if field.required else None
    try:
        if field.kind == "integer":
            return True, int(raw), None
        if field.kind == "number":
            number = float(raw)
            return True, int(number) if number.is_integer() and "." not in raw else number, None
        if field.kind == "boolean":
            if raw not in ("true", "false"):
                return True, raw, "must be true or false"
            return True, raw == "true", None
        if field.kind in ("json", "const"):
            try:
                return True, json.loads(raw), None
            except json.JSONDecodeError:
                if field.kind == "const":
                    return True, raw, None
                raise
        if field.kind == "choice":
            for choice in field.choices:
                if choice == raw:
                    try:
                        return True, json.loads(raw), None
                    except json.JSONDecodeError:
                        return True, raw, None
            return True, raw, "not one of the choices"
    except ValueError as exc:
        return True, raw, f"not a valid {field.kind}: {exc}"
    return True, raw, None


def parse_form(
    template: Template, form: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Properties from ``prop_<key>`` fields and the errors per key."""
    props: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in fields_for(template):
        present, value, error = parse_value(field, form.get(f"prop_{field.key}", ""))
        if error:
            errors[field.key] = error
        elif present:
            props[field.key] = value
    return props, errors
