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

import threading
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias

import attrs
import jsonschema_rs

from tapdb_core import schemacheck
from tapdb_core.codes import TemplateCode
from tapdb_core.errors import (
    TapdbError,
    TemplateNotFoundError,
    ValidationError,
    Violation,
)
from tapdb_core.inputcheck import check_optional_json, check_text
from tapdb_core.layouts import (
    DEFAULT_NAME_PATTERN,
    DEFAULT_RELATIONSHIP_TYPE,
    MAX_LAYOUT_DEPTH,
    NAME_PATTERN_PLACEHOLDERS,
    LayoutChild,
    copy_json,
    deep_merge,
    json_pointer,
    merge_into,
    parse_layouts,
    pattern_fields,
)
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
    "is_shared_document",
    "materialise_actions",
    "plan_instance",
    "schema_validator",
    "validate_json_addl",
]

#: Given a template code (trailing ``/`` optional, version ``*`` = newest live
#: version), the template; raises :class:`TemplateNotFoundError` naming the code.
TemplateResolver: TypeAlias = Callable[[str], Template]

#: deepest nesting of instantiation layouts below the root (the original's limit)
MAX_DEPTH: Final = MAX_LAYOUT_DEPTH
DEFAULT_STATUS: Final = "created"
#: placeholders a child ``name_pattern`` may use
NAME_PLACEHOLDERS: Final = NAME_PATTERN_PLACEHOLDERS
_DUMMY_EUID: Final = "XX-1"


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
            [Violation(path=json_pointer(exc.path) or "/", message=exc.message)],
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
    Returns a new dict on every call.
    """
    groups: dict[str, Any] = copy_json(_shared_actions(resolve, template))
    return groups


# One materialised action_groups per (template, resolved action templates), by
# identity: Template values are immutable and the template cache hands out the
# same object until the template (or any other) changes, so the same objects
# always give the same groups. Plans share these dicts (never changed; values
# written get their own copies), which spares copying ~3.5 KB of definitions
# per well of a plate.
_shared_lock = threading.Lock()
_shared: dict[tuple[int, ...], tuple[tuple[Template, ...], dict[str, Any]]] = {}
_SHARED_LIMIT: Final = 1024


#: the action groups of a template that imports none: one dict, like the others
#: shared (never changed), so what is remembered by its identity stays valid
_NO_ACTIONS: Final[dict[str, Any]] = {}


def _shared_actions(resolve: TemplateResolver, template: Template) -> dict[str, Any]:
    """The template's materialised action groups, shared: never change the result."""
    imports = template.json_addl.get("action_imports")
    if imports is None:
        return _NO_ACTIONS
    if not isinstance(imports, Mapping):
        raise ValidationError(
            f"invalid action_imports in template {template.template_code}",
            [Violation(path="/action_imports", message="must be an object (key -> code)")],
        )
    bad = [
        Violation(
            path=json_pointer(["action_imports", key]), message="must be a template code string"
        )
        for key, code in imports.items()
        if not isinstance(code, str)
    ]
    if bad:
        raise ValidationError(f"invalid action_imports in template {template.template_code}", bad)
    resolved: dict[str, Template] = {}
    for code in imports.values():
        if code not in resolved:
            resolved[code] = resolve(code)
    sources = (template, *resolved.values())
    key = tuple(id(t) for t in sources)
    with _shared_lock:
        hit = _shared.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], sources, strict=True)):
        return hit[1]
    groups = _materialise(template, imports, resolved)
    with _shared_lock:
        if len(_shared) >= _SHARED_LIMIT:
            _shared.clear()
        _shared[key] = (sources, groups)
    return groups


def _materialise(
    template: Template, imports: Mapping[str, str], resolved: Mapping[str, Template]
) -> dict[str, Any]:
    groups: dict[str, dict[str, Any]] = {}
    for key, code in imports.items():
        action = resolved[code]
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
            **copy_json(definition),
            "action_executed": 0,
            "executed_datetime": [],
            "action_enabled": definition.get("action_enabled", True),
        }
    return groups


def _copy_sharing_actions(json_addl: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a planned ``json_addl`` whose ``action_groups`` stays the shared one."""
    return {k: v if k == ACTION_GROUPS else copy_json(v) for k, v in json_addl.items()}


ACTION_GROUPS: Final = "action_groups"

# -- plan values ------------------------------------------------------------------------


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
            and "parent_name" in pattern_fields(self.name_pattern)
        )

    def name_without_euids(self) -> str | None:
        """The instance's name if no EUID goes into it (nor into its parent's);
        None when it can only be rendered once EUIDs are drawn."""
        if self.literal_name is not None:
            return self.literal_name
        pattern = self.name_pattern
        if pattern is None:  # pragma: no cover - plan_instance always sets one
            return None
        fields = pattern_fields(pattern)
        if "parent_euid" in fields or ("parent_name" in fields and self.needs_parent_name):
            return None
        return pattern.format(**self.name_context)

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
        fields = pattern_fields(pattern)
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
    """A layout child (checked by :func:`~tapdb_core.layouts.parse_layouts`), its template resolved."""

    child: LayoutChild
    template: Template
    code: str  # the child template's canonical code (a ``*`` version resolved)
    discriminator: str
    bstatus: str
    uses_parent_euid: bool


class _IdentityMemo:
    """Values derived from immutable objects, remembered across plans by the
    objects' identity (the template cache hands out the same Template objects
    until a template changes). An entry keeps its objects alive, so an id is
    never reused while the entry exists; a hit is checked object by object.
    Bounded: cleared when full."""

    def __init__(self, limit: int = 1024) -> None:
        self._lock = threading.Lock()
        self._items: dict[int, tuple[Any, Any]] = {}
        self._limit = limit

    def get(self, owner: object) -> Any:
        """What was remembered for ``owner`` (None if nothing)."""
        with self._lock:
            hit = self._items.get(id(owner))
        if hit is not None and hit[0] is owner:
            return hit[1]
        return None

    def put(self, owner: object, value: Any) -> None:
        with self._lock:
            if len(self._items) >= self._limit:
                self._items.clear()
            self._items[id(owner)] = (owner, value)


# Across plans, by identity (see _IdentityMemo): a template's checked layout
# entries (with the child templates they resolved to), the base json_addl of
# its instances (with the shared actions it holds), its compiled validator,
# and the validated json_addl each layout entry gives its children. Plans that
# share actions (instances.create_tree) share these documents too: nothing
# changes them, and values handed out get their own copies.
_entries_memo = _IdentityMemo()
_actions_memo = _IdentityMemo()
_info_memo = _IdentityMemo()
_bases_memo = _IdentityMemo()
_validators_memo = _IdentityMemo()
_child_docs_memo = _IdentityMemo(limit=4096)
_shared_docs = _IdentityMemo(limit=4096)


def is_shared_document(json_addl: Mapping[str, Any]) -> bool:
    """True for a node's ``json_addl`` that plans made with ``share_actions``
    share across plans (a layout child's): it never changes, so what is derived
    from it may be remembered by its identity."""
    return _shared_docs.get(json_addl) is not None


class _Planner:
    """What one plan looks up per template code, each once: templates, layouts, defaults."""

    def __init__(self, resolve: TemplateResolver, max_depth: int, share: bool) -> None:
        self._resolve = resolve
        # A resolver may promise, by equal tokens, that codes resolve to the same
        # objects as before (tapdb_core.templates.WriteResolver): then what was
        # derived from the templates a code resolved to is reused without
        # resolving it again.
        self._token: Callable[[], object | None] | None = getattr(resolve, "cache_token", None)
        self.max_depth = max_depth
        self.share = share
        """Nodes may share documents with other nodes and plans (never changed)."""
        self._templates: dict[str, Template] = {}
        self._layouts: dict[str, list[_Entry]] = {}
        self._bases: dict[str, dict[str, Any]] = {}  # never handed out: callers get copies
        self._validators: dict[str, SchemaValidator | None] = {}

    def resolve(self, code: str) -> Template:
        template = self._templates.get(code)
        if template is None:
            template = self._templates[code] = self._resolve(code)
        return template

    def token(self) -> object | None:
        return None if self._token is None else self._token()

    def actions(self, template: Template) -> dict[str, Any]:
        """The template's materialised action groups (shared: never changed)."""
        token = self.token()
        if token is not None:
            remembered = _actions_memo.get(template)
            if remembered is not None and remembered[0] == token:
                groups: dict[str, Any] = remembered[1]
                return groups
        groups = _shared_actions(self.resolve, template)
        if token is not None and self.token() == token:
            _actions_memo.put(template, (token, groups))
        return groups

    def validator(self, template: Template, code: str, where: str) -> SchemaValidator | None:
        if code in self._validators:
            return self._validators[code]
        memo = _validators_memo.get(template)
        if memo is not None:
            validator: SchemaValidator | None = memo[0]
        else:
            validator = schema_validator(template, where)
            _validators_memo.put(template, (validator,))
        self._validators[code] = validator
        return validator

    def validate(
        self, template: Template, code: str, json_addl: dict[str, Any], where: str
    ) -> None:
        validator = self.validator(template, code, where)
        if validator is not None:
            check_json_addl(validator, template, json_addl, where=where)

    def shared_base(self, template: Template, code: str) -> dict[str, Any]:
        """``{"properties", "action_groups", "audit_log"}`` of a new instance (shared:
        never change it)."""
        base = self._bases.get(code)
        if base is not None:
            return base
        actions = self.actions(template)
        remembered = _bases_memo.get(template)
        if remembered is not None and remembered[ACTION_GROUPS] is actions:
            base = remembered
        else:
            properties = template.json_addl.get("properties")
            if properties is None:
                properties = {}
            if not isinstance(properties, Mapping):
                raise ValidationError(
                    f"invalid json_addl in template {code}",
                    [Violation(path="/properties", message="must be an object")],
                )
            base = {
                "properties": copy_json(properties),
                ACTION_GROUPS: actions,
                "audit_log": [],
            }
            _bases_memo.put(template, base)
        self._bases[code] = base
        return base

    def base_json_addl(self, template: Template, code: str) -> dict[str, Any]:
        """A fresh ``{"properties", "action_groups", "audit_log"}`` for a new instance
        (its ``action_groups`` the shared one)."""
        return _copy_sharing_actions(self.shared_base(template, code))

    def child_json_addl(self, entry: _Entry, index: int, parent_code: str) -> dict[str, Any]:
        """The validated ``json_addl`` of the children ``entry`` makes, shared by
        all of them and across plans: never change it.

        The same for every child of the entry, and for every plan while the
        entry's templates (and the action templates they import) are the same
        objects: built and validated once.
        """
        base = self.shared_base(entry.template, entry.code)
        remembered = _child_docs_memo.get(entry)
        if remembered is not None and remembered[0] is base:
            shared: dict[str, Any] = remembered[1]
            return shared
        json_addl = _copy_sharing_actions(base)
        if entry.child.json_addl is not None:
            if ACTION_GROUPS in entry.child.json_addl:
                # the layout changes this child's actions: its own copy, not the shared one
                json_addl[ACTION_GROUPS] = copy_json(json_addl.get(ACTION_GROUPS))
            merge_into(json_addl, entry.child.json_addl)
        where = (
            f"child node {index} ({entry.code}, child 1 of {parent_code} at {entry.child.pointer})"
        )
        self.validate(entry.template, entry.code, json_addl, where)
        _child_docs_memo.put(entry, (base, json_addl))
        _shared_docs.put(json_addl, True)
        return json_addl

    def layouts(self, template: Template, code: str) -> list[_Entry]:
        entries = self._layouts.get(code)
        if entries is None:
            entries = self._layouts[code] = self._remembered_entries(template)
        return entries

    def _remembered_entries(self, template: Template) -> list[_Entry]:
        """The template's entries from an earlier plan when every child code still
        resolves to the same template object; checked and resolved afresh otherwise."""
        token = self.token()
        remembered = _entries_memo.get(template)
        if remembered is not None:
            codes, children, entries, earlier = remembered
            if token is not None and earlier == token:
                entries_list: list[_Entry] = entries
                return entries_list
            try:
                same = all(self.resolve(c) is t for c, t in zip(codes, children, strict=True))
            except TapdbError:
                same = False  # planned afresh below, which reports it with its pointer
            if same:
                if token is not None and self.token() == token:
                    _entries_memo.put(template, (codes, children, entries, token))
                entries_list = entries
                return entries_list
        entries_list = self._entries(template)
        resolved = {e.child.template_code: e.template for e in entries_list}
        if self.token() != token:
            token = None
        _entries_memo.put(
            template, (tuple(resolved), tuple(resolved.values()), entries_list, token)
        )
        return entries_list

    def _entries(self, template: Template) -> list[_Entry]:
        """Check the template's layouts (every problem at once), resolve child templates."""
        parsed = parse_layouts(template.json_addl)
        if parsed.problems:
            raise ValidationError(
                f"invalid instantiation_layouts in template {template.template_code}",
                [Violation(path=p.pointer, message=p.message) for p in parsed.problems],
            )
        return [self._entry(template, child) for child in parsed.children]

    def _entry(self, parent: Template, child: LayoutChild) -> _Entry:
        try:
            template = self.resolve(child.template_code)
        except TemplateNotFoundError as exc:
            raise TemplateNotFoundError(
                f"{exc} (child template {child.template_code} of {parent.template_code} "
                f"at {child.pointer})"
            ) from exc
        code, discriminator, bstatus = _info(template)
        return _Entry(
            child=child,
            template=template,
            code=code,
            discriminator=discriminator,
            bstatus=bstatus,
            uses_parent_euid="parent_euid" in pattern_fields(child.name_pattern),
        )


def _info(template: Template) -> tuple[str, str, str]:
    """(canonical code, instance discriminator, initial bstatus) of a template."""
    info: tuple[str, str, str] | None = _info_memo.get(template)
    if info is None:
        info = (template.template_code, template.instance_discriminator, _default_status(template))
        _info_memo.put(template, info)
    return info


def _default_status(template: Template) -> str:
    status = template.json_addl.get("default_status")
    return status if isinstance(status, str) and status.strip() else DEFAULT_STATUS


def _check_name(entry: _Entry, context: Mapping[str, object], parent_code: str) -> str:
    """Format the entry's name pattern with a dummy parent EUID; ValidationError if it fails."""
    pattern = entry.child.name_pattern
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
            [
                Violation(
                    path=entry.child.name_pattern_pointer,
                    message=f"name_pattern {pattern!r}: {detail}",
                )
            ],
        ) from exc


def _planned_name(entry: _Entry, context: Mapping[str, object], parent_code: str) -> str | None:
    """The child's name if it is known at plan time (its parent's name is); checked either way."""
    if "parent_name" in context:
        return _check_name(entry, context, parent_code)
    _check_name(entry, {**context, "parent_name": "<parent name>"}, parent_code)
    return None


def _name_context(
    entry: _Entry, running: int, child_index: int, parent_name: str | None
) -> dict[str, object]:
    """Placeholder values of one child (``parent_name`` only when known, never ``parent_euid``)."""
    context: dict[str, object] = {
        "index": running,
        "layout_index": entry.child.layout + 1,
        "child_index": child_index,
        "i": child_index,
        "child_subtype": entry.template.subtype,
        "child_template_code": entry.code,
    }
    if parent_name is not None:
        context["parent_name"] = parent_name
    return context


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
    share_actions: bool = False,
) -> InstancePlan:
    """Plan creating an instance of ``template_code`` named ``name`` (and its children).

    Raises :class:`TemplateNotFoundError` for an unknown template (root, child or
    imported action), :class:`TemplateCodeError` for a malformed root code and
    :class:`ValidationError` for bad properties, layouts, name patterns, layout
    recursion deeper than ``max_depth``, a template cycle, or a ``json_addl``
    violating its template's ``json_addl_schema``.

    ``share_actions``: the nodes' documents may be shared by nodes and plans:
    the root's ``action_groups``, and the whole ``json_addl`` of layout
    children (never change them). By default each node has its own.
    """
    _check_arguments(name, properties, max_depth)
    planner = _Planner(resolve, max_depth, share_actions)
    root = _plan_root(planner, template_code, name, properties)
    planned = (
        InstancePlan(nodes=(root,), edges=())
        # absent or empty layouts parse to no child and no problem
        if not create_children or root.template.json_addl.get("instantiation_layouts") in (None, [])
        else _Tree(planner, root).grow()
    )
    if not share_actions and ACTION_GROUPS in root.json_addl:
        # children got their own copies as they were planned
        root.json_addl[ACTION_GROUPS] = copy_json(root.json_addl[ACTION_GROUPS])
    return planned


def _check_arguments(name: str, properties: Mapping[str, Any] | None, max_depth: int) -> None:
    if properties is not None and not isinstance(properties, Mapping):
        raise ValidationError(
            "properties must be an object",
            [Violation(path="/properties", message=f"got {type(properties).__name__}")],
        )
    check_text("/name", name)
    check_optional_json("/properties", properties)
    if max_depth < 0:
        raise ValueError(f"max_depth must be >= 0, got {max_depth}")


def _plan_root(
    planner: _Planner, template_code: str, name: str, properties: Mapping[str, Any] | None
) -> PlannedNode:
    template = planner.resolve(_canonical(template_code))
    code, discriminator, status = _info(template)
    json_addl = planner.base_json_addl(template, code)
    if properties:
        json_addl["properties"].update(copy_json(properties))
    planner.validate(template, code, json_addl, f"instance {name!r} ({code})")
    return PlannedNode(
        index=0,
        depth=0,
        parent_index=None,
        template=template,
        name_pattern=None,
        name_context={},
        literal_name=name,
        json_addl=json_addl,
        polymorphic_discriminator=discriminator,
        bstatus=status,
        is_singleton=template.is_singleton,
    )


# Raw root code -> canonical code (parsing is pure; only codes that parse are kept).
_canonical_codes: dict[str, str] = {}


def _canonical(code: str) -> str:
    canonical = _canonical_codes.get(code) if isinstance(code, str) else None
    if canonical is None:
        canonical = str(TemplateCode.parse(code))
        if isinstance(code, str):
            if len(_canonical_codes) >= 4096:
                _canonical_codes.clear()
            _canonical_codes[code] = canonical
    return canonical


def _check_nesting(chain: tuple[str, ...], entry: _Entry, depth: int, max_depth: int) -> None:
    """Refuse a child whose template is among its ancestors, or one nested too deep."""
    code = entry.code
    if code in chain:
        start = chain.index(code)
        raise ValidationError(
            "template cycle: " + " -> ".join([*chain[start:], code]),
            [
                Violation(
                    path=entry.child.pointer,
                    message=f"{code} would be created inside an instance of itself",
                )
            ],
        )
    if depth > max_depth:
        raise ValidationError(
            f"instantiation layouts nest deeper than {max_depth} levels: "
            + " -> ".join([*chain, code]),
            [
                Violation(
                    path=entry.child.pointer,
                    message=f"{code} would be at depth {depth} (limit {max_depth})",
                )
            ],
        )


class _Tree:
    """The nodes and edges of a plan, grown breadth first from the root."""

    def __init__(self, planner: _Planner, root: PlannedNode) -> None:
        self.planner = planner
        self.nodes: list[PlannedNode] = [root]
        self.edges: list[PlannedEdge] = []
        self.queue = [_Work(root, (root.template.template_code,), root.literal_name)]

    def grow(self) -> InstancePlan:
        head = 0
        while head < len(self.queue):  # breadth first: the queue is the node list being built
            self.expand(self.queue[head])
            head += 1
        return InstancePlan(nodes=tuple(self.nodes), edges=tuple(self.edges))

    def expand(self, work: _Work) -> None:
        """Plan the children of one node (its grandchildren join the queue)."""
        depth = work.node.depth + 1
        running = 0  # {index}: counts across all the node's layouts
        for entry in self.planner.layouts(work.node.template, work.chain[-1]):
            _check_nesting(work.chain, entry, depth, self.planner.max_depth)
            running = self.add_copies(work, entry, depth, running)

    def add_copies(self, work: _Work, entry: _Entry, depth: int, running: int) -> int:
        """The ``count`` children ``entry`` makes under ``work``; returns the new {index}."""
        chain = (*work.chain, entry.code)
        parent, parent_code = work.node, work.chain[-1]
        shared: dict[str, Any] = {}
        for child_index in range(1, entry.child.count + 1):
            running += 1
            index = len(self.nodes)
            context = _name_context(entry, running, child_index, work.static_name)
            name = _planned_name(entry, context, parent_code)
            if child_index == 1:  # built and validated once per entry: all alike
                shared = self.planner.child_json_addl(entry, index, parent_code)
            child_addl = shared if self.planner.share else copy_json(shared)
            node = PlannedNode(
                index=index,
                depth=depth,
                parent_index=parent.index,
                template=entry.template,
                name_pattern=entry.child.name_pattern,
                name_context=context,
                literal_name=None,
                json_addl=child_addl,
                polymorphic_discriminator=entry.discriminator,
                bstatus=entry.bstatus,
                is_singleton=entry.template.is_singleton,
            )
            self.nodes.append(node)
            self.edges.append(
                PlannedEdge(
                    parent_index=parent.index,
                    child_index=index,
                    relationship_type=entry.child.relationship_type,
                )
            )
            self.queue.append(_Work(node, chain, None if entry.uses_parent_euid else name))
        return running
