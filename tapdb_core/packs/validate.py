"""Validating template packs: every problem in one report, with file and JSON pointer.

Structural checks (per file): the file is UTF-8 JSON without repeated keys and
matches ``pack.schema.json`` (all errors, not just the first).

Semantic checks (across all files given):

* template codes are unique (the error names both files);
* every reference resolves: ``action_imports`` values, ``expected_inputs`` /
  ``expected_outputs`` and layout children (``*`` = newest version present).
  Unresolved references are errors when ``strict`` and warnings otherwise;
  ``action_imports`` must point at action templates;
* instantiation layouts have no template cycle and nest at most
  :data:`MAX_LAYOUT_DEPTH` levels; name patterns only use the known placeholders;
* each ``json_addl_schema`` is a valid draft 2020-12 schema, the template's own
  default properties satisfy it (validated as ``{"properties": <defaults>}``),
  it accepts the ``action_groups``/``audit_log`` keys every instance has, and
  each layout child's ``json_addl``, deep-merged over the child template's
  defaults, satisfies the child template's schema;
* action templates carry an ``action_definition`` object;
* instance prefixes are not reserved (templates ``GT``, lineage ``GN``, and the
  user and audit prefixes).
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

import attrs
import jsonschema.exceptions
import jsonschema_rs
from jsonschema import Draft202012Validator

from tapdb_core.codes import TemplateCode
from tapdb_core.errors import TemplateCodeError, ValidationError, Violation
from tapdb_core.euid import (
    DEFAULT_AUDIT_PREFIX,
    DEFAULT_USER_PREFIX,
    LINEAGE_PREFIX,
    TEMPLATE_PREFIX,
)
from tapdb_core.layouts import (
    MAX_LAYOUT_DEPTH,
    NAME_PATTERN_PLACEHOLDERS,
    ParsedLayouts,
    deep_merge,
    json_pointer,
    json_type,
    parse_layouts,
)
from tapdb_core.packs.load import (
    CodeIndex,
    PackDirs,
    PackParseError,
    PackTemplate,
    _pack_schema,
    as_pack_dirs,
    core_pack_dirs,
    discover_pack_files,
    read_pack_file,
    template_code_of,
    templates_of,
)

Level: TypeAlias = Literal["error", "warning"]
#: reserved prefixes: a mapping prefix -> what uses it, or just the prefixes
ReservedPrefixes: TypeAlias = "Mapping[str, str] | Iterable[str]"

#: instance keys a json_addl_schema must accept besides ``properties``
INSTANCE_KEYS: Final = ("action_groups", "audit_log")
DRAFT_2020_12: Final = "https://json-schema.org/draft/2020-12/schema"


def default_reserved_prefixes(
    *, user_prefix: str = DEFAULT_USER_PREFIX, audit_prefix: str = DEFAULT_AUDIT_PREFIX
) -> dict[str, str]:
    """Prefixes no template may give its instances, with what uses them."""
    return {
        TEMPLATE_PREFIX: "templates",
        LINEAGE_PREFIX: "lineage edges",
        user_prefix: "users",
        audit_prefix: "audit rows",
    }


def _reserved(reserved: ReservedPrefixes | None) -> dict[str, str]:
    result = {TEMPLATE_PREFIX: "templates", LINEAGE_PREFIX: "lineage edges"}
    if reserved is None:
        result.update(default_reserved_prefixes())
    elif isinstance(reserved, Mapping):
        result.update({str(k): str(v) for k, v in reserved.items()})
    elif isinstance(reserved, str):
        result[reserved] = "tapdb"
    else:
        result.update({str(p): result.get(str(p), "tapdb") for p in reserved})
    return result


@attrs.frozen(kw_only=True)
class PackIssue:
    """One problem found in the packs."""

    level: Level
    message: str
    source_file: str | None = None
    pointer: str | None = None
    """JSON pointer in ``source_file`` (``""`` = whole document, None = not applicable)."""
    template_code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "message": self.message,
            "source_file": self.source_file,
            "template_code": self.template_code,
            "pointer": self.pointer,
        }

    def __str__(self) -> str:
        where = self.source_file or "<packs>"
        if self.pointer is not None:
            where += f"#{self.pointer}"
        code = f" [{self.template_code}]" if self.template_code else ""
        return f"{self.level}: {where}{code}: {self.message}"


@attrs.frozen(kw_only=True)
class PackReport:
    """The outcome of :func:`validate_packs`."""

    config_dirs: tuple[str, ...]
    strict: bool
    template_count: int
    """Template entries found in the pack files (well-formed or not)."""
    issues: tuple[PackIssue, ...]
    files: tuple[str, ...] = ()
    """The pack files read, in order."""
    templates: tuple[PackTemplate, ...] = attrs.field(default=(), repr=False)
    """The templates whose code fields are valid, in file order."""

    @property
    def errors(self) -> list[PackIssue]:
        return [i for i in self.issues if i.level == "error"]

    @property
    def warnings(self) -> list[PackIssue]:
        return [i for i in self.issues if i.level == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: ``{config_dir, strict, templates, errors, warnings, issues}``."""
        config_dir: str | list[str] = (
            self.config_dirs[0] if len(self.config_dirs) == 1 else list(self.config_dirs)
        )
        return {
            "config_dir": config_dir,
            "strict": self.strict,
            "templates": self.template_count,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "issues": [i.to_dict() for i in self.issues],
        }

    def raise_for_errors(self) -> None:
        """Raise :class:`PackValidationError` when the report has errors."""
        if not self.ok:
            raise PackValidationError(self)


class PackValidationError(ValidationError):
    """Template packs have errors; ``report`` holds every issue."""

    def __init__(self, report: PackReport) -> None:
        self.report = report
        violations = [
            Violation(
                path=f"{i.source_file or ''}#{i.pointer or ''}",
                message=f"[{i.template_code}] {i.message}" if i.template_code else i.message,
            )
            for i in report.errors
        ]
        super().__init__(f"template packs have {len(violations)} error(s)", violations)


def json_addl_validator(schema: Mapping[str, Any]) -> Draft202012Validator:
    """The validator for a template's ``json_addl_schema`` (draft 2020-12, formats asserted).

    It validates an instance's whole ``json_addl``: ``{"properties": ...,
    "action_groups": ..., "audit_log": ...}``.
    """
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@functools.lru_cache(maxsize=1)
def _pack_validator() -> Draft202012Validator:
    return Draft202012Validator(_pack_schema())


@functools.lru_cache(maxsize=1)
def _fast_pack_check() -> jsonschema_rs.Validator:
    """jsonschema-rs on the pack schema: a quick yes; jsonschema decides and explains a no."""
    return jsonschema_rs.Draft202012Validator(_pack_schema(), offline=True)


@functools.lru_cache(maxsize=1)
def _meta_validator() -> Draft202012Validator:
    return Draft202012Validator(
        Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


@functools.lru_cache(maxsize=512)
def _compile_schema(
    key: str,
) -> tuple[tuple[tuple[str, str], ...], Draft202012Validator | None]:
    """Check a json_addl_schema (given as canonical JSON text) against the meta-schema.

    Cached: checking against the 2020-12 meta-schema is the slowest step, and
    packs repeat schemas (and are validated again after each edit).
    """
    schema = json.loads(key)
    errors = sorted(_meta_validator().iter_errors(schema), key=lambda e: _path_key(e.absolute_path))
    problems = tuple(
        (
            json_pointer(err.absolute_path),
            f"json_addl_schema is not a valid JSON Schema: {err.message}",
        )
        for err in errors
    )
    return problems, None if problems else json_addl_validator(schema)


def _path_key(path: Iterable[str | int]) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, p) if isinstance(p, int) else (1, str(p)) for p in path)


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _schema_messages(
    err: jsonschema.exceptions.ValidationError,
) -> Iterator[tuple[list[str | int], str]]:
    """(path, message) pairs for a pack-schema error, phrased for pack authors."""
    path: list[str | int] = list(err.absolute_path)
    last = path[-1] if path else None
    validator = err.validator
    value: Any = err.validator_value
    instance = err.instance
    schema: Any = err.schema
    if validator == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(schema.get("properties", {}) if isinstance(schema, dict) else {})
        for key in sorted(k for k in instance if k not in allowed):
            hint = difflib.get_close_matches(key, allowed, n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            yield [*path, key], f"unknown key {key!r}{suffix}; allowed: {', '.join(allowed)}"
    elif validator == "required" and isinstance(instance, dict):
        for key in value:
            if key not in instance:
                yield path, f"missing required key {key!r}"
    elif validator == "minItems" and last == "templates" and len(path) == 1:
        yield path, "pack has no templates"
    elif validator == "minItems" and last == "child_templates":
        yield path, "layout has no child_templates"
    elif validator == "type":
        expected = value if isinstance(value, str) else " or ".join(value)
        yield path, f"must be {expected}, got {json_type(instance)} {_short(instance, 40)}"
    elif validator == "pattern" and last == "instance_prefix":
        yield (
            path,
            (
                f"invalid instance_prefix {instance!r}: must be 2-3 uppercase letters "
                "A-Z without I, L, O or U (^[A-HJ-KMNP-TV-Z]{2,3}$)"
            ),
        )
    elif validator == "pattern" and last in ("category", "type", "subtype", "version"):
        yield path, f"invalid {last} {instance!r}: must not contain '/', '*' or whitespace"
    elif validator == "pattern" and value == _code_pattern():
        yield (
            path,
            (
                f"invalid template code {instance!r}: expected category/type/subtype/version "
                "(trailing slash optional, version may be '*')"
            ),
        )
    elif validator == "pattern" and last == "action_imports":
        yield (
            [*path, str(instance)],
            (
                f"invalid action key {instance!r}: must be an identifier "
                "(the handler is do_action_<key>)"
            ),
        )
    elif validator in ("minLength", "pattern") and value in (1, r"\S"):
        yield path, "must be a non-blank string"
    else:
        message = err.message
        if len(message) > 300:
            message = message[:297] + "..."
        yield path, message


@functools.lru_cache(maxsize=1)
def _code_pattern() -> str:
    pattern: str = _pack_schema()["$defs"]["templateCode"]["pattern"]
    return pattern


@attrs.define
class _Ref:
    template: PackTemplate
    pointer: str
    code: str
    what: str
    kind: Literal["action_import", "expected", "layout_child"]
    child_json_addl: Mapping[str, Any] | None = None


@attrs.define
class _Edge:
    target: str
    template: PackTemplate
    pointer: str


class _Validation:
    def __init__(self, strict: bool, reserved: dict[str, str]) -> None:
        self.strict = strict
        self.reserved = reserved
        self.issues: list[PackIssue] = []
        self._seen: set[tuple[str, str, str | None, str | None]] = set()
        self.templates: list[PackTemplate] = []
        self.template_count = 0
        """Template entries found in the files (well-formed or not)."""
        self.validators: dict[str, Draft202012Validator | None] = {}

    # -- reporting -----------------------------------------------------------
    def add(
        self,
        level: Level,
        message: str,
        *,
        source_file: str | Path | None = None,
        pointer: str | None = None,
        template_code: str | None = None,
    ) -> None:
        source = None if source_file is None else str(source_file)
        key = (level, message, source, pointer)
        if key in self._seen:
            return
        self._seen.add(key)
        self.issues.append(
            PackIssue(
                level=level,
                message=message,
                source_file=source,
                pointer=pointer,
                template_code=template_code,
            )
        )

    def at(self, template: PackTemplate, suffix: str, message: str, level: Level = "error") -> None:
        self.add(
            level,
            message,
            source_file=template.source_file,
            pointer=template.pointer + suffix,
            template_code=template.code_str,
        )

    # -- files ---------------------------------------------------------------
    def find_files(self, roots: Sequence[Path]) -> list[Path]:
        """The pack files under ``roots``; a missing or empty directory is an error."""
        files: list[Path] = []
        for root in roots:
            if not root.exists():
                self.add("error", "pack directory does not exist", source_file=root)
                continue
            found = discover_pack_files([root])
            if not found:
                self.add(
                    "error",
                    "no pack files (*.json outside _-prefixed folders) in this directory",
                    source_file=root,
                )
            files.extend(found)
        if not roots:
            self.add("error", "no pack directories given")
        return files

    def read_file(self, path: Path) -> bool:
        """Read, check and collect one pack file; False when it is not JSON (reported)."""
        try:
            parsed = read_pack_file(path)
        except PackParseError as exc:
            self.add("error", exc.reason, source_file=path)
            return False
        for key in dict.fromkeys(parsed.duplicate_keys):
            self.add(
                "error",
                f"duplicate key {key!r} in a JSON object (only the last value would count)",
                source_file=path,
            )
        self.check_document(path, parsed.document)
        document = parsed.document
        if isinstance(document, dict) and isinstance(document.get("templates"), list):
            self.template_count += len(document["templates"])
        self.templates.extend(templates_of(parsed))
        return True

    # -- structural ----------------------------------------------------------
    def check_document(self, path: Path, document: Any) -> None:
        if _fast_pack_check().is_valid(document):
            return  # half the time of validating packs; the property tests hold the two equal
        errors = sorted(
            _pack_validator().iter_errors(document), key=lambda e: _path_key(e.absolute_path)
        )
        for err in errors:
            for where, message in _schema_messages(err):
                code = None
                if len(where) >= 2 and where[0] == "templates" and isinstance(where[1], int):
                    parsed = template_code_of(document["templates"][where[1]])
                    code = str(parsed) if parsed else None
                self.add(
                    "error",
                    message,
                    source_file=path,
                    pointer=json_pointer(where),
                    template_code=code,
                )

    # -- semantic ------------------------------------------------------------
    def check_all(self, known: Sequence[PackTemplate] = ()) -> None:
        index = CodeIndex()
        first: dict[str, PackTemplate] = {}
        for t in self.templates:
            code = t.code_str
            if code in first:
                other = first[code]
                self.at(
                    t,
                    "",
                    f"duplicate template code {code}: defined in {t.source_file} at "
                    f"{t.pointer} and first in {other.source_file} at {other.pointer}",
                )
            else:
                first[code] = t
                index.add(t.code)
        layouts = [_layouts_of(t) for t in self.templates]
        for t, parsed in zip(self.templates, layouts, strict=True):
            self.check_template(t, parsed)
        edges: dict[str, list[_Edge]] = {code: [] for code in first}
        # templates already stored (seeding): references to them resolve, and a
        # pack's own template of the same code wins
        for t in known:
            if t.code_str not in first:
                first[t.code_str] = t
                index.add(t.code)
                edges[t.code_str] = []
        for t, parsed in zip(self.templates, layouts, strict=True):
            for ref in self.references(t, parsed):
                target = index.resolve(ref.code)
                if target is None:
                    self.at(
                        t,
                        ref.pointer[len(t.pointer) :],
                        f"{ref.what} refers to unknown template {ref.code}"
                        + ("" if self.strict else " (not found in these packs)"),
                        "error" if self.strict else "warning",
                    )
                    continue
                target_t = first[target]
                if ref.kind == "action_import" and not target_t.is_action:
                    self.at(
                        t,
                        ref.pointer[len(t.pointer) :],
                        f"{ref.what} refers to {target}, which is not an action template",
                    )
                if ref.kind == "layout_child":
                    edges[t.code_str].append(_Edge(target, t, ref.pointer))
                    if ref.child_json_addl is not None:
                        self.check_child_json_addl(ref, target_t)
        self.check_layout_graph(edges, first)

    def references(self, t: PackTemplate, layouts: ParsedLayouts) -> Iterator[_Ref]:
        addl = t.data.get("json_addl")
        if not isinstance(addl, dict):
            return
        base = t.pointer + "/json_addl"
        imports = addl.get("action_imports")
        if isinstance(imports, dict):
            for key, code in imports.items():
                if isinstance(code, str) and _valid_code(code):
                    yield _Ref(
                        t,
                        base + json_pointer(["action_imports", key]),
                        code,
                        f"action_imports[{key!r}]",
                        "action_import",
                    )
        for field in ("expected_inputs", "expected_outputs"):
            codes = addl.get(field)
            if isinstance(codes, list):
                for i, code in enumerate(codes):
                    if isinstance(code, str) and _valid_code(code):
                        yield _Ref(
                            t, base + json_pointer([field, i]), code, f"{field}[{i}]", "expected"
                        )
        for child in layouts.children:
            if _valid_code(child.code):
                yield _Ref(
                    t,
                    base + child.code_pointer,
                    child.code,
                    child.what,
                    "layout_child",
                    child.json_addl,
                )

    def check_template(self, t: PackTemplate, layouts: ParsedLayouts) -> None:
        prefix = t.data.get("instance_prefix")
        if isinstance(prefix, str) and prefix in self.reserved:
            self.at(
                t,
                "/instance_prefix",
                f"instance_prefix {prefix!r} is reserved for {self.reserved[prefix]}",
            )
        addl = t.data.get("json_addl")
        if t.is_action and (not isinstance(addl, dict) or "action_definition" not in addl):
            self.at(
                t,
                "/json_addl" if isinstance(addl, dict) else "",
                "action template has no json_addl.action_definition object",
            )
        for problem in layouts.problems_of("name_pattern"):
            # the pack schema reports the other layout problems, phrased for pack authors
            self.at(t, "/json_addl" + problem.pointer, problem.message)
        self.check_own_schema(t)

    def validator_for(self, t: PackTemplate) -> Draft202012Validator | None:
        """The json_addl validator of ``t`` (None: no schema or an unusable one)."""
        return self.validators.get(t.code_str)

    def check_own_schema(self, t: PackTemplate) -> None:
        if "json_addl_schema" not in t.data:
            return
        schema = t.data["json_addl_schema"]
        if not isinstance(schema, dict):
            if schema is not None:
                self.validators.setdefault(t.code_str, None)
            return
        usable = True
        declared = schema.get("$schema")
        if declared is not None and str(declared).rstrip("#") != DRAFT_2020_12:
            usable = False
            self.at(
                t,
                "/json_addl_schema/$schema",
                f"json_addl_schema must be draft 2020-12 ({DRAFT_2020_12}), not {declared!r}",
            )
        problems, validator = self.compile(schema)
        for where, message in problems:
            usable = False
            self.at(t, "/json_addl_schema" + where, message)
        if not usable or validator is None:
            self.validators.setdefault(t.code_str, None)
            return
        defaults = t.default_properties
        errors = self.run(t, validator, {"properties": defaults}, "/json_addl_schema")
        if errors is None:
            self.validators.setdefault(t.code_str, None)
            return
        for err in errors:
            path = list(err.absolute_path)
            self.at(
                t,
                "/json_addl" + json_pointer(path) if path else "/json_addl_schema",
                "default properties violate the template's own json_addl_schema"
                f"{' at ' + json_pointer(path) if path else ''}: {err.message}",
            )
        if not errors:
            full = {"properties": defaults, "action_groups": {}, "audit_log": []}
            for err in self.run(t, validator, full, "/json_addl_schema") or []:
                self.at(
                    t,
                    "/json_addl_schema",
                    "json_addl_schema rejects the keys every instance's json_addl has "
                    f"({', '.join(INSTANCE_KEYS)}): {err.message}",
                )
        self.validators.setdefault(t.code_str, validator)

    def compile(
        self, schema: dict[str, Any]
    ) -> tuple[tuple[tuple[str, str], ...], Draft202012Validator | None]:
        """Meta-schema problems (pointer, message) and the validator."""
        return _compile_schema(json.dumps(schema, sort_keys=True))

    def run(
        self, t: PackTemplate, validator: Draft202012Validator, instance: Any, suffix: str
    ) -> list[jsonschema.exceptions.ValidationError] | None:
        """All validation errors, or None (reported) when the schema cannot be applied."""
        try:
            return sorted(validator.iter_errors(instance), key=lambda e: _path_key(e.absolute_path))
        except Exception as exc:  # unresolvable $ref, bad regex, ...
            self.at(t, suffix, f"json_addl_schema cannot be applied: {exc}")
            return None

    def check_child_json_addl(self, ref: _Ref, target: PackTemplate) -> None:
        validator = self.validator_for(target)
        if validator is None or ref.child_json_addl is None:
            return
        merged = deep_merge({"properties": target.default_properties}, ref.child_json_addl)
        child_pointer = ref.pointer.removesuffix("/template_code") + "/json_addl"
        try:
            errors = sorted(validator.iter_errors(merged), key=lambda e: _path_key(e.absolute_path))
        except Exception:  # the target's schema problem is reported on the target
            return
        for err in errors:
            path = list(err.absolute_path)
            self.at(
                ref.template,
                child_pointer[len(ref.template.pointer) :] + json_pointer(path),
                f"{ref.what}: json_addl for {target.code_str} violates its json_addl_schema"
                f"{' at ' + json_pointer(path) if path else ''}: {err.message}",
            )

    def check_layout_graph(
        self, edges: dict[str, list[_Edge]], first: dict[str, PackTemplate]
    ) -> None:
        components = _strongly_connected(edges)
        cyclic: set[str] = set()
        for component in components:
            members = set(component)
            if len(component) == 1:
                node = component[0]
                if not any(e.target == node for e in edges[node]):
                    continue
            cyclic |= members
            start = min(members)
            cycle = _cycle_from(start, edges, members)
            self.at(
                cycle[0].template,
                cycle[0].pointer[len(cycle[0].template.pointer) :],
                "instantiation layout cycle: " + " -> ".join([start, *(e.target for e in cycle)]),
            )
        height: dict[str, int] = {}
        deepest: dict[str, _Edge | None] = {}
        for component in components:  # Tarjan yields sinks first
            node = component[0]
            if node in cyclic:
                continue
            best: _Edge | None = None
            best_height = 0
            for candidate in edges[node]:
                if candidate.target in height and height[candidate.target] + 1 > best_height:
                    best, best_height = candidate, height[candidate.target] + 1
            height[node] = best_height
            deepest[node] = best
        for node in first:
            if height.get(node, 0) > MAX_LAYOUT_DEPTH:
                chain = [node]
                link = deepest[node]
                while link is not None:
                    chain.append(link.target)
                    link = deepest[link.target]
                shown = chain if len(chain) <= 14 else [*chain[:12], "...", chain[-1]]
                step = deepest[node]
                assert step is not None
                self.at(
                    step.template,
                    step.pointer[len(step.template.pointer) :],
                    f"instantiation layouts nest {height[node]} levels deep "
                    f"(limit {MAX_LAYOUT_DEPTH}): " + " -> ".join(shown),
                )


def _layouts_of(t: PackTemplate) -> ParsedLayouts:
    addl = t.data.get("json_addl")
    return parse_layouts(addl) if isinstance(addl, dict) else ParsedLayouts()


def _valid_code(code: str) -> bool:
    try:
        TemplateCode.parse(code)
    except TemplateCodeError:
        return False
    return re.match(_code_pattern(), code) is not None


def _strongly_connected(edges: dict[str, list[_Edge]]) -> list[list[str]]:
    """Tarjan's algorithm without recursion; components come out sinks first."""
    index_of: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index_of:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index_of[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = edges[node]
            recursed = False
            while i < len(targets):
                target = targets[i].target
                i += 1
                if target not in index_of:
                    work.append((node, i))
                    work.append((target, 0))
                    recursed = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index_of[target])
            if recursed:
                continue
            if low[node] == index_of[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                result.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return result


def _cycle_from(start: str, edges: dict[str, list[_Edge]], members: set[str]) -> list[_Edge]:
    """Edges of a shortest cycle through ``start`` inside one strongly connected component."""
    came: dict[str, _Edge] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for edge in edges[node]:
                if edge.target not in members:
                    continue
                if edge.target == start:
                    path = [edge]
                    while node != start:
                        back = came[node]
                        path.append(back)
                        node = back.template.code_str
                    return list(reversed(path))
                if edge.target not in came:
                    came[edge.target] = edge
                    following.append(edge.target)
        frontier = following
    raise AssertionError("no cycle in a cyclic component")  # pragma: no cover


def validate_packs(
    dirs: PackDirs,
    *,
    strict: bool = True,
    reserved_prefixes: ReservedPrefixes | None = None,
    known: Sequence[PackTemplate] = (),
) -> PackReport:
    """Check the packs under ``dirs`` (one path or several) and report every issue.

    ``known``: templates that exist already (in the database being seeded);
    references to them resolve, so your own packs may build on core templates
    without carrying them.

    ``reserved_prefixes``: prefixes instances may not use, as a mapping
    prefix -> purpose or a plain list; ``GT`` and ``GN`` are always reserved.
    Default: :func:`default_reserved_prefixes` (``GT``, ``GN``, ``TDA``, ``ADT``).
    """
    roots = as_pack_dirs(dirs)
    run = _Validation(strict, _reserved(reserved_prefixes))
    files = run.find_files(roots)
    parsed_ok = sum(run.read_file(path) for path in files)
    if parsed_ok and run.template_count == 0:
        run.add(
            "error",
            "no templates found",
            source_file=str(roots[0]) if len(roots) == 1 else None,
        )
    run.check_all(known)
    return PackReport(
        config_dirs=tuple(str(r) for r in roots),
        strict=strict,
        template_count=run.template_count,
        issues=tuple(run.issues),
        files=tuple(str(f) for f in files),
        templates=tuple(run.templates),
    )


def load_packs(
    dirs: PackDirs,
    *,
    validate: bool = True,
    strict: bool = True,
    reserved_prefixes: ReservedPrefixes | None = None,
) -> list[PackTemplate]:
    """All templates of the packs under ``dirs``, in file order.

    With ``validate`` (the default) the packs are checked first with
    :func:`validate_packs` and :class:`PackValidationError` (carrying the
    report) is raised when there is any error. Without it only unreadable
    files raise (:class:`~tapdb_core.packs.load.PackParseError`) and malformed
    templates are skipped.
    """
    if validate:
        report = validate_packs(dirs, strict=strict, reserved_prefixes=reserved_prefixes)
        report.raise_for_errors()
        return list(report.templates)
    templates: list[PackTemplate] = []
    for path in discover_pack_files(dirs):
        templates.extend(templates_of(read_pack_file(path)))
    return templates


def validate_core_packs(*, strict: bool = True) -> PackReport:
    """Validate the packs shipped with tapdb_core."""
    return validate_packs(core_pack_dirs(), strict=strict)


__all__: Sequence[str] = (
    "DRAFT_2020_12",
    "INSTANCE_KEYS",
    "MAX_LAYOUT_DEPTH",
    "NAME_PATTERN_PLACEHOLDERS",
    "Level",
    "PackIssue",
    "PackReport",
    "PackValidationError",
    "ReservedPrefixes",
    "default_reserved_prefixes",
    "json_addl_validator",
    "load_packs",
    "validate_core_packs",
    "validate_packs",
)
