"""Read queries the pages need beyond the library: estimates, keyset pages,
search and a capped lineage neighbourhood. Every one is bounded by an index
and a LIMIT; none counts a whole table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
from sqlalchemy import BigInteger, Connection, and_, any_, func, literal_column, select, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql import bindparam
from sqlalchemy.sql.elements import BindParameter

from tapdb_core import action_sets
from tapdb_core import euid as euids
from tapdb_core.codes import TemplateCode
from tapdb_core.graph_layout import grid_cell
from tapdb_core.tables import audit_log
from tapdb_core.tables import generic_instance as gi
from tapdb_core.tables import generic_instance_lineage as gl
from tapdb_core.tables import generic_template as gt
from tapdb_core.values import AuditEntry, Instance, Lineage, Template

CATEGORY_COLOURS: Mapping[str, str] = {
    "workflow": "#2e8b57",
    "workflow_step": "#6b8e23",
    "container": "#7b3fbf",
    "content": "#1e88c8",
    "equipment": "#d2531e",
    "data": "#b8860b",
    "actor": "#c2185b",
    "action": "#e67e22",
    "test_requisition": "#cc8400",
    "health_event": "#b22222",
    "file": "#2f9e44",
    "subject": "#7e57c2",
    "generic": "#607d8b",
}
DEFAULT_COLOUR = "#888888"


def colour(category: str) -> str:
    return CATEGORY_COLOURS.get(category, DEFAULT_COLOUR)


#: the indexed expression of ix_generic_instance_properties, verbatim
_PROPERTIES = gi.c.json_addl.op("->", return_type=JSONB)(literal_column("'properties'"))


# -- dashboard ---------------------------------------------------------------------


_ESTIMATES = text(
    """
    SELECT c.relname, c.reltuples::bigint AS estimate
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = current_schema()
       AND c.relname IN ('generic_template', 'generic_instance',
                         'generic_instance_lineage', 'audit_log', 'tapdb_user')
    """
)


def estimated_counts(conn: Connection) -> dict[str, int | None]:
    """Planner row estimates (approximate, never a table scan). ``None`` when the
    table has never been analysed (PostgreSQL reports -1)."""
    found = {r.relname: r.estimate for r in conn.execute(_ESTIMATES)}
    return {
        name: (None if found.get(name, -1) < 0 else int(found[name]))
        for name in (
            "generic_template",
            "generic_instance",
            "generic_instance_lineage",
            "audit_log",
            "tapdb_user",
        )
    }


def recent_changes(conn: Connection, limit: int = 15) -> list[AuditEntry]:
    rows = conn.execute(select(audit_log).order_by(audit_log.c.uuid.desc()).limit(limit))
    return [AuditEntry.from_row(r) for r in rows]


# -- keyset pages ------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Page:
    items: tuple[Any, ...]
    next_after: int | None
    """Pass as ``after`` for the next page; None on the last page."""


def _page(rows: Sequence[Any], limit: int, convert: Any) -> Page:
    items = [convert(r) for r in rows[:limit]]
    next_after = rows[limit - 1].uuid if len(rows) > limit else None
    return Page(items=tuple(items), next_after=next_after)


def template_page(
    conn: Connection,
    *,
    category: str | None = None,
    type: str | None = None,
    after: int | None = None,
    limit: int = 50,
) -> Page:
    query = select(gt).where(gt.c.is_deleted.is_(False))
    if category:
        query = query.where(gt.c.category == category)
    if type:
        query = query.where(gt.c.type == type)
    if after is not None:
        query = query.where(gt.c.uuid > after)
    rows = conn.execute(query.order_by(gt.c.uuid).limit(limit + 1)).all()
    return _page(rows, limit, Template.from_row)


def template_categories(conn: Connection) -> list[str]:
    return list(
        conn.execute(
            select(gt.c.category)
            .where(gt.c.is_deleted.is_(False))
            .distinct()
            .order_by(gt.c.category)
        ).scalars()
    )


@attrs.frozen(kw_only=True)
class InstanceFilter:
    template_code: str | None = None
    bstatus: str | None = None
    name: str | None = None
    properties: Mapping[str, Any] | None = None
    include_deleted: bool = False


def instance_page(
    conn: Connection, flt: InstanceFilter, *, after: int | None = None, limit: int = 50
) -> Page:
    """Newest first, ``uuid < after``: an index range scan however deep the page."""
    query = select(*action_sets.instance_columns())
    if flt.template_code:
        code = TemplateCode.parse(flt.template_code)
        query = query.where(
            gi.c.category == code.category, gi.c.type == code.type, gi.c.subtype == code.subtype
        )
        if not code.is_wildcard:
            query = query.where(gi.c.version == code.version)
    if flt.bstatus:
        query = query.where(gi.c.bstatus == flt.bstatus)
    if flt.name:
        escaped = flt.name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(gi.c.name.ilike(f"%{escaped}%", escape="\\"))
    if flt.properties:
        # the GIN index's own expression (json_addl -> 'properties'); the
        # subscript form json_addl['properties'] would scan the table
        query = query.where(
            _PROPERTIES.op("@>")(bindparam("contains", dict(flt.properties), type_=JSONB))
        )
    if not flt.include_deleted:
        query = query.where(gi.c.is_deleted.is_(False))
    if after is not None:
        query = query.where(gi.c.uuid < after)
    rows = conn.execute(query.order_by(gi.c.uuid.desc()).limit(limit + 1)).all()
    values = iter(action_sets.instances(conn, rows[:limit]))
    return _page(rows, limit, lambda _row: next(values))


# -- search ------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SearchResult:
    exact: str | None
    """The EUID of an object that matched exactly (the UI jumps there)."""
    instances: tuple[Instance, ...] = ()
    templates: tuple[Template, ...] = ()


def find_object_kind(conn: Connection, euid: str) -> str | None:
    """``template``, ``instance`` or ``lineage`` for an existing EUID (deleted too)."""
    if not euids.is_valid(euid):
        return None
    for kind, table in (("instance", gi), ("template", gt), ("lineage", gl)):
        if conn.execute(select(table.c.uuid).where(table.c.euid == euid)).first() is not None:
            return kind
    return None


def search(conn: Connection, q: str, limit: int = 50) -> SearchResult:
    """EUID exact, ``key=value`` property, template code, else name contains."""
    q = q.strip()
    if not q:
        return SearchResult(exact=None)
    candidate = q.upper()
    if euids.is_valid(candidate) and find_object_kind(conn, candidate):
        return SearchResult(exact=candidate)
    if "=" in q:
        key, _, value = q.partition("=")
        val: Any = value.strip()
        for conv in (int, float):
            try:
                val = conv(val)
                break
            except ValueError:
                continue
        page = instance_page(conn, InstanceFilter(properties={key.strip(): val}), limit=limit)
        return SearchResult(exact=None, instances=page.items)
    if q.count("/") >= 2:
        try:
            page = instance_page(conn, InstanceFilter(template_code=_as_code(q)), limit=limit)
        except ValueError:
            page = Page(items=(), next_after=None)
        templates = tuple(
            Template.from_row(r)
            for r in conn.execute(
                select(gt)
                .where(
                    func.concat(gt.c.category, "/", gt.c.type, "/", gt.c.subtype, "/").startswith(
                        q.rstrip("*")
                    ),
                    gt.c.is_deleted.is_(False),
                )
                .limit(limit)
            )
        )
        return SearchResult(exact=None, instances=page.items, templates=templates)
    page = instance_page(conn, InstanceFilter(name=q), limit=limit)
    return SearchResult(exact=None, instances=page.items)


def _as_code(q: str) -> str:
    parts = [p for p in q.split("/") if p]
    if len(parts) == 3:
        parts.append("*")
    return "/".join(parts) + "/"


# -- an object's neighbours ----------------------------------------------------------


@attrs.frozen(kw_only=True)
class Neighbour:
    instance: Instance
    edge: Lineage


def neighbours(
    conn: Connection, instance: Instance, direction: str, limit: int = 200
) -> tuple[list[Neighbour], bool]:
    """Live direct parents or children (``limit`` of them) and whether there are more."""
    near, far = (
        (gl.c.parent_instance_uuid, gl.c.child_instance_uuid)
        if direction == "children"
        else (gl.c.child_instance_uuid, gl.c.parent_instance_uuid)
    )
    edge_cols = [c.label(f"e_{c.name}") for c in gl.c]
    rows = conn.execute(
        select(*action_sets.instance_columns(), *edge_cols)
        .join(gl, and_(far == gi.c.uuid, gl.c.is_deleted.is_(False)))
        .where(near == instance.uuid, gi.c.is_deleted.is_(False))
        .order_by(gl.c.uuid)
        .limit(limit + 1)
    ).all()
    out = []
    for r in rows[:limit]:
        m = r._mapping
        edge = Lineage.from_row({c.name: m[f"e_{c.name}"] for c in gl.c})
        out.append(Neighbour(instance=action_sets.instance(conn, m), edge=edge))
    return out, len(rows) > limit


# -- capped graph ------------------------------------------------------------------

_CAPPED_WALK = text(
    """
    WITH RECURSIVE walk(uuid, depth) AS (
        SELECT CAST(:root AS bigint), 0
        UNION
        SELECT CASE WHEN e.parent_instance_uuid = w.uuid THEN e.child_instance_uuid
                    ELSE e.parent_instance_uuid END,
               w.depth + 1
          FROM walk w
          JOIN generic_instance_lineage e
            ON (e.parent_instance_uuid = w.uuid OR e.child_instance_uuid = w.uuid)
           AND NOT e.is_deleted
         WHERE w.depth < CAST(:depth AS int)
    )
    SELECT uuid FROM walk LIMIT CAST(:scan AS int)
    """
)


_GRAPH_NODE_COLUMNS = (
    gi.c.uuid,
    gi.c.euid,
    gi.c.name,
    gi.c.category,
    gi.c.type,
    gi.c.subtype,
    gi.c.version,
    gi.c.bstatus,
    _PROPERTIES.label("properties"),
)
_GRAPH_EDGE_COLUMNS = (
    gl.c.uuid,
    gl.c.euid,
    gl.c.parent_instance_uuid,
    gl.c.child_instance_uuid,
    gl.c.relationship_type,
)


def _ids(uuids: Iterable[int], name: str = "ids") -> BindParameter[Any]:
    """One array parameter (``= ANY(:ids)``): the statement text stays the same
    whatever the number of nodes, unlike an expanded IN list."""
    return bindparam(name, list(uuids), type_=ARRAY(BigInteger))


def capped_graph(conn: Connection, root: Instance, depth: int, cap: int) -> dict[str, Any]:
    """The live neighbourhood within ``depth`` steps (both directions), at most
    ``cap`` nodes, as Cytoscape elements; ``more_not_shown`` counts live edges
    from shown nodes to nodes left out."""
    scan = conn.execute(
        _CAPPED_WALK, {"root": root.uuid, "depth": depth, "scan": cap * 4}
    ).scalars()
    ids: list[int] = []
    seen: set[int] = set()
    for uuid in scan:
        if uuid not in seen:
            seen.add(uuid)
            ids.append(uuid)
        if len(ids) >= cap:
            break
    # only the columns the graph draws: whole json_addl (materialised actions,
    # kilobytes a node) and IN lists of hundreds of parameters were most of the
    # time of a depth-3 plate graph (scripts/bench_ui.py)
    nodes = conn.execute(
        select(*_GRAPH_NODE_COLUMNS)
        .where(gi.c.uuid == any_(_ids(ids)), gi.c.is_deleted.is_(False))
        .order_by(gi.c.uuid)
    ).all()
    live = {n.uuid for n in nodes}
    live.add(root.uuid)
    edges = conn.execute(
        select(*_GRAPH_EDGE_COLUMNS)
        .where(
            gl.c.parent_instance_uuid == any_(_ids(live, "parents")),
            gl.c.child_instance_uuid == any_(_ids(live, "children")),
            gl.c.is_deleted.is_(False),
        )
        .order_by(gl.c.uuid)
        .limit(cap * 8)
    ).all()
    degree = _live_degrees(conn, live)
    shown_degree: dict[int, int] = {}
    for e in edges:
        shown_degree[e.parent_instance_uuid] = shown_degree.get(e.parent_instance_uuid, 0) + 1
        shown_degree[e.child_instance_uuid] = shown_degree.get(e.child_instance_uuid, 0) + 1
    by_uuid = {n.uuid: n for n in nodes}
    out_nodes = []
    hidden_total = 0
    for n in nodes:
        hidden = max(0, degree.get(n.uuid, 0) - shown_degree.get(n.uuid, 0))
        hidden_total += hidden
        cell = grid_cell(n.properties if isinstance(n.properties, dict) else {})
        out_nodes.append(
            {
                "data": {
                    "id": n.euid,
                    "label": n.name,
                    "category": n.category,
                    "template": f"{n.category}/{n.type}/{n.subtype}/{n.version}/",
                    "status": n.bstatus,
                    "color": colour(n.category),
                    "hidden": hidden,
                    "row": cell[0] if cell else None,
                    "col": cell[1] if cell else None,
                    "root": n.uuid == root.uuid,
                }
            }
        )
    out_edges = [
        {
            "data": {
                "id": e.euid,
                "source": by_uuid[e.parent_instance_uuid].euid,
                "target": by_uuid[e.child_instance_uuid].euid,
                "label": e.relationship_type,
            }
        }
        for e in edges
        if e.parent_instance_uuid in by_uuid and e.child_instance_uuid in by_uuid
    ]
    return {
        "start": root.euid,
        "depth": depth,
        "cap": cap,
        "truncated": hidden_total > 0,
        "more_not_shown": hidden_total,
        "legend": {n.category: colour(n.category) for n in nodes},
        "elements": {"nodes": out_nodes, "edges": out_edges},
    }


def _live_degrees(conn: Connection, uuids: set[int]) -> dict[int, int]:
    """Live edges touching each node whose other end is live (two index scans)."""
    degree: dict[int, int] = {}
    ids = list(uuids)
    for near, far in (
        (gl.c.parent_instance_uuid, gl.c.child_instance_uuid),
        (gl.c.child_instance_uuid, gl.c.parent_instance_uuid),
    ):
        rows = conn.execute(
            select(near, func.count())
            .select_from(gl.join(gi, gi.c.uuid == far))
            .where(near == any_(_ids(ids)), gl.c.is_deleted.is_(False), gi.c.is_deleted.is_(False))
            .group_by(near)
        )
        for uuid, count in rows:
            degree[uuid] = degree.get(uuid, 0) + int(count)
    return degree
