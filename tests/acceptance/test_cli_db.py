"""db create/delete/setup, schema apply/status/migrate/reset, data seed, and the
guards of destructive commands, against a real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL

from tapdb_core import migrate
from tests.acceptance.conftest import (
    Cli,
    assert_one_line_error,
    database_exists,
    server_vars,
)
from tests.acceptance.test_cli_basics import _write_broken_pack


def test_database_lifecycle(
    cli: Cli, server_url: URL, admin_engine: Engine, new_db_name: str, home: Path
) -> None:
    env = server_vars(server_url, "dev", new_db_name)

    done = cli("db", "create", "dev", env=env)
    assert done.returncode == 0, done.stderr
    assert f"created database '{new_db_name}'" in done.stdout
    assert database_exists(admin_engine, new_db_name)
    again, status, user_list, sql, dry_run = cli.many(
        ["db", "create", "dev", "--json"],
        ["db", "schema", "status", "dev"],
        ["user", "list", "dev"],
        ["db", "schema", "migrate", "dev", "--sql"],
        ["db", "schema", "migrate", "dev", "--dry-run", "--json"],
        env=env,
    )
    assert again.returncode == 0
    assert json.loads(again.stdout)["created"] is False
    log = home / "operations.log"
    assert log.stat().st_mode & 0o777 == 0o600
    assert "db create" in log.read_text()

    # no schema yet: status fails and says what to run
    assert status.returncode == 1
    assert "tapdb db schema apply dev" in status.stdout
    # a command that needs the schema explains it in one line
    assert user_list.returncode == 1
    assert_one_line_error(user_list, "has no tapdb schema", "tapdb db schema apply dev")

    assert sql.returncode == 0, sql.stderr
    assert "CREATE TABLE generic_template" in sql.stdout
    assert json.loads(dry_run.stdout)["pending"][-1] == migrate.head_revision()

    done = cli("db", "schema", "apply", "dev", env=env)
    assert done.returncode == 0, done.stderr
    assert "migrated empty ->" in done.stdout

    done = cli("db", "data", "seed", "dev", "--dry-run", "--json", env=env)
    assert done.returncode == 0, done.stderr
    planned = json.loads(done.stdout)
    assert planned["dry_run"] is True and planned["counts"]["created"] > 50
    done = cli("db", "data", "seed", "dev", env=env)
    assert done.returncode == 0, done.stderr
    assert f"{planned['counts']['created']} were created" in done.stdout

    done = cli("db", "schema", "status", "dev", "--json", env=env)
    assert done.returncode == 0, done.stdout
    status = json.loads(done.stdout)
    assert status["ok"] is True
    assert status["revision"] == status["head"] == migrate.head_revision()
    assert status["tables"]["generic_template"]["live"] == planned["counts"]["created"]
    assert all(not t["missing"] and not t["disabled"] for t in status["triggers"].values())

    # a disabled guarantee trigger is reported
    engine = create_engine(server_url.set(database=new_db_name))
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE generic_instance DISABLE TRIGGER tapdb_40_soft_delete"))
    engine.dispose()
    done = cli("db", "schema", "status", "dev", env=env)
    assert done.returncode == 1
    assert "generic_instance: disabled triggers tapdb_40_soft_delete" in done.stdout

    # destructive commands refuse without --force when not on a terminal
    for done in cli.many(["db", "schema", "reset", "dev"], ["db", "delete", "dev"], env=env):
        assert done.returncode == 1
        assert_one_line_error(done, "refused", "--force")
    assert database_exists(admin_engine, new_db_name)

    # on a terminal the user is asked; "n" leaves everything as it is
    code, output = cli.in_terminal(
        ["db", "schema", "reset", "dev"], [("Continue? [y/N]", "n")], env=env
    )
    assert code == 1 and "aborted" in output, output
    done = cli("db", "schema", "reset", "dev", "--force", env=env)
    assert done.returncode == 0, done.stderr
    done = cli("db", "schema", "status", "dev", "--json", env=env)
    assert done.returncode == 1
    assert json.loads(done.stdout)["revision"] is None

    done = cli("db", "delete", "dev", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    assert not database_exists(admin_engine, new_db_name)
    done = cli("db", "schema", "status", "dev", env=env)
    assert done.returncode == 1
    assert "database missing" in done.stdout


def test_setup_and_seed_errors(cli: Cli, server_url: URL, new_db_name: str, tmp_path: Path) -> None:
    env = server_vars(server_url, "test", new_db_name)
    done = cli("db", "setup", "test", "--json", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["created"] is True
    assert result["revision"] == migrate.head_revision()
    assert result["seed"]["counts"]["created"] > 50

    # a broken pack: nothing is seeded, the message names the file
    pack = _write_broken_pack(tmp_path / "packs")
    done = cli("db", "data", "seed", "test", "-c", str(tmp_path / "packs"), env=env)
    assert done.returncode == 2
    assert_one_line_error(done, "nothing was seeded", str(pack))

    # setup again is harmless; --force asks first
    done = cli("db", "setup", "test", env=env)
    assert done.returncode == 0, done.stderr
    assert "existing database" in done.stdout
    done = cli("db", "setup", "test", "--force", env=env)
    assert done.returncode == 1
    assert_one_line_error(done, "refused", "--yes")
    done = cli("db", "setup", "test", "--force", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    assert "created database" in done.stdout


def test_prod_needs_the_database_name(
    cli: Cli, server_url: URL, admin_engine: Engine, new_db_name: str
) -> None:
    env = server_vars(server_url, "prod", new_db_name)
    assert cli("db", "create", "prod", env=env).returncode == 0

    # not on a terminal: --force is not enough
    done = cli("db", "delete", "prod", "--force", env=env)
    assert done.returncode == 1
    assert_one_line_error(done, "refused", f"--confirm-name {new_db_name}")
    done = cli("db", "delete", "prod", "--force", "--confirm-name", "tapdb_prod", env=env)
    assert done.returncode == 1
    assert_one_line_error(done, "is not the database name")
    assert database_exists(admin_engine, new_db_name)

    # on a terminal the name must be typed, even with --force
    code, output = cli.in_terminal(
        ["db", "delete", "prod", "--force"], [("Type the database name", "yes")], env=env
    )
    assert code == 1, output
    assert "aborted" in output
    assert database_exists(admin_engine, new_db_name)
    code, output = cli.in_terminal(
        ["db", "delete", "prod"], [("Type the database name", new_db_name)], env=env
    )
    assert code == 0, output
    assert not database_exists(admin_engine, new_db_name)

    assert cli("db", "create", "prod", env=env).returncode == 0
    done = cli("db", "delete", "prod", "--confirm-name", new_db_name, env=env)
    assert done.returncode == 0, done.stderr
    assert not database_exists(admin_engine, new_db_name)
