"""What a daylily-tapdb user types still works (issue 10, CLI and configuration):
the active environment in place of ENV, renamed commands, ``./config/`` packs,
scoped config files, ``--version`` without a database driver, ``template show``,
``bootstrap local --no-gui``, ``TAPDB_LOG_LEVEL`` and ``ECHO_SQL``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from tapdb_core import __version__
from tests.acceptance.conftest import Cli, assert_one_line_error, server_vars


def env_of(engine: Engine, server_url: URL, env: str = "test") -> dict[str, str]:
    return server_vars(server_url, env, str(engine.url.database))


def test_active_environment_satisfies_env(cli: Cli, seeded_engine: Engine, server_url: URL) -> None:
    env = {**env_of(seeded_engine, server_url), "TAPDB_ENV": "test"}
    users, status, status_flag, pg_status, positional = cli.many(
        ["user", "list", "--json"],
        ["db", "schema", "status", "--json"],
        ["db", "schema", "status", "--json", "--env", "test"],
        ["pg", "status", "--json"],
        # a positional ENV wins over TAPDB_ENV: dev points nowhere, so it fails
        ["db", "schema", "status", "dev"],
        env=env,
    )
    assert users.returncode == 0, users.stderr
    assert json.loads(users.stdout) == []
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["env"] == "test"
    assert status_flag.returncode == 0, status_flag.stderr
    assert json.loads(pg_status.stdout)["env"] == "test"
    assert positional.returncode != 0
    assert "dev" in positional.stderr or "5432" in positional.stderr

    # --env before the command, no TAPDB_ENV
    plain = env_of(seeded_engine, server_url)
    flag = cli("--env", "test", "user", "list", "--json", env=plain)
    assert flag.returncode == 0, flag.stderr

    # nothing active: a usage error naming ENV and how to set it
    missing = cli("user", "list", env=plain)
    assert missing.returncode == 2
    assert "ENV" in missing.stderr and "TAPDB_ENV" in missing.stderr

    # commands that delete never take the active environment
    delete = cli("db", "delete", "--force", env=env)
    assert delete.returncode == 2
    assert "deletes, so name the environment" in delete.stderr


def test_env_help_names_one_way(cli: Cli) -> None:
    done = cli("user", "list", "--help")
    assert done.returncode == 0
    assert done.stdout.count("--env") == 1  # in the ENV help, not as a competing option
    assert "default: the active environment" in done.stdout


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (["db", "seed", "dev"], "tapdb db data seed ENV"),
        (["db", "status", "dev"], "tapdb db schema status ENV"),
        (["db", "nuke", "dev", "--force"], "tapdb db schema reset ENV"),
        (["db", "migrate", "dev"], "tapdb db schema migrate ENV"),
        (["db", "backup", "dev", "-o", "x.sql"], "tapdb db data backup ENV"),
        (["db", "restore", "dev", "-i", "x.sql"], "tapdb db data restore ENV -i FILE"),
        (["db", "validate-config", "--json"], "tapdb db config validate"),
        (["pg", "create", "dev"], "tapdb db create ENV"),
        (["--env", "dev", "pg", "delete", "dev"], "tapdb db delete ENV"),
    ],
)
def test_renamed_commands_hint(cli: Cli, old: list[str], new: str) -> None:
    done = cli(*old)
    assert done.returncode == 2
    line = assert_one_line_error(done, f"is now `{new}`")
    assert "invalid choice" not in done.stderr, line


def test_version_imports_no_database_driver() -> None:
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['tapdb', '--version']\n"
        "try:\n"
        "    runpy.run_module('tapdb_core', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('psycopg', 'sqlalchemy', 'alembic'))\n"
        "print('LOADED', loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert f"tapdb {__version__}" in done.stdout
    assert "LOADED []" in done.stdout, done.stdout


def test_template_show_summary_and_json(cli: Cli, seeded_engine: Engine, server_url: URL) -> None:
    env = env_of(seeded_engine, server_url)
    code = "container/plate/fixed-plate-96/1.0/"
    text, full = cli.many(
        ["--env", "test", "template", "show", code],
        ["--env", "test", "template", "show", code, "--json"],
        env=env,
    )
    assert text.returncode == 0, text.stderr
    assert "container/plate/fixed-plate-96/1.0" in text.stdout
    assert "children" in text.stdout and "96 x" in text.stdout
    assert '"instantiation_layouts"' not in text.stdout  # a summary, not the raw JSON
    assert len(text.stdout.splitlines()) < 40
    data = json.loads(full.stdout)
    assert data["json_addl"]["instantiation_layouts"]


PACK = {
    "templates": [
        {
            "name": "Tube rack",
            "polymorphic_discriminator": "container_template",
            "category": "container",
            "type": "rack",
            "subtype": "tube-rack-24",
            "version": "1.0",
            "instance_prefix": "CX",
            "json_addl": {"properties": {"slots": 24}},
        }
    ]
}


def test_repo_config_dir_packs_are_picked_up(
    cli: Cli, seeded_engine: Engine, server_url: URL
) -> None:
    packs = cli.cwd / "config" / "container"
    packs.mkdir(parents=True)
    (packs / "racks.json").write_text(json.dumps(PACK))
    (cli.cwd / "config" / "_metadata.json").write_text("{}")  # skipped, as in the original
    (cli.cwd / "config" / "tapdb-config.json").write_text("{}")  # a config file, not a pack
    validate = cli("db", "config", "validate")
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "racks.json" in validate.stdout
    assert "tapdb-config.json" not in validate.stdout and "_metadata" not in validate.stdout

    env = env_of(seeded_engine, server_url)
    seed = cli("db", "data", "seed", "test", "--json", env=env)
    assert seed.returncode == 0, seed.stderr
    created = json.loads(seed.stdout)["created"]
    assert any("tube-rack-24" in json.dumps(c) for c in created), created
    shown = cli("--env", "test", "template", "show", "container/rack/tube-rack-24/1.0", env=env)
    assert shown.returncode == 0, shown.stderr


def test_database_name_scoped_file_wins_and_info_says_why(cli: Cli, home: Path) -> None:
    user_dir = home / ".config" / "tapdb"
    user_dir.mkdir(parents=True)
    (user_dir / "tapdb-config.json").write_text(json.dumps({"dev": {"host": "user-default"}}))
    repo_dir = cli.cwd / "config"
    repo_dir.mkdir()
    (repo_dir / "tapdb-config-atlas.json").write_text(json.dumps({"dev": {"host": "repo-atlas"}}))
    for path in (user_dir / "tapdb-config.json", repo_dir / "tapdb-config-atlas.json"):
        path.chmod(0o600)
    flag, variable, plain = cli.many(
        ["--database-name", "atlas", "info", "--offline", "--json"],
        ["info", "--offline", "--json"],
        ["info", "--offline"],
        env=None,
    )
    data = json.loads(flag.stdout)
    assert data["settings"]["host"]["value"] == "repo-atlas"
    assert data["config_file_reason"] == (
        "repo-level file scoped to database name 'atlas' (from --database-name)"
    )
    assert json.loads(variable.stdout)["settings"]["host"]["value"] == "user-default"
    assert "(user-level default file)" in plain.stdout
    by_var = cli("info", "--offline", "--json", env={"TAPDB_DATABASE_NAME": "atlas"})
    assert json.loads(by_var.stdout)["config_file_reason"].endswith("(from $TAPDB_DATABASE_NAME)")


def test_bootstrap_accepts_no_gui_and_ui(cli: Cli) -> None:
    done = cli("bootstrap", "local", "--help")
    assert "--no-gui" in done.stdout and "--ui" in done.stdout
    both = cli("--env", "prod", "bootstrap", "local", "--ui", "--no-gui")
    assert both.returncode == 2 and "not allowed with" in both.stderr
    # accepted: the run fails only on what it is asked (prod is never local)
    refused = cli("--env", "prod", "bootstrap", "local", "--no-gui")
    assert refused.returncode == 2
    assert_one_line_error(refused, "prod is never a local cluster")


def test_log_level_and_echo_sql(cli: Cli, seeded_engine: Engine, server_url: URL) -> None:
    env = env_of(seeded_engine, server_url)
    quiet, echo, bad = cli.many(
        ["--env", "test", "template", "list"],
        ["--env", "test", "template", "list"],
        ["--env", "test", "template", "list"],
        env=env,
    )
    assert "SELECT" not in quiet.stderr
    echo = cli("--env", "test", "template", "list", env={**env, "ECHO_SQL": "true"})
    assert echo.returncode == 0, echo.stderr
    assert "SELECT" in echo.stderr and "sqlalchemy.engine" in echo.stderr
    assert "SELECT" not in echo.stdout  # data stays clean
    bad = cli("--env", "test", "template", "list", env={**env, "TAPDB_LOG_LEVEL": "LOUD"})
    assert bad.returncode == 0
    assert "TAPDB_LOG_LEVEL='LOUD' is not one of" in bad.stderr
    debug = cli("--env", "test", "template", "list", env={**env, "TAPDB_LOG_LEVEL": "debug"})
    assert debug.returncode == 0, debug.stderr


def test_identity_prefix_variables_are_checked(cli: Cli) -> None:
    # the original's own example prefix TUS has a U, which its rule excludes
    done = cli("db", "data", "seed", "test", env={"TAPDB_TEST_TAPDB_USER_EUID_PREFIX": "TUS"})
    assert done.returncode == 2
    assert_one_line_error(done, "TUS")
