"""The Alembic-owned schema: apply, migrate, status, reset."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TextIO

import attrs
from sqlalchemy import Connection, Table, func, select, text

from tapdb_core import config as tconfig
from tapdb_core import euid as euids
from tapdb_core import migrate as migrations
from tapdb_core import tamper
from tapdb_core.commands._oplog import oplog
from tapdb_core.commands._session import session
from tapdb_core.commands._target import Target
from tapdb_core.db import require_known_revision
from tapdb_core.errors import DatabaseMissingError

Progress = Callable[[str], None]
Confirm = Callable[[str], None]

_IDENTITY_FIELDS = {
    "tapdb_user": "tapdb_user_euid_prefix",
    "audit_log": "audit_log_euid_prefix",
}


@attrs.frozen(kw_only=True)
class MigrateResult:
    database: str
    revision_before: str | None
    revision: str | None
    applied: tuple[str, ...]
    """Revisions applied, oldest first (empty: it was at head)."""
    identity_prefixes_set: tuple[str, ...] = ()
    """``entity=PREFIX`` for each configured identity prefix that was changed."""


@attrs.frozen(kw_only=True)
class PendingMigrations:
    database: str
    revision: str | None
    head: str
    pending: tuple[str, ...]


@attrs.frozen(kw_only=True)
class TriggerState:
    missing: tuple[str, ...]
    disabled: tuple[str, ...]


@attrs.frozen(kw_only=True)
class Integrity:
    compared: bool
    fingerprint_revision: str | None
    functions_checked: int
    triggers_checked: int


@attrs.frozen(kw_only=True)
class SchemaStatus:
    env: str
    database: str
    server: str
    head: str
    database_exists: bool
    revision: str | None
    tables: dict[str, dict[str, int]] | None = None
    """Row counts per table (None: no tapdb schema)."""
    triggers: dict[str, TriggerState] | None = None
    integrity: Integrity | None = None
    tampered: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    problem: str | None = None
    """Why the database could not be read (it is missing)."""

    @property
    def ok(self) -> bool:
        return not self.problems and not self.tampered


@attrs.frozen(kw_only=True)
class ResetResult:
    database: str
    reset: bool
    revision_before: str | None


# --------------------------------------------------------------------------- helpers


def identity_prefixes_of(cfg: tconfig.DatabaseConfig) -> dict[str, str]:
    """Configured identity prefixes (entity -> prefix), checked early."""
    found: dict[str, str] = {}
    for entity, field in _IDENTITY_FIELDS.items():
        value = cfg.get(field).strip().upper()
        if value:
            euids.check_prefix(value)
            found[entity] = value
    return found


def apply_identity_prefixes(conn: Connection, prefixes: Mapping[str, str]) -> list[str]:
    """Set configured identity prefixes that differ from the database's; returns changes."""
    changed: list[str] = []
    for entity, prefix in prefixes.items():
        current = conn.execute(
            text("SELECT euid_prefix FROM tapdb_identity_prefix_config WHERE entity = :entity"),
            {"entity": entity},
        ).scalar()
        if current != prefix:
            conn.execute(
                text("SELECT tapdb_set_identity_prefix(:entity, :prefix)"),
                {"entity": entity, "prefix": prefix},
            )
            changed.append(f"{entity}={prefix}")
    return changed


def pending_revisions(current: str | None) -> list[str]:
    from alembic.script import ScriptDirectory

    require_known_revision(current)  # else Alembic fails with a bare ResolutionError
    script = ScriptDirectory.from_config(migrations.alembic_config())
    revisions = script.iterate_revisions("heads", current or "base")
    return [r.revision for r in reversed(list(revisions))]


# --------------------------------------------------------------------------- commands


def migrate(
    target: Target,
    *,
    identity_prefixes: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> MigrateResult:
    """Apply pending migrations (and ``identity_prefixes``) in one transaction."""
    with session(target, need_schema=False) as s, s.begin() as conn:
        before = migrations.current_revision(conn)
        pending = pending_revisions(before)
        if pending:
            if progress:
                progress(f"migrating {before or 'empty database'} -> {pending[-1]}")
            migrations.upgrade(conn)
        changed = apply_identity_prefixes(conn, identity_prefixes or {})
        after = migrations.current_revision(conn)
    if pending or changed:
        oplog(target, "db schema migrate", f"{before} -> {after}")
    return MigrateResult(
        database=target.database,
        revision_before=before,
        revision=after,
        applied=tuple(pending),
        identity_prefixes_set=tuple(changed),
    )


def apply_schema(
    target: Target, cfg: tconfig.DatabaseConfig | None = None, *, progress: Progress | None = None
) -> MigrateResult:
    """Install the schema (migrate to head) and the identity prefixes ``cfg`` configures."""
    prefixes = identity_prefixes_of(cfg) if cfg is not None else {}
    return migrate(target, identity_prefixes=prefixes, progress=progress)


def pending_migrations(target: Target) -> PendingMigrations:
    """The revisions ``migrate`` would apply (nothing changes)."""
    with session(target, need_schema=False) as s, s.connect() as conn:
        current = migrations.current_revision(conn)
    return PendingMigrations(
        database=target.database,
        revision=current,
        head=migrations.head_revision(),
        pending=tuple(pending_revisions(current)),
    )


def migration_sql(target: Target, output: TextIO) -> PendingMigrations:
    """Write the SQL of the pending migrations to ``output`` (nothing runs)."""
    from alembic import command

    pending = pending_migrations(target)
    if pending.pending:
        config = migrations.alembic_config(url=target.url.set(password=None).render_as_string())
        config.output_buffer = output
        start = f"{pending.revision}:heads" if pending.revision else "heads"
        command.upgrade(config, start, sql=True)
    return pending


def table_counts(conn: Connection) -> dict[str, dict[str, int]]:
    from tapdb_core import tables

    counts: dict[str, dict[str, int]] = {}
    soft: list[Table] = [
        tables.generic_template,
        tables.generic_instance,
        tables.generic_instance_lineage,
    ]
    for table in soft:
        row = conn.execute(
            select(
                func.count().filter(table.c.is_deleted.is_(False)),
                func.count().filter(table.c.is_deleted.is_(True)),
            )
        ).one()
        counts[table.name] = {"live": int(row[0]), "deleted": int(row[1])}
    user = tables.tapdb_user
    row = conn.execute(
        select(
            func.count().filter(user.c.is_active.is_(True)),
            func.count().filter(user.c.is_active.is_(False)),
        )
    ).one()
    counts[user.name] = {"active": int(row[0]), "inactive": int(row[1])}
    total = conn.execute(select(func.count()).select_from(tables.audit_log)).scalar_one()
    counts[tables.audit_log.name] = {"rows": int(total)}
    return counts


def trigger_report(
    conn: Connection, expected: Mapping[str, list[str]] | None = None
) -> dict[str, TriggerState]:
    """Per table: expected triggers missing, and present ones that are disabled. The
    expected ones are those of a fresh migration (``tapdb_core/schema_fingerprint.json``)."""
    wanted = expected if expected is not None else tamper.expected_triggers()
    rows = conn.execute(
        text(
            "SELECT c.relname AS table_name, t.tgname AS trigger_name, t.tgenabled AS enabled"
            "  FROM pg_trigger t"
            "  JOIN pg_class c ON c.oid = t.tgrelid"
            "  JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE NOT t.tgisinternal AND n.nspname = current_schema()"
            "   AND c.relname = ANY (CAST(:tables AS text[]))"
        ),
        {"tables": list(wanted)},
    ).all()
    present = {(r.table_name, r.trigger_name): str(r.enabled) for r in rows}
    return {
        table: TriggerState(
            missing=tuple(n for n in names if (table, n) not in present),
            disabled=tuple(n for n in names if present.get((table, n), "O") != "O"),
        )
        for table, names in wanted.items()
    }


def _problems(status: SchemaStatus, schema_present: bool) -> tuple[str, ...]:
    env = status.env
    problems: list[str] = []
    if not status.database_exists:
        problems.append(f"database missing: run `tapdb db setup {env}`")
    elif not schema_present or status.revision is None:
        problems.append(f"no tapdb schema: run `tapdb db schema apply {env}`")
    elif status.revision != status.head:
        problems.append(
            f"schema at {status.revision}, head is {status.head}: "
            f"run `tapdb db schema migrate {env}`"
        )
    for table, state in (status.triggers or {}).items():
        if state.missing:
            problems.append(f"{table}: missing triggers {', '.join(state.missing)}")
        if state.disabled:
            problems.append(f"{table}: disabled triggers {', '.join(state.disabled)}")
    return tuple(problems)


def schema_status(target: Target) -> SchemaStatus:
    """Revision against head, row counts, guarantee triggers and the tamper check."""
    status = SchemaStatus(
        env=target.env,
        database=target.database,
        server=target.where,
        head=migrations.head_revision(),
        database_exists=True,
        revision=None,
    )
    schema_present = False
    try:
        with session(target, need_schema=False) as s, s.connect() as conn:
            revision = migrations.current_revision(conn)
            schema_present = bool(
                conn.execute(text("SELECT to_regclass('generic_instance') IS NOT NULL")).scalar()
            )
            status = attrs.evolve(status, revision=revision)
            if schema_present:
                report = tamper.check_integrity(conn)
                status = attrs.evolve(
                    status,
                    tables=table_counts(conn),
                    triggers=trigger_report(conn),
                    tampered=tuple(report.problems),
                    integrity=Integrity(
                        compared=report.compared,
                        fingerprint_revision=report.expected_revision,
                        functions_checked=report.functions_checked,
                        triggers_checked=report.triggers_checked,
                    ),
                )
    except DatabaseMissingError as exc:
        status = attrs.evolve(status, database_exists=False, problem=str(exc))
    return attrs.evolve(status, problems=_problems(status, schema_present))


def reset_schema(
    target: Target, *, drop_dependents: bool = False, confirm: Confirm | None = None
) -> ResetResult:
    """Drop every tapdb object. Without ``drop_dependents`` application objects
    that depend on tapdb's tables make it refuse (they are listed);
    ``confirm(action)`` is called before anything is dropped (it raises to stop)."""
    from tapdb_core.dependents import refuse_dependents

    with session(target, need_schema=False) as s:
        with s.connect() as conn:
            current = migrations.current_revision(conn)
            if current is not None and not drop_dependents:
                # refuse before asking for a confirmation that could not be honoured
                refuse_dependents(conn, "reset the schema", "--drop-dependents")
        if current is None:
            return ResetResult(database=target.database, reset=False, revision_before=None)
        if confirm is not None:
            confirm(
                "drop every tapdb table, row and function"
                + (" and the application objects that depend on them" if drop_dependents else "")
            )
        with s.begin() as conn:
            migrations.drop_schema(conn, drop_dependents=drop_dependents)
    oplog(target, "db schema reset", f"from {current}")
    return ResetResult(database=target.database, reset=True, revision_before=current)
