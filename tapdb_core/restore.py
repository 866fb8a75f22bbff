"""Restore a tapdb backup into a database, in one transaction.

The file is checked first (tapdb_core.dumpfile reads it completely), so a bad file is
refused before the target is touched. Then, in ONE transaction of our own connection,
restore optionally drops the target's tapdb objects (``clean``) and runs the SQL
``pg_restore --no-owner`` writes for the archive, as psql would: triggers are created
after the data in a full dump, so no audit row is added; a data-only restore disables
the tapdb tables' user triggers (the owner's right, no superuser) around the load. The
creating transaction column ``generic_instance.created_xid`` is loaded as the restoring
transaction's id: the source cluster's ids mean nothing here and would break its CHECK
on a younger cluster. Row counts are compared before commit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

import attrs
import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tapdb_core import dependents, migrate
from tapdb_core.backup_errors import (
    BackupError,
    IncompatibleBackupError,
    RestoreTargetNotEmptyError,
)
from tapdb_core.dumpfile import (
    COPY_LINE,
    REQUIRED_TABLES,
    BackupContents,
    restore_script,
    script_events,
    verify,
)
from tapdb_core.pgclient import major, target_url, unpooled_engine

__all__ = ["DATA_TABLES", "RestoreInfo", "restore"]

#: tables rows are written to by applications (empty in a data-only restore target)
DATA_TABLES: Final = (
    "generic_template",
    "generic_instance",
    "generic_instance_lineage",
    "tapdb_user",
    "audit_log",
    "tapdb_action_set",
)


@attrs.frozen(kw_only=True)
class RestoreInfo:
    path: Path
    database: str
    contents: BackupContents
    cleaned: bool
    dropped_dependents: tuple[str, ...] = ()


_TAPDB_OBJECTS = text(
    r"""
    SELECT c.relname AS name,
           format('DROP %s IF EXISTS %s CASCADE',
                  CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                       WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
                  c.oid::regclass) AS drop
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
       AND (c.relname = ANY (CAST(:tables AS text[])) OR c.relname LIKE 'tapdb\_%')
       AND NOT EXISTS (SELECT FROM pg_depend d  -- identity sequences go with their table
                        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                          AND d.deptype IN ('a', 'i'))
    UNION ALL
    SELECT p.proname || '()', format('DROP FUNCTION IF EXISTS %s CASCADE', p.oid::regprocedure)
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = current_schema() AND p.proname LIKE 'tapdb\_%'
    """
)


def restore(
    url: str | URL,
    source: Path | str,
    *,
    clean: bool = False,
    drop_dependents: bool = False,
    progress: Callable[[str], None] | None = None,
) -> RestoreInfo:
    """Restore a backup into the database at ``url``, in one transaction.

    A full backup needs a database without tapdb objects, unless ``clean``: then
    they are dropped first (same transaction), refusing with
    :class:`~tapdb_core.dependents.DependentObjectsError` while application objects
    depend on them, unless ``drop_dependents``. A data-only backup needs a database
    at the backup's revision whose tapdb tables hold no data. The file is read
    completely and checked before the database is touched.
    """
    say = progress or (lambda _m: None)
    target, path = target_url(url), Path(source)
    say(f"checking {path}")
    contents = verify(path)
    if not migrate.is_known_revision(contents.revision):
        raise IncompatibleBackupError(
            f"{path} is at revision {contents.revision}, unknown to this tapdb_core "
            "(made by a newer one?): upgrade tapdb_core to restore it"
        )
    engine = unpooled_engine(target)
    dropped: tuple[str, ...]
    try:
        with engine.begin() as conn:
            _check_target(conn, contents)
            if contents.data_only:
                _prepare_data_only(conn, contents, clean)
                cleaned, dropped = False, ()
            else:
                cleaned, dropped = _prepare_full(conn, contents, clean, drop_dependents, say)
            say(f"restoring {sum(n for _t, n in contents.rows)} rows")
            _load(conn, contents)
            if contents.data_only:
                for table, _rows in contents.rows:
                    conn.execute(text(f'ALTER TABLE "{table}" ENABLE TRIGGER USER'))
            _check_counts(conn, contents)
    except (DBAPIError, psycopg.Error) as exc:
        reason = exc.orig if isinstance(exc, DBAPIError) else exc
        raise BackupError(
            f"restore of {path} into {target.database!r} failed, nothing was changed: {reason}"
        ) from exc
    finally:
        engine.dispose()
    return RestoreInfo(
        path=path,
        database=str(target.database),
        contents=contents,
        cleaned=cleaned,
        dropped_dependents=dropped,
    )


def _check_target(conn: Connection, contents: BackupContents) -> None:
    server = int(conn.execute(text("SHOW server_version_num")).scalar_one()) // 10000
    if server < major(contents.server_version):
        raise IncompatibleBackupError(
            f"{contents.path} was dumped from PostgreSQL {contents.server_version}; the "
            f"target server is PostgreSQL {server}: restore into the same or a newer major"
        )
    schema = conn.execute(text("SELECT current_schema()")).scalar()
    if schema != contents.schema:
        raise IncompatibleBackupError(
            f"{contents.path} holds schema {contents.schema!r}, the target's current schema "
            f"is {schema!r}"
        )


def _prepare_full(
    conn: Connection,
    contents: BackupContents,
    clean: bool,
    drop_dependents: bool,
    say: Callable[[str], None],
) -> tuple[bool, tuple[str, ...]]:
    found = conn.execute(_TAPDB_OBJECTS, {"tables": list(REQUIRED_TABLES)}).all()
    if not found:
        return False, ()
    if not clean:
        names = sorted(str(row.name) for row in found)
        raise RestoreTargetNotEmptyError(
            f"the database already holds tapdb objects ({', '.join(names[:6])}"
            f"{', ...' if len(names) > 6 else ''}): restore {contents.path} into an empty "
            "database, or with clean=True (--clean) to drop them first"
        )
    dropped: tuple[str, ...] = ()
    if drop_dependents:
        dropped = tuple(str(d) for d in dependents.drop_external_dependents(conn))
        for line in dropped:
            say(f"dropped {line}")
    else:
        dependents.refuse_dependents(
            conn,
            "drop the tapdb objects for the restore",
            "drop_dependents=True (--drop-dependents)",
        )
    for row in found:
        conn.execute(text(str(row.drop)))
    say(f"dropped {len(found)} tapdb objects")
    return True, dropped


def _prepare_data_only(conn: Connection, contents: BackupContents, clean: bool) -> None:
    if clean:
        raise IncompatibleBackupError(
            f"{contents.path} is a data-only backup: --clean goes with full backups only"
        )
    current = migrate.current_revision(conn)
    if current != contents.revision:
        raise IncompatibleBackupError(
            f"{contents.path} is a data-only backup at revision {contents.revision}; the "
            f"database is at {current or 'no revision (no tapdb schema)'}: restore it into "
            f"a database migrated to revision {contents.revision}"
        )
    full = [t for t in DATA_TABLES if conn.execute(text(f'SELECT EXISTS (TABLE "{t}")')).scalar()]
    if full:
        raise RestoreTargetNotEmptyError(
            f"the database holds tapdb data ({', '.join(full)}): a data-only backup restores "
            "into a migrated database without data"
        )
    # The migrations' own rows (prefix config, generation, guard) give way to the backup's.
    for table, _rows in reversed(contents.rows):
        conn.execute(text(f'ALTER TABLE "{table}" DISABLE TRIGGER USER'))
        conn.execute(text(f'DELETE FROM "{table}"'))
    for name in contents.sequences:
        if name.startswith("tapdb_euid_seq_"):
            prefix = name.removeprefix("tapdb_euid_seq_").upper()
            conn.execute(text("SELECT tapdb_ensure_euid_sequence(:p)"), {"p": prefix})


def _load(conn: Connection, contents: BackupContents) -> None:
    """Run pg_restore's SQL for the archive in this transaction (psql's job, in-process)."""
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    xid = str(conn.execute(text("SELECT pg_current_xact_id()")).scalar_one()).encode()
    cursor, pending = driver.cursor(), bytearray()
    options = ["--no-owner", *(["--data-only"] if contents.data_only else [])]
    with restore_script(contents.path, *options) as lines:
        events = script_events(lines)
        for kind, line in events:
            if kind == "sql":
                pending += line
                continue
            if pending.strip():
                cursor.execute(bytes(pending))
            pending.clear()
            found = COPY_LINE.match(line)
            columns = found.group(3).split(b", ") if found else []
            xid_at = columns.index(b"created_xid") if b"created_xid" in columns else -1
            buffer = bytearray()
            with cursor.copy(line.rstrip(b";")) as copy:
                for kind, row in events:
                    if kind == "end":
                        break
                    if xid_at >= 0:  # the source cluster's transaction ids mean nothing here
                        fields = row.rstrip(b"\n").split(b"\t")
                        fields[xid_at] = xid
                        row = b"\t".join(fields) + b"\n"
                    buffer += row
                    if len(buffer) > 1 << 20:
                        copy.write(buffer)
                        buffer.clear()
                copy.write(buffer)
        if pending.strip():
            cursor.execute(bytes(pending))
    cursor.execute(b"RESET search_path")  # the script emptied it


def _check_counts(conn: Connection, contents: BackupContents) -> None:
    for table, rows in contents.rows:
        found = conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()
        if found != rows:
            raise BackupError(f"{table} has {found} rows after the restore, the backup {rows}")
