"""Instantiation layouts: the rules, parsed once for pack validation and planning.

A template's ``json_addl.instantiation_layouts`` lists the children every new
instance of it gets::

    [{"relationship_type": "contains",            # default "contains"
      "name_pattern": "{parent_name}-{i}",         # optional, for every child
      "child_templates": [
          "content/sample/dna/1.0",                # a template code, or
          {"template_code": "content/sample/dna/*", "count": 2,
           "name_pattern": "...", "json_addl": {...}}]}]

:func:`parse_layouts` turns that into :class:`Layout` / :class:`LayoutChild`
values and every :class:`LayoutProblem` at once, with JSON pointers relative to
the template's ``json_addl``. Pack validation (:mod:`tapdb_core.packs.validate`)
reports the name-pattern problems (the pack schema already phrases the shape
ones for pack authors); planning (:mod:`tapdb_core.planning`) refuses a
template with any problem.

Also here, because both sides apply them: the placeholders a name pattern may
use, the nesting limit, the default pattern and relationship, the RFC 6901
pointer and the deep merge of a child's ``json_addl`` over its defaults.
"""

from __future__ import annotations

import copy
import functools
import string
from collections.abc import Iterator, Mapping
from typing import Any, Final, Literal, TypeAlias

import attrs

from tapdb_core.codes import TemplateCode
from tapdb_core.errors import TemplateCodeError

# the one RFC 6901 implementation (instance-data violations use it too)
from tapdb_core.schemacheck import pointer as json_pointer

__all__ = [
    "DEFAULT_NAME_PATTERN",
    "DEFAULT_RELATIONSHIP_TYPE",
    "MAX_LAYOUT_DEPTH",
    "NAME_PATTERN_PLACEHOLDERS",
    "Layout",
    "LayoutChild",
    "LayoutProblem",
    "ParsedLayouts",
    "copy_json",
    "deep_merge",
    "json_pointer",
    "json_type",
    "merge_into",
    "parse_layouts",
    "pattern_fields",
    "placeholder_problem",
]

#: deepest nesting of instantiation layouts below a template (daylily-tapdb's limit)
MAX_LAYOUT_DEPTH: Final = 10
DEFAULT_RELATIONSHIP_TYPE: Final = "contains"
DEFAULT_NAME_PATTERN: Final = "{parent_name}_{child_subtype}_{index}"
#: placeholders a layout or child ``name_pattern`` may use
NAME_PATTERN_PLACEHOLDERS: Final = frozenset(
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

ProblemKind: TypeAlias = Literal["shape", "name_pattern"]


# -- JSON helpers ---------------------------------------------------------------------

_SCALARS: Final = (str, int, float, bool, type(None))
_JSON_TYPES: Final = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


def json_type(value: object) -> str:
    """The JSON type name of a value (``"object"``, ``"boolean"``, ...; else the Python name)."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def copy_json(value: Any) -> Any:
    """A deep copy of JSON-like data (dicts and lists copied, scalars shared); fast."""
    kind = type(value)
    if kind is dict:
        return {k: copy_json(v) for k, v in value.items()}
    if kind is list:
        return [copy_json(v) for v in value]
    if kind in _SCALARS:
        return value
    if isinstance(value, Mapping):
        return {k: copy_json(v) for k, v in value.items()}
    return copy.deepcopy(value)


def merge_into(target: dict[str, Any], override: Mapping[str, Any]) -> None:
    """Merge ``override`` into ``target`` in place (``target`` must be owned by the caller)."""
    for key, value in override.items():
        current = target.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            merge_into(current, value)
        else:
            target[key] = copy_json(value)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` merged into a deep copy of ``base``; neither input is changed.

    Nested objects merge key by key; anything else (lists included) in
    ``override`` replaces the value in ``base``. This is how a layout child's
    ``json_addl`` applies over the child template's defaults.
    """
    merged: dict[str, Any] = {k: copy_json(v) for k, v in base.items()}
    merge_into(merged, override)
    return merged


# -- name patterns ----------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def pattern_fields(pattern: str) -> frozenset[str]:
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


def placeholder_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable name pattern (malformed, unknown placeholders), or None."""
    try:
        unknown = sorted(pattern_fields(pattern) - NAME_PATTERN_PLACEHOLDERS)
    except ValueError as exc:
        return f"malformed name_pattern {pattern!r}: {exc}"
    if not unknown:
        return None
    noun = "placeholder" if len(unknown) == 1 else "placeholders"
    return (
        f"name_pattern {pattern!r} uses unknown {noun} "
        + ", ".join("{" + u + "}" for u in unknown)
        + "; known: "
        + ", ".join("{" + p + "}" for p in sorted(NAME_PATTERN_PLACEHOLDERS))
    )


# -- parsed values ----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class LayoutProblem:
    """One broken rule; ``pointer`` is relative to the template's ``json_addl``."""

    pointer: str
    message: str
    kind: ProblemKind = "shape"


@attrs.frozen(kw_only=True)
class LayoutChild:
    """One ``child_templates`` entry whose template code parses."""

    layout: int
    """Position of its layout in ``instantiation_layouts`` (0-based; ``{layout_index}`` is +1)."""
    entry: int
    """Position in the layout's ``child_templates`` (0-based)."""
    code: str
    """The template code as written (``*`` version allowed)."""
    template_code: str
    """The code in canonical form (trailing slash)."""
    pointer: str
    """The entry (``/instantiation_layouts/0/child_templates/1``)."""
    code_pointer: str
    """The code itself: the entry, or its ``/template_code``."""
    count: int
    """Copies to create (1 when the entry's count is missing or broken)."""
    name_pattern: str
    """The entry's pattern, else the layout's, else :data:`DEFAULT_NAME_PATTERN`."""
    name_pattern_pointer: str
    relationship_type: str
    """The layout's (``""`` when broken)."""
    json_addl: Mapping[str, Any] | None
    """What the entry deep-merges over the child template's ``json_addl``."""

    @property
    def what(self) -> str:
        """How messages name the entry: ``instantiation_layouts[0].child_templates[1]``."""
        return f"instantiation_layouts[{self.layout}].child_templates[{self.entry}]"


@attrs.frozen(kw_only=True)
class Layout:
    """One layout: a relationship and the children made through it."""

    index: int
    relationship_type: str
    name_pattern: str | None
    children: tuple[LayoutChild, ...]


@attrs.frozen(kw_only=True)
class ParsedLayouts:
    """What :func:`parse_layouts` found: the usable parts and every problem, in document order."""

    layouts: tuple[Layout, ...] = ()
    problems: tuple[LayoutProblem, ...] = ()

    @property
    def children(self) -> Iterator[LayoutChild]:
        for layout in self.layouts:
            yield from layout.children

    def problems_of(self, kind: ProblemKind) -> tuple[LayoutProblem, ...]:
        return tuple(p for p in self.problems if p.kind == kind)


# -- parsing ----------------------------------------------------------------------------


class _Parser:
    """Collects problems while walking one ``instantiation_layouts`` value."""

    def __init__(self) -> None:
        self.problems: list[LayoutProblem] = []
        self._codes: dict[str, str] = {}  # 96 wells share one code: parse it once

    def bad(self, parts: list[str | int], message: str, kind: ProblemKind = "shape") -> None:
        path = json_pointer(["instantiation_layouts", *parts])
        self.problems.append(LayoutProblem(pointer=path, message=message, kind=kind))

    def pattern(self, parts: list[str | int], value: object) -> str | None:
        """A name pattern as written (None when absent or not a string, which is reported)."""
        if value is None:
            return None
        if not isinstance(value, str):
            self.bad(parts, "must be a string")
            return None
        problem = placeholder_problem(value)
        if problem is not None:
            self.bad(parts, problem, "name_pattern")
        return value

    def canonical(self, code: str, where: list[str | int]) -> str | None:
        canonical = self._codes.get(code)
        if canonical is None:
            try:
                canonical = self._codes[code] = str(TemplateCode.parse(code))
            except TemplateCodeError as exc:
                self.bad(where, str(exc))
                return None
        return canonical

    def layout(self, li: int, layout: object) -> Layout | None:
        if not isinstance(layout, Mapping):
            self.bad([li], f"a layout must be an object, got {json_type(layout)}")
            return None
        relationship = layout.get("relationship_type", DEFAULT_RELATIONSHIP_TYPE)
        if not isinstance(relationship, str) or not relationship.strip():
            self.bad([li, "relationship_type"], "must be a non-blank string")
            relationship = ""
        pattern = self.pattern([li, "name_pattern"], layout.get("name_pattern"))
        children = layout.get("child_templates")
        if not isinstance(children, list):
            self.bad(
                [li, "child_templates"],
                "is required" if children is None else "must be a list of child entries",
            )
            return None
        shared = _Shared(li, relationship, pattern)
        parsed = (self.child(shared, ci, child) for ci, child in enumerate(children))
        return Layout(
            index=li,
            relationship_type=relationship,
            name_pattern=pattern,
            children=tuple(c for c in parsed if c is not None),
        )

    def child(self, shared: _Shared, ci: int, child: object) -> LayoutChild | None:
        where: list[str | int] = [shared.layout, "child_templates", ci]
        if isinstance(child, str):
            return self.finish(shared, ci, child, plain=True)
        if not isinstance(child, Mapping):
            self.bad(where, f"must be a template code or an object, got {json_type(child)}")
            return None
        count = child.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int):
            self.bad([*where, "count"], f"must be an integer >= 1, got {count!r}")
            count = 1
        elif count < 1:
            self.bad([*where, "count"], f"must be >= 1, got {count}")
        pattern = self.pattern([*where, "name_pattern"], child.get("name_pattern"))
        child_addl = child.get("json_addl")
        if child_addl is not None and not isinstance(child_addl, Mapping):
            self.bad([*where, "json_addl"], "must be an object")
            child_addl = None
        code = child.get("template_code")
        if not isinstance(code, str):
            self.bad([*where, "template_code"], "a template code string is required")
            return None
        return self.finish(shared, ci, code, count, pattern, child_addl)

    def finish(
        self,
        shared: _Shared,
        ci: int,
        code: str,
        count: int = 1,
        pattern: str | None = None,
        child_addl: Mapping[str, Any] | None = None,
        *,
        plain: bool = False,
    ) -> LayoutChild | None:
        """The child, or None when its code does not parse (reported)."""
        where: list[str | int] = [shared.layout, "child_templates", ci]
        code_where = where if plain else [*where, "template_code"]
        canonical = self.canonical(code, code_where)
        if canonical is None:
            return None
        pointer = json_pointer(["instantiation_layouts", *where])
        if pattern is not None:
            chosen, pattern_pointer = pattern, pointer + "/name_pattern"
        elif shared.name_pattern is not None:
            chosen = shared.name_pattern
            pattern_pointer = json_pointer(["instantiation_layouts", shared.layout, "name_pattern"])
        else:
            chosen, pattern_pointer = DEFAULT_NAME_PATTERN, pointer
        return LayoutChild(
            layout=shared.layout,
            entry=ci,
            code=code,
            template_code=canonical,
            pointer=pointer,
            code_pointer=json_pointer(["instantiation_layouts", *code_where]),
            count=count,
            name_pattern=chosen,
            name_pattern_pointer=pattern_pointer,
            relationship_type=shared.relationship_type,
            json_addl=child_addl,
        )


@attrs.frozen
class _Shared:
    """What a layout gives each of its children."""

    layout: int
    relationship_type: str
    name_pattern: str | None


def parse_layouts(json_addl: Mapping[str, Any]) -> ParsedLayouts:
    """The ``instantiation_layouts`` of a template's ``json_addl``, with every problem.

    Absent (or null) layouts parse to nothing. Each name pattern written (a
    layout's or an entry's) is checked for its placeholders, used or not. An
    entry whose template code is missing or does not parse is left out of the
    result (its problem is reported); other broken values are reported and
    replaced by their defaults, so callers that only look at some rules still
    see every child.
    """
    value = json_addl.get("instantiation_layouts")
    if value is None:
        return ParsedLayouts()
    parser = _Parser()
    if not isinstance(value, list):
        parser.bad([], f"must be a list of layouts, got {json_type(value)}")
        return ParsedLayouts(problems=tuple(parser.problems))
    parsed = (parser.layout(li, layout) for li, layout in enumerate(value))
    layouts = tuple(layout for layout in parsed if layout is not None)
    return ParsedLayouts(layouts=layouts, problems=tuple(parser.problems))
