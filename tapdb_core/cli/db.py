"""``tapdb db create|delete|setup|roles``: the database of an environment
(the work is :mod:`tapdb_core.commands.db` and :mod:`tapdb_core.commands.roles`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from tapdb_core import commands
from tapdb_core.cli import common
from tapdb_core.cli.parsing import Subparsers, add_env_argument, group, leaf
from tapdb_core.commands.roles import check_role_names


def configure(sub: Subparsers) -> Subparsers:
    db = group(sub, "db", "database, schema, data and template-pack commands")

    p = leaf(db, "create", "create the environment's database if it is missing", cmd_create)
    add_env_argument(p)
    p.add_argument("-o", "--owner", help="role that owns the new database")

    p = leaf(db, "delete", "drop the environment's database (destructive)", cmd_delete)
    add_env_argument(p)
    common.add_guard_options(p)

    p = leaf(
        db,
        "setup",
        "create the database, migrate the schema and seed the core templates",
        cmd_setup,
        description=(
            "Create the database (if missing), migrate it to head and seed the template "
            "packs, schema and templates in one transaction. --force drops the database first "
            "(destructive: asks on a terminal, needs --yes elsewhere, and prod needs the "
            "database name)."
        ),
    )
    add_env_argument(p)
    p.add_argument(
        "-f",
        "--force",
        dest="recreate",
        action="store_true",
        help="drop the database first and set it up from scratch (destructive: asks)",
    )
    p.add_argument(
        "-y",
        "--yes",
        dest="force",
        action="store_true",
        help="do not ask before dropping (needed with --force when not on a terminal)",
    )
    p.add_argument(
        "--confirm-name",
        metavar="NAME",
        help="the database name, typed out (required for prod when not on a terminal)",
    )
    p.add_argument(
        "-c",
        "--config-dir",
        dest="config_dirs",
        action="append",
        metavar="DIR",
        help="template pack directory (repeatable; default: the core packs)",
    )
    p = leaf(
        db,
        "roles",
        "create (if missing) and grant the application and read-only database roles",
        cmd_roles,
        description=(
            "Create the application role (and a read-only role) if missing and grant them "
            "exactly what the library needs: the app role reads and writes through the "
            "library but cannot change or delete audit rows, hard-delete, truncate, alter "
            "tables, triggers or functions; the read-only role only reads. Run it as the "
            "schema owner or a superuser; running it again resets the grants. See "
            "docs/roles.md."
        ),
    )
    add_env_argument(p)
    p.add_argument("--app-role", required=True, metavar="NAME", help="application role")
    p.add_argument("--readonly-role", metavar="NAME", help="read-only role (optional)")
    p.add_argument(
        "--app-password-stdin",
        action="store_true",
        help="set the app role's password from the first line of stdin",
    )
    p.add_argument(
        "--readonly-password-stdin",
        action="store_true",
        help="set the read-only role's password from the next line of stdin",
    )
    return db


def _password_line(flag: str) -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise common.UsageError(f"{flag}: stdin held no password (empty line)")
    return password


def cmd_roles(args: argparse.Namespace) -> int:
    if args.readonly_password_stdin and not args.readonly_role:
        raise common.UsageError("--readonly-password-stdin needs --readonly-role")
    check_role_names(args.app_role, args.readonly_role)
    app_password = _password_line("--app-password-stdin") if args.app_password_stdin else None
    readonly_password = (
        _password_line("--readonly-password-stdin") if args.readonly_password_stdin else None
    )
    target = common.resolve_target(args, args.env)
    result = commands.grant_roles(
        target,
        app_role=args.app_role,
        readonly_role=args.readonly_role,
        app_password=app_password,
        readonly_password=readonly_password,
    )
    if args.json:
        common.print_json(result)
        return 0
    for role in result.roles:
        what = "application" if role.kind == "app" else "read-only"
        state = "created" if role.created else "exists"
        password = ", password set" if role.password_set else ""
        common.out(
            f"{what} role {role.name!r} {state}{password}; grants on {result.database!r} reset"
        )
    if result.revoked_public_create:
        common.out(f"revoked CREATE on schema {result.schema!r} from PUBLIC")
    without = [r.name for r in result.roles if r.created and not r.password_set]
    if without:
        common.note(
            f"no password set for {', '.join(without)}: they can log in only where "
            "pg_hba.conf asks for none (use --app-password-stdin / --readonly-password-stdin)"
        )
    common.note(
        f"connect the application as {args.app_role!r}; keep {result.owner!r} for migrations "
        "and `tapdb db roles`"
    )
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    target = common.resolve_target(args, args.env)
    common.progress(f"creating database {target.database} on {target.where}")
    result = commands.create_database(target, owner=args.owner)
    if args.json:
        common.print_json(result)
    elif result.created:
        common.out(f"created database {target.database!r} on {target.where}")
        common.note(f"next: tapdb db schema apply {target.env}")
    else:
        common.warn(f"database {target.database!r} already exists on {target.where}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    target = common.resolve_target(args, args.env)
    result = commands.delete_database(target, confirm=common.confirmer(args, target))
    if args.json:
        common.print_json(result)
    elif result.deleted:
        common.out(f"deleted database {target.database!r} on {target.where}")
    else:
        common.warn(f"database {target.database!r} does not exist on {target.where}")
    return 0


def setup_json(result: commands.SetupResult) -> dict[str, Any]:
    return {**common.as_dict(result), "seed": common.as_dict(result.seed)}


def setup_database(
    target: common.Target,
    *,
    config_dirs: list[str] | None = None,
    identity_prefixes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """:func:`tapdb_core.commands.setup_database` as the JSON dict ``db setup`` prints
    (for cli/bootstrap.py)."""
    result = commands.setup_database(
        target,
        pack_dirs=config_dirs,
        identity_prefixes=identity_prefixes,
        progress=common.progress,
        seed_progress=common.count_progress("templates"),
    )
    return setup_json(result)


def cmd_setup(args: argparse.Namespace) -> int:
    from tapdb_core.commands.schema import identity_prefixes_of

    cfg = common.resolve_config(args, args.env)
    target = common.target_of(cfg)
    common.remember(target)
    result = commands.setup_database(
        target,
        pack_dirs=args.config_dirs,
        identity_prefixes=identity_prefixes_of(cfg),
        recreate=args.recreate,
        confirm=common.confirmer(args, target, confirm_flag="--yes"),
        progress=common.progress,
        seed_progress=common.count_progress("templates"),
    )
    if args.json:
        common.print_json(setup_json(result))
        return 0
    seed = result.seed
    made = "created" if result.created else "existing"
    common.out(
        f"{made} database {target.database!r} on {target.where}: schema at "
        f"{result.revision}, templates created {len(seed.created)}, updated "
        f"{len(seed.updated)}, unchanged {len(seed.unchanged)}"
    )
    return 0
