"""user commands: every value a bound parameter, passwords never on the command line."""

from __future__ import annotations

import json

from sqlalchemy import create_engine, select
from sqlalchemy.engine import URL

from tapdb_core import users
from tapdb_core.tables import tapdb_user
from tests.acceptance.conftest import Cli, assert_one_line_error, server_vars

NAME = "o'brien"


def test_user_commands(cli: Cli, db_url: URL, server_url: URL) -> None:
    env = server_vars(server_url, "test", str(db_url.database))

    def run(*argv: str, input: str = "") -> tuple[int, str, str]:
        done = cli("user", *argv, input=input, env=env)
        return done.returncode, done.stdout, done.stderr

    code, out, err = run(
        "add", "test", "-u", NAME, "-e", "ob@example.org", "-n", 'Pat "PJ" O\'Brien',
        "--password-stdin", "--json", input="s3cret pass\n",
    )  # fmt: skip
    assert code == 0, err
    added = json.loads(out)
    assert added["username"] == NAME and added["role"] == "user"

    engine = create_engine(db_url)
    with engine.connect() as conn:
        row = conn.execute(select(tapdb_user).where(tapdb_user.c.username == NAME)).one()
        assert row.display_name == 'Pat "PJ" O\'Brien'
        assert users.verify_password(conn, NAME, "s3cret pass")

    code, _, err = run("add", "test", "-u", NAME)
    assert code == 1
    assert "already exists" in err

    code, out, _ = run("list", "test", "--json")
    assert [u["username"] for u in json.loads(out)] == [NAME]

    code, out, _ = run("set-role", "test", NAME, "admin")
    assert code == 0 and "role admin" in out

    assert run("deactivate", "test", NAME)[0] == 0
    active, everyone = cli.many(
        ["user", "list", "test", "--json"], ["user", "list", "test", "-i", "--json"], env=env
    )
    assert json.loads(active.stdout) == []
    assert json.loads(everyone.stdout)[0]["is_active"] is False
    assert run("activate", "test", NAME)[0] == 0

    code, _, err = run("set-password", "test", NAME, "--password-stdin", input="n3w\n")
    assert code == 0, err
    with engine.connect() as conn:
        assert users.verify_password(conn, NAME, "n3w")
    # on a terminal: a hidden prompt, asked twice
    code, output = cli.in_terminal(
        ["user", "set-password", "test", NAME],
        [("New password", "t3rminal"), ("Repeat", "t3rminal")],
        env=env,
    )
    assert code == 0, output
    assert "t3rminal" not in output  # not echoed
    with engine.connect() as conn:
        assert users.verify_password(conn, NAME, "t3rminal")
    code, output = cli.in_terminal(
        ["user", "set-password", "test", NAME],
        [("New password", "one"), ("Repeat", "two")],
        env=env,
    )
    assert code == 2 and "differ" in output, output

    code, _, err = run("set-password", "test", NAME, "--password-stdin", input="\n")
    assert code == 2 and "empty" in err
    code, _, err = run("set-password", "test", NAME)  # no terminal, no stdin option
    assert code == 2 and "--password-stdin" in err

    # changing a user who does not exist is an error, never a silent no-op
    for done in cli.many(
        ["user", "set-role", "test", "ghost", "admin"],
        ["user", "deactivate", "test", "ghost"],
        ["user", "delete", "test", "ghost", "--force"],
        env=env,
    ):
        assert done.returncode == 1, done.args
        assert_one_line_error(done, "user 'ghost' not found")

    done = cli("user", "delete", "test", NAME, env=env)
    assert done.returncode == 1
    assert_one_line_error(done, "refused", "--force")
    code, out, err = run("delete", "test", NAME, "--force")
    assert code == 0, err
    with engine.connect() as conn:
        assert conn.execute(select(tapdb_user)).all() == []
    engine.dispose()
