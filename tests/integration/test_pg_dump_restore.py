"""A standard pg_dump of a tapdb database restores with pg_restore into another
database, every table equal (revision 0002's SQL-standard bodies and fixed
search_paths: pg_restore runs with an empty search_path)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL

from tapdb_core import instances, lineage, users
from tapdb_core.pgruntime import find_binaries

TABLES = (
    "generic_template",
    "generic_instance",
    "generic_instance_lineage",
    "tapdb_user",
    "audit_log",
    "tapdb_identity_prefix_config",
    "tapdb_lineage_guard",
    "alembic_version",
)


def _libpq_env(url: URL) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PGHOST=url.host or "127.0.0.1",
        PGPORT=str(url.port or 5432),
        PGUSER=url.username or "postgres",
    )
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return env


def _contents(engine: Engine, table: str) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(f"SELECT to_jsonb(t)::text FROM {table} t ORDER BY to_jsonb(t)::text")
            ).scalars()
        )


def test_pg_dump_then_pg_restore_round_trips_every_table(
    seeded_engine: Engine, admin_engine: Engine, server_url: URL, tmp_path: Path
) -> None:
    with seeded_engine.begin() as conn:
        conn.execute(text("SELECT tapdb_set_audit_user('restorer')"))
        plate = instances.create_tree(conn, "container/plate/fixed-plate-96/1.0/", "PLATE 'ü'")
        sample = instances.create(conn, "content/sample/dna/*", 'Sample "quoted" ✓')
        lineage.link(conn, plate.instances[1], sample, "contains")
        users.create_user(conn, "ann", password="pw 1")
    source_url = seeded_engine.url
    binaries = find_binaries()
    dump = tmp_path / "tapdb.dump"
    env = _libpq_env(source_url)
    subprocess.run(
        [str(binaries.tool("pg_dump")), "-Fc", "-f", str(dump), "-d", str(source_url.database)],
        env=env,
        check=True,
        capture_output=True,
    )
    target = f"{source_url.database}_restored"
    with admin_engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{target}"'))
        conn.execute(text(f'CREATE DATABASE "{target}"'))
    restore = subprocess.run(
        [
            str(binaries.tool("pg_restore")),
            "--exit-on-error",
            "--single-transaction",
            "--no-owner",
            "-d",
            target,
            str(dump),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert restore.returncode == 0, restore.stderr
    restored = create_engine(server_url.set(database=target))
    try:
        for table in TABLES:
            assert _contents(restored, table) == _contents(seeded_engine, table), table
        # the restored copy keeps working, with EUIDs past the restored ones
        with restored.begin() as conn:
            again = instances.create(conn, "content/sample/dna/*", "after restore")
            assert again.euid not in {i.euid for i in plate.instances} | {sample.euid}
            lineage.link(conn, sample, again, "derived")
    finally:
        restored.dispose()
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)'))
