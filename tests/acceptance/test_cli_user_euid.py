"""The real ``tapdb`` executable: a username is never an EUID, so USER arguments can
never reach the wrong account; an old EUID-shaped username is reported."""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import URL

from tapdb_core.tables import tapdb_user
from tests.acceptance.conftest import Cli, assert_one_line_error, server_vars


def test_euid_shaped_usernames_cannot_hijack_an_account(
    cli: Cli, db_url: URL, server_url: URL
) -> None:
    env = server_vars(server_url, "test", str(db_url.database))

    def run(*argv: str, input: str = "") -> tuple[int, str, str]:
        done = cli("user", *argv, input=input, env=env)
        return done.returncode, done.stdout, done.stderr

    code, out, err = run("add", "test", "-u", "alice", "--json")
    assert code == 0, err
    alice = json.loads(out)["euid"]

    # the attack: a new user named like alice's EUID is refused (bad input, exit 2)
    done = cli("user", "add", "test", "-u", alice, env=env)
    assert done.returncode == 2, done.stderr
    assert_one_line_error(done, "/username", alice)
    code, out, _ = run("list", "test", "-i", "--json")
    assert [u["username"] for u in json.loads(out)] == ["alice"]

    # an account created before the rule, with alice's EUID as its username
    engine = create_engine(db_url)
    try:
        _hijack_attempts(run, cli, env, engine, alice)
    finally:
        engine.dispose()


def _hijack_attempts(
    run: Callable[..., tuple[int, str, str]],
    cli: Cli,
    env: dict[str, str],
    engine: Engine,
    alice: str,
) -> None:
    with engine.begin() as conn:
        legacy = str(
            conn.execute(
                text("INSERT INTO tapdb_user (username) VALUES (:u) RETURNING euid"), {"u": alice}
            ).scalar_one()
        )

    # the EUID wins, and every command that reaches alice through it says so
    for argv in (["set-role", "test", alice, "admin"], ["deactivate", "test", alice]):
        code, out, err = run(*argv)
        assert code == 0, err
        assert "'alice'" in out
        assert "warning" in err and legacy in err, err
    code, _, err = run("set-password", "test", alice, "--password-stdin", input="pw\n")
    assert code == 0, err
    assert err.count("warning") == 1 and legacy in err, err
    with engine.connect() as conn:
        rows = {r.euid: r for r in conn.execute(select(tapdb_user))}
    assert rows[alice].role == "admin" and not rows[alice].is_active
    assert rows[alice].password_hash is not None
    assert rows[legacy].role == "user" and rows[legacy].is_active
    assert rows[legacy].password_hash is None

    # the old account is reachable by its own EUID, with no warning
    code, out, err = run("set-role", "test", legacy, "admin")
    assert code == 0 and "warning" not in err, err

    code, out, err = run("delete", "test", alice, "--force")
    assert code == 0, err
    assert "'alice'" in out and legacy in err
    with engine.connect() as conn:
        left = conn.execute(select(tapdb_user.c.euid, tapdb_user.c.username)).all()
    assert [tuple(r) for r in left] == [(legacy, alice)]

    # nobody has that EUID now: not found (never the account that has it as a name)
    done = cli("user", "delete", "test", alice, "--force", env=env)
    assert done.returncode == 1
    assert_one_line_error(done, "not found", legacy)
    with engine.connect() as conn:
        assert conn.execute(select(tapdb_user.c.euid)).scalars().all() == [legacy]
