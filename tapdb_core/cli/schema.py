"""``tapdb db schema apply|status|reset|migrate``: the Alembic-owned schema."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import Connection, Table, func, select, text

from tapdb_core import config as tconfig
from tapdb_core import euid as euids
from tapdb_core.cli import common
from tapdb_core.cli.parsing import Subparsers, add_env_argument, group, leaf

_IDENTITY_FIELDS: Final = {
    "tapdb_user": "tapdb_user_euid_prefix",
    "audit_log": "audit_log_euid_prefix",
}


def configure(db_sub: Subparsers) -> None:
    sch = group(db_sub, "schema", "the tapdb schema (Alembic migrations)")

    p = leaf(sch, "apply", "install the schema (migrate to head) and identity prefixes", cmd_apply)
    add_env_argument(p)

    p = leaf(
        sch,
        "status",
        "revision vs head, row counts and guarantee triggers (exit 1 if anything is missing)",
        cmd_status,
    )
    add_env_argument(p)

    p = leaf(sch, "reset", "drop every tapdb object in the database (destructive)", cmd_reset)
    add_env_argument(p)
    p.add_argument(
        "--drop-dependents",
        action="store_true",
        help="also drop application objects (views, foreign keys, functions...) that depend "
        "on tapdb's tables; without it reset refuses and lists them",
    )
    common.add_guard_options(p)

    p = leaf(sch, "migrate", "apply pending migrations in one transaction", cmd_migrate)
    add_env_argument(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    mode.add_argument(
        "--dry-run", action="store_true", help="list the pending revisions, change nothing"
    )


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

    from tapdb_core import migrate
    from tapdb_core.db import require_known_revision

    require_known_revision(current)  # else Alembic fails with a bare ResolutionError
    script = ScriptDirectory.from_config(migrate.alembic_config())
    revisions = script.iterate_revisions("heads", current or "base")
    return [r.revision for r in reversed(list(revisions))]


def _migrate(args: argparse.Namespace, *, identity: bool) -> int:
    from tapdb_core import migrate

    cfg = common.resolve_config(args, args.env)
    target = common.target_of(cfg)
    common.remember(target)
    prefixes = identity_prefixes_of(cfg) if identity else {}
    engine = common.open_engine(target, need_schema=False)
    try:
        with common.transaction(engine, target) as conn:
            before = migrate.current_revision(conn)
            pending = pending_revisions(before)
            if pending:
                common.progress(f"migrating {before or 'empty database'} -> {pending[-1]}")
                migrate.upgrade(conn)
            changed = apply_identity_prefixes(conn, prefixes)
            after = migrate.current_revision(conn)
    finally:
        engine.dispose()
    if pending or changed:
        common.oplog(target, "db schema migrate", f"{before} -> {after}")
    if args.json:
        common.print_json(
            {
                "database": target.database,
                "revision_before": before,
                "revision": after,
                "applied": pending,
                "identity_prefixes_set": changed,
            }
        )
    elif pending:
        common.out(
            f"database {target.database!r}: migrated {before or 'empty'} -> {after} "
            f"({len(pending)} revision(s))"
        )
    else:
        common.out(f"database {target.database!r}: already at head ({after})")
    if changed and not args.json:
        common.out(f"identity prefixes set: {', '.join(changed)}")
    return 0


# --------------------------------------------------------------------------- commands


def cmd_apply(args: argparse.Namespace) -> int:
    return _migrate(args, identity=True)


def cmd_migrate(args: argparse.Namespace) -> int:
    if not (args.sql or args.dry_run):
        return _migrate(args, identity=False)
    from alembic import command
    from tapdb_core import migrate

    target = common.resolve_target(args, args.env)
    engine = common.open_engine(target, need_schema=False)
    try:
        with common.connection_errors(target), engine.connect() as conn:
            current = migrate.current_revision(conn)
    finally:
        engine.dispose()
    pending = pending_revisions(current)
    if args.dry_run:
        if args.json:
            common.print_json(
                {"revision": current, "head": migrate.head_revision(), "pending": pending}
            )
        elif pending:
            common.out(f"database {target.database!r} is at {current or 'no revision'}; pending:")
            for revision in pending:
                common.out(f"  {revision}")
        else:
            common.out(f"database {target.database!r} is at head ({current}); nothing to do")
        return 0
    if not pending:
        common.note(f"database {target.database!r} is at head ({current}); no SQL to print")
        return 0
    config = migrate.alembic_config(url=target.url.set(password=None).render_as_string())
    command.upgrade(config, f"{current}:heads" if current else "heads", sql=True)
    return 0


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
) -> dict[str, dict[str, list[str]]]:
    """Per table: expected triggers missing, and present ones that are disabled. The
    expected ones are those of a fresh migration (``tapdb_core/schema_fingerprint.json``)."""
    from tapdb_core import tamper

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
    report: dict[str, dict[str, list[str]]] = {}
    for table, names in wanted.items():
        missing = [n for n in names if (table, n) not in present]
        disabled = [n for n in names if present.get((table, n), "O") != "O"]
        report[table] = {"missing": missing, "disabled": disabled}
    return report


def cmd_status(args: argparse.Namespace) -> int:
    from tapdb_core import migrate, tamper

    target = common.resolve_target(args, args.env)
    head = migrate.head_revision()
    result: dict[str, Any] = {
        "env": target.env,
        "database": target.database,
        "server": target.where,
        "head": head,
    }
    integrity: tamper.IntegrityReport | None = None
    engine = common.make_engine(target.url)
    try:
        with common.connection_errors(target), engine.connect() as conn:
            revision = migrate.current_revision(conn)
            result.update(database_exists=True, revision=revision)
            schema_present = bool(
                conn.execute(text("SELECT to_regclass('generic_instance') IS NOT NULL")).scalar()
            )
            if schema_present:
                result["tables"] = table_counts(conn)
                result["triggers"] = trigger_report(conn)
                integrity = tamper.check_integrity(conn)
    except common.DatabaseMissingError as exc:
        result.update(database_exists=False, revision=None, problem=str(exc))
        schema_present = False
    finally:
        engine.dispose()

    problems: list[str] = []
    if not result["database_exists"]:
        problems.append(f"database missing: run `tapdb db setup {target.env}`")
    elif not schema_present or result["revision"] is None:
        problems.append(f"no tapdb schema: run `tapdb db schema apply {target.env}`")
    elif result["revision"] != head:
        problems.append(
            f"schema at {result['revision']}, head is {head}: run `tapdb db schema migrate {target.env}`"
        )
    for table, report in result.get("triggers", {}).items():
        if report["missing"]:
            problems.append(f"{table}: missing triggers {', '.join(report['missing'])}")
        if report["disabled"]:
            problems.append(f"{table}: disabled triggers {', '.join(report['disabled'])}")
    tampered = list(integrity.problems) if integrity is not None else []
    if integrity is not None:
        result["integrity"] = {
            "compared": integrity.compared,
            "fingerprint_revision": integrity.expected_revision,
            "functions_checked": integrity.functions_checked,
            "triggers_checked": integrity.triggers_checked,
        }
    result["tampered"] = tampered
    result["ok"] = not problems and not tampered
    result["problems"] = problems

    if args.json:
        common.print_json(result)
        return 0 if result["ok"] else 1
    common.out(f"environment  {target.env}")
    common.out(f"database     {target.database} on {target.where}")
    if result["database_exists"]:
        common.out(f"revision     {result['revision'] or 'none'} (head {head})")
    for table, counts in result.get("tables", {}).items():
        detail = ", ".join(f"{k} {v}" for k, v in counts.items())
        common.out(f"  {table.ljust(26)} {detail}")
    if "triggers" in result:
        expected = sum(len(v) for v in tamper.expected_triggers().values())
        bad = sum(len(r["missing"]) + len(r["disabled"]) for r in result["triggers"].values())
        state = "all installed and enabled" if not bad else f"{bad} missing or disabled"
        common.out(f"guarantee triggers  {expected - bad}/{expected} ({state})")
    if integrity is not None and integrity.compared:
        verdict = "TAMPERED" if tampered else "matches the migrated schema"
        common.out(
            f"integrity    {verdict} ({integrity.functions_checked} functions, "
            f"{integrity.triggers_checked} triggers checked)"
        )
    for problem in problems:
        common.out(f"problem: {problem}")
    for what in tampered:
        common.out(f"tampered: {what}")
    if problems or tampered:
        return 1
    common.out("status       ok")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    from tapdb_core import migrate
    from tapdb_core.dependents import refuse_dependents

    target = common.resolve_target(args, args.env)
    engine = common.open_engine(target, need_schema=False)
    try:
        with common.connection_errors(target), engine.connect() as conn:
            current = migrate.current_revision(conn)
        if current is None:
            if args.json:
                common.print_json({"database": target.database, "reset": False})
            else:
                common.warn(f"database {target.database!r} has no tapdb schema; nothing to reset")
            return 0
        if not args.drop_dependents:
            # refuse before asking for a confirmation that could not be honoured
            with common.connection_errors(target), engine.connect() as conn:
                refuse_dependents(conn, "reset the schema", "--drop-dependents")
        action = "drop every tapdb table, row and function" + (
            " and the application objects that depend on them" if args.drop_dependents else ""
        )
        common.confirm_destructive(args, target, action)
        with common.transaction(engine, target) as conn:
            migrate.drop_schema(conn, drop_dependents=args.drop_dependents)
    finally:
        engine.dispose()
    common.oplog(target, "db schema reset", f"from {current}")
    if args.json:
        common.print_json({"database": target.database, "reset": True, "revision_before": current})
    else:
        common.out(f"database {target.database!r}: tapdb schema removed (was at {current})")
    return 0
