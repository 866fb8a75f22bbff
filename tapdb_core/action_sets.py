"""Action definitions stored once and referenced by instances (revision 0006).

An instance's ``json_addl`` as everybody sees it -- the library's
:class:`~tapdb_core.values.Instance`, the audit trail, ``tapdb object show``
-- still holds ``action_groups``. In the database, a new instance stores its
own keys (properties, ...) and ``action_set_digest``, the SHA-256 of the
canonical JSON of its ``action_groups``, which live once in the immutable
``tapdb_action_set``. The first change of its action state (an execution
counted) gives the instance its own copy (:mod:`tapdb_core.actions`).

This module splits documents for writing (:class:`Splitter`) and puts them
back together for reading (:func:`instance_columns`, :func:`effective_sql`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs
from sqlalchemy import ColumnElement, Table, case, func, select
from sqlalchemy.dialects.postgresql import JSONB

from tapdb_core.tables import action_set
from tapdb_core.tables import generic_instance as gi

__all__ = [
    "ACTION_GROUPS",
    "SetRow",
    "Splitter",
    "digest",
    "effective_json_addl",
    "effective_sql",
    "instance_columns",
]

ACTION_GROUPS: Final = "action_groups"

# Inserts a tree's distinct action sets in the statement that inserts the
# instances: the instances' foreign-key checks run at the end of that
# statement and see them. A set that exists already is left as it is (it is
# immutable, and equal by its digest).
INSERT_SETS_CTE: Final = """
    WITH tapdb_sets AS (
        INSERT INTO tapdb_action_set (digest, action_groups)
        SELECT s.digest, s.action_groups
          FROM jsonb_to_recordset(CAST(:sets AS jsonb)) AS s(digest text, action_groups jsonb)
        ON CONFLICT (digest) DO NOTHING
    )
"""


def digest(groups: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of an ``action_groups`` document."""
    canonical = json.dumps(
        groups, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@attrs.frozen
class SetRow:
    """One ``tapdb_action_set`` row to make sure of."""

    digest: str
    action_groups: Mapping[str, Any]


class Splitter:
    """Splits the ``json_addl`` of new instances into what a row stores and a set.

    Documents of one tree or batch mostly share one ``action_groups`` (every
    well of a plate): equal documents are recognised by equality, so each
    distinct one is serialised and hashed once.
    """

    def __init__(self) -> None:
        self._known: list[tuple[Mapping[str, Any], str]] = []

    def split(self, json_addl: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        """(``json_addl`` without ``action_groups``, its set's digest); the
        document unchanged and None when it has no non-empty ``action_groups``."""
        groups = json_addl.get(ACTION_GROUPS)
        if not isinstance(groups, Mapping) or not groups:
            return dict(json_addl), None
        own = {k: v for k, v in json_addl.items() if k != ACTION_GROUPS}
        for known, known_digest in self._known:
            if known is groups or known == groups:
                return own, known_digest
        found = digest(groups)
        self._known.append((groups, found))
        return own, found

    def sets(self) -> list[SetRow]:
        """Every distinct set met so far."""
        return [SetRow(d, g) for g, d in self._known]

    def sets_json(self) -> str:
        """:meth:`sets` as the JSON :data:`INSERT_SETS_CTE` reads."""
        return json.dumps([{"digest": d, "action_groups": g} for g, d in self._known])


def effective_json_addl(table: Table | Any = gi) -> ColumnElement[Any]:
    """The ``json_addl`` an instance row stands for, as a column expression of
    ``table`` (``generic_instance`` or an alias of it), labelled ``json_addl``."""
    groups = (
        select(action_set.c.action_groups)
        .where(action_set.c.digest == table.c.action_set_digest)
        .scalar_subquery()
    )
    merged = table.c.json_addl.op("||", return_type=JSONB)(
        func.jsonb_build_object(ACTION_GROUPS, groups)
    )
    return case((table.c.action_set_digest.is_(None), table.c.json_addl), else_=merged).label(
        "json_addl"
    )


def instance_columns(table: Table | Any = gi) -> Sequence[ColumnElement[Any]]:
    """The columns to read instances with: every column of ``table`` but the
    stored ``json_addl``/``action_set_digest``, plus the effective ``json_addl``."""
    plain = [c for c in table.c if c.name not in ("json_addl", "action_set_digest")]
    return [*plain, effective_json_addl(table)]


def effective_sql(alias: str) -> str:
    """SQL text of :func:`effective_json_addl` for hand-written queries over the
    ``generic_instance`` alias ``alias`` (a fixed identifier of the caller's, never input)."""
    if not alias.isidentifier():
        raise ValueError(f"not an SQL alias: {alias!r}")
    return (
        f"CASE WHEN {alias}.action_set_digest IS NULL THEN {alias}.json_addl"
        f" ELSE {alias}.json_addl || jsonb_build_object('action_groups',"
        f" (SELECT s.action_groups FROM tapdb_action_set s"
        f" WHERE s.digest = {alias}.action_set_digest)) END"
    )


def instance_sql_columns(alias: str) -> str:
    """SQL select-list of every instance column of ``alias``, ``json_addl`` effective."""
    plain = ", ".join(
        f"{alias}.{c.name}" for c in gi.c if c.name not in ("json_addl", "action_set_digest")
    )
    return f"{plain}, {effective_sql(alias)} AS json_addl"
