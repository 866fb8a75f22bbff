"""Templates: look up by code or EUID, list, upsert (used by seeding), soft delete.

The cache (``tapdb_core.template_cache``) never hands a later transaction a
template changed by anyone, in this process or another: it follows the
database's template generation counter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal

import attrs
from sqlalchemy import Connection, select, text, update
from sqlalchemy import delete as sa_delete
from sqlalchemy.dialects.postgresql import insert as pg_insert

from tapdb_core import euid as euids
from tapdb_core import inputcheck, template_cache
from tapdb_core.codes import TemplateCode, version_sort_key
from tapdb_core.dberrors import translated
from tapdb_core.errors import ConflictError, TemplateNotFoundError, ValidationError, Violation
from tapdb_core.jsonvalues import json_equal
from tapdb_core.tables import generic_template as t
from tapdb_core.values import Template

clear_cache = template_cache.clear
_cached = template_cache.cached
_remember = template_cache.remember
_mark_written = template_cache.mark_written


def _live(include_deleted: bool) -> Any:
    return True if include_deleted else t.c.is_deleted.is_(False)


def get_template(conn: Connection, code: str | TemplateCode) -> Template:
    """The live template with this code; ``*`` as version means the newest live version."""
    parsed = TemplateCode.parse(code) if isinstance(code, str) else code
    key = f"code:{parsed}"
    hit = _cached(conn, key)
    if hit is not None:
        return hit
    query = select(t).where(
        t.c.category == parsed.category,
        t.c.type == parsed.type,
        t.c.subtype == parsed.subtype,
        t.c.is_deleted.is_(False),
    )
    if not parsed.is_wildcard:
        query = query.where(t.c.version == parsed.version)
    rows = conn.execute(query).all()
    if not rows:
        raise TemplateNotFoundError(f"template {code} not found (no live template has this code)")
    row = max(rows, key=lambda r: version_sort_key(r.version))
    return _remember(conn, key, Template.from_row(row))


def get_template_for_write(conn: Connection, code: str | TemplateCode) -> Template:
    """:func:`get_template` for a write that proves its templates itself: a cached
    entry is served without reading the template generation first (see
    :func:`tapdb_core.template_cache.cached_assuming`)."""
    parsed = TemplateCode.parse(code) if isinstance(code, str) else code
    hit = template_cache.cached_assuming(conn, f"code:{parsed}")
    if hit is not None:
        return hit
    return get_template(conn, parsed)


# Raw code -> its parsed form and cache key: parsing is pure, and a plan looks
# up the same handful of codes (its templates and the actions they import)
# every time. Only codes that parse are kept; bounded.
_parsed_codes: dict[str, tuple[TemplateCode, str]] = {}
_PARSED_LIMIT: Final = 4096


def _parsed(code: str) -> tuple[TemplateCode, str]:
    hit = _parsed_codes.get(code) if isinstance(code, str) else None
    if hit is None:
        parsed = TemplateCode.parse(code)
        hit = (parsed, f"code:{parsed}")
        if isinstance(code, str):
            if len(_parsed_codes) >= _PARSED_LIMIT:
                _parsed_codes.clear()
            _parsed_codes[code] = hit
    return hit


class WriteResolver:
    """Resolves template codes for one plan of a write that proves its templates
    itself: :func:`get_template_for_write` for each code, with the cache's
    per-transaction checks made once per plan rather than once per code."""

    __slots__ = ("_conn", "_lookup")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lookup: template_cache.WriteLookup | None = None

    def __call__(self, code: str) -> Template:
        parsed, key = _parsed(code)
        if self._lookup is None:
            self._lookup = template_cache.lookup_for_write(self._conn)
        hit = self._lookup(key)
        if hit is not None:
            return hit
        self._lookup = None  # get_template may read the generation: look again next time
        return get_template(self._conn, parsed)

    def cache_token(self) -> object | None:
        """Equal tokens (not None) promise that every code resolved under one
        resolves to the same object under the other (see
        :meth:`tapdb_core.template_cache.WriteLookup.token`)."""
        if self._lookup is None:
            self._lookup = template_cache.lookup_for_write(self._conn)
        return self._lookup.token()


def write_resolver(conn: Connection) -> WriteResolver:
    """A :class:`WriteResolver` for one plan."""
    return WriteResolver(conn)


def get_template_by_euid(conn: Connection, euid: str) -> Template:
    euids.parse(euid)  # a malformed EUID is bad input, not "not found"
    key = f"euid:{euid}"
    hit = _cached(conn, key)
    if hit is not None:
        return hit
    row = conn.execute(select(t).where(t.c.euid == euid, t.c.is_deleted.is_(False))).one_or_none()
    if row is None:
        raise TemplateNotFoundError(f"template {euid} not found")
    return _remember(conn, key, Template.from_row(row))


def resolve_template(conn: Connection, code_or_euid: str) -> Template:
    """A template by code (``a/b/c/1.0``) or by EUID (``GT-13``)."""
    if "/" in code_or_euid:
        return get_template(conn, code_or_euid)
    return get_template_by_euid(conn, code_or_euid)


def list_templates(
    conn: Connection,
    *,
    category: str | None = None,
    type: str | None = None,
    subtype: str | None = None,
    include_deleted: bool = False,
) -> list[Template]:
    query = select(t).where(_live(include_deleted))
    for column, value in (("category", category), ("type", type), ("subtype", subtype)):
        if value is not None:
            query = query.where(t.c[column] == value)
    query = query.order_by(t.c.category, t.c.type, t.c.subtype, t.c.version)
    return [Template.from_row(r) for r in conn.execute(query)]


@attrs.frozen(kw_only=True)
class TemplateSpec:
    """What a pack (or a caller) says a template should be."""

    name: str
    polymorphic_discriminator: str
    category: str
    type: str
    subtype: str
    version: str
    instance_prefix: str
    instance_polymorphic_identity: str | None = None
    json_addl: dict[str, Any] = attrs.field(factory=dict)
    json_addl_schema: dict[str, Any] | None = None
    bstatus: str = "active"
    is_singleton: bool = False

    @property
    def code(self) -> TemplateCode:
        return TemplateCode(
            category=self.category, type=self.type, subtype=self.subtype, version=self.version
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> TemplateSpec:
        fields = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValidationError(
                "unknown template fields",
                [Violation(path=f"/{k}", message="not a template field") for k in unknown],
            )
        return cls(**dict(data))


_MUTABLE = (
    "name",
    "polymorphic_discriminator",
    "instance_prefix",
    "instance_polymorphic_identity",
    "json_addl",
    "json_addl_schema",
    "bstatus",
    "is_singleton",
)

_EXISTING_BY_CODE = text(
    """
    SELECT g.* FROM generic_template g
      JOIN unnest(CAST(:c AS text[]), CAST(:t AS text[]), CAST(:s AS text[]), CAST(:v AS text[]))
           AS k(category, type, subtype, version)
        ON (g.category, g.type, g.subtype, g.version) = (k.category, k.type, k.subtype, k.version)
    """
)

#: the advisory lock key template writers share ("tapdb" and 1 as one bigint)
TEMPLATE_LOCK_KEY: Final = 0x7461706462_0001
_TEMPLATE_LOCK = text("SELECT pg_advisory_xact_lock(CAST(:key AS bigint))")

UpsertOutcome = Literal["created", "updated", "unchanged", "skipped"]


@attrs.frozen(kw_only=True)
class UpsertResult:
    code: str
    outcome: UpsertOutcome
    euid: str


def changed_fields(row: Any, spec: TemplateSpec) -> dict[str, Any]:
    """The fields of ``spec`` whose values differ from the stored ``row`` (JSON
    equality: key order does not matter, ``true`` is not ``1``)."""
    return {
        name: getattr(spec, name)
        for name in _MUTABLE
        if not json_equal(getattr(row, name), getattr(spec, name))
    }


def upsert_templates(
    conn: Connection,
    specs: Sequence[TemplateSpec],
    *,
    overwrite: bool = True,
) -> list[UpsertResult]:
    """Create or update templates keyed by code; unchanged ones are not rewritten.

    ``overwrite=False`` leaves existing templates as they are (``skipped``).
    Existing EUIDs are kept. A soft-deleted template with the same code is
    brought back (``updated``).
    """
    inputcheck.check_records("/templates", specs)
    for spec in specs:
        euids.check_prefix(spec.instance_prefix)
    lock_templates(conn)
    # read after the lock: at READ COMMITTED this statement sees whatever the
    # previous holder committed, so identical content reports "unchanged"
    existing = _existing_by_code(conn, specs)
    results: list[UpsertResult] = []
    to_insert: list[dict[str, Any]] = []
    with translated():
        for spec in specs:
            row = existing.get(_code_key(spec))
            if row is None:
                to_insert.append(_insert_values(spec))
            else:
                results.append(_upsert_existing(conn, spec, row, overwrite=overwrite))
        if to_insert:
            results.extend(_created(r) for r in _insert_new(conn, to_insert))
    if any(r.outcome in ("created", "updated") for r in results):
        _mark_written(conn)
    order = {str(s.code): i for i, s in enumerate(specs)}
    return sorted(results, key=lambda r: order[r.code])


_CodeKey = tuple[str, str, str, str]


def _code_key(spec: TemplateSpec) -> _CodeKey:
    return (spec.category, spec.type, spec.subtype, spec.version)


def _existing_by_code(conn: Connection, specs: Sequence[TemplateSpec]) -> dict[_CodeKey, Any]:
    """The stored rows (live or soft-deleted) with the codes of ``specs``, by code."""
    if not specs:
        return {}
    keys = [_code_key(s) for s in specs]
    # one join against four parallel arrays: a 500-element row IN (...) list
    # cost more to compile than to run
    rows = conn.execute(
        _EXISTING_BY_CODE,
        {
            "c": [k[0] for k in keys],
            "t": [k[1] for k in keys],
            "s": [k[2] for k in keys],
            "v": [k[3] for k in keys],
        },
    ).all()
    return {(r.category, r.type, r.subtype, r.version): r for r in rows}


def _insert_values(spec: TemplateSpec) -> dict[str, Any]:
    return {
        **{name: getattr(spec, name) for name in _MUTABLE},
        "category": spec.category,
        "type": spec.type,
        "subtype": spec.subtype,
        "version": spec.version,
    }


def _upsert_existing(
    conn: Connection, spec: TemplateSpec, row: Any, *, overwrite: bool
) -> UpsertResult:
    """Skip ``row``, leave it (unchanged) or update its changed columns (undeleting it)."""
    code = str(spec.code)
    if not overwrite:
        return UpsertResult(code=code, outcome="skipped", euid=row.euid)
    changed = changed_fields(row, spec)
    if row.is_deleted:
        changed["is_deleted"] = False
    if not changed:
        return UpsertResult(code=code, outcome="unchanged", euid=row.euid)
    conn.execute(update(t).where(t.c.uuid == row.uuid).values(**changed))
    return UpsertResult(code=code, outcome="updated", euid=row.euid)


def _created(row: Any) -> UpsertResult:
    code = TemplateCode(
        category=row.category, type=row.type, subtype=row.subtype, version=row.version
    )
    return UpsertResult(code=str(code), outcome="created", euid=row.euid)


def _insert_new(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> Sequence[Any]:
    """Insert templates whose code was not found; every one must be inserted.

    ``ON CONFLICT DO NOTHING`` makes a code committed after a REPEATABLE READ
    snapshot (a racing upsert this snapshot cannot see) fail with a retryable
    serialization error instead of a duplicate-key error. A code that is
    still skipped was written by someone who took no template lock, or is
    listed twice: a conflict.
    """
    inserted = conn.execute(
        pg_insert(t)
        .on_conflict_do_nothing(index_elements=[t.c.category, t.c.type, t.c.subtype, t.c.version])
        .returning(t.c.category, t.c.type, t.c.subtype, t.c.version, t.c.euid),
        list(rows),
    ).all()
    if len(inserted) != len(rows):
        keys = [(r["category"], r["type"], r["subtype"], r["version"]) for r in rows]
        done = {(r.category, r.type, r.subtype, r.version) for r in inserted}
        missing = sorted({"/".join(k) + "/" for k in keys if k not in done or keys.count(k) > 1})
        raise ConflictError(
            f"a template with this code already exists: {', '.join(missing)} "
            "(listed twice, or written meanwhile without the template lock)"
        )
    return inserted


def lock_templates(conn: Connection) -> None:
    """Serialise template writers (upserts, seeding) until the transaction ends.

    A transaction-level advisory lock with a fixed key: two transactions
    creating the same new code cannot both decide it is missing.
    """
    conn.execute(_TEMPLATE_LOCK, {"key": TEMPLATE_LOCK_KEY})


def upsert_template(
    conn: Connection, spec: TemplateSpec, *, overwrite: bool = True
) -> UpsertResult:
    return upsert_templates(conn, [spec], overwrite=overwrite)[0]


def delete_template(conn: Connection, code_or_euid: str) -> Template:
    """Soft-delete a template (its instances stay)."""
    template = resolve_template(conn, code_or_euid)
    # a real DELETE: the database soft-deletes and audits the old record
    conn.execute(sa_delete(t).where(t.c.uuid == template.uuid))
    _mark_written(conn)
    return attrs.evolve(template, is_deleted=True)


def templates_by_uuid(conn: Connection, uuids: Iterable[int]) -> dict[int, Template]:
    wanted = sorted(set(uuids))
    if not wanted:
        return {}
    rows = conn.execute(select(t).where(t.c.uuid.in_(wanted))).all()
    return {r.uuid: Template.from_row(r) for r in rows}
