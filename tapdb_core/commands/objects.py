"""Instances, their audit trail and the lineage graph."""

from __future__ import annotations

import attrs

from tapdb_core import audit, instances, lineage
from tapdb_core.commands._session import session
from tapdb_core.commands._target import Target
from tapdb_core.errors import UsageError
from tapdb_core.values import AuditEntry, Instance


@attrs.frozen(kw_only=True)
class ObjectView:
    """An instance with its parents and children."""

    instance: Instance
    parents: tuple[lineage.Related, ...]
    children: tuple[lineage.Related, ...]


def show_object(target: Target, euid: str, *, include_deleted: bool = False) -> ObjectView:
    with session(target) as s, s.begin() as conn:
        inst = instances.get(conn, euid, include_deleted=include_deleted)
        return ObjectView(
            instance=inst,
            parents=tuple(lineage.parents(conn, inst, include_deleted=include_deleted)),
            children=tuple(lineage.children(conn, inst, include_deleted=include_deleted)),
        )


def object_history(target: Target, euid: str, *, limit: int | None = None) -> list[AuditEntry]:
    """The audit trail of any object, oldest first (``limit``: at most that many)."""
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1")
    with session(target) as s, s.begin() as conn:
        return audit.history(conn, euid, limit=limit)


def lineage_graph(target: Target, euid: str, *, depth: int = 2) -> lineage.Graph:
    """The neighbourhood of an instance, ``depth`` steps up and down."""
    if depth < 1:
        raise UsageError("--depth must be at least 1")
    with session(target) as s, s.begin() as conn:
        return lineage.graph(conn, euid, depth=depth)
