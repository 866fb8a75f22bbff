"""Backup and restore with ``pg_dump`` / ``pg_restore`` (docs/decisions/0001-backup-on-pg-dump.md).

A backup is ``pg_dump -Fc`` of the database (``data_only``: ``-Fc -a``), written
to a random ``.NAME.*.partial`` file created with mode 0600 beside the output,
read back completely by ``pg_restore`` and only then renamed into place.

Restore checks the file first (``pg_restore --list`` holds the tapdb tables and
``alembic_version``; a full ``pg_restore`` pass reads every data block, so a
truncated or corrupt file is refused before the target is touched). Then, in ONE
transaction of our own connection, it optionally drops the target's tapdb
objects (``clean``) and runs the SQL ``pg_restore --no-owner`` writes for the
archive, as psql would: triggers are created after the data in a full dump, so
no audit row is added; a data-only restore disables the tapdb tables' user
triggers (the owner's right, no superuser) around the load. The creating
transaction column ``generic_instance.created_xid`` is loaded as the restoring
transaction's id: the source cluster's ids mean nothing here and would break
its CHECK on a younger cluster. Row counts are compared before commit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import attrs
import psycopg
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from tapdb_core import dependents, migrate
from tapdb_core.config import normalise_url
from tapdb_core.errors import TapdbError
from tapdb_core.pgruntime import find_binaries, parse_version

Progress = Callable[[str], None]
#: tables every tapdb backup holds data for (revision 0001 on)
REQUIRED_TABLES: Final = (*dependents.TAPDB_TABLES,)
#: tables rows are written to by applications (empty in a data-only restore target)
DATA_TABLES: Final = (
    "generic_template",
    "generic_instance",
    "generic_instance_lineage",
    "tapdb_user",
    "audit_log",
)
_MAGIC: Final = b"PGDMP"
_ENTRY = re.compile(r"^\d+; \d+ \d+ (TABLE DATA|SEQUENCE SET|TABLE) (\S+) (\S+) \S+$")
_HEADER = re.compile(rb"^-- (?:Data for )?Name: .*; Type: ([A-Z ]+); Schema: ")
_COPY = re.compile(rb"^COPY ([a-z_0-9]+)\.([a-z_0-9]+) \((.*)\) FROM stdin;$")
_SETVAL = re.compile(rb"^SELECT pg_catalog\.setval\('[a-z_0-9]+\.([a-z_0-9]+)', ")
#: URL query parameters libpq also reads from the environment (pg_dump gets them there)
_LIBPQ_QUERY: Final = dict(
    pair.split("=")
    for pair in "sslmode=PGSSLMODE sslrootcert=PGSSLROOTCERT sslcert=PGSSLCERT sslkey=PGSSLKEY "
    "connect_timeout=PGCONNECT_TIMEOUT application_name=PGAPPNAME options=PGOPTIONS "
    "target_session_attrs=PGTARGETSESSIONATTRS passfile=PGPASSFILE host=PGHOST port=PGPORT".split()
)


class BackupError(TapdbError):
    """A backup or restore could not be done; nothing was written."""


class InvalidBackupError(BackupError, ValueError):
    """The file is not a tapdb backup, or it is truncated or corrupt."""

    exit_code = 2


class IncompatibleBackupError(BackupError):
    """The backup does not fit this tapdb_core or this target (revision, PostgreSQL major)."""


class RestoreTargetNotEmptyError(BackupError):
    """The target database already holds tapdb objects (pass ``clean=True``)."""


@attrs.frozen(kw_only=True)
class BackupContents:
    """What a backup file holds, read without a server."""

    path: Path
    revision: str
    data_only: bool
    schema: str
    database: str
    server_version: str
    """``Dumped from database version`` (the source server)."""
    pg_dump_version: str
    created_at: str
    rows: tuple[tuple[str, int], ...]
    """(table, rows) for every table whose data the backup holds, in dump order."""
    sequences: tuple[str, ...]

    @property
    def row_counts(self) -> dict[str, int]:
        return dict(self.rows)


@attrs.frozen(kw_only=True)
class BackupInfo:
    path: Path
    database: str
    contents: BackupContents


@attrs.frozen(kw_only=True)
class RestoreInfo:
    path: Path
    database: str
    contents: BackupContents
    cleaned: bool
    dropped_dependents: tuple[str, ...] = ()


def default_file_name(database: str, now: dt.datetime | None = None) -> str:
    """``tapdb-<database>-<UTC timestamp>.dump``."""
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return f"tapdb-{database}-{stamp}.dump"


def _url(url: str | URL) -> URL:
    raw = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
    return make_url(normalise_url(raw))


def _engine(url: URL) -> Engine:
    return create_engine(url, poolclass=NullPool)


def _libpq_env(url: URL) -> dict[str, str]:
    """The connection for pg_dump as libpq variables: the password never goes on argv."""
    env = dict(os.environ)
    for key, value in url.query.items():
        if key not in _LIBPQ_QUERY or not isinstance(value, str):
            raise BackupError(f"connection parameter {key!r} cannot be passed to pg_dump")
        env[_LIBPQ_QUERY[key]] = value
    given = {"PGHOST": url.host, "PGPORT": url.port, "PGUSER": url.username}
    given.update(PGPASSWORD=url.password, PGDATABASE=url.database)
    env.update((var, str(value)) for var, value in given.items() if value)
    return env


def _tool(name: str) -> str:
    return str(find_binaries().tool(name))


def _major(version: str) -> int:
    return int(version.split(".")[0])


# --------------------------------------------------------------------------- backup


def backup(
    url: str | URL, out: Path | str, *, data_only: bool = False, progress: Progress | None = None
) -> BackupInfo:
    """Write a ``pg_dump`` custom-format backup of the tapdb database at ``url`` to ``out``."""
    say = progress or (lambda _m: None)
    target, out = _url(url), Path(out)
    engine = _engine(target)
    try:
        with engine.connect() as conn:
            revision = migrate.current_revision(conn)
            server = int(conn.execute(text("SHOW server_version_num")).scalar_one())
    except DBAPIError as exc:
        raise BackupError(f"cannot read database {target.database!r}: {exc.orig}") from exc
    finally:
        engine.dispose()
    if revision is None:
        raise BackupError(f"database {target.database!r} is not a tapdb database (no schema)")
    pg_dump = _tool("pg_dump")
    version = parse_version(_run([pg_dump, "--version"], "pg_dump --version").decode()) or "0"
    if _major(version) < server // 10000:
        raise BackupError(
            f"{pg_dump} is version {version}, older than the server (PostgreSQL "
            f"{server // 10000}.{server % 10000}): use a pg_dump of version {server // 10000} "
            "or newer (TAPDB_PG_BIN)"
        )
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    partial = Path(name)
    try:
        os.close(fd)
        say(f"pg_dump {version}: {target.database} at revision {revision}")
        mode = ["--data-only"] if data_only else []
        _run([pg_dump, "-Fc", "--no-password", *mode, "-f", name], "pg_dump", _libpq_env(target))
        say("reading the backup back")
        contents = verify(partial)
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    fd = os.open(out.parent, os.O_RDONLY)  # the rename itself is durable
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return BackupInfo(
        path=out, database=str(target.database), contents=attrs.evolve(contents, path=out)
    )


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> bytes:
    try:
        done = subprocess.run(argv, env=env, capture_output=True, check=False)
    except OSError as exc:
        raise BackupError(f"cannot run {argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise BackupError(f"{what} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


# --------------------------------------------------------------------------- reading a file


def _bad(path: Path, why: str) -> InvalidBackupError:
    return InvalidBackupError(f"{path}: {why}")


def _sniff(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            head = handle.read(5)
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror}") from exc
    if head == _MAGIC:
        return
    if head.startswith(b"\x1f\x8b"):
        with contextlib.suppress(OSError, EOFError), gzip.open(path, "rb") as archive:
            if archive.read(100).rstrip(b"\0") == b"tapdb-backup.json":
                raise _bad(
                    path,
                    "this is a tapdb 0.x COPY archive (tapdb-backup format 1); restore it with "
                    "the older tapdb_core version that wrote it, then back up again",
                )
    what = "an empty file" if not head else "not a pg_dump custom-format archive"
    raise _bad(path, f"not a tapdb backup ({what})")


@contextlib.contextmanager
def _script(path: Path, *options: str) -> Iterator[Iterator[bytes]]:
    """The SQL ``pg_restore`` writes for the archive, line by line; a failure of
    pg_restore (a truncated or corrupt file) raises once the lines are read."""
    with tempfile.TemporaryFile() as errors:
        argv = [_tool("pg_restore"), *options, "-f", "-", str(path.absolute())]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors)
        assert proc.stdout is not None
        try:
            yield iter(proc.stdout)
            proc.stdout.read()
        finally:
            proc.stdout.close()
            code = proc.wait()
        if code != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip().splitlines()
            raise _bad(path, f"truncated or corrupt ({'; '.join(message[:3])})")


def _events(lines: Iterator[bytes]) -> Iterator[tuple[str, bytes]]:
    """("sql", line) | ("copy", COPY statement) ("row", line)... ("end", b"")."""
    data_entry = False
    for line in lines:
        if data_entry and line.startswith(b"COPY "):
            data_entry = False
            yield "copy", line.rstrip(b"\n")
            for row in lines:
                if row == b"\\.\n":
                    break
                yield "row", row
            else:
                return  # a cut stream: pg_restore's exit status explains it
            yield "end", b""
            continue
        header = _HEADER.match(line)
        if header:
            data_entry = header.group(1) == b"TABLE DATA"
        if line.startswith((b"\\restrict ", b"\\unrestrict ")):
            continue  # psql meta-commands guarding the script, not SQL
        yield "sql", line


def verify(path: Path | str) -> BackupContents:
    """Read a backup completely (no server needed) and say what it holds.

    Raises :class:`InvalidBackupError` for anything that is not a complete tapdb backup.
    """
    path = Path(path)
    _sniff(path)
    done = subprocess.run(
        [_tool("pg_restore"), "--list", str(path.absolute())],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise _bad(path, f"truncated or corrupt ({done.stderr.strip()})")
    header = dict(
        line[1:].strip().split(": ", 1) for line in done.stdout.splitlines() if ": " in line
    )
    entries = [m.groups() for m in map(_ENTRY.match, done.stdout.splitlines()) if m]
    data = {name: schema for kind, schema, name in entries if kind == "TABLE DATA"}
    missing = [t for t in REQUIRED_TABLES if t not in data]
    if missing:
        raise _bad(path, f"not a tapdb backup (no data for {', '.join(missing)})")
    rows: dict[str, int] = {}
    versions: list[bytes] = []
    sequences: list[str] = []
    with _script(path, "--data-only") as lines:
        table = ""
        for kind, line in _events(lines):
            if kind == "copy":
                found = _COPY.match(line)
                table = found.group(2).decode() if found else "?"
                rows[table] = 0
            elif kind == "row":
                rows[table] += 1
                if table == "alembic_version":
                    versions.append(line.strip())
            elif kind == "sql" and (setval := _SETVAL.match(line)):
                sequences.append(setval.group(1).decode())
    if set(rows) != set(data) or len(versions) != 1:
        raise _bad(path, "truncated or corrupt (the data does not match the table of contents)")
    return BackupContents(
        path=path,
        revision=versions[0].decode(),
        data_only=not any(kind == "TABLE" for kind, _s, _n in entries),
        schema=data["alembic_version"],
        database=header.get("dbname", ""),
        server_version=header.get("Dumped from database version", "?").split(" ")[0],
        pg_dump_version=header.get("Dumped by pg_dump version", "?").split(" ")[0],
        created_at=next(
            (
                line.split(" at ", 1)[1]
                for line in done.stdout.splitlines()
                if " created at " in line
            ),
            "",
        ),
        rows=tuple(rows.items()),
        sequences=tuple(sequences),
    )


# --------------------------------------------------------------------------- restore

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
    progress: Progress | None = None,
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
    target, path = _url(url), Path(source)
    say(f"checking {path}")
    contents = verify(path)
    if not migrate.is_known_revision(contents.revision):
        raise IncompatibleBackupError(
            f"{path} is at revision {contents.revision}, unknown to this tapdb_core "
            "(made by a newer one?): upgrade tapdb_core to restore it"
        )
    engine = _engine(target)
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
    if server < _major(contents.server_version):
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
    conn: Connection, contents: BackupContents, clean: bool, drop_dependents: bool, say: Progress
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
    with _script(contents.path, *options) as lines:
        events = _events(lines)
        for kind, line in events:
            if kind == "sql":
                pending += line
                continue
            if pending.strip():
                cursor.execute(bytes(pending))
            pending.clear()
            found = _COPY.match(line)
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
