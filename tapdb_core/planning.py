"""Planning instance creation without a database.

:func:`plan_instance` turns a template code, a name and properties into an
:class:`InstancePlan`: every instance to insert (the root and, through
``instantiation_layouts``, its children, grandchildren, ...) with its final
``json_addl``, discriminator, status and name pattern, plus the lineage edges.
The semantics are daylily-tapdb 0.1.13's ``InstanceFactory.create_instance``:

* root ``json_addl`` = ``{"properties": <template properties, deep-copied,
  shallow-merged with the caller's>, "action_groups": <materialised actions>,
  "audit_log": []}``; children get their template's properties, with the layout
  entry's ``json_addl`` deep-merged over the whole ``json_addl``;
* discriminator = :attr:`Template.instance_discriminator`; ``bstatus`` = the
  template's ``default_status``, else ``"created"``; ``is_singleton`` copied;
* child names come from the entry's ``name_pattern``, else the layout's, else
  ``"{parent_name}_{child_subtype}_{index}"``;
* layouts nest at most ``max_depth`` (10) levels; a template repeating in its own
  ancestor chain is refused.

Better than the original: every node's ``json_addl`` is validated against its
template's ``json_addl_schema`` (all violations at once, by jsonschema-rs: see
:mod:`tapdb_core.schemacheck`) before anything is written, and bad layouts are
reported with JSON pointers.

Everything is checked while planning, so a writer can insert the nodes in
order (a parent always comes before its children) and render child names once
the parents' EUIDs are known (:meth:`PlannedNode.render_name`).
"""

from __future__ import annotations

import copy
import functools
import string
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias

import attrs
import jsonschema_rs

from tapdb_core import schemacheck
from tapdb_core.codes import TemplateCode
from tapdb_core.errors import (
    TemplateCodeError,
    TemplateNotFoundError,
    ValidationError,
    Violation,
)
from tapdb_core.inputcheck import check_optional_json, check_text
from tapdb_core.values import Template

__all__ = [
    "DEFAULT_NAME_PATTERN",
    "DEFAULT_RELATIONSHIP_TYPE",
    "DEFAULT_STATUS",
    "MAX_DEPTH",
    "NAME_PLACEHOLDERS",
    "InstancePlan",
    "PlannedEdge",
    "PlannedNode",
    "SchemaValidator",
    "TemplateResolver",
    "check_json_addl",
    "deep_merge",
    "materialise_actions",
    "plan_instance",
    "schema_validator",
    "validate_json_addl",
]

#: Given a template code (trailing ``/`` optional, version ``*`` = newest live
#: version), the template; raises :class:`TemplateNotFoundError` naming the code.
TemplateResolver: TypeAlias = Callable[[str], Template]

#: deepest nesting of instantiation layouts below the root (the original's limit)
MAX_DEPTH: Final = 10
DEFAULT_RELATIONSHIP_TYPE: Final = "contains"
DEFAULT_NAME_PATTERN: Final = "{parent_name}_{child_subtype}_{index}"
DEFAULT_STATUS: Final = "created"
#: placeholders a child ``name_pattern`` may use
NAME_PLACEHOLDERS: Final = frozenset(
    {
        "parent_name",
        "parent_euid",
        "index",
        "layout_index",
        "child_index",
        "child_subtype",
        "child_template_code",
        # the original README's own example ("Sample-{i}"), which the original
        # could not render: the copy number within its entry, as {child_index}
        "i",
    }
)
_DUMMY_EUID: Final = "XX-1"


# -- JSON helpers ---------------------------------------------------------------------


_SCALARS: Final = (str, int, float, bool, type(None))


def _copy_json(value: Any) -> Any:
    """A deep copy of JSON-like data (dicts and lists copied, scalars shared); fast."""
    kind = type(value)
    if kind is dict:
        return {k: _copy_json(v) for k, v in value.items()}
    if kind is list:
        return [_copy_json(v) for v in value]
    if kind in _SCALARS:
        return value
    if isinstance(value, Mapping):
        return {k: _copy_json(v) for k, v in value.items()}
    return copy.deepcopy(value)


def _merge_into(target: dict[str, Any], override: Mapping[str, Any]) -> None:
    """Merge ``override`` into ``target`` in place (``target`` must be owned by the caller)."""
    for key, value in override.items():
        current = target.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            _merge_into(current, value)
        else:
            target[key] = _copy_json(value)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` merged into a deep copy of ``base``; neither input is changed.

    Nested objects merge key by key; anything else (lists included) in
    ``override`` replaces the value in ``base``.
    """
    merged: dict[str, Any] = {k: _copy_json(v) for k, v in base.items()}
    _merge_into(merged, override)
    return merged


_pointer = schemacheck.pointer


# -- json_addl_schema -------------------------------------------------------------------

SchemaValidator: TypeAlias = jsonschema_rs.Validator


def schema_validator(template: Template, where: str) -> SchemaValidator | None:
    """The compiled validator of the template's ``json_addl_schema`` (None without one).

    Raises :class:`ValidationError` when the schema is not an object or not a
    usable JSON Schema.
    """
    schema = template.json_addl_schema
    if schema is None:
        return None
    if not isinstance(schema, Mapping):
        raise ValidationError(
            f"{where}: json_addl_schema of {template.template_code} is not an object",
            [Violation(path="", message=f"expected an object, got {type(schema).__name__}")],
        )
    try:
        return schemacheck.compiled(schema)
    except schemacheck.SchemaUnusable as exc:
        raise ValidationError(
            f"{where}: json_addl_schema of {template.template_code} is not a valid JSON Schema",
            [Violation(path=_pointer(exc.path) or "/", message=exc.message)],
        ) from exc


def check_json_addl(
    validator: SchemaValidator, template: Template, json_addl: Any, *, where: str
) -> None:
    """Raise :class:`ValidationError` with every violation of ``json_addl`` (sorted by pointer)."""
    try:
        found = schemacheck.violations(validator, json_addl)
    except ValueError as exc:  # a value jsonschema-rs cannot read
        raise ValidationError(
            f"{where}: json_addl_schema of {template.template_code} cannot be applied",
            [Violation(path="", message=str(exc))],
        ) from exc
    if found:
        raise ValidationError(
            f"{where}: json_addl violates the schema of {template.template_code}",
            [Violation(path=path, message=message) for path, message in found],
        )


def validate_json_addl(template: Template, json_addl: Mapping[str, Any], *, where: str) -> None:
    """Check ``json_addl`` against the template's ``json_addl_schema`` (if it has one).

    Raises :class:`ValidationError` carrying every violation (JSON pointer +
    message, sorted by pointer), or when the schema itself is unusable.
    """
    validator = schema_validator(template, where)
    if validator is not None:
        check_json_addl(validator, template, json_addl, where=where)


# -- actions ----------------------------------------------------------------------------


def materialise_actions(resolve: TemplateResolver, template: Template) -> dict[str, Any]:
    """``action_groups`` for a new instance of ``template`` from its ``action_imports``.

    Each entry ``key -> action template code`` goes under the group
    ``"<action template type>_actions"`` as the action template's uuid, euid and
    code, a copy of its ``action_definition`` and the tracking fields
    ``action_executed`` (0), ``executed_datetime`` ([]) and ``action_enabled``.
    """
    imports = template.json_addl.get("action_imports")
    if imports is None:
        return {}
    if not isinstance(imports, Mapping):
        raise ValidationError(
            f"invalid action_imports in template {template.template_code}",
            [Violation(path="/action_imports", message="must be an object (key -> code)")],
        )
    bad = [
        Violation(path=_pointer(["action_imports", key]), message="must be a template code string")
        for key, code in imports.items()
        if not isinstance(code, str)
    ]
    if bad:
        raise ValidationError(f"invalid action_imports in template {template.template_code}", bad)
    resolved: dict[str, Template] = {}
    groups: dict[str, dict[str, Any]] = {}
    for key, code in imports.items():
        action = resolved.get(code)
        if action is None:
            action = resolved[code] = resolve(code)
        definition = action.json_addl.get("action_definition") or {}
        if not isinstance(definition, Mapping):
            raise ValidationError(
                f"action template {action.template_code} (imported as {key!r} by "
                f"{template.template_code}) has an invalid action_definition",
                [Violation(path="/action_definition", message="must be an object")],
            )
        groups.setdefault(f"{action.type}_actions", {})[key] = {
            "action_template_uuid": action.uuid,
            "action_template_euid": action.euid,
            "action_template_code": action.template_code,
            **_copy_json(definition),
            "action_executed": 0,
            "executed_datetime": [],
            "action_enabled": definition.get("action_enabled", True),
        }
    return groups


# -- plan values ------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _pattern_fields(pattern: str) -> frozenset[str]:
    """Base names of the fields a format pattern uses (``{a.b}`` -> ``a``); ValueError if bad."""
    names: set[str] = set()
    for _, field, _, _ in string.Formatter().parse(pattern):
        if field is not None:
            end = len(field)
            for stop in (".", "["):
                pos = field.find(stop)
                if pos != -1:
                    end = min(end, pos)
            names.add(field[:end])
    return frozenset(names)


@attrs.frozen(kw_only=True)
class PlannedNode:
    """One instance to create."""

    index: int
    """Position in :attr:`InstancePlan.nodes`."""
    depth: int
    """0 for the root, 1 for its children, ..."""
    parent_index: int | None
    template: Template
    name_pattern: str | None
    """Pattern of a child's name (None for the root)."""
    name_context: Mapping[str, object]
    """Placeholder values except ``parent_euid`` (and except ``parent_name`` when
    the parent's own name depends on an EUID: see :attr:`needs_parent_name`)."""
    literal_name: str | None
    """The root's name as given by the caller (None for children)."""
    json_addl: dict[str, Any]
    polymorphic_discriminator: str
    bstatus: str
    is_singleton: bool

    @property
    def needs_parent_name(self) -> bool:
        """True when :meth:`render_name` must be given ``parent_name``.

        That happens only when the parent's name pattern uses ``{parent_euid}``
        and this node's pattern uses ``{parent_name}``.
        """
        return (
            self.name_pattern is not None
            and "parent_name" not in self.name_context
            and "parent_name" in _pattern_fields(self.name_pattern)
        )

    def render_name(self, parent_euid: str | None, parent_name: str | None = None) -> str:
        """The instance's name, once the parent's EUID is known.

        ``parent_name`` overrides the planned parent name; it is required only
        when :attr:`needs_parent_name` is true.
        """
        if self.literal_name is not None:
            return self.literal_name
        pattern = self.name_pattern
        if pattern is None:  # pragma: no cover - plan_instance always sets one
            raise ValidationError(f"planned node {self.index} has neither a name nor a pattern")
        fields = _pattern_fields(pattern)
        context = dict(self.name_context)
        if parent_name is not None:
            context["parent_name"] = parent_name
        elif "parent_name" in fields and "parent_name" not in context:
            raise ValidationError(
                f"name pattern {pattern!r} of planned node {self.index} needs the parent's "
                "name, which depends on an EUID: pass parent_name"
            )
        if "parent_euid" in fields:
            if not parent_euid:
                raise ValidationError(
                    f"name pattern {pattern!r} of planned node {self.index} needs the parent's EUID"
                )
            context["parent_euid"] = parent_euid
        return pattern.format(**context)


@attrs.frozen(kw_only=True)
class PlannedEdge:
    """A lineage edge parent -> child between two planned nodes."""

    parent_index: int
    child_index: int
    relationship_type: str


@attrs.frozen(kw_only=True)
class InstancePlan:
    """Everything :func:`plan_instance` decided: nodes in breadth-first order and edges."""

    nodes: tuple[PlannedNode, ...]
    edges: tuple[PlannedEdge, ...]

    @property
    def root(self) -> PlannedNode:
        return self.nodes[0]


# -- layouts ----------------------------------------------------------------------------


@attrs.frozen
class _Entry:
    """One child entry of a layout, checked and resolved."""

    layout_index: int  # 1-based
    pointer: str  # of the entry, relative to the template's json_addl
    template: Template
    code: str  # the child template's canonical code
    count: int
    name_pattern: str
    relationship_type: str
    json_addl: Mapping[str, Any] | None
    discriminator: str
    bstatus: str
    pattern_pointer: str
    uses_parent_euid: bool


@attrs.frozen(kw_only=True)
class _RawEntry:
    """A layout child entry that passed the shape checks (template not resolved yet)."""

    layout_index: int
    pointer: str
    code: str
    count: int
    name_pattern: str
    pattern_pointer: str
    relationship_type: str
    json_addl: Mapping[str, Any] | None


class _Planner:
    def __init__(self, resolve: TemplateResolver, max_depth: int) -> None:
        self._resolve = resolve
        self.max_depth = max_depth
        self._templates: dict[str, Template] = {}
        self._layouts: dict[str, list[_Entry]] = {}
        self._bases: dict[str, dict[str, Any]] = {}  # never handed out: callers get copies
        self._validators: dict[str, SchemaValidator | None] = {}

    def resolve(self, code: str) -> Template:
        template = self._templates.get(code)
        if template is None:
            template = self._templates[code] = self._resolve(code)
        return template

    def actions(self, template: Template) -> dict[str, Any]:
        """The template's materialised action groups (a new dict on each call)."""
        return materialise_actions(self.resolve, template)

    def validate(
        self, template: Template, code: str, json_addl: dict[str, Any], where: str
    ) -> None:
        if code in self._validators:
            validator = self._validators[code]
        else:
            validator = self._validators[code] = schema_validator(template, where)
        if validator is not None:
            check_json_addl(validator, template, json_addl, where=where)

    def base_json_addl(self, template: Template, code: str) -> dict[str, Any]:
        """A fresh ``{"properties", "action_groups", "audit_log"}`` for a new instance."""
        base = self._bases.get(code)
        if base is None:
            properties = template.json_addl.get("properties")
            if properties is None:
                properties = {}
            if not isinstance(properties, Mapping):
                raise ValidationError(
                    f"invalid json_addl in template {code}",
                    [Violation(path="/properties", message="must be an object")],
                )
            base = self._bases[code] = {
                "properties": _copy_json(properties),
                "action_groups": self.actions(template),
                "audit_log": [],
            }
        copied: dict[str, Any] = _copy_json(base)
        return copied

    def child_json_addl(self, entry: _Entry, index: int, parent_code: str) -> dict[str, Any]:
        """The validated ``json_addl`` of the children ``entry`` makes (a fresh dict).

        The same for every child of the entry: the caller builds it once and
        copies it for the others.
        """
        json_addl = self.base_json_addl(entry.template, entry.code)
        if entry.json_addl is not None:
            _merge_into(json_addl, entry.json_addl)
        where = f"child node {index} ({entry.code}, child 1 of {parent_code} at {entry.pointer})"
        self.validate(entry.template, entry.code, json_addl, where)
        return json_addl

    def layouts(self, template: Template, code: str) -> list[_Entry]:
        entries = self._layouts.get(code)
        if entries is None:
            entries = self._layouts[code] = self._parse_layouts(template)
        return entries

    def _parse_layouts(self, template: Template) -> list[_Entry]:
        """Check the template's layouts (every problem at once), resolve child templates."""
        layouts = template.json_addl.get("instantiation_layouts")
        if layouts is None:
            return []
        problems: list[Violation] = []

        def bad(parts: list[str | int], message: str) -> None:
            problems.append(
                Violation(path=_pointer(["instantiation_layouts", *parts]), message=message)
            )

        if not isinstance(layouts, list):
            bad([], f"must be a list of layouts, got {_json_type(layouts)}")
            layouts = []
        raw: list[_RawEntry] = []
        canonical_codes: dict[str, str] = {}
        for li, layout in enumerate(layouts):
            if not isinstance(layout, Mapping):
                bad([li], f"a layout must be an object, got {_json_type(layout)}")
                continue
            relationship = layout.get("relationship_type", DEFAULT_RELATIONSHIP_TYPE)
            if not isinstance(relationship, str) or not relationship.strip():
                bad([li, "relationship_type"], "must be a non-blank string")
            layout_pattern = layout.get("name_pattern")
            if layout_pattern is not None and not isinstance(layout_pattern, str):
                bad([li, "name_pattern"], "must be a string")
                layout_pattern = None
            children = layout.get("child_templates")
            if not isinstance(children, list):
                bad(
                    [li, "child_templates"],
                    "is required" if children is None else "must be a list of child entries",
                )
                continue
            for ci, child in enumerate(children):
                where: list[str | int] = [li, "child_templates", ci]
                count: Any = 1
                pattern: Any = None
                child_addl: Any = None
                if isinstance(child, str):
                    code: Any = child
                    code_where = where
                elif isinstance(child, Mapping):
                    code = child.get("template_code")
                    code_where = [*where, "template_code"]
                    count = child.get("count", 1)
                    pattern = child.get("name_pattern")
                    child_addl = child.get("json_addl")
                    if isinstance(count, bool) or not isinstance(count, int):
                        bad([*where, "count"], f"must be an integer >= 1, got {count!r}")
                    elif count < 1:
                        bad([*where, "count"], f"must be >= 1, got {count}")
                    if pattern is not None and not isinstance(pattern, str):
                        bad([*where, "name_pattern"], "must be a string")
                    if child_addl is not None and not isinstance(child_addl, Mapping):
                        bad([*where, "json_addl"], "must be an object")
                else:
                    bad(where, f"must be a template code or an object, got {_json_type(child)}")
                    continue
                if not isinstance(code, str):
                    bad(code_where, "a template code string is required")
                    continue
                canonical = canonical_codes.get(code)
                if canonical is None:
                    try:
                        canonical = canonical_codes[code] = str(TemplateCode.parse(code))
                    except TemplateCodeError as exc:
                        bad(code_where, str(exc))
                        continue
                entry_pointer = _pointer(["instantiation_layouts", *where])
                if isinstance(pattern, str):
                    chosen, pattern_pointer = pattern, entry_pointer + "/name_pattern"
                elif isinstance(layout_pattern, str):
                    chosen = layout_pattern
                    pattern_pointer = _pointer(["instantiation_layouts", li, "name_pattern"])
                else:
                    chosen, pattern_pointer = DEFAULT_NAME_PATTERN, entry_pointer
                raw.append(
                    _RawEntry(
                        layout_index=li + 1,
                        pointer=entry_pointer,
                        code=canonical,
                        count=count if isinstance(count, int) else 1,
                        name_pattern=chosen,
                        pattern_pointer=pattern_pointer,
                        relationship_type=relationship if isinstance(relationship, str) else "",
                        json_addl=child_addl if isinstance(child_addl, Mapping) else None,
                    )
                )
        for item in raw:
            pattern = item.name_pattern
            try:
                unknown = sorted(_pattern_fields(pattern) - NAME_PLACEHOLDERS)
            except ValueError as exc:
                problems.append(
                    Violation(
                        path=item.pattern_pointer,
                        message=f"malformed name_pattern {pattern!r}: {exc}",
                    )
                )
                continue
            if unknown:
                problems.append(
                    Violation(
                        path=item.pattern_pointer,
                        message=f"name_pattern {pattern!r} uses unknown placeholder(s) "
                        + ", ".join("{" + u + "}" for u in unknown)
                        + "; known: "
                        + ", ".join("{" + p + "}" for p in sorted(NAME_PLACEHOLDERS)),
                    )
                )
        if problems:
            raise ValidationError(
                f"invalid instantiation_layouts in template {template.template_code}",
                _dedupe(problems),
            )
        entries = []
        for item in raw:
            try:
                child_template = self.resolve(item.code)
            except TemplateNotFoundError as exc:
                raise TemplateNotFoundError(
                    f"{exc} (child template {item.code} of {template.template_code} "
                    f"at {item.pointer})"
                ) from exc
            code, discriminator, bstatus = _info(child_template)
            entries.append(
                _Entry(
                    layout_index=item.layout_index,
                    pointer=item.pointer,
                    template=child_template,
                    code=code,
                    count=item.count,
                    name_pattern=item.name_pattern,
                    relationship_type=item.relationship_type,
                    json_addl=item.json_addl,
                    discriminator=discriminator,
                    bstatus=bstatus,
                    pattern_pointer=item.pattern_pointer,
                    uses_parent_euid="parent_euid" in _pattern_fields(item.name_pattern),
                )
            )
        return entries


def _dedupe(violations: list[Violation]) -> list[Violation]:
    seen: set[tuple[str, str]] = set()
    out = []
    for v in violations:
        if (v.path, v.message) not in seen:
            seen.add((v.path, v.message))
            out.append(v)
    return out


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    return {
        dict: "object",
        list: "array",
        str: "string",
        int: "integer",
        float: "number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _info(template: Template) -> tuple[str, str, str]:
    """(canonical code, instance discriminator, initial bstatus) of a template."""
    return template.template_code, template.instance_discriminator, _default_status(template)


def _default_status(template: Template) -> str:
    status = template.json_addl.get("default_status")
    return status if isinstance(status, str) and status.strip() else DEFAULT_STATUS


def _check_name(entry: _Entry, context: Mapping[str, object], parent_code: str) -> str:
    """Format the entry's name pattern with a dummy parent EUID; ValidationError if it fails."""
    pattern = entry.name_pattern
    try:
        return pattern.format(**context, parent_euid=_DUMMY_EUID)
    except (KeyError, IndexError, AttributeError, ValueError, TypeError) as exc:
        detail = (
            f"unknown placeholder {{{exc.args[0]}}}"
            if isinstance(exc, KeyError | IndexError) and exc.args
            else str(exc)
        )
        raise ValidationError(
            f"name_pattern {pattern!r} in template {parent_code} cannot be rendered: {detail}",
            [Violation(path=entry.pattern_pointer, message=f"name_pattern {pattern!r}: {detail}")],
        ) from exc


# -- planning ---------------------------------------------------------------------------


@attrs.define
class _Work:
    """A node still to expand: its chain of template codes and its plan-time name."""

    node: PlannedNode
    chain: tuple[str, ...]
    static_name: str | None


def plan_instance(
    resolve: TemplateResolver,
    template_code: str,
    name: str,
    properties: Mapping[str, Any] | None = None,
    *,
    create_children: bool = True,
    max_depth: int = MAX_DEPTH,
) -> InstancePlan:
    """Plan creating an instance of ``template_code`` named ``name`` (and its children).

    Raises :class:`TemplateNotFoundError` for an unknown template (root, child or
    imported action), :class:`TemplateCodeError` for a malformed root code and
    :class:`ValidationError` for bad properties, layouts, name patterns, layout
    recursion deeper than ``max_depth``, a template cycle, or a ``json_addl``
    violating its template's ``json_addl_schema``.
    """
    if properties is not None and not isinstance(properties, Mapping):
        raise ValidationError(
            "properties must be an object",
            [Violation(path="/properties", message=f"got {type(properties).__name__}")],
        )
    check_text("/name", name)
    check_optional_json("/properties", properties)
    if max_depth < 0:
        raise ValueError(f"max_depth must be >= 0, got {max_depth}")
    planner = _Planner(resolve, max_depth)
    root_template = planner.resolve(str(TemplateCode.parse(template_code)))
    root_code, root_discriminator, root_status = _info(root_template)

    json_addl = planner.base_json_addl(root_template, root_code)
    if properties:
        json_addl["properties"].update(_copy_json(properties))
    planner.validate(root_template, root_code, json_addl, f"instance {name!r} ({root_code})")
    root = PlannedNode(
        index=0,
        depth=0,
        parent_index=None,
        template=root_template,
        name_pattern=None,
        name_context={},
        literal_name=name,
        json_addl=json_addl,
        polymorphic_discriminator=root_discriminator,
        bstatus=root_status,
        is_singleton=root_template.is_singleton,
    )
    nodes: list[PlannedNode] = [root]
    edges: list[PlannedEdge] = []
    if not create_children:
        return InstancePlan(nodes=(root,), edges=())

    queue = [_Work(root, (root_code,), name)]
    head = 0
    while head < len(queue):  # breadth first: the queue is the node list being built
        work = queue[head]
        head += 1
        parent = work.node
        entries = planner.layouts(parent.template, work.chain[-1])
        if not entries:
            continue
        depth = parent.depth + 1
        running = 0
        for entry in entries:
            child_template = entry.template
            child_code = entry.code
            if child_code in work.chain:
                start = work.chain.index(child_code)
                raise ValidationError(
                    "template cycle: " + " -> ".join([*work.chain[start:], child_code]),
                    [
                        Violation(
                            path=entry.pointer,
                            message=f"{child_code} would be created inside an instance of itself",
                        )
                    ],
                )
            if depth > max_depth:
                raise ValidationError(
                    f"instantiation layouts nest deeper than {max_depth} levels: "
                    + " -> ".join([*work.chain, child_code]),
                    [
                        Violation(
                            path=entry.pointer,
                            message=f"{child_code} would be at depth {depth} (limit {max_depth})",
                        )
                    ],
                )
            chain = (*work.chain, child_code)
            parent_name = work.static_name
            first_addl: dict[str, Any] = {}
            for child_index in range(1, entry.count + 1):
                running += 1
                index = len(nodes)
                context: dict[str, object] = {
                    "index": running,
                    "layout_index": entry.layout_index,
                    "child_index": child_index,
                    "i": child_index,
                    "child_subtype": child_template.subtype,
                    "child_template_code": child_code,
                }
                if parent_name is not None:
                    context["parent_name"] = parent_name
                    rendered = _check_name(entry, context, work.chain[-1])
                else:
                    _check_name(entry, {**context, "parent_name": "<parent name>"}, work.chain[-1])
                    rendered = None
                if child_index == 1:  # built and validated once per entry: all alike
                    child_addl = first_addl = planner.child_json_addl(entry, index, work.chain[-1])
                else:
                    child_addl = _copy_json(first_addl)
                node = PlannedNode(
                    index=index,
                    depth=depth,
                    parent_index=parent.index,
                    template=child_template,
                    name_pattern=entry.name_pattern,
                    name_context=context,
                    literal_name=None,
                    json_addl=child_addl,
                    polymorphic_discriminator=entry.discriminator,
                    bstatus=entry.bstatus,
                    is_singleton=child_template.is_singleton,
                )
                nodes.append(node)
                edges.append(
                    PlannedEdge(
                        parent_index=parent.index,
                        child_index=index,
                        relationship_type=entry.relationship_type,
                    )
                )
                queue.append(_Work(node, chain, None if entry.uses_parent_euid else rendered))
    return InstancePlan(nodes=tuple(nodes), edges=tuple(edges))
