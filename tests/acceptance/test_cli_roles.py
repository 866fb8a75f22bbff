"""``tapdb db roles`` and the tamper verdict of ``tapdb db schema status``."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError, ProgrammingError

from tapdb_core.pgruntime import LocalCluster, free_port
from tests.acceptance.conftest import Cli, assert_one_line_error, isolated_env, server_vars


def _drop_roles(db: Engine, admin: Engine, names: list[str]) -> None:
    with db.begin() as conn:
        for name in names:
            if conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).first():
                conn.execute(text(f'DROP OWNED BY "{name}"'))
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP ROLE IF EXISTS "{name}"'))


def test_roles_command_and_app_role_through_the_cli(
    cli: Cli, server_url: URL, admin_engine: Engine, new_db_name: str, home: Path
) -> None:
    env = server_vars(server_url, "dev", new_db_name)
    app, readonly = f"cli_app_{os.getpid()}", f"cli_ro_{os.getpid()}"
    app_pw, ro_pw = "app-secret-pw-1", "ro-secret-pw-2"
    done = cli("db", "setup", "dev", env=env)
    assert done.returncode == 0, done.stderr
    db = create_engine(server_url.set(database=new_db_name))
    try:
        done = cli(
            "db", "roles", "dev", "--app-role", app, "--readonly-role", readonly,
            "--app-password-stdin", "--readonly-password-stdin", "--json",
            input=f"{app_pw}\n{ro_pw}\n", env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert [(r["name"], r["created"], r["password_set"]) for r in result["roles"]] == [
            (app, True, True),
            (readonly, True, True),
        ]
        again = cli("db", "roles", "dev", "--app-role", app, env=env)
        assert again.returncode == 0, again.stderr
        assert f"application role '{app}' exists" in again.stdout
        for text_out in (
            done.stdout,
            done.stderr,
            again.stdout,
            (home / "operations.log").read_text(),
        ):
            assert app_pw not in text_out and ro_pw not in text_out

        # the CLI works as the application role, and status says ok
        as_app = {**env, "TAPDB_DEV_USER": app, "TAPDB_DEV_PASSWORD": app_pw}
        made = cli("user", "add", "dev", "-u", "carol", "--json", env=as_app)
        assert made.returncode == 0, made.stderr
        status = cli("db", "schema", "status", "dev", "--json", env=as_app)
        assert status.returncode == 0, status.stdout
        assert json.loads(status.stdout)["tampered"] == []
        # but it cannot grant roles
        refused = cli("db", "roles", "dev", "--app-role", f"{app}_2", env=as_app)
        assert refused.returncode == 1
        assert_one_line_error(refused, "schema owner or a superuser")
        as_ro = {**env, "TAPDB_DEV_USER": readonly, "TAPDB_DEV_PASSWORD": ro_pw}
        denied = cli("user", "add", "dev", "-u", "dave", env=as_ro)
        assert denied.returncode == 1 and "Traceback" not in denied.stderr
    finally:
        _drop_roles(db, admin_engine, [app, f"{app}_2", readonly])
        db.dispose()


def test_roles_bad_input(cli: Cli, server_url: URL, new_db_name: str) -> None:
    env = server_vars(server_url, "dev", new_db_name)
    for argv in (
        ["db", "roles", "dev"],
        ["db", "roles", "dev", "--app-role", ""],
        ["db", "roles", "dev", "--app-role", "pg_monitor"],
        ["db", "roles", "dev", "--app-role", "a", "--readonly-role", "a"],
        ["db", "roles", "dev", "--app-role", "a", "--readonly-password-stdin"],
    ):
        done = cli(*argv, env=env)
        assert done.returncode == 2, (argv, done.stderr)
        assert "Traceback" not in done.stderr
    done = cli("db", "roles", "dev", "--app-role", "a", "--app-password-stdin", input="\n", env=env)
    assert done.returncode == 2
    assert_one_line_error(done, "empty line")


def test_status_reports_tampering(cli: Cli, server_url: URL, new_db_name: str) -> None:
    env = server_vars(server_url, "dev", new_db_name)
    done = cli("db", "setup", "dev", env=env)
    assert done.returncode == 0, done.stderr
    ok = cli("db", "schema", "status", "dev", env=env)
    assert ok.returncode == 0, ok.stdout
    assert "integrity    matches the migrated schema" in ok.stdout
    assert "tampered" not in ok.stdout

    db = create_engine(server_url.set(database=new_db_name))
    try:
        with db.begin() as conn:
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER tapdb_10_append_only"))
            conn.execute(
                text(
                    "CREATE OR REPLACE FUNCTION tapdb_audit_user() RETURNS text"
                    " LANGUAGE sql STABLE AS $$ SELECT 'nobody'::text $$"
                )
            )
    finally:
        db.dispose()
    bad, bad_json = cli.many(
        ["db", "schema", "status", "dev"], ["db", "schema", "status", "dev", "--json"], env=env
    )
    assert bad.returncode == 1
    assert "tampered: trigger tapdb_10_append_only on audit_log is disabled" in bad.stdout
    assert "tampered: function tapdb_audit_user() has been replaced" in bad.stdout
    assert "integrity    TAMPERED" in bad.stdout
    assert bad_json.returncode == 1
    report = json.loads(bad_json.stdout)
    assert report["ok"] is False and len(report["tampered"]) == 2


@pytest.fixture
def sandbox() -> Iterator[Path]:
    """A world-traversable temporary directory (the server runs unprivileged under root)."""
    path = Path(tempfile.mkdtemp(prefix="tapdb-roles-boot-"))
    path.chmod(0o755)
    yield path
    for data_dir in path.glob("data/*"):
        if (data_dir / "PG_VERSION").exists():
            LocalCluster(data_dir=data_dir, port=1).stop(mode="immediate")
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_bootstrap_local_uses_passwords_and_an_app_role(sandbox: Path) -> None:
    home = sandbox / "home"
    home.mkdir()
    (sandbox / "work").mkdir()
    port = free_port()
    cli = Cli({**isolated_env(home), "TAPDB_DATA_DIR": str(sandbox / "data")}, sandbox / "work")

    done = cli("bootstrap", "local", "--port", str(port), "--demo", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["password_authentication"] is True and result["app_role"] == "tapdb_app"
    assert result["demo"]["wells"] == 96

    config = home / ".config" / "tapdb" / "tapdb-config.json"
    assert config.stat().st_mode & 0o777 == 0o600
    recorded = json.loads(config.read_text())["environments"]["dev"]
    su_password, app_password = recorded["password"], recorded["app_password"]
    assert (
        recorded["app_user"] == "tapdb_app" and len(su_password) >= 24 and len(app_password) >= 24
    )
    for output in (done.stdout, done.stderr):
        assert su_password not in output and app_password not in output

    hba = [
        line.split()
        for line in (sandbox / "data" / "dev" / "pg_hba.conf").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert hba and all(rule[-1] == "scram-sha-256" for rule in hba), hba
    assert {rule[0] for rule in hba} >= {"local", "host"}

    base = URL.create("postgresql+psycopg", host="127.0.0.1", port=port, database="tapdb_dev")
    for username, password in (("postgres", None), ("postgres", "wrong"), ("tapdb_app", None)):
        engine = create_engine(base.set(username=username, password=password))
        try:
            with pytest.raises(OperationalError, match="password"), engine.connect():
                pass
        finally:
            engine.dispose()
    engine = create_engine(base.set(username="tapdb_app", password=app_password))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM generic_instance")).scalar_one() == 97
            with pytest.raises(ProgrammingError, match="permission denied"):
                conn.execute(text("DELETE FROM audit_log"))
    finally:
        engine.dispose()

    # later commands log in with the recorded superuser password; running it again is harmless
    status = cli("db", "schema", "status", "dev", "--json")
    assert status.returncode == 0, status.stdout
    again = cli("bootstrap", "local", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["initialised"] is False
    assert json.loads(config.read_text())["environments"]["dev"]["app_password"] == app_password
    assert cli("pg", "stop-local", "dev").returncode == 0
