"""``tapdb db create|delete|setup``: the database of an environment.

CREATE/DROP DATABASE name the database with ``psycopg.sql.Identifier``; every
other value is a bound parameter.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Engine, text

from tapdb_core.cli import common
from tapdb_core.cli.parsing import Subparsers, add_env_argument, group, leaf
from tapdb_core.errors import TapdbError


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
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    if not password:
        raise common.UsageError(f"{flag}: stdin held no password (empty line)")
    return password


def _insufficient_privilege(exc: BaseException) -> str | None:
    """The server's message when ``exc`` (or what it wraps) is SQLSTATE 42501."""
    current: BaseException | None = exc
    while current is not None:
        orig = getattr(current, "orig", current)
        if getattr(orig, "sqlstate", None) == "42501":
            return str(orig)
        current = current.__cause__
    return None


def cmd_roles(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import DBAPIError

    from tapdb_core import roles

    if args.readonly_password_stdin and not args.readonly_role:
        raise common.UsageError("--readonly-password-stdin needs --readonly-role")
    try:
        roles.check_role_name(args.app_role, "--app-role")
        if args.readonly_role is not None:
            roles.check_role_name(args.readonly_role, "--readonly-role")
            if args.readonly_role == args.app_role:
                raise roles.RoleNameError("--app-role and --readonly-role must differ")
    except roles.RoleNameError as exc:
        raise common.UsageError(str(exc)) from None
    app_password = _password_line("--app-password-stdin") if args.app_password_stdin else None
    readonly_password = (
        _password_line("--readonly-password-stdin") if args.readonly_password_stdin else None
    )
    target = common.resolve_target(args, args.env)
    engine = common.open_engine(target)
    try:
        with common.transaction(engine, target) as conn:
            result = roles.grant_roles(
                conn,
                app_role=args.app_role,
                readonly_role=args.readonly_role,
                app_password=app_password,
                readonly_password=readonly_password,
            )
    except (DBAPIError, TapdbError, psycopg.Error) as exc:
        denied = _insufficient_privilege(exc)
        if denied is None:
            raise
        raise common.CliError(
            f"user {target.user!r} may not create or grant roles on database "
            f"{target.database!r} ({common.one_line(denied)}): run `tapdb db roles` as the "
            "schema owner or a superuser"
        ) from None
    finally:
        engine.dispose()
    names = ", ".join(f"{r.kind}={r.name}" for r in result.roles)
    common.oplog(target, "db roles", names)
    if args.json:
        common.print_json(common.as_dict(result))
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


def execute_driver(admin: Engine, statement: sql.Composable, params: Any = None) -> None:
    """Run a psycopg-composed statement (identifiers quoted by psycopg) in autocommit."""
    with admin.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute(statement, params)


def create_database(target: common.Target, owner: str | None = None) -> bool:
    """Create the target database; False when it already exists."""
    admin = common.admin_engine(target)
    try:
        if common.database_exists(admin, target.database):
            return False
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target.database))
        if owner:
            statement = sql.SQL("{} OWNER {}").format(statement, sql.Identifier(owner))
        execute_driver(admin, statement)
    finally:
        admin.dispose()
    common.oplog(target, "db create")
    return True


def drop_database(target: common.Target) -> bool:
    """Terminate other sessions and drop the target database; False when it is missing."""
    admin = common.admin_engine(target)
    try:
        if not common.database_exists(admin, target.database):
            return False
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": target.database},
            )
        execute_driver(
            admin, sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(target.database))
        )
    finally:
        admin.dispose()
    common.oplog(target, "db delete")
    return True


def cmd_create(args: argparse.Namespace) -> int:
    target = common.resolve_target(args, args.env)
    common.progress(f"creating database {target.database} on {target.where}")
    created = create_database(target, args.owner)
    if args.json:
        common.print_json({"database": target.database, "server": target.where, "created": created})
    elif created:
        common.out(f"created database {target.database!r} on {target.where}")
        common.note(f"next: tapdb db schema apply {target.env}")
    else:
        common.warn(f"database {target.database!r} already exists on {target.where}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    target = common.resolve_target(args, args.env)
    # connect first: never ask about a database on a server that is not there
    admin = common.admin_engine(target)
    try:
        exists = common.database_exists(admin, target.database)
    finally:
        admin.dispose()
    if not exists:
        if args.json:
            common.print_json({"database": target.database, "deleted": False})
        else:
            common.warn(f"database {target.database!r} does not exist on {target.where}")
        return 0
    common.confirm_destructive(args, target, "drop the database")
    deleted = drop_database(target)
    if args.json:
        common.print_json({"database": target.database, "deleted": deleted})
    else:
        common.out(f"deleted database {target.database!r} on {target.where}")
    return 0


def setup_database(
    target: common.Target,
    *,
    config_dirs: list[str] | None = None,
    identity_prefixes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Create (if missing), migrate and seed; schema and seed in one transaction."""
    from pathlib import Path

    from tapdb_core import migrate
    from tapdb_core.cli.schema import apply_identity_prefixes
    from tapdb_core.packs.seed import seed_packs

    created = create_database(target)
    engine = common.open_engine(target, need_schema=False)
    try:
        with common.transaction(engine, target) as conn:
            before = migrate.current_revision(conn)
            common.progress("migrating the schema")
            migrate.upgrade(conn)
            apply_identity_prefixes(conn, identity_prefixes or {})
            common.progress("seeding template packs")
            dirs = [Path(d) for d in config_dirs] if config_dirs else None
            report = seed_packs(conn, dirs, progress=common.count_progress("templates"))
            after = migrate.current_revision(conn)
    finally:
        engine.dispose()
    common.oplog(target, "db setup")
    return {
        "database": target.database,
        "server": target.where,
        "created": created,
        "revision_before": before,
        "revision": after,
        "seed": common.as_dict(report),
    }


def cmd_setup(args: argparse.Namespace) -> int:
    from tapdb_core.cli.schema import identity_prefixes_of

    cfg = common.resolve_config(args, args.env)
    target = common.target_of(cfg)
    common.remember(target)
    import tapdb_core.packs.seed  # noqa: F401  (fail before changing anything if missing)

    if args.recreate:
        admin = common.admin_engine(target)
        try:
            exists = common.database_exists(admin, target.database)
        finally:
            admin.dispose()
        if exists:
            common.confirm_destructive(
                args, target, "drop and re-create the database", confirm_flag="--yes"
            )
            drop_database(target)
    result = setup_database(
        target, config_dirs=args.config_dirs, identity_prefixes=identity_prefixes_of(cfg)
    )
    if args.json:
        common.print_json(result)
        return 0
    seed = result["seed"].get("counts", {})
    made = "created" if result["created"] else "existing"
    common.out(
        f"{made} database {target.database!r} on {target.where}: schema at "
        f"{result['revision']}, templates created {seed.get('created', 0)}, updated "
        f"{seed.get('updated', 0)}, unchanged {seed.get('unchanged', 0)}"
    )
    return 0
