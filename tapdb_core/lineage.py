"""Lineage: link and unlink instances, walk the DAG, export a neighbourhood as a graph.

Walks are recursive CTEs whose recursive step is a LATERAL index probe (see
docs/schema.md for why); deleted edges are never followed. Soft-deleted
instances are neither returned nor walked through unless ``include_deleted=True``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs
from sqlalchemy import Connection, select, text
from sqlalchemy import delete as sa_delete

from tapdb_core import action_sets, graph_layout
from tapdb_core import euid as euids
from tapdb_core.dberrors import translated
from tapdb_core.errors import InstanceNotFoundError, NotFoundError, ValidationError, Violation
from tapdb_core.inputcheck import (
    check_int,
    check_object,
    check_optional_text,
    check_text,
    check_text_list,
)
from tapdb_core.instances import get as get_instance
from tapdb_core.tables import generic_instance as gi
from tapdb_core.tables import generic_instance_lineage as gl
from tapdb_core.values import Instance, Lineage

Direction = Literal["descendants", "ancestors"]


@attrs.frozen(kw_only=True)
class Related:
    """An instance reached by a walk, with how far it is and the edge that reached it."""

    instance: Instance
    depth: int
    relationship_type: str
    via_euid: str
    """EUID of the edge that reached it at that depth."""


def _instance(conn: Connection, value: Instance | str, include_deleted: bool = False) -> Instance:
    if isinstance(value, Instance):
        return value
    return get_instance(conn, value, include_deleted=include_deleted)


def link(
    conn: Connection,
    parent: Instance | str,
    child: Instance | str,
    relationship_type: str = "generic",
    json_addl: Mapping[str, Any] | None = None,
) -> Lineage:
    """Add the edge parent -> child. Cycles and self-loops raise :class:`CycleError`,
    a duplicate live edge :class:`ConflictError`."""
    if not isinstance(relationship_type, str) or not relationship_type.strip():
        raise ValidationError(
            "relationship_type must be a non-empty string",
            [Violation(path="/relationship_type", message=repr(relationship_type))],
        )
    check_text("/relationship_type", relationship_type)
    check_object("/json_addl", json_addl)
    for end in (parent, child):
        if isinstance(end, str):
            euids.parse(end)  # a malformed EUID is bad input, not "not found"
    parent_ref = parent.euid if isinstance(parent, Instance) else parent
    child_ref = child.euid if isinstance(child, Instance) else child
    # One round trip: both ends are looked up by EUID inside the INSERT.
    with translated():
        row = conn.execute(
            _LINK,
            {
                "parent": parent_ref,
                "child": child_ref,
                "relationship_type": relationship_type,
                "json_addl": json.dumps(dict(json_addl or {})),
            },
        ).one_or_none()
    if row is None:
        missing = [
            ref
            for ref in (parent_ref, child_ref)
            if conn.execute(
                select(gi.c.uuid).where(gi.c.euid == ref, gi.c.is_deleted.is_(False))
            ).first()
            is None
        ]
        raise InstanceNotFoundError(f"instance {' and '.join(missing) or parent_ref} not found")
    return Lineage.from_row(row)


_LINK = text(
    """
    INSERT INTO generic_instance_lineage (parent_instance_uuid, child_instance_uuid, relationship_type,
                                          name, parent_type, child_type, json_addl)
    SELECT p.uuid, c.uuid, :relationship_type, p.euid || '->' || c.euid,
           p.polymorphic_discriminator, c.polymorphic_discriminator, CAST(:json_addl AS jsonb)
      FROM generic_instance p, generic_instance c
     WHERE p.euid = :parent AND NOT p.is_deleted AND c.euid = :child AND NOT c.is_deleted
    RETURNING *
    """
)


def get_lineage(conn: Connection, euid: str) -> Lineage:
    check_text("/euid", euid)
    row = conn.execute(
        select(gl).where(gl.c.euid == euid, gl.c.is_deleted.is_(False))
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"lineage edge {euid} not found")
    return Lineage.from_row(row)


def unlink(
    conn: Connection,
    parent: Instance | str | None = None,
    child: Instance | str | None = None,
    relationship_type: str | None = None,
    *,
    euid: str | None = None,
) -> list[str]:
    """Soft-delete an edge by its EUID, or the live edges parent -> child (of one
    relationship type, or all). Returns the EUIDs of the edges deleted."""
    check_optional_text("/euid", euid)
    check_optional_text("/relationship_type", relationship_type)
    query = select(gl.c.uuid, gl.c.euid).where(gl.c.is_deleted.is_(False))
    if euid is not None:
        query = query.where(gl.c.euid == euid)
    elif parent is not None and child is not None:
        p, c = _instance(conn, parent), _instance(conn, child)
        query = query.where(gl.c.parent_instance_uuid == p.uuid, gl.c.child_instance_uuid == c.uuid)
        if relationship_type is not None:
            query = query.where(gl.c.relationship_type == relationship_type)
    else:
        raise ValidationError("unlink needs an edge EUID or both parent and child")
    found = conn.execute(query).all()
    if not found:
        raise NotFoundError("no live edge matches")
    # DELETE becomes a soft delete with the old record audited (database trigger)
    conn.execute(sa_delete(gl).where(gl.c.uuid.in_([r.uuid for r in found])))
    return sorted(r.euid for r in found)


_WALK = {
    "descendants": ("parent_instance_uuid", "child_instance_uuid"),
    "ancestors": ("child_instance_uuid", "parent_instance_uuid"),
}


@functools.cache
def _walk_sql(direction: Direction, include_deleted: bool) -> str:
    near, far = _WALK[direction]
    # Identifiers come from the fixed mapping above, never from input. The
    # recursion carries only (uuid, depth) under UNION, so a node reached by
    # several paths of the same length is expanded once; the edge that reached
    # it is picked afterwards from the level above. A deleted node is dropped
    # in the recursive step itself, so nothing beyond it is reached through it.
    live_far = (
        ""
        if include_deleted
        else f"""
                   AND NOT EXISTS (SELECT 1 FROM generic_instance g
                                    WHERE g.uuid = e.{far} AND g.is_deleted)"""
    )
    live_node = "" if include_deleted else "WHERE NOT i.is_deleted"
    return f"""
    WITH RECURSIVE walk(uuid, depth) AS (
        SELECT CAST(:root AS bigint), 0
        UNION
        SELECT n.{far}, w.depth + 1
          FROM walk w
          CROSS JOIN LATERAL (
                SELECT e.{far} FROM generic_instance_lineage e
                 WHERE e.{near} = w.uuid AND NOT e.is_deleted
                   AND (CAST(:types AS text[]) IS NULL OR e.relationship_type = ANY (CAST(:types AS text[]))){live_far}
                OFFSET 0) n
         WHERE CAST(:max_depth AS int) IS NULL OR w.depth < CAST(:max_depth AS int)
    ),
    firsts AS (
        SELECT uuid, min(depth) AS depth FROM walk GROUP BY uuid
    ),
    via AS (
        -- OFFSET 0 fences the edge join: without it the planner, blind to the
        -- CTE sizes, joins the two "firsts" on depth first (a near-cross product).
        SELECT DISTINCT ON (fe.uuid) fe.uuid, fe.depth, fe.relationship_type, fe.euid
          FROM (SELECT f.uuid, f.depth, e.uuid AS edge_uuid, e.relationship_type, e.euid,
                       e.{near} AS up_uuid
                  FROM firsts f
                  JOIN generic_instance_lineage e ON e.{far} = f.uuid AND NOT e.is_deleted
                 WHERE f.depth > 0
                   AND (CAST(:types AS text[]) IS NULL
                        OR e.relationship_type = ANY (CAST(:types AS text[])))
                OFFSET 0) fe
          JOIN firsts up ON up.uuid = fe.up_uuid AND up.depth = fe.depth - 1
         ORDER BY fe.uuid, fe.edge_uuid
    )
    SELECT {action_sets.instance_sql_columns("i")}, v.depth AS walk_depth, v.relationship_type AS walk_relationship_type,
           v.euid AS walk_via
      FROM via v
      JOIN generic_instance i ON i.uuid = v.uuid
     {live_node}
     ORDER BY v.depth, i.uuid
    """


def _walk(
    conn: Connection,
    start: Instance | str,
    direction: Direction,
    max_depth: int | None,
    relationship_types: Sequence[str] | None,
    include_deleted: bool,
) -> list[Related]:
    check_int("/max_depth", max_depth, minimum=1, optional=True)
    check_text_list("/relationship_types", relationship_types)
    root = _instance(conn, start, include_deleted)
    with action_sets.collector_paused():
        rows = conn.execute(
            text(_walk_sql(direction, include_deleted)),
            {
                "root": root.uuid,
                "types": list(relationship_types) if relationship_types else None,
                "max_depth": max_depth,
            },
        ).all()
        return [
            Related(
                instance=value,
                depth=r.walk_depth,
                relationship_type=r.walk_relationship_type,
                via_euid=r.walk_via,
            )
            for r, value in zip(rows, action_sets.instances(conn, rows), strict=True)
        ]


def descendants(
    conn: Connection,
    start: Instance | str,
    *,
    max_depth: int | None = None,
    relationship_types: Sequence[str] | None = None,
    include_deleted: bool = False,
) -> list[Related]:
    """Everything below ``start`` (each once, at its shortest depth), nearest first.

    Soft-deleted instances are left out and not walked through unless
    ``include_deleted``; ``start`` itself is where the walk begins either way.
    """
    return _walk(conn, start, "descendants", max_depth, relationship_types, include_deleted)


def ancestors(
    conn: Connection,
    start: Instance | str,
    *,
    max_depth: int | None = None,
    relationship_types: Sequence[str] | None = None,
    include_deleted: bool = False,
) -> list[Related]:
    """Everything above ``start`` (each once, at its shortest depth), nearest first.

    Soft-deleted instances are left out and not walked through unless
    ``include_deleted``; ``start`` itself is where the walk begins either way.
    """
    return _walk(conn, start, "ancestors", max_depth, relationship_types, include_deleted)


def children(
    conn: Connection,
    parent: Instance | str,
    relationship_type: str | None = None,
    *,
    include_deleted: bool = False,
) -> list[Related]:
    return descendants(
        conn,
        parent,
        max_depth=1,
        relationship_types=[relationship_type] if relationship_type else None,
        include_deleted=include_deleted,
    )


def parents(
    conn: Connection,
    child: Instance | str,
    relationship_type: str | None = None,
    *,
    include_deleted: bool = False,
) -> list[Related]:
    return ancestors(
        conn,
        child,
        max_depth=1,
        relationship_types=[relationship_type] if relationship_type else None,
        include_deleted=include_deleted,
    )


def path(
    conn: Connection,
    source: Instance | str,
    target: Instance | str,
    *,
    max_length: int = 50,
    include_deleted: bool = False,
) -> list[Instance]:
    """A shortest downward path source -> ... -> target (both included), [] if none.

    Breadth-first, one set-based query per level, each node visited once. Unless
    ``include_deleted``, the path never contains a soft-deleted instance.
    """
    check_int("/max_length", max_length, minimum=0)
    a = _instance(conn, source, include_deleted)
    b = _instance(conn, target, include_deleted)
    if not include_deleted and (a.is_deleted or b.is_deleted):
        return []
    came_from: dict[int, int] = {a.uuid: a.uuid}
    frontier = [a.uuid]
    for _ in range(max_length):
        if not frontier or b.uuid in came_from:
            break
        step = select(gl.c.parent_instance_uuid, gl.c.child_instance_uuid).where(
            gl.c.parent_instance_uuid.in_(frontier), gl.c.is_deleted.is_(False)
        )
        if not include_deleted:
            step = step.join(gi, gi.c.uuid == gl.c.child_instance_uuid).where(
                gi.c.is_deleted.is_(False)
            )
        rows = conn.execute(step).all()
        frontier = []
        for parent_uuid, child_uuid in rows:
            if child_uuid not in came_from:
                came_from[child_uuid] = parent_uuid
                frontier.append(child_uuid)
    if b.uuid not in came_from:
        return []
    chain = [b.uuid]
    while chain[-1] != a.uuid:
        chain.append(came_from[chain[-1]])
    chain.reverse()
    found = {
        value.uuid: value
        for value in action_sets.instances(
            conn, conn.execute(select(*action_sets.instance_columns()).where(gi.c.uuid.in_(chain)))
        )
    }
    # the ends may be Instance objects read before they were deleted
    if not include_deleted and any(i.is_deleted for i in found.values()):
        return []
    return [found[u] for u in chain]


@attrs.frozen(kw_only=True)
class Graph:
    """A neighbourhood of the lineage DAG."""

    nodes: tuple[Instance, ...]
    edges: tuple[Lineage, ...]

    def to_cytoscape(self) -> dict[str, list[dict[str, Any]]]:
        """Cytoscape.js elements: ``{"nodes": [{"data": ...}], "edges": [{"data": ...}]}``."""
        by_uuid = {n.uuid: n for n in self.nodes}
        return {
            "nodes": [
                {
                    "data": {
                        "id": n.euid,
                        "label": n.name,
                        "type": n.polymorphic_discriminator,
                        "template": n.template_code,
                        "status": n.bstatus,
                    }
                }
                for n in self.nodes
            ],
            "edges": [
                {
                    "data": {
                        "id": e.euid,
                        "source": by_uuid[e.parent_instance_uuid].euid,
                        "target": by_uuid[e.child_instance_uuid].euid,
                        "label": e.relationship_type,
                    }
                }
                for e in self.edges
            ],
        }

    def layout(self, center: str | None = None) -> graph_layout.Layout:
        """Positions for a picture: wells in their plate grid, wide fan-outs wrapped
        (see :mod:`tapdb_core.graph_layout`); ``center`` (an EUID) is highlighted."""
        by_uuid = {n.uuid: n for n in self.nodes}
        return graph_layout.layout(
            [
                graph_layout.NodeIn(
                    key=n.euid,
                    name=n.name,
                    kind=f"{n.category}/{n.type}/{n.subtype}",
                    properties=n.properties,
                    deleted=n.is_deleted,
                )
                for n in self.nodes
            ],
            [
                graph_layout.EdgeIn(
                    parent=by_uuid[e.parent_instance_uuid].euid,
                    child=by_uuid[e.child_instance_uuid].euid,
                    relationship=e.relationship_type,
                )
                for e in self.edges
            ],
            center=center,
        )

    def to_dot(self, center: str | None = None) -> str:
        """Graphviz DOT with every node pinned to :meth:`layout` (strings escaped,
        so any name is safe); ``dot -Tsvg`` or ``-Tpng`` draws it as laid out."""
        return graph_layout.to_dot(self.layout(center))

    def to_svg(self, center: str | None = None) -> str:
        """An SVG picture, drawn without Graphviz."""
        return graph_layout.to_svg(self.layout(center))

    def to_png(self, center: str | None = None) -> bytes:
        """A PNG picture drawn by Graphviz; :class:`~tapdb_core.graph_layout.RendererUnavailableError`
        names what to install when ``dot`` is missing."""
        return graph_layout.render_png(self.layout(center))


def graph(
    conn: Connection, center: Instance | str, *, depth: int = 2, include_deleted: bool = False
) -> Graph:
    """The instances within ``depth`` steps above and below ``center``, and the live
    edges between them (soft-deleted instances only with ``include_deleted``)."""
    check_int("/depth", depth, minimum=1)
    root = _instance(conn, center, include_deleted)
    members = {root.uuid: root}
    for related in descendants(
        conn, root, max_depth=depth, include_deleted=include_deleted
    ) + ancestors(conn, root, max_depth=depth, include_deleted=include_deleted):
        members[related.instance.uuid] = related.instance
    ids = list(members)
    edges = [
        Lineage.from_row(r)
        for r in conn.execute(
            select(gl)
            .where(
                gl.c.parent_instance_uuid.in_(ids),
                gl.c.child_instance_uuid.in_(ids),
                gl.c.is_deleted.is_(False),
            )
            .order_by(gl.c.uuid)
        )
    ]
    return Graph(nodes=tuple(members[u] for u in sorted(members)), edges=tuple(edges))
