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

from tapdb_core.errors import TapdbError

__all__ = [
    "TAPDB_TABLES",
    "Dependent",
    "DependentObjectsError",
    "describe",
    "drop_external_dependents",
    "external_dependents",
    "refuse_dependents",
]

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
    SELECT e.classid::regclass::text AS catalog, e.objid, e.objsubid,
           (pg_identify_object(e.classid, e.objid, e.objsubid)).type AS kind,
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
     ORDER BY kind, name
    """
)

# The statement that drops one reported object, built by the server (format()
# quotes every name); NULL once it is gone (a CASCADE took it with another).
_DROP_STATEMENT: Final = text(
    r"""
    SELECT CASE CAST(:catalog AS text)
        WHEN 'pg_class' THEN (
            SELECT CASE
                   WHEN CAST(:objsubid AS int) <> 0 THEN
                       (SELECT format('ALTER TABLE %s DROP COLUMN %I CASCADE', c.oid::regclass, a.attname)
                          FROM pg_attribute a
                         WHERE a.attrelid = c.oid AND a.attnum = CAST(:objsubid AS int)
                           AND NOT a.attisdropped)
                   WHEN c.relkind = 'v' THEN format('DROP VIEW %s CASCADE', c.oid::regclass)
                   WHEN c.relkind = 'm' THEN format('DROP MATERIALIZED VIEW %s CASCADE', c.oid::regclass)
                   WHEN c.relkind IN ('i', 'I') THEN format('DROP INDEX %s CASCADE', c.oid::regclass)
                   WHEN c.relkind = 'S' THEN format('DROP SEQUENCE %s CASCADE', c.oid::regclass)
                   WHEN c.relkind = 'c' THEN format('DROP TYPE %s CASCADE', c.reltype::regtype)
                   ELSE format('DROP TABLE %s CASCADE', c.oid::regclass) END
              FROM pg_class c WHERE c.oid = CAST(:objid AS oid))
        WHEN 'pg_constraint' THEN (
            SELECT CASE WHEN c.conrelid <> 0
                        THEN format('ALTER TABLE %s DROP CONSTRAINT %I CASCADE', c.conrelid::regclass, c.conname)
                        ELSE format('ALTER DOMAIN %s DROP CONSTRAINT %I CASCADE', c.contypid::regtype, c.conname) END
              FROM pg_constraint c WHERE c.oid = CAST(:objid AS oid))
        WHEN 'pg_attrdef' THEN (
            SELECT format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', d.adrelid::regclass, a.attname)
              FROM pg_attrdef d
              JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
             WHERE d.oid = CAST(:objid AS oid))
        WHEN 'pg_proc' THEN (
            SELECT format('DROP %s %s CASCADE',
                          CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE'
                                         ELSE 'FUNCTION' END,
                          p.oid::regprocedure)
              FROM pg_proc p WHERE p.oid = CAST(:objid AS oid))
        WHEN 'pg_trigger' THEN (
            SELECT format('DROP TRIGGER %I ON %s CASCADE', t.tgname, t.tgrelid::regclass)
              FROM pg_trigger t WHERE t.oid = CAST(:objid AS oid))
        WHEN 'pg_type' THEN (
            SELECT format('DROP TYPE %s CASCADE', t.oid::regtype)
              FROM pg_type t WHERE t.oid = CAST(:objid AS oid))
        WHEN 'pg_policy' THEN (
            SELECT format('DROP POLICY %I ON %s', p.polname, p.polrelid::regclass)
              FROM pg_policy p WHERE p.oid = CAST(:objid AS oid))
        WHEN 'pg_rewrite' THEN (
            SELECT format('DROP RULE %I ON %s CASCADE', r.rulename, r.ev_class::regclass)
              FROM pg_rewrite r WHERE r.oid = CAST(:objid AS oid))
        END
    """
)


class DependentObjectsError(TapdbError):
    """Application objects depend on tapdb's objects; dropping tapdb would drop them too."""

    exit_code = 2

    def __init__(self, message: str, dependents: Sequence[Dependent]) -> None:
        self.dependents: tuple[Dependent, ...] = tuple(dependents)
        super().__init__(f"{message}:\n{describe(self.dependents)}")


@attrs.frozen(kw_only=True)
class Dependent:
    """An object tapdb did not create that would be dropped with tapdb's objects."""

    kind: str
    """What PostgreSQL calls it: ``view``, ``table constraint``, ``function``, ``table column``..."""
    name: str
    """Its schema-qualified identity, e.g. ``public.app_view`` or ``fk_x on public.app_table``."""
    depends_on: str
    """The object(s) it depends on, as PostgreSQL describes them (``table generic_instance``)."""
    catalog: str = attrs.field(default="", repr=False, eq=False)
    objid: int = attrs.field(default=0, repr=False, eq=False)
    objsubid: int = attrs.field(default=0, repr=False, eq=False)
    """Where the catalogs keep it (``pg_class`` and the oid), to drop it."""

    def __str__(self) -> str:
        return f"{self.kind} {self.name} (depends on {self.depends_on})"


def external_dependents(conn: Connection) -> list[Dependent]:
    """Objects outside tapdb that depend on tapdb's objects in the current schema.

    Read-only, one catalog query; an empty list when there are none, or when
    the schema holds no tapdb objects at all.
    """
    rows = conn.execute(_EXTERNAL_DEPENDENTS, {"tables": list(TAPDB_TABLES)}).all()
    return [
        Dependent(
            kind=str(r.kind),
            name=str(r.name),
            depends_on=str(r.depends_on or "?"),
            catalog=str(r.catalog),
            objid=int(r.objid),
            objsubid=int(r.objsubid),
        )
        for r in rows
    ]


def refuse_dependents(conn: Connection, action: str, override: str) -> None:
    """Raise :class:`DependentObjectsError` when :func:`external_dependents` finds any.

    ``action`` says what would drop them (``"restore --clean"``), ``override``
    how to go ahead anyway (``"--drop-dependents"``).
    """
    found = external_dependents(conn)
    if found:
        raise DependentObjectsError(
            f"refusing to {action}: {len(found)} object(s) that tapdb did not create depend on "
            f"tapdb's tables, types or functions and would be dropped with them; drop or move "
            f"them first, or pass {override} to drop them too",
            found,
        )


def drop_external_dependents(conn: Connection) -> list[Dependent]:
    """Drop every object :func:`external_dependents` finds, in the caller's transaction.

    Needed before tapdb's own drops: its migrations drop functions without
    CASCADE, so an application's default or CHECK calling one would stop them.
    Returns what was found (objects a CASCADE took along are not listed apart).
    """
    found = external_dependents(conn)
    driver = conn.connection.driver_connection
    for dependent in found:
        statement = conn.execute(
            _DROP_STATEMENT,
            {
                "catalog": dependent.catalog,
                "objid": dependent.objid,
                "objsubid": dependent.objsubid,
            },
        ).scalar_one_or_none()
        if statement is None:  # gone with an earlier CASCADE, or a kind we cannot drop
            continue
        # built and quoted by the server; run as is (no placeholder processing)
        assert driver is not None
        driver.execute(statement)
    left = external_dependents(conn)
    if left:
        raise DependentObjectsError("could not drop these application objects", left)
    return found


def describe(dependents: Sequence[Dependent]) -> str:
    """One line per object, for error messages (empty string for none)."""
    return "\n".join(f"  {d}" for d in dependents)
