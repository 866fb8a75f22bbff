"""Backup with ``pg_dump`` (docs/decisions/0001-backup-on-pg-dump.md), and the one
import path of the backup API: verify (tapdb_core.dumpfile) and restore
(tapdb_core.restore) are importable from here too.

A backup is ``pg_dump -Fc`` of the database (``data_only``: ``-Fc -a``), written
to a random ``.NAME.*.partial`` file created with mode 0600 beside the output,
read back completely by ``pg_restore`` and only then renamed into place.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import attrs
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tapdb_core import migrate
from tapdb_core.backup_errors import (
    BackupError,
    IncompatibleBackupError,
    InvalidBackupError,
    RestoreTargetNotEmptyError,
)
from tapdb_core.dumpfile import REQUIRED_TABLES, BackupContents, verify
from tapdb_core.pgbinaries import parse_version
from tapdb_core.pgclient import libpq_env, major, target_url, tool, unpooled_engine
from tapdb_core.restore import DATA_TABLES, RestoreInfo, restore

__all__ = [
    "DATA_TABLES",
    "REQUIRED_TABLES",
    "BackupContents",
    "BackupError",
    "BackupInfo",
    "IncompatibleBackupError",
    "InvalidBackupError",
    "Progress",
    "RestoreInfo",
    "RestoreTargetNotEmptyError",
    "backup",
    "default_file_name",
    "restore",
    "verify",
]

Progress = Callable[[str], None]


@attrs.frozen(kw_only=True)
class BackupInfo:
    path: Path
    database: str
    contents: BackupContents


def default_file_name(database: str, now: dt.datetime | None = None) -> str:
    """``tapdb-<database>-<UTC timestamp>.dump``."""
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return f"tapdb-{database}-{stamp}.dump"


def backup(
    url: str | URL, out: Path | str, *, data_only: bool = False, progress: Progress | None = None
) -> BackupInfo:
    """Write a ``pg_dump`` custom-format backup of the tapdb database at ``url`` to ``out``."""
    say = progress or (lambda _m: None)
    target, out = target_url(url), Path(out)
    engine = unpooled_engine(target)
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
    pg_dump = tool("pg_dump")
    version = parse_version(_run([pg_dump, "--version"], "pg_dump --version").decode()) or "0"
    if major(version) < server // 10000:
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
        _run([pg_dump, "-Fc", "--no-password", *mode, "-f", name], "pg_dump", libpq_env(target))
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
