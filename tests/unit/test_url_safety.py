"""Database URLs: an unencoded '@' in the password is refused without showing the
password; encoded special characters reach the driver unchanged; the audit user
precedence of the CLI. No database needed."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from tapdb_core.cli import common
from tapdb_core.config import load_config, normalise_url
from tapdb_core.db import connect, connect_args
from tapdb_core.errors import ConfigurationError

SECRET_BITS = ("Zq9", "Xk7", "Wv5")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:Zq9@Xk7@host/db",  # the '@' splits the password
        "postgres://u:Zq9@Xk7@host:5432/db",
        "postgresql://u:Zq9@Xk7:Wv5@host/db",  # the rest lands in the port
        "postgresql://u:Zq9/Xk7@Wv5@host/db",  # a '/' hides the first '@' from a naive split
        "postgresql+psycopg://u:Zq9@Xk7@Wv5@host/db?sslmode=disable",
    ],
)
def test_unencoded_at_in_the_password_is_refused_without_showing_it(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        normalise_url(url)
    message = str(info.value)
    assert "percent-encode" in message and "%40" in message
    password = url.split("://", 1)[1].split(":", 1)[1].rsplit("@", 1)[0]
    for bit in (password, *SECRET_BITS):
        assert bit not in message
    with pytest.raises(ConfigurationError, match="percent-encode"):
        load_config("dev", environ={"DATABASE_URL": url}, config_file=None).url()
    with pytest.raises(ConfigurationError, match="percent-encode"):
        connect(url)


def test_at_signs_outside_the_authority_are_fine() -> None:
    url = normalise_url("postgresql://u:p%40ss@host/db?application_name=a@b")
    parsed = make_url(url)
    assert parsed.password == "p@ss" and parsed.host == "host"


PASSWORDS = ["with space", "at@sign", "plus+sign", "slash/word", "per%cent", "all @+/% :?#&="]


@pytest.mark.parametrize("password", PASSWORDS)
def test_encoded_passwords_round_trip_to_the_driver(password: str) -> None:
    url = f"postgresql://alice:{quote(password, safe='')}@db.example:6543/tapdb"
    engine = create_engine(normalise_url(url))
    try:
        _, kwargs = engine.dialect.create_connect_args(engine.url)
    finally:
        engine.dispose()
    assert kwargs["password"] == password
    assert kwargs["host"] == "db.example" and kwargs["user"] == "alice"
    # from config fields (no URL written by hand) the same holds
    cfg = load_config(
        "dev",
        environ={"TAPDB_DEV_PASSWORD": password, "TAPDB_DEV_HOST": "db.example"},
        config_file=None,
    )
    assert make_url(cfg.url()).password == password
    target = common.target_of(cfg)
    for shown in (target.masked_url(), str(cfg.masked())):
        assert password not in shown and quote(password, safe="") not in shown


def test_connect_args_units_and_defaults() -> None:
    args = connect_args(statement_timeout=1.5, lock_timeout=0.0001)
    assert args["options"] == "-c statement_timeout=1500 -c lock_timeout=1"
    assert args["keepalives"] == 1 and args["tcp_user_timeout"] == 30000
    assert args["connect_timeout"] == 10
    assert "options" not in connect_args()


def test_audit_user_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "tapdb-config.json"
    config.write_text('{"environments": {"dev": {"audit_user": "from-config"}}}')
    monkeypatch.setenv("USER", "os-user")
    monkeypatch.delenv("TAPDB_AUDIT_USER", raising=False)
    monkeypatch.delenv("TAPDB_DEV_AUDIT_USER", raising=False)
    bare = common.target_of(load_config("dev", config_file=None, environ={}))
    configured = common.target_of(load_config("dev", config_file=config, environ={}))
    try:
        common.set_audit_as(None)
        assert common.actor_and_source(bare) == ("os-user", "$USER")
        assert common.actor(configured) == "from-config"
        monkeypatch.setenv("TAPDB_AUDIT_USER", "from-env")
        assert common.actor_and_source(configured) == ("from-env", "$TAPDB_AUDIT_USER")
        common.set_audit_as("flagged")
        assert common.actor_and_source(configured) == ("flagged", "--as")
        with pytest.raises(common.UsageError):
            common.set_audit_as("  ")
    finally:
        common.set_audit_as(None)
