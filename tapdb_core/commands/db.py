"""The database of an environment: create, delete, setup.

CREATE/DROP DATABASE name the database with ``psycopg.sql.Identifier``; every
other value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from psycopg import sql
from sqlalchemy import text

from tapdb_core import migrate as migrations
from tapdb_core.commands._oplog import oplog
from tapdb_core.commands._session import Session, admin_session, database_exists, session
from tapdb_core.commands._target import Target
from tapdb_core.commands.schema import Confirm, Progress, apply_identity_prefixes
from tapdb_core.packs.seed import SeedReport


@attrs.frozen(kw_only=True)
class DatabaseCreated:
    database: str
    server: str
    created: bool
    """False: it existed already."""


@attrs.frozen(kw_only=True)
class DatabaseDeleted:
    database: str
    deleted: bool
    """False: there was no such database."""


@attrs.frozen(kw_only=True)
class SetupResult:
    database: str
    server: str
    created: bool
    revision_before: str | None
    revision: str | None
    seed: SeedReport


def _execute(admin: Session, statement: sql.Composable) -> None:
    """Run a psycopg-composed statement (identifiers quoted by psycopg) in autocommit."""
    with admin.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute(statement)


def create_database(target: Target, *, owner: str | None = None) -> DatabaseCreated:
    """Create the target database if it is missing."""
    with admin_session(target) as admin:
        created = not database_exists(admin, target.database)
        if created:
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target.database))
            if owner:
                statement = sql.SQL("{} OWNER {}").format(statement, sql.Identifier(owner))
            _execute(admin, statement)
    if created:
        oplog(target, "db create")
    return DatabaseCreated(database=target.database, server=target.where, created=created)


def _drop(admin: Session, target: Target) -> None:
    with admin.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": target.database},
        )
    _execute(admin, sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(target.database)))
    oplog(target, "db delete")


def delete_database(target: Target, *, confirm: Confirm | None = None) -> DatabaseDeleted:
    """Terminate other sessions and drop the target database. ``confirm(action)``
    is asked only when the database exists (it raises to stop)."""
    with admin_session(target) as admin:
        exists = database_exists(admin, target.database)
        if exists:
            if confirm is not None:
                confirm("drop the database")
            _drop(admin, target)
    return DatabaseDeleted(database=target.database, deleted=exists)


def setup_database(
    target: Target,
    *,
    pack_dirs: Sequence[str | Path] | None = None,
    identity_prefixes: Mapping[str, str] | None = None,
    recreate: bool = False,
    confirm: Confirm | None = None,
    progress: Progress | None = None,
    seed_progress: Callable[[int, int], None] | None = None,
) -> SetupResult:
    """Create the database (if missing; ``recreate`` drops it first, after
    ``confirm``), migrate it to head and seed the template packs, schema and
    templates in one transaction."""
    from tapdb_core.packs.seed import seed_packs

    if recreate:
        with admin_session(target) as admin:
            if database_exists(admin, target.database):
                if confirm is not None:
                    confirm("drop and re-create the database")
                _drop(admin, target)
    created = create_database(target).created
    with session(target, need_schema=False) as s, s.begin() as conn:
        before = migrations.current_revision(conn)
        if progress:
            progress("migrating the schema")
        migrations.upgrade(conn)
        apply_identity_prefixes(conn, identity_prefixes or {})
        if progress:
            progress("seeding template packs")
        dirs = [Path(d).expanduser() for d in pack_dirs] if pack_dirs else None
        kwargs: dict[str, Any] = {"progress": seed_progress} if seed_progress else {}
        report = seed_packs(conn, dirs, **kwargs)
        after = migrations.current_revision(conn)
    oplog(target, "db setup")
    return SetupResult(
        database=target.database,
        server=target.where,
        created=created,
        revision_before=before,
        revision=after,
        seed=report,
    )
