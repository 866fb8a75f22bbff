"""The real ``tapdb``: ``--as`` and friends name the audit user, a write that lost a
race is run again, a database at an unknown revision is explained, and passwords
never show (in ``info`` or in errors)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from tapdb_core.db import check_schema, connect
from tapdb_core.errors import SchemaVersionError
from tests.acceptance.conftest import Cli, assert_one_line_error, server_vars

UNKNOWN = "ffffffff0000"
T = TypeVar("T")


def _env(engine: Engine) -> dict[str, str]:
    url = engine.url
    return {**server_vars(url, "dev", str(url.database)), "TAPDB_ENV": "dev"}


def _history(cli: Cli, env: dict[str, str], euid: str) -> list[dict[str, object]]:
    done = cli("object", "history", euid, "--json", env=env)
    assert done.returncode == 0, done.stderr
    entries: list[dict[str, object]] = json.loads(done.stdout)
    return entries


def _add_user(cli: Cli, env: dict[str, str], *argv: str) -> str:
    done = cli(*argv, env=env)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["euid"])


def test_as_flag_env_var_and_config_name_the_audit_user(cli: Cli, engine: Engine) -> None:
    env = _env(engine)
    flagged = _add_user(cli, env, "--as", "alice", "user", "add", "dev", "-u", "bob", "--json")
    assert {e["changed_by"] for e in _history(cli, env, flagged)} == {"alice"}

    by_env = {**env, "TAPDB_AUDIT_USER": "carol"}
    from_env = _add_user(cli, by_env, "user", "add", "dev", "-u", "dan", "--json")
    assert {e["changed_by"] for e in _history(cli, env, from_env)} == {"carol"}
    # the flag wins over the variable
    both = _add_user(cli, by_env, "--as", "erin", "user", "add", "dev", "-u", "fay", "--json")
    assert {e["changed_by"] for e in _history(cli, env, both)} == {"erin"}

    config = cli.cwd / "tapdb-config.json"
    config.write_text(json.dumps({"environments": {"dev": {"audit_user": "gus"}}}))
    config.chmod(0o600)
    by_config = {**env, "TAPDB_CONFIG_PATH": str(config)}
    from_config = _add_user(cli, by_config, "user", "add", "dev", "-u", "hal", "--json")
    assert {e["changed_by"] for e in _history(cli, env, from_config)} == {"gus"}

    info = cli("info", "--offline", "--json", env={**by_config, "TAPDB_AUDIT_USER": "ivy"})
    assert json.loads(info.stdout)["audit_user"] == {"value": "ivy", "source": "$TAPDB_AUDIT_USER"}
    empty = cli("--as", "", "info", "--offline", env=env)
    assert empty.returncode == 2
    assert_one_line_error(empty, "--as")


def _waiting_cli_backend(engine: Engine) -> int:
    """The pid of a CLI connection waiting for a lock, 0 when there is none."""
    with engine.connect() as conn:
        pid = conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'tapdb-cli'"
                " AND wait_event_type = 'Lock'"
            )
        ).scalar()
    return 0 if pid is None else int(pid)


def _backend_alive(engine: Engine, pid: int) -> bool:
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT 1 FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
        ).first()
    return found is not None


def _wait_for(probe: Callable[[], T], what: str, limit: float = 60) -> T:
    """The first truthy ``probe()``: we watch the server's state, never sleep for
    an assumed duration."""
    deadline = time.monotonic() + limit
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_a_write_that_lost_a_race_is_run_again(cli: Cli, engine: Engine) -> None:
    """The first attempt waits on a conflicting uncommitted insert and hits its lock
    timeout (retryable); once the blocker has rolled back, the rerun succeeds."""
    env = {**_env(engine), "PGOPTIONS": "-c lock_timeout=1000"}
    with engine.connect() as blocker:
        blocker.begin()
        blocker.execute(text("INSERT INTO tapdb_user (username, role) VALUES ('racer', 'user')"))
        proc = subprocess.Popen(
            [*cli.command, "user", "add", "dev", "-u", "racer", "--json"],
            env={**cli.env, **env},
            cwd=cli.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            pid = _wait_for(lambda: _waiting_cli_backend(engine), "the CLI to wait on the lock")
            _wait_for(lambda: not _backend_alive(engine, pid), "the first attempt to give up")
            blocker.rollback()
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    made = json.loads(out)
    assert made["username"] == "racer"
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT count(*) FROM tapdb_user WHERE username = 'racer'")
        ).scalar()
    assert rows == 1


def test_a_write_that_keeps_losing_reports_a_retryable_error(cli: Cli, engine: Engine) -> None:
    env = {**_env(engine), "PGOPTIONS": "-c lock_timeout=50"}
    with engine.connect() as blocker:
        blocker.begin()
        blocker.execute(text("INSERT INTO tapdb_user (username, role) VALUES ('racer', 'user')"))
        done = cli("user", "add", "dev", "-u", "racer", env=env)
        blocker.rollback()
    assert done.returncode == 1
    assert_one_line_error(done, "lock timeout", "run it again")


def _stamp_unknown(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": UNKNOWN})


def test_unknown_revision_is_explained(cli: Cli, engine: Engine) -> None:
    _stamp_unknown(engine)
    env = _env(engine)
    migrate_run, show_run, sql_run = cli.many(
        ["db", "schema", "migrate", "dev"],
        ["object", "show", "CX-1"],
        ["db", "schema", "migrate", "dev", "--dry-run"],
        env=env,
    )
    for done in (migrate_run, show_run, sql_run):
        assert done.returncode == 2, done.stderr
        line = assert_one_line_error(
            done, f"revision {UNKNOWN}", "does not know", "upgrade tapdb_core"
        )
        assert "ResolutionError" not in line and "schema migrate" not in line
    with pytest.raises(SchemaVersionError, match="not a tapdb database"):
        check_schema(engine)
    db = connect(engine.url.render_as_string(hide_password=False))
    try:
        with pytest.raises(SchemaVersionError, match="does not know"), db.begin():
            pass
    finally:
        db.dispose()


PASSWORD = "sp ace@at+plus/slash%pct"


def _url_with_password(server: URL, database: str) -> str:
    return (
        f"postgresql://{quote(server.username or 'postgres', safe='')}:{quote(PASSWORD, safe='')}"
        f"@{server.host}:{server.port}/{database}"
    )


def test_passwords_never_show_in_info_or_errors(cli: Cli, engine: Engine, server_url: URL) -> None:
    url = _url_with_password(server_url, str(engine.url.database))
    encoded = quote(PASSWORD, safe="")
    bad_url = "postgresql://u:Zq9@Xk7@" + f"{server_url.host}:{server_url.port}/x"
    info, info_json = cli.many(["info"], ["info", "--json"], env={"DATABASE_URL": url})
    assert info.returncode == 0 and info_json.returncode == 0, info.stderr
    assert json.loads(info_json.stdout)["status"]["reachable"] is True
    missing = cli("object", "show", "CX-1", env={"DATABASE_URL": url.rsplit("/", 1)[0] + "/nope"})
    unencoded = cli("info", "--offline", env={"DATABASE_URL": bad_url})
    assert missing.returncode == 1
    for done in (info, info_json, missing):
        for shown in (done.stdout, done.stderr):
            assert PASSWORD not in shown and encoded not in shown
            assert "slash" not in shown and "plus" not in shown
    assert unencoded.returncode == 2
    line = assert_one_line_error(unencoded, "percent-encode")
    assert "Zq9" not in unencoded.stdout + unencoded.stderr and "Xk7" not in line
    # the encoded password reaches the driver unchanged
    db = connect(url)
    try:
        raw = db.engine.raw_connection()
        try:
            assert raw.driver_connection is not None
            assert raw.driver_connection.info.password == PASSWORD
        finally:
            raw.close()
    finally:
        db.dispose()
