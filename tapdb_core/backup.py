"""Lossless backup and restore of a tapdb database, streamed with COPY (no pg_dump).

A backup holds every row of every tapdb table, the position of every sequence
(the per-prefix ``tapdb_euid_seq_*`` ones and the identity sequences behind the
``uuid`` columns), the Alembic revision, the Meridian domain and the identity
prefix configuration. Restoring it into an empty database gives back the same
rows byte for byte, and the EUIDs and uuids created afterwards continue exactly
where the original database would have: they never collide with restored ones.

Format (``format_version`` 1)
-----------------------------
One file: a gzip-compressed POSIX (pax) tar archive, written and read as a
stream, whose members come in this order:

``tapdb-backup.json``
    The manifest, a JSON object::

        {"format": "tapdb-backup", "format_version": 1,
         "tapdb_core_version": "0.2.0", "created_at": "2026-...+00:00",
         "server_version": "15.8", "database": "tapdb_dev",
         "alembic_revision": "0001", "meridian_domain": "R" | null,
         "identity_prefixes": {"audit_log": "ADT", "tapdb_user": "TDA"},
         "copy": {"format": "text", "encoding": "UTF8",
                  "settings": {"DateStyle": "ISO, YMD", "TimeZone": "UTC", ...}},
         "tables": [{"name": "generic_template", "member": "data/02-generic_template.copy",
                     "columns": ["uuid", "euid_prefix", ...], "rows": 123}, ...],
         "sequences": [{"name": "tapdb_euid_seq_gt", "kind": "euid", "prefix": "GT",
                        "last_value": 97, "is_called": true},
                       {"name": "generic_template_uuid_seq", "kind": "identity",
                        "table": "generic_template", "column": "uuid",
                        "last_value": 97, "is_called": true}, ...]}

    Tables are listed parent before child (foreign-key order), which is also the
    order of their data members. ``identity_prefixes`` is informational: the
    configuration itself is the ``tapdb_identity_prefix_config`` table's data.
``data/NN-<table>.copy``
    One per table: the output of ``COPY <table> (<columns>) TO STDOUT`` in
    PostgreSQL's text format, UTF-8, with the session settings recorded in the
    manifest (ISO dates, UTC), so any PostgreSQL version reads it back.
``checksums.json``
    The trailer: ``{"format": "tapdb-backup", "members": {"data/...": {"sha256":
    ..., "bytes": ..., "rows": ...}}}``. An archive without it is incomplete.

Inspect one with ``tar xzf backup.tapdb.tar.gz``. The file is created with mode
0600 (it holds password hashes), written under a new random name in the target
directory (``.<name>.<random>.partial``, created with ``O_EXCL``, so nothing
planted at a predictable name is opened or followed) and renamed into place
only once complete; a failed run removes it.

What is not copied
------------------
The generated ``euid`` columns: the database recomputes them from
``(euid_prefix, euid_seq, euid_domain)``, identically. ``generic_instance.created_xid``:
it is a transaction id of the source cluster, meaningful only there, and the
column's CHECK (``created_xid <= pg_current_xact_id()``) would refuse ids from
a busier cluster; the column default fills in the restoring transaction's id,
which is what the lineage cycle guard expects of rows that already exist.
``audit_log.xact_id`` is kept as recorded (it is history; nothing checks it).

Restore
-------
Restore refuses a database that holds any tapdb object (tables,
``alembic_version``, ``tapdb_*`` functions or EUID sequences) unless
``clean=True``, which drops them first (Alembic downgrade to base, then a sweep
of whatever is left). Then, in ONE transaction: the schema is rebuilt by the
migrations up to the backup's revision, the user triggers of the tapdb tables
are disabled with ``ALTER TABLE ... DISABLE TRIGGER USER`` (so no soft delete,
audit row, default or append-only check interferes; foreign keys and CHECK
constraints stay on), rows the migrations inserted are removed, every table is
loaded with ``COPY ... FROM STDIN`` straight from the archive stream, sequences
and the Meridian domain are set, triggers are re-enabled, and row counts and
checksums are verified. Any failure rolls everything back, the dropping done by
``clean=True`` included. Disabling triggers needs table ownership only, which the
restoring role has because it has just created the tables: no superuser needed.

The restored database is at the backup's revision; run the migrations
afterwards if this tapdb_core's head is newer.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Final

import attrs
import psycopg
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from psycopg import sql
from sqlalchemy import Connection, Engine, TextClause, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from tapdb_core import dependents, migrate
from tapdb_core import euid as euids
from tapdb_core._version import __version__
from tapdb_core.config import normalise_url
from tapdb_core.errors import EUIDError, TapdbError
from tapdb_core.tables import metadata

__all__ = [
    "FORMAT_VERSION",
    "BackupError",
    "BackupInfo",
    "IncompatibleBackupError",
    "InvalidBackupError",
    "RestoreInfo",
    "RestoreTargetNotEmptyError",
    "SequenceState",
    "TableEntry",
    "backup",
    "read_manifest",
    "restore",
]

FORMAT_NAME: Final = "tapdb-backup"
FORMAT_VERSION: Final = 1
MANIFEST_MEMBER: Final = "tapdb-backup.json"
CHECKSUMS_MEMBER: Final = "checksums.json"

_CHUNK: Final = 1 << 20
_MAX_JSON_BYTES: Final = 64 << 20
_GZIP_MAGIC: Final = b"\x1f\x8b"
#: name ending of a backup being written (see _partial_file)
_PARTIAL_SUFFIX: Final = ".partial"
#: session settings under which COPY text is written and read back
_COPY_SETTINGS: Final = (
    ("DateStyle", "ISO, YMD"),
    ("TimeZone", "UTC"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
    ("client_encoding", "UTF8"),
)
#: columns never copied (see the module docstring): generated ones, and these
_NOT_COPIED: Final = {"generic_instance": frozenset({"created_xid"})}
_TABLE_NAMES: Final = tuple(t.name for t in metadata.sorted_tables)
_EUID_SEQ_RE: Final = re.compile(r"^tapdb_euid_seq_([a-z]{2,3})$")
_IDENT_RE: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MEMBER_RE: Final = re.compile(r"^data/[0-9]{2,}-[a-z_][a-z0-9_]{0,62}\.copy$")
_BIGINT_MIN: Final = -(2**63)
_BIGINT_MAX: Final = 2**63 - 1

Progress = Callable[[str], None]


# --------------------------------------------------------------------------- errors


class BackupError(TapdbError):
    """A backup or restore could not be done; nothing was written."""


class InvalidBackupError(BackupError, ValueError):
    """The file is not a tapdb backup, or it is truncated or corrupt."""

    exit_code = 2


class IncompatibleBackupError(BackupError):
    """The backup was made by a newer tapdb_core (format or schema revision)."""


class RestoreTargetNotEmptyError(BackupError):
    """The target database already holds tapdb objects (pass ``clean=True``)."""


# --------------------------------------------------------------------------- infos


def _readonly(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping))


@attrs.frozen(kw_only=True)
class TableEntry:
    """One table in a backup: its data member, the columns copied, its row count."""

    name: str
    member: str
    columns: tuple[str, ...]
    rows: int


@attrs.frozen(kw_only=True)
class SequenceState:
    """A sequence's position: ``setval(seq, last_value, is_called)`` restores it.

    ``kind`` is ``"euid"`` (a per-prefix ``tapdb_euid_seq_*``; ``prefix`` is set)
    or ``"identity"`` (behind ``table.column``).
    """

    name: str
    kind: str
    last_value: int
    is_called: bool
    prefix: str | None = None
    table: str | None = None
    column: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "last_value": self.last_value,
            "is_called": self.is_called,
        }
        if self.kind == "euid":
            out["prefix"] = self.prefix
        else:
            out["table"] = self.table
            out["column"] = self.column
        return out


@attrs.frozen(kw_only=True)
class BackupInfo:
    """What a backup file holds (returned by :func:`backup` and :func:`read_manifest`)."""

    path: Path
    revision: str
    format_version: int
    tapdb_core_version: str
    created_at: str
    meridian_domain: str | None
    identity_prefixes: Mapping[str, str] = attrs.field(converter=_readonly, hash=False)
    tables: tuple[TableEntry, ...]
    sequences: tuple[SequenceState, ...]

    @property
    def row_counts(self) -> dict[str, int]:
        return {t.name: t.rows for t in self.tables}


@attrs.frozen(kw_only=True)
class RestoreInfo:
    """What :func:`restore` loaded."""

    path: Path
    revision: str
    meridian_domain: str | None
    tables: tuple[TableEntry, ...]
    sequences: tuple[SequenceState, ...]
    cleaned: bool
    """Whether existing tapdb objects were dropped first (``clean=True`` and some existed)."""
    adjusted_sequences: tuple[str, ...] = ()
    """Sequences moved past the largest restored value because the backup had them
    behind its own rows (never for backups made by :func:`backup`)."""

    @property
    def row_counts(self) -> dict[str, int]:
        return {t.name: t.rows for t in self.tables}


# --------------------------------------------------------------------------- helpers


def _quiet(_message: str) -> None:
    return None


def _engine(url: str | URL) -> Engine:
    raw = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
    return create_engine(normalise_url(raw), poolclass=NullPool)


def _driver(conn: Connection) -> psycopg.Connection[Any]:
    driver = conn.connection.driver_connection
    if not isinstance(driver, psycopg.Connection):  # pragma: no cover - psycopg URLs only
        raise BackupError("backup and restore need the psycopg (3) driver")
    return driver


def _apply_copy_settings(conn: Connection) -> None:
    for name, value in _COPY_SETTINGS:
        conn.execute(text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value})


def _known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    return {rev.revision for rev in script.walk_revisions()}


def _table_exists(conn: Connection, table: str) -> bool:
    return bool(
        conn.execute(
            text("SELECT to_regclass(quote_ident(:t)) IS NOT NULL"), {"t": table}
        ).scalar_one()
    )


def _copy_columns(conn: Connection, table: str) -> tuple[str, ...]:
    """The columns COPY moves: all but generated, dropped and deliberately skipped ones."""
    names = conn.execute(
        text(
            "SELECT a.attname FROM pg_attribute a"
            " WHERE a.attrelid = to_regclass(quote_ident(:t)) AND a.attnum > 0"
            " AND NOT a.attisdropped AND a.attgenerated = ''"
            " ORDER BY a.attnum"
        ),
        {"t": table},
    ).scalars()
    skipped = _NOT_COPIED.get(table, frozenset())
    return tuple(str(n) for n in names if n not in skipped)


def _identity_columns(conn: Connection, table: str) -> list[str]:
    return [
        str(n)
        for n in conn.execute(
            text(
                "SELECT a.attname FROM pg_attribute a"
                " WHERE a.attrelid = to_regclass(quote_ident(:t)) AND a.attnum > 0"
                " AND NOT a.attisdropped AND a.attidentity <> '' ORDER BY a.attnum"
            ),
            {"t": table},
        ).scalars()
    ]


def _read_sequence(
    conn: Connection, regclass_sql: str, params: Mapping[str, Any]
) -> tuple[str, int, bool]:
    """(name, last_value, is_called) of the sequence ``regclass_sql`` evaluates to."""
    row = conn.execute(
        text(
            "SELECT n.nspname, c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            f" WHERE c.oid = ({regclass_sql})::regclass"
        ),
        dict(params),
    ).one()
    query = sql.SQL("SELECT last_value, is_called FROM {}").format(
        sql.Identifier(row.nspname, row.relname)
    )
    with _driver(conn).cursor() as cur:
        cur.execute(query)
        fetched = cur.fetchone()
    assert fetched is not None
    return str(row.relname), int(fetched[0]), bool(fetched[1])


def _sequence_states(conn: Connection, tables: Sequence[str]) -> list[SequenceState]:
    states: list[SequenceState] = []
    euid_names = conn.execute(
        text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'S' AND n.nspname = current_schema()"
            " AND c.relname LIKE 'tapdb\\_euid\\_seq\\_%' ORDER BY c.relname"
        )
    ).scalars()
    for name in list(euid_names):
        match = _EUID_SEQ_RE.match(name)
        if match is None:
            raise BackupError(f"unexpected EUID sequence name {name!r} in the database")
        relname, last, called = _read_sequence(conn, "quote_ident(:n)", {"n": name})
        states.append(
            SequenceState(
                name=relname,
                kind="euid",
                prefix=match.group(1).upper(),
                last_value=last,
                is_called=called,
            )
        )
    for table in tables:
        for column in _identity_columns(conn, table):
            relname, last, called = _read_sequence(
                conn, "pg_get_serial_sequence(quote_ident(:t), :c)", {"t": table, "c": column}
            )
            states.append(
                SequenceState(
                    name=relname,
                    kind="identity",
                    table=table,
                    column=column,
                    last_value=last,
                    is_called=called,
                )
            )
    return states


def _tar_info(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(mtime)
    info.mode = 0o600
    info.type = tarfile.REGTYPE
    return info


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=1, sort_keys=False) + "\n").encode("utf-8")


# --------------------------------------------------------------------------- backup


def backup(url: str | URL, out: Path | str, *, progress: Progress | None = None) -> BackupInfo:
    """Write a complete backup of the tapdb database at ``url`` to the file ``out``.

    Reads one consistent snapshot (a read-only REPEATABLE READ transaction), so
    other sessions may keep writing meanwhile. Table data is streamed through a
    temporary file next to ``out``, one table at a time; memory stays flat. An
    existing ``out`` is replaced only once the new backup is complete.
    """
    say = progress or _quiet
    out = Path(out)
    if out.is_dir():
        raise BackupError(f"cannot write the backup to {out}: it is a directory")
    if not out.parent.is_dir():
        raise BackupError(f"cannot write the backup to {out}: {out.parent} does not exist")
    engine = _engine(url)
    try:
        with _partial_file(out) as (fd, partial):
            with engine.connect() as conn:
                conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
                with conn.begin():
                    info = _write_backup(conn, out, fd, partial, say)
            os.replace(partial, out)
            _fsync_directory(out.parent)
    except OSError as exc:
        raise BackupError(f"cannot write the backup to {out}: {exc}") from exc
    finally:
        engine.dispose()
    say(f"backup written to {out}")
    return info


@contextlib.contextmanager
def _partial_file(out: Path) -> Iterator[tuple[int, Path]]:
    """A new file (fd, path) beside ``out`` for the backup in progress; removed unless renamed.

    ``mkstemp`` creates it with O_CREAT|O_EXCL (a planted file or symlink is
    never opened, let alone followed), mode 0600 from the start, under a random
    name: ``.<out name>.<random>.partial``, which no reader takes for a backup,
    and which a killed run leaves only as an obviously partial file.
    """
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=_PARTIAL_SUFFIX)
    partial = Path(name)
    try:
        yield fd, partial
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)  # normally closed by the writer already
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()  # gone already when it was renamed into place


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_backup(conn: Connection, out: Path, fd: int, partial: Path, say: Progress) -> BackupInfo:
    _apply_copy_settings(conn)  # first statement: takes the snapshot everything reads
    revision = migrate.current_revision(conn)
    database = str(conn.execute(text("SELECT current_database()")).scalar_one())
    if revision is None:
        raise BackupError(
            f"database {database!r} is not a tapdb database (no alembic_version): nothing to back up"
        )
    if revision not in _known_revisions():
        raise BackupError(
            f"database {database!r} is at schema revision {revision}, which this tapdb_core "
            f"({__version__}) does not know: back it up with the tapdb_core that migrated it"
        )
    names = [t for t in _TABLE_NAMES if _table_exists(conn, t)]
    if not names:
        raise BackupError(f"database {database!r} has no tapdb tables: nothing to back up")
    tables: list[TableEntry] = []
    for index, name in enumerate(names, start=1):
        rows = int(conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one())
        tables.append(
            TableEntry(
                name=name,
                member=f"data/{index:02d}-{name}.copy",
                columns=_copy_columns(conn, name),
                rows=rows,
            )
        )
    # Sequences are not transactional: read now, after the snapshot was taken,
    # their positions are at or past every value the snapshot's rows hold.
    sequences = _sequence_states(conn, names)
    domain = conn.execute(text("SELECT tapdb_meridian_domain()")).scalar_one_or_none()
    prefixes: dict[str, str] = {}
    if "tapdb_identity_prefix_config" in names:
        prefixes = {
            str(r.entity): str(r.euid_prefix)
            for r in conn.execute(
                text("SELECT entity, euid_prefix FROM tapdb_identity_prefix_config ORDER BY entity")
            )
        }
    now = dt.datetime.now(dt.timezone.utc)
    manifest: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "tapdb_core_version": __version__,
        "created_at": now.isoformat(),
        "server_version": str(conn.execute(text("SHOW server_version")).scalar_one()),
        "database": database,
        "alembic_revision": revision,
        "meridian_domain": domain,
        "identity_prefixes": prefixes,
        "copy": {"format": "text", "encoding": "UTF8", "settings": dict(_COPY_SETTINGS)},
        "tables": [
            {"name": t.name, "member": t.member, "columns": list(t.columns), "rows": t.rows}
            for t in tables
        ],
        "sequences": [s.to_json() for s in sequences],
    }
    mtime = now.timestamp()
    checksums: dict[str, dict[str, Any]] = {}
    with os.fdopen(os.dup(fd), "wb") as raw:
        with (
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6) as gz,
            tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            data = _json_bytes(manifest)
            tar.addfile(_tar_info(MANIFEST_MEMBER, len(data), mtime), io.BytesIO(data))
            for table in tables:
                checksums[table.member] = _spool_table(conn, table, tar, partial.parent, mtime)
                say(f"{table.name}: {table.rows} rows")
            data = _json_bytes({"format": FORMAT_NAME, "members": checksums})
            tar.addfile(_tar_info(CHECKSUMS_MEMBER, len(data), mtime), io.BytesIO(data))
        raw.flush()
        os.fsync(raw.fileno())
    return BackupInfo(
        path=out,
        revision=revision,
        format_version=FORMAT_VERSION,
        tapdb_core_version=__version__,
        created_at=manifest["created_at"],
        meridian_domain=domain,
        identity_prefixes=prefixes,
        tables=tuple(tables),
        sequences=tuple(sequences),
    )


def _spool_table(
    conn: Connection, table: TableEntry, tar: tarfile.TarFile, tmpdir: Path, mtime: float
) -> dict[str, Any]:
    """COPY one table into a temporary file, then into the archive; its checksum entry."""
    query = sql.SQL("COPY {} ({}) TO STDOUT").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, table.columns))
    )
    digest = hashlib.sha256()
    rows = 0
    with tempfile.TemporaryFile(dir=tmpdir, prefix=".tapdb-backup-") as spool:
        with _driver(conn).cursor() as cur, cur.copy(query) as copy:
            for chunk in copy:
                block = bytes(chunk)
                spool.write(block)
                digest.update(block)
                rows += block.count(b"\n")  # COPY text: one line per row, newlines escaped
        if rows != table.rows:  # pragma: no cover - same snapshot, cannot differ
            raise BackupError(f"{table.name}: COPY wrote {rows} rows, count(*) said {table.rows}")
        size = spool.tell()
        spool.seek(0)
        tar.addfile(_tar_info(table.member, size, mtime), spool)
    return {"sha256": digest.hexdigest(), "bytes": size, "rows": rows}


# --------------------------------------------------------------------------- reading


class _Archive:
    """Sequential reader of a backup file; every read problem becomes InvalidBackupError."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self._gz: gzip.GzipFile | None = None
        self._tar: tarfile.TarFile | None = None
        self.manifest_read = False

    def __enter__(self) -> _Archive:
        try:
            self._file = open(self.path, "rb")  # closed in close()
        except OSError as exc:
            raise BackupError(
                f"cannot read backup file {self.path}: {exc.strerror or exc}"
            ) from exc
        if self._file.read(2) != _GZIP_MAGIC:
            self.close()
            raise InvalidBackupError(
                f"{self.path} is not a tapdb backup (not a gzip-compressed tar archive)"
            )
        self._file.seek(0)
        self._gz = gzip.GzipFile(fileobj=self._file, mode="rb")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for closable in (self._tar, self._gz, self._file):
            if closable is not None:
                with contextlib.suppress(Exception):
                    closable.close()
        self._tar = self._gz = self._file = None

    def _damaged(self, exc: BaseException) -> InvalidBackupError:
        detail = str(exc) or type(exc).__name__
        if not self.manifest_read:
            return InvalidBackupError(
                f"{self.path} is not a tapdb backup or is damaged (cannot read it: {detail})"
            )
        return InvalidBackupError(f"backup file {self.path} is truncated or corrupt: {detail}")

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        try:
            yield
        except InvalidBackupError:
            raise
        except (OSError, EOFError, zlib.error, tarfile.TarError, ValueError) as exc:
            raise self._damaged(exc) from exc

    def next_member(self) -> tarfile.TarInfo | None:
        with self._reading():
            if self._tar is None:
                assert self._gz is not None
                self._tar = tarfile.open(fileobj=self._gz, mode="r|")
            member = self._tar.next()
        if member is not None and not member.isreg():
            raise self._damaged(ValueError(f"member {member.name!r} is not a regular file"))
        return member

    def expect(self, name: str) -> tarfile.TarInfo:
        member = self.next_member()
        if member is None or member.name != name:
            found = "the end of the archive" if member is None else f"member {member.name!r}"
            if not self.manifest_read:
                raise InvalidBackupError(
                    f"{self.path} is not a tapdb backup (expected {name} first, found {found})"
                )
            raise InvalidBackupError(
                f"backup file {self.path} is truncated or corrupt: expected {name}, found {found}"
            )
        return member

    def chunks(self, member: tarfile.TarInfo) -> Iterator[bytes]:
        assert self._tar is not None
        with self._reading():
            handle = self._tar.extractfile(member)
            if handle is None:  # pragma: no cover - regular files always have one
                raise ValueError(f"member {member.name!r} has no data")
            remaining = member.size
            while remaining > 0:
                block = handle.read(min(_CHUNK, remaining))
                if not block:
                    raise EOFError(f"member {member.name!r} ends early")
                remaining -= len(block)
                yield block

    def read_json(self, member: tarfile.TarInfo) -> Any:
        if member.size > _MAX_JSON_BYTES:
            raise self._damaged(ValueError(f"member {member.name!r} is implausibly large"))
        data = b"".join(self.chunks(member))
        with self._reading():
            return json.loads(data.decode("utf-8"))

    def finish(self) -> None:
        """Nothing may follow the trailer; read to the end so gzip checks its CRC."""
        extra = self.next_member()
        if extra is not None:
            raise self._damaged(ValueError(f"unexpected member {extra.name!r} after the trailer"))
        with self._reading():
            assert self._gz is not None
            while self._gz.read(_CHUNK):
                pass


def _bad(path: Path, message: str) -> InvalidBackupError:
    return InvalidBackupError(f"backup file {path} has an invalid manifest: {message}")


def _int(path: Path, value: Any, what: str, low: int = 0, high: int = _BIGINT_MAX) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _bad(path, f"{what} must be an integer in [{low}, {high}], not {value!r}")
    return value


def _str(path: Path, value: Any, what: str, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
        raise _bad(path, f"{what} is not valid: {value!r}")
    return value


def _parse_manifest(path: Path, data: Any) -> BackupInfo:
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise InvalidBackupError(f"{path} is not a tapdb backup (its manifest is not tapdb's)")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _bad(path, f"format_version {version!r}")
    if version > FORMAT_VERSION:
        raise IncompatibleBackupError(
            f"backup file {path} has format version {version}; this tapdb_core ({__version__}) "
            f"reads up to version {FORMAT_VERSION}: upgrade tapdb_core to restore it"
        )
    revision = _str(path, data.get("alembic_revision"), "alembic_revision")
    domain = data.get("meridian_domain")
    if domain is not None:
        try:
            euids.check_domain(domain)
        except EUIDError as exc:
            raise _bad(path, str(exc)) from exc
    copy = data.get("copy")
    if not isinstance(copy, dict) or copy.get("format") != "text" or copy.get("encoding") != "UTF8":
        raise _bad(path, f"unsupported COPY options {copy!r}")
    raw_prefixes = data.get("identity_prefixes", {})
    if not isinstance(raw_prefixes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw_prefixes.items()
    ):
        raise _bad(path, "identity_prefixes must map entity names to prefixes")

    raw_tables = data.get("tables")
    if not isinstance(raw_tables, list) or not raw_tables:
        raise _bad(path, "tables must be a non-empty list")
    tables: list[TableEntry] = []
    for i, entry in enumerate(raw_tables):
        if not isinstance(entry, dict):
            raise _bad(path, f"tables[{i}] is not an object")
        name = _str(path, entry.get("name"), f"tables[{i}].name")
        if name not in _TABLE_NAMES:
            raise _bad(path, f"unknown table {name!r}")
        columns = entry.get("columns")
        if (
            not isinstance(columns, list)
            or not columns
            or not all(isinstance(c, str) and _IDENT_RE.match(c) for c in columns)
            or len(set(columns)) != len(columns)
        ):
            raise _bad(path, f"tables[{i}].columns is not a list of column names")
        tables.append(
            TableEntry(
                name=name,
                member=_str(path, entry.get("member"), f"tables[{i}].member", _MEMBER_RE),
                columns=tuple(columns),
                rows=_int(path, entry.get("rows"), f"tables[{i}].rows"),
            )
        )
    names = [t.name for t in tables]
    members = [t.member for t in tables]
    if len(set(names)) != len(names) or len(set(members)) != len(members):
        raise _bad(path, "a table or member is listed twice")
    if names != [n for n in _TABLE_NAMES if n in names]:
        raise _bad(path, "tables are not in foreign-key order")

    raw_sequences = data.get("sequences")
    if not isinstance(raw_sequences, list):
        raise _bad(path, "sequences must be a list")
    sequences: list[SequenceState] = []
    for i, entry in enumerate(raw_sequences):
        if not isinstance(entry, dict):
            raise _bad(path, f"sequences[{i}] is not an object")
        kind = entry.get("kind")
        called = entry.get("is_called")
        if not isinstance(called, bool):
            raise _bad(path, f"sequences[{i}].is_called must be true or false")
        last = _int(path, entry.get("last_value"), f"sequences[{i}].last_value", _BIGINT_MIN)
        seq_name = _str(path, entry.get("name"), f"sequences[{i}].name", _IDENT_RE)
        if kind == "euid":
            prefix = _str(path, entry.get("prefix"), f"sequences[{i}].prefix", euids.PREFIX_RE)
            if seq_name != f"tapdb_euid_seq_{prefix.lower()}":
                raise _bad(path, f"sequence {seq_name!r} does not belong to prefix {prefix}")
            sequences.append(
                SequenceState(
                    name=seq_name, kind="euid", prefix=prefix, last_value=last, is_called=called
                )
            )
        elif kind == "identity":
            table = _str(path, entry.get("table"), f"sequences[{i}].table")
            column = _str(path, entry.get("column"), f"sequences[{i}].column", _IDENT_RE)
            if table not in names:
                raise _bad(path, f"sequence {seq_name!r} belongs to a table not in the backup")
            sequences.append(
                SequenceState(
                    name=seq_name,
                    kind="identity",
                    table=table,
                    column=column,
                    last_value=last,
                    is_called=called,
                )
            )
        else:
            raise _bad(path, f"sequences[{i}].kind must be 'euid' or 'identity', not {kind!r}")
    keys = [(s.kind, s.prefix, s.table, s.column) for s in sequences]
    if len(set(keys)) != len(keys):
        raise _bad(path, "a sequence is listed twice")
    return BackupInfo(
        path=path,
        revision=revision,
        format_version=version,
        tapdb_core_version=str(data.get("tapdb_core_version", "")),
        created_at=str(data.get("created_at", "")),
        meridian_domain=domain,
        identity_prefixes=raw_prefixes,
        tables=tuple(tables),
        sequences=tuple(sequences),
    )


def _open_manifest(archive: _Archive) -> BackupInfo:
    member = archive.expect(MANIFEST_MEMBER)
    data = archive.read_json(member)
    info = _parse_manifest(archive.path, data)
    archive.manifest_read = True
    return info


def _check_compatible(info: BackupInfo) -> None:
    if info.revision not in _known_revisions():
        raise IncompatibleBackupError(
            f"backup file {info.path} was made at schema revision {info.revision}, which this "
            f"tapdb_core ({__version__}, head {migrate.head_revision()}) does not know: it comes "
            "from a newer tapdb_core; upgrade tapdb_core to restore it"
        )


def read_manifest(source: Path | str) -> BackupInfo:
    """What a backup file holds, from its manifest only (the data is not checked)."""
    path = Path(source)
    with _Archive(path) as archive:
        return _open_manifest(archive)


# --------------------------------------------------------------------------- restore


def _tapdb_objects(conn: Connection) -> list[str]:
    """Names of tapdb-owned objects in the current schema (empty list: nothing there)."""
    return [
        str(n)
        for n in conn.execute(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = current_schema()"
                "   AND (c.relname = ANY (CAST(:tables AS text[])) OR c.relname = 'alembic_version'"
                "        OR (c.relkind = 'S' AND c.relname LIKE 'tapdb\\_euid\\_seq\\_%'))"
                " UNION ALL"
                " SELECT DISTINCT p.proname || '()' FROM pg_proc p"
                "   JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname = current_schema() AND p.proname LIKE 'tapdb\\_%'"
                " ORDER BY 1"
            ),
            {"tables": list(_TABLE_NAMES)},
        ).scalars()
    ]


def _clear_dependents(conn: Connection, drop: bool, say: Progress) -> None:
    """Refuse (nothing dropped yet) while application objects depend on tapdb's, or drop them."""
    if not drop:
        dependents.refuse_dependents(
            conn,
            "drop the tapdb objects for the restore",
            "drop_dependents=True (--drop-dependents)",
        )
        return
    for dropped in dependents.drop_external_dependents(conn):
        say(f"dropped {dropped}")


def _drop_tapdb_objects(conn: Connection, say: Progress) -> None:
    """Drop everything tapdb owns in the current schema, inside the caller's transaction."""
    revision = migrate.current_revision(conn)
    if revision is not None and revision in _known_revisions():
        # DROP TABLE fires no row or TRUNCATE triggers: audit_log goes like the rest.
        try:
            with conn.begin_nested():
                migrate.downgrade(conn, "base", allow_data_loss=True)
            say(f"dropped the schema (downgrade from revision {revision})")
        except (SQLAlchemyError, CommandError) as exc:
            say(f"downgrade from revision {revision} failed ({exc}); dropping objects directly")
    # Whatever is left (unknown revision, half-built schema, downgrade failure).
    tables = ", ".join(f'"{t}"' for t in (*reversed(_TABLE_NAMES), "alembic_version"))
    conn.execute(text(f"DROP TABLE IF EXISTS {tables} CASCADE"))
    conn.execute(
        text(
            r"""
            DO $$
            DECLARE
                r record;
            BEGIN
                FOR r IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE c.relkind = 'S' AND c.relname LIKE 'tapdb\_euid\_seq\_%'
                            AND n.nspname = current_schema()
                LOOP
                    EXECUTE format('DROP SEQUENCE %I', r.relname);
                END LOOP;
                FOR r IN SELECT p.oid::regprocedure AS sig FROM pg_proc p
                           JOIN pg_namespace n ON n.oid = p.pronamespace
                          WHERE p.proname LIKE 'tapdb\_%' AND n.nspname = current_schema()
                LOOP
                    EXECUTE format('DROP FUNCTION %s', r.sig);
                END LOOP;
            END
            $$
            """
        )
    )


def _set_triggers(conn: Connection, tables: Sequence[TableEntry], enabled: bool) -> None:
    action = "ENABLE" if enabled else "DISABLE"
    for table in tables:
        conn.execute(text(f'ALTER TABLE "{table.name}" {action} TRIGGER USER'))


def _load_table(
    conn: Connection, archive: _Archive, table: TableEntry
) -> tuple[int, dict[str, Any]]:
    """COPY one member into its table; (rows loaded, checksum entry of what was read)."""
    member = archive.expect(table.member)
    query = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, table.columns))
    )
    digest = hashlib.sha256()
    size = 0
    lines = 0
    try:
        with _driver(conn).cursor() as cur:
            with cur.copy(query) as copy:
                for block in archive.chunks(member):
                    digest.update(block)
                    size += len(block)
                    lines += block.count(b"\n")
                    copy.write(block)
            loaded = cur.rowcount
    except (psycopg.DataError, psycopg.IntegrityError) as exc:
        raise InvalidBackupError(
            f"backup file {archive.path} is corrupt or does not fit its schema revision: "
            f"table {table.name} cannot be loaded: {str(exc).strip()}"
        ) from exc
    return loaded, {"sha256": digest.hexdigest(), "bytes": size, "rows": lines}


def _restore_sequences(
    conn: Connection, info: BackupInfo, say: Progress
) -> tuple[list[SequenceState], list[str]]:
    restored: list[SequenceState] = []
    for seq in info.sequences:
        if seq.kind == "euid":
            regclass_sql, params = "tapdb_ensure_euid_sequence(:p)", {"p": seq.prefix}
        else:
            regclass_sql = "pg_get_serial_sequence(quote_ident(:t), :c)"
            params = {"t": seq.table, "c": seq.column}
            found = conn.execute(text(f"SELECT {regclass_sql}"), params).scalar_one_or_none()
            if found is None:
                raise InvalidBackupError(
                    f"backup file {info.path}: {seq.table}.{seq.column} has no identity "
                    f"sequence at revision {info.revision}"
                )
        conn.execute(
            text(f"SELECT setval(({regclass_sql})::regclass, :v, :called)"),
            {**params, "v": seq.last_value, "called": seq.is_called},
        )
        name, last, called = _read_sequence(conn, regclass_sql, params)
        restored.append(attrs.evolve(seq, name=name, last_value=last, is_called=called))
    adjusted = _sequences_past_rows(conn, info, say)
    return restored, adjusted


def _sequences_past_rows(conn: Connection, info: BackupInfo, say: Progress) -> list[str]:
    """Move any sequence still behind the largest value the restored rows hold.

    Never needed for a backup this module wrote (its sequence positions are read
    after its snapshot); a guard against hand-made or edited backups, so new
    EUIDs and uuids can never collide with restored ones.
    """
    targets: list[tuple[str, dict[str, Any], int]] = []
    per_prefix: dict[str, int] = {}
    for table in info.tables:
        if {"euid_prefix", "euid_seq"} <= set(table.columns):
            for prefix, top in conn.execute(
                text(f'SELECT euid_prefix, max(euid_seq) FROM "{table.name}" GROUP BY euid_prefix')
            ):
                per_prefix[prefix] = max(per_prefix.get(prefix, 0), int(top))
        for column in _identity_columns(conn, table.name):
            top = conn.execute(_max_query(table.name, column)).scalar_one_or_none()
            if top is not None:
                targets.append(
                    (
                        "pg_get_serial_sequence(quote_ident(:t), :c)",
                        {"t": table.name, "c": column},
                        int(top),
                    )
                )
    for prefix, top in sorted(per_prefix.items()):
        try:
            euids.check_prefix(prefix)
        except EUIDError as exc:  # pragma: no cover - CHECK constraints keep them valid
            raise InvalidBackupError(f"backup file {info.path}: {exc}") from exc
        targets.append(("tapdb_ensure_euid_sequence(:p)", {"p": prefix}, top))
    adjusted: list[str] = []
    for regclass_sql, params, top in targets:
        name, last, called = _read_sequence(conn, regclass_sql, params)
        used = last if called else last - 1
        if top > used:
            conn.execute(
                text(f"SELECT setval(({regclass_sql})::regclass, :v, true)"), {**params, "v": top}
            )
            say(f"sequence {name} moved from {used} to {top}, past the restored rows")
            adjusted.append(name)
    return adjusted


def _max_query(table: str, column: str) -> TextClause:
    """``SELECT max(column) FROM table`` with both names quoted."""
    if not _IDENT_RE.match(table) or not _IDENT_RE.match(column):  # pragma: no cover
        raise BackupError(f"unexpected identifier {table}.{column}")
    return text(f'SELECT max("{column}") FROM "{table}"')


def restore(
    url: str | URL,
    source: Path | str,
    *,
    clean: bool = False,
    drop_dependents: bool = False,
    progress: Progress | None = None,
) -> RestoreInfo:
    """Restore the backup file ``source`` into the database at ``url``, in one transaction.

    The database must hold no tapdb object, unless ``clean`` is true: then they
    are dropped first, in the same transaction. ``clean`` refuses with
    :class:`~tapdb_core.dependents.DependentObjectsError` (naming them) when
    objects tapdb did not create depend on tapdb's (an application's view,
    foreign key, function...), unless ``drop_dependents`` is true too. On any
    error (bad file, refused target, load failure) nothing is changed.
    """
    say = progress or _quiet
    path = Path(source)
    with _Archive(path) as archive:
        info = _open_manifest(archive)
        _check_compatible(info)
        engine = _engine(url)
        try:
            with engine.begin() as conn:
                result = _restore_into(
                    conn, archive, info, say, clean=clean, drop_dependents=drop_dependents
                )
        finally:
            engine.dispose()
    say(f"restored {path} (revision {info.revision})")
    return result


def _restore_into(
    conn: Connection,
    archive: _Archive,
    info: BackupInfo,
    say: Progress,
    *,
    clean: bool,
    drop_dependents: bool,
) -> RestoreInfo:
    database = str(conn.execute(text("SELECT current_database()")).scalar_one())
    existing = _tapdb_objects(conn)
    cleaned = False
    if existing:
        if not clean:
            shown = ", ".join(existing[:8]) + (", ..." if len(existing) > 8 else "")
            raise RestoreTargetNotEmptyError(
                f"database {database!r} already holds tapdb objects ({shown}): "
                f"restore {info.path} into an empty database, or with clean=True "
                "to drop them first"
            )
        _clear_dependents(conn, drop_dependents, say)
        _drop_tapdb_objects(conn, say)
        cleaned = True
    say(f"schema: migrating to revision {info.revision}")
    migrate.upgrade(conn, info.revision)
    _apply_copy_settings(conn)

    for table in info.tables:
        if not _table_exists(conn, table.name):
            raise InvalidBackupError(
                f"backup file {info.path}: table {table.name} does not exist at revision "
                f"{info.revision}"
            )
        expected = _copy_columns(conn, table.name)
        if set(expected) != set(table.columns):
            raise InvalidBackupError(
                f"backup file {info.path}: the columns of {table.name} do not match schema "
                f"revision {info.revision} (backup: {', '.join(table.columns)}; "
                f"schema: {', '.join(expected)})"
            )
    _set_triggers(conn, info.tables, enabled=False)
    # rows the migrations inserted (the default identity prefixes) give way to the backup's
    for table in reversed(info.tables):
        conn.execute(text(f'DELETE FROM "{table.name}"'))

    read: dict[str, dict[str, Any]] = {}
    for table in info.tables:
        loaded, read[table.member] = _load_table(conn, archive, table)
        if loaded != table.rows:
            raise InvalidBackupError(
                f"backup file {info.path}: table {table.name} has {loaded} rows, "
                f"the manifest says {table.rows}"
            )
        say(f"{table.name}: {loaded} rows loaded")
    trailer = archive.read_json(archive.expect(CHECKSUMS_MEMBER))
    archive.finish()
    members = trailer.get("members") if isinstance(trailer, dict) else None
    if not isinstance(members, dict):
        raise InvalidBackupError(f"backup file {info.path} has an invalid checksums.json")
    for member, got in read.items():
        if members.get(member) != got:
            raise InvalidBackupError(
                f"backup file {info.path} is corrupt: {member} does not match its checksum"
            )

    sequences, adjusted = _restore_sequences(conn, info, say)
    conn.execute(text("SELECT tapdb_set_meridian_domain(:d)"), {"d": info.meridian_domain})
    _set_triggers(conn, info.tables, enabled=True)

    for table in info.tables:
        count = int(conn.execute(text(f'SELECT count(*) FROM "{table.name}"')).scalar_one())
        if count != table.rows:  # pragma: no cover - COPY's own count was checked
            raise BackupError(f"{table.name}: {count} rows after restore, expected {table.rows}")
    say(f"sequences: {len(sequences)} restored")
    return RestoreInfo(
        path=info.path,
        revision=info.revision,
        meridian_domain=info.meridian_domain,
        tables=info.tables,
        sequences=tuple(sequences),
        cleaned=cleaned,
        adjusted_sequences=tuple(adjusted),
    )
