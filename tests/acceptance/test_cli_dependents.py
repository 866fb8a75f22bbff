"""`db data restore --clean` and `db schema reset` name application objects and refuse (exit 2)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from tapdb_core import backup as bk
from tests.acceptance.conftest import Cli, assert_one_line_error, server_vars

APP_VIEW = "CREATE VIEW app_names AS SELECT euid, name FROM generic_instance"


def _view_exists(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text("SELECT to_regclass('app_names') IS NOT NULL")).scalar())


def test_restore_clean_and_reset_refuse_then_drop_with_the_flag(
    cli: Cli, engine: Engine, db_url: URL, server_url: URL, tmp_path: Path
) -> None:
    out = tmp_path / "b.dump"
    bk.backup(engine.url.render_as_string(hide_password=False), out)
    with engine.begin() as conn:
        conn.execute(text(APP_VIEW))
    env = server_vars(server_url, "dev", str(db_url.database))

    restore = ["db", "data", "restore", "dev", "-i", str(out), "--clean", "--force"]
    refused, reset_refused, bad = cli.many(
        restore,
        ["db", "schema", "reset", "dev", "--force"],
        ["db", "data", "restore", "dev", "-i", str(out), "--drop-dependents", "--force"],
        env=env,
    )
    for done in (refused, reset_refused):
        assert done.returncode == 2, done.stderr
        assert_one_line_error(
            done, "view public.app_names", "generic_instance", "--drop-dependents"
        )
    assert bad.returncode == 2
    assert_one_line_error(bad, "--drop-dependents only goes with --clean")
    assert _view_exists(engine)

    done = cli(*restore, "--drop-dependents", env=env)
    assert done.returncode == 0, done.stderr
    assert not _view_exists(engine)

    with engine.begin() as conn:
        conn.execute(text(APP_VIEW))
    done = cli("db", "schema", "reset", "dev", "--force", "--drop-dependents", env=env)
    assert done.returncode == 0, done.stderr
    assert not _view_exists(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('generic_instance')")).scalar() is None
