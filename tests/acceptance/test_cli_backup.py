"""db data backup / restore (runs once tapdb_core.backup exists)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL

from tapdb_core import instances
from tests.acceptance.conftest import Cli, assert_one_line_error, server_vars

pytest.importorskip("tapdb_core.backup", reason="tapdb_core.backup is not written yet")


def _counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(text("SELECT count(*) FROM generic_template")).scalar_one(),
            conn.execute(text("SELECT count(*) FROM generic_instance")).scalar_one(),
            conn.execute(text("SELECT count(*) FROM generic_instance_lineage")).scalar_one(),
        )


def test_backup_and_restore(
    cli: Cli,
    seeded_engine: Engine,
    empty_db_url: URL,
    db_url: URL,
    server_url: URL,
    tmp_path: Path,
) -> None:
    with seeded_engine.begin() as conn:
        plate = instances.create(conn, "container/plate/fixed-plate-96/1.0/", "backed up").euid
    source_env = server_vars(server_url, "dev", str(seeded_engine.url.database))
    empty_env = server_vars(server_url, "test", str(empty_db_url.database))
    out = tmp_path / "backup.tapdb.tar.gz"

    done = cli("db", "data", "backup", "dev", "-o", str(out), "--json", env=source_env)
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    assert made["output"] == str(out) and made["rows"]["generic_instance"] == 97
    assert out.stat().st_size > 0

    # destructive: refused without confirmation; a missing file is bad input
    refused, missing = cli.many(
        ["db", "data", "restore", "test", "-i", str(out)],
        ["db", "data", "restore", "test", "-i", str(tmp_path / "nope")],
        env=empty_env,
    )
    assert refused.returncode == 1
    assert_one_line_error(refused, "refused", "--force")
    assert missing.returncode == 2
    assert_one_line_error(missing, "no such file")

    done = cli("db", "data", "restore", "test", "-i", str(out), "--force", env=empty_env)
    assert done.returncode == 0, done.stderr
    restored = create_engine(empty_db_url)
    assert _counts(restored) == _counts(seeded_engine)
    restored.dispose()
    done = cli("--env", "test", "object", "show", plate, "--json", env=empty_env)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["children"]) == 96

    # into a database that already has the schema: only with --clean
    migrated_env = server_vars(server_url, "test", str(db_url.database))
    done = cli("db", "data", "restore", "test", "-i", str(out), "--force", env=migrated_env)
    assert done.returncode == 1
    assert_one_line_error(done, "already holds tapdb objects", "--clean")
    done = cli(
        "db", "data", "restore", "test", "-i", str(out), "--clean", "--force", env=migrated_env
    )
    assert done.returncode == 0, done.stderr

    prod_env = server_vars(server_url, "prod", str(db_url.database))
    done = cli("db", "data", "restore", "prod", "-i", str(out), "--force", env=prod_env)
    assert done.returncode == 1
    assert_one_line_error(done, "--confirm-name")
