"""``tapdb db schema apply|status|reset|migrate``: the Alembic-owned schema."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tapdb_core import commands, tamper
from tapdb_core.cli import common
from tapdb_core.cli.parsing import Subparsers, add_env_argument, group, leaf
from tapdb_core.commands.schema import MigrateResult, SchemaStatus
from tapdb_core.commands.schema import identity_prefixes_of as identity_prefixes_of


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


def _show_migrated(args: argparse.Namespace, result: MigrateResult) -> int:
    if args.json:
        common.print_json(result)
        return 0
    if result.applied:
        common.out(
            f"database {result.database!r}: migrated {result.revision_before or 'empty'} -> "
            f"{result.revision} ({len(result.applied)} revision(s))"
        )
    else:
        common.out(f"database {result.database!r}: already at head ({result.revision})")
    if result.identity_prefixes_set:
        common.out(f"identity prefixes set: {', '.join(result.identity_prefixes_set)}")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    cfg = common.resolve_config(args, args.env)
    target = common.target_of(cfg)
    common.remember(target)
    result = commands.apply_schema(target, cfg, progress=common.progress)
    return _show_migrated(args, result)


def cmd_migrate(args: argparse.Namespace) -> int:
    target = common.resolve_target(args, args.env)
    if not (args.sql or args.dry_run):
        return _show_migrated(args, commands.migrate(target, progress=common.progress))
    if args.sql:
        pending = commands.migration_sql(target, sys.stdout)
        if not pending.pending:
            common.note(
                f"database {target.database!r} is at head ({pending.revision}); no SQL to print"
            )
        return 0
    pending = commands.pending_migrations(target)
    if args.json:
        common.print_json(
            {"revision": pending.revision, "head": pending.head, "pending": pending.pending}
        )
    elif pending.pending:
        common.out(
            f"database {target.database!r} is at {pending.revision or 'no revision'}; pending:"
        )
        for revision in pending.pending:
            common.out(f"  {revision}")
    else:
        common.out(f"database {target.database!r} is at head ({pending.revision}); nothing to do")
    return 0


def status_json(status: SchemaStatus) -> dict[str, Any]:
    data: dict[str, Any] = common.as_dict(status)
    for optional in ("tables", "triggers", "integrity", "problem"):
        if data.get(optional) is None:
            data.pop(optional, None)
    data["ok"] = status.ok
    return data


def cmd_status(args: argparse.Namespace) -> int:
    target = common.resolve_target(args, args.env)
    status = commands.schema_status(target)
    code = 0 if status.ok else 1
    if args.json:
        common.print_json(status_json(status))
        return code
    common.out(f"environment  {status.env}")
    common.out(f"database     {status.database} on {status.server}")
    if status.database_exists:
        common.out(f"revision     {status.revision or 'none'} (head {status.head})")
    for table, counts in (status.tables or {}).items():
        detail = ", ".join(f"{k} {v}" for k, v in counts.items())
        common.out(f"  {table.ljust(26)} {detail}")
    if status.triggers is not None:
        expected = sum(len(v) for v in tamper.expected_triggers().values())
        bad = sum(len(r.missing) + len(r.disabled) for r in status.triggers.values())
        state = "all installed and enabled" if not bad else f"{bad} missing or disabled"
        common.out(f"guarantee triggers  {expected - bad}/{expected} ({state})")
    if status.integrity is not None and status.integrity.compared:
        verdict = "TAMPERED" if status.tampered else "matches the migrated schema"
        common.out(
            f"integrity    {verdict} ({status.integrity.functions_checked} functions, "
            f"{status.integrity.triggers_checked} triggers checked)"
        )
    for problem in status.problems:
        common.out(f"problem: {problem}")
    for what in status.tampered:
        common.out(f"tampered: {what}")
    if code == 0:
        common.out("status       ok")
    return code


def cmd_reset(args: argparse.Namespace) -> int:
    target = common.resolve_target(args, args.env)
    result = commands.reset_schema(
        target, drop_dependents=args.drop_dependents, confirm=common.confirmer(args, target)
    )
    if args.json:
        data = common.as_dict(result)
        if not result.reset:
            data.pop("revision_before", None)
        common.print_json(data)
    elif not result.reset:
        common.warn(f"database {target.database!r} has no tapdb schema; nothing to reset")
    else:
        common.out(
            f"database {target.database!r}: tapdb schema removed (was at {result.revision_before})"
        )
    return 0
