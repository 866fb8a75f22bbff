"""db data backup / verify / restore through the real executable."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL

from tapdb_core import instances
from tests.acceptance.conftest import Cli, assert_one_line_error, server_vars


def _counts(engine: Engine) -> tuple[int, ...]:
    with engine.connect() as conn:
        return tuple(
            conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in (
                "generic_template",
                "generic_instance",
                "generic_instance_lineage",
                "audit_log",
            )
        )


def test_backup_verify_and_restore(
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
    out = tmp_path / "backup.dump"

    done = cli("db", "data", "backup", "dev", "-o", str(out), "--json", env=source_env)
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    assert made["output"] == str(out) and made["rows"]["generic_instance"] == 97
    assert not made["data_only"] and stat.S_IMODE(out.stat().st_mode) == 0o600

    # verify needs no server and no environment
    verified, text_out = cli.many(
        ["db", "data", "verify", str(out), "--json"], ["db", "data", "verify", str(out)]
    )
    assert verified.returncode == 0, verified.stderr
    assert {k: v for k, v in json.loads(verified.stdout).items() if k != "file"} == {
        k: v for k, v in made.items() if k != "output"
    }
    assert text_out.returncode == 0 and "generic_instance" in text_out.stdout
    assert f"revision {made['revision']}" in text_out.stdout

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


def test_data_only_backup_and_default_name(
    cli: Cli, seeded_engine: Engine, db_url: URL, server_url: URL, tmp_path: Path
) -> None:
    source_env = server_vars(server_url, "dev", str(seeded_engine.url.database))
    done = cli("db", "data", "backup", "dev", "--data-only", env=source_env)
    assert done.returncode == 0, done.stderr
    (made,) = list(cli.cwd.iterdir())
    assert made.name.startswith(f"tapdb-{seeded_engine.url.database}-")
    assert made.name.endswith("Z.dump") and "data-only backup" in done.stdout
    help_text = cli("db", "data", "backup", "--help").stdout
    assert "tapdb-DATABASE-UTCTIMESTAMP.dump" in help_text

    target_env = server_vars(server_url, "test", str(db_url.database))
    done = cli("db", "data", "restore", "test", "-i", str(made), "--force", env=target_env)
    assert done.returncode == 0, done.stderr
    restored = create_engine(db_url)
    try:
        assert _counts(restored) == _counts(seeded_engine)
    finally:
        restored.dispose()


def test_bad_files_are_one_line_errors(cli: Cli, tmp_path: Path) -> None:
    empty, text_file = tmp_path / "empty.dump", tmp_path / "notes.txt"
    empty.write_bytes(b"")
    text_file.write_text("hello\n")
    done_empty, done_text = cli.many(
        ["db", "data", "verify", str(empty)], ["db", "data", "verify", str(text_file)]
    )
    for done in (done_empty, done_text):
        assert done.returncode == 2
        assert_one_line_error(done, "not a tapdb backup")
