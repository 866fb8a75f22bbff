"""Application objects that depend on tapdb's objects (and would go with them).

Dropping tapdb's tables, sequences or functions with CASCADE (``restore
--clean``, ``tapdb db schema reset``, ``alembic downgrade base``) also drops
whatever an application built on them: a view over ``generic_instance``, a
foreign key from an application table, a function whose signature uses a
tapdb table's row type, a column of such a type, a column default calling a
``tapdb_*`` function, a trigger the application put on a tapdb table. Those
commands call :func:`external_dependents` first and refuse while it finds
anything, unless told to drop them.

What is tapdb's (in the current schema): the tables ``generic_template``,
``generic_instance``, ``generic_instance_lineage``, ``audit_log``,
``tapdb_user``, ``tapdb_identity_prefix_config``, ``alembic_version`` and any
relation named ``tapdb_*`` (the ``tapdb_euid_seq_*`` sequences among them),
their row types, every function named ``tapdb_*``, and the parts PostgreSQL
drops with them anyway (indexes, constraints, triggers, rules, defaults,
identity sequences, array types). Everything else that a ``DROP ... CASCADE``
of those would reach is reported, collapsed to what an application author
would name (the view, not its rewrite rule; the table's foreign key, not its
internal triggers). Not reported: indexes and policies an application added
to a tapdb table (PostgreSQL records them exactly like tapdb's own).

The module imports nothing but SQLAlchemy and attrs and runs one catalog
query, so ``alembic/env.py`` may call it on every downgrade.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import attrs
from sqlalchemy import Connection, text

__all__ = ["TAPDB_TABLES", "Dependent", "describe", "external_dependents"]

#: tapdb's tables by name (besides any relation named ``tapdb_*``)
TAPDB_TABLES: Final = (
    "generic_template",
    "generic_instance",
    "generic_instance_lineage",
    "audit_log",
    "tapdb_user",
    "tapdb_identity_prefix_config",
    "alembic_version",
)

# pg_depend, walked from tapdb's objects to everything a DROP ... CASCADE of
# them would reach: down every normal/auto/internal dependency, and up every
# internal one (dropping a view's rewrite rule drops the view). "owned" is
# tapdb's objects plus their auto/internal parts. A reached object is reported
# unless tapdb owns it (an application's trigger on a tapdb table excepted) or
# it is a part of another reported object (a view's rule, row type, columns).
_EXTERNAL_DEPENDENTS: Final = text(
    r"""
    WITH RECURSIVE
    tapdb_rel AS (
        SELECT c.oid, c.reltype
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema()
           AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
           AND (c.relname = ANY (CAST(:tables AS text[])) OR c.relname LIKE 'tapdb\_%')
    ),
    roots (classid, objid) AS (
        SELECT 'pg_class'::regclass::oid, oid FROM tapdb_rel
        UNION
        SELECT 'pg_type'::regclass::oid, reltype FROM tapdb_rel WHERE reltype <> 0
        UNION
        SELECT 'pg_proc'::regclass::oid, p.oid
          FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = current_schema() AND p.proname LIKE 'tapdb\_%'
    ),
    owned (classid, objid) AS (
        SELECT classid, objid FROM roots
        UNION
        SELECT d.classid, d.objid
          FROM owned o
          JOIN pg_depend d ON d.refclassid = o.classid AND d.refobjid = o.objid
         WHERE d.deptype IN ('a', 'i')
    ),
    reached (classid, objid, objsubid, via_class, via_obj, via_sub) AS (
        SELECT classid, objid, 0, CAST(NULL AS oid), CAST(NULL AS oid), 0 FROM roots
        UNION
        SELECT step.*
          FROM reached x
          CROSS JOIN LATERAL (
                SELECT d.classid, d.objid, d.objsubid, x.classid, x.objid, x.objsubid
                  FROM pg_depend d
                 WHERE d.refclassid = x.classid AND d.refobjid = x.objid
                   AND (x.objsubid = 0 OR d.refobjsubid = x.objsubid)
                   AND d.deptype IN ('n', 'a', 'i')
                UNION ALL
                SELECT d.refclassid, d.refobjid, d.refobjsubid, x.via_class, x.via_obj, x.via_sub
                  FROM pg_depend d
                 WHERE d.classid = x.classid AND d.objid = x.objid
                   AND d.objsubid = x.objsubid AND d.deptype = 'i'
          ) step
    ),
    app_triggers (classid, objid) AS (
        SELECT 'pg_trigger'::regclass::oid, t.oid
          FROM pg_trigger t
          JOIN tapdb_rel r ON r.oid = t.tgrelid
         WHERE NOT t.tgisinternal AND t.tgname NOT LIKE 'tapdb\_%'
    ),
    external AS (
        SELECT x.* FROM reached x
         WHERE x.via_class IS NOT NULL
           AND (NOT EXISTS (SELECT 1 FROM owned o
                             WHERE o.classid = x.classid AND o.objid = x.objid)
                OR EXISTS (SELECT 1 FROM app_triggers a
                            WHERE a.classid = x.classid AND a.objid = x.objid))
    )
    SELECT (pg_identify_object(e.classid, e.objid, e.objsubid)).type AS kind,
           (pg_identify_object(e.classid, e.objid, e.objsubid)).identity AS name,
           string_agg(DISTINCT pg_describe_object(e.via_class, e.via_obj, e.via_sub), ', ')
               FILTER (WHERE NOT (e.via_class = e.classid AND e.via_obj = e.objid)
                       AND NOT EXISTS (
                           SELECT 1 FROM pg_depend p
                            WHERE p.classid = e.via_class AND p.objid = e.via_obj
                              AND p.refclassid = e.classid AND p.refobjid = e.objid
                              AND p.deptype IN ('a', 'i'))) AS depends_on
      FROM external e
     WHERE NOT (e.objsubid <> 0 AND EXISTS (
                SELECT 1 FROM external w
                 WHERE w.classid = e.classid AND w.objid = e.objid AND w.objsubid = 0))
       AND NOT EXISTS (
                SELECT 1 FROM pg_depend d
                  JOIN external w ON w.classid = d.refclassid AND w.objid = d.refobjid
                       AND (w.objsubid = 0 OR w.objsubid = d.refobjsubid)
                 WHERE d.classid = e.classid AND d.objid = e.objid AND d.objsubid = e.objsubid
                   AND d.deptype IN ('a', 'i'))
     GROUP BY e.classid, e.objid, e.objsubid
     ORDER BY 1, 2
    """
)


@attrs.frozen(kw_only=True)
class Dependent:
    """An object tapdb did not create that would be dropped with tapdb's objects."""

    kind: str
    """What PostgreSQL calls it: ``view``, ``table constraint``, ``function``, ``table column``..."""
    name: str
    """Its schema-qualified identity, e.g. ``public.app_view`` or ``fk_x on public.app_table``."""
    depends_on: str
    """The object(s) it depends on, as PostgreSQL describes them (``table generic_instance``)."""

    def __str__(self) -> str:
        return f"{self.kind} {self.name} (depends on {self.depends_on})"


def external_dependents(conn: Connection) -> list[Dependent]:
    """Objects outside tapdb that depend on tapdb's objects in the current schema.

    Read-only, one catalog query; an empty list when there are none, or when
    the schema holds no tapdb objects at all.
    """
    rows = conn.execute(_EXTERNAL_DEPENDENTS, {"tables": list(TAPDB_TABLES)}).all()
    return [
        Dependent(kind=str(r.kind), name=str(r.name), depends_on=str(r.depends_on or "?"))
        for r in rows
    ]


def describe(dependents: Sequence[Dependent]) -> str:
    """One line per object, for error messages (empty string for none)."""
    return "\n".join(f"  {d}" for d in dependents)
