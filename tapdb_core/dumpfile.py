"""A tapdb backup file read without a server: whether it is a complete tapdb backup and
what it holds, and the SQL ``pg_restore`` writes for it.

A file is a tapdb backup when it is a ``pg_dump`` custom-format archive whose table of
contents (``pg_restore --list``) has data for the tapdb tables and ``alembic_version``.
It is complete when a full ``pg_restore`` pass reads every data block and the blocks
match the table of contents, so a truncated or corrupt file is refused before any
server is touched.
"""

from __future__ import annotations

import contextlib
import gzip
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import attrs

from tapdb_core import dependents
from tapdb_core.backup_errors import BackupError, InvalidBackupError
from tapdb_core.pgclient import tool

__all__ = [
    "COPY_LINE",
    "REQUIRED_TABLES",
    "BackupContents",
    "restore_script",
    "script_events",
    "verify",
]

#: tables every tapdb backup holds data for (revision 0001 on)
REQUIRED_TABLES: Final = (*dependents.TAPDB_TABLES,)
#: a data block in pg_restore's SQL: ``COPY schema.table (columns) FROM stdin;``
COPY_LINE: Final = re.compile(rb"^COPY ([a-z_0-9]+)\.([a-z_0-9]+) \((.*)\) FROM stdin;$")
_MAGIC: Final = b"PGDMP"
_ENTRY = re.compile(r"^\d+; \d+ \d+ (TABLE DATA|SEQUENCE SET|TABLE) (\S+) (\S+) \S+$")
_HEADER = re.compile(rb"^-- (?:Data for )?Name: .*; Type: ([A-Z ]+); Schema: ")
_SETVAL = re.compile(rb"^SELECT pg_catalog\.setval\('[a-z_0-9]+\.([a-z_0-9]+)', ")


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
def restore_script(path: Path, *options: str) -> Iterator[Iterator[bytes]]:
    """The SQL ``pg_restore`` writes for the archive, line by line; a failure of
    pg_restore (a truncated or corrupt file) raises once the lines are read."""
    with tempfile.TemporaryFile() as errors:
        argv = [tool("pg_restore"), *options, "-f", "-", str(path.absolute())]
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


def script_events(lines: Iterator[bytes]) -> Iterator[tuple[str, bytes]]:
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
        [tool("pg_restore"), "--list", str(path.absolute())],
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
    with restore_script(path, "--data-only") as lines:
        table = ""
        for kind, line in script_events(lines):
            if kind == "copy":
                found = COPY_LINE.match(line)
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
