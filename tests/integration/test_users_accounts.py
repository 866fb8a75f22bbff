"""Accounts cannot be confused: a username is never an EUID, and lookups are decided by
shape. Password verification costs the same whatever the account's state."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, select, text

from tapdb_core import euid, users
from tapdb_core.errors import UserNotFoundError, ValidationError
from tapdb_core.tables import tapdb_user


def _legacy_user(conn: Connection, username: str) -> str:
    """A row written before EUID-shaped usernames were refused (plain SQL)."""
    return str(
        conn.execute(
            text("INSERT INTO tapdb_user (username) VALUES (:u) RETURNING euid"), {"u": username}
        ).scalar_one()
    )


def test_a_username_that_is_an_euid_is_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        alice = users.create_user(conn, "alice")
        for shaped in (
            alice.euid,  # the hijack: another user's EUID
            euid.encode("TDA", 10**6),  # nobody's EUID yet
            euid.encode("CX", 19),  # an instance-style EUID
            euid.encode("GT", 5, domain="Z9"),  # the Meridian domain form
        ):
            with pytest.raises(ValidationError) as caught:
                users.create_user(conn, shaped)
            assert caught.value.violations[0].path == "/username"
            assert shaped in str(caught.value) and "/username" in str(caught.value)
        assert [u.username for u in users.list_users(conn)] == ["alice"]


def test_lookups_are_decided_by_shape_never_both(engine: Engine) -> None:
    with engine.begin() as conn:
        alice = users.create_user(conn, "alice", password="pw-alice")
        # look-alikes that are not valid EUIDs are ordinary usernames
        wrong_check = alice.euid[:-1] + ("0" if alice.euid[-1] != "0" else "1")
        look_alikes = [alice.euid.lower(), alice.euid + "\n", " " + alice.euid, wrong_check]
        made = {name: users.create_user(conn, name) for name in look_alikes}
        for name, user in made.items():
            assert users.get_user(conn, name).euid == user.euid != alice.euid
            assert users.shadowed_username(conn, name) is None
        assert users.get_user(conn, alice.euid).username == "alice"
        assert users.get_user(conn, "alice").euid == alice.euid
        # every write addresses exactly the account the string names
        for name, user in made.items():
            assert users.set_role(conn, name, "admin").euid == user.euid
            assert users.deactivate(conn, name).euid == user.euid
            assert users.delete_user(conn, name).euid == user.euid
        assert users.get_user(conn, alice.euid).role == "user"
        assert users.get_user(conn, alice.euid).is_active


def test_a_legacy_euid_shaped_username_loses_to_the_euid(engine: Engine) -> None:
    with engine.begin() as conn:
        alice = users.create_user(conn, "alice", password="pw-alice")
        legacy_euid = _legacy_user(conn, alice.euid)
        legacy = users.get_user(conn, legacy_euid)
        assert legacy.username == alice.euid
        # the string is an EUID: it reaches alice only, and the shadow is reported
        assert users.get_user(conn, alice.euid).username == "alice"
        shadowed = users.shadowed_username(conn, alice.euid)
        assert shadowed is not None and shadowed.euid == legacy_euid
        assert users.set_role(conn, alice.euid, "admin").username == "alice"
        assert users.get_user(conn, legacy_euid).role == "user"
        # the legacy account is reachable by its own EUID
        users.set_password(conn, legacy_euid, "pw-legacy")
        assert users.verify_password(conn, legacy_euid, "pw-legacy")
        assert not users.verify_password(conn, alice.euid, "pw-legacy")
        assert users.verify_password(conn, alice.euid, "pw-alice")
        deleted = users.delete_user(conn, alice.euid)
        assert deleted.username == "alice"
        assert users.get_user(conn, legacy_euid).username == alice.euid
        # now no account has that EUID: not found, and the message says where to look
        with pytest.raises(UserNotFoundError) as caught:
            users.deactivate(conn, alice.euid)
        assert legacy_euid in str(caught.value)
        assert users.get_user(conn, legacy_euid).is_active


@pytest.fixture
def scrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = hashlib.scrypt

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls.append(kwargs["n"])
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    return calls


def test_verify_password_does_the_same_work_in_every_case(
    engine: Engine, scrypt_calls: list[int]
) -> None:
    with engine.begin() as conn:
        real = users.create_user(conn, "real", password="right")
        users.create_user(conn, "inactive", password="right")
        users.deactivate(conn, "inactive")
        users.create_user(conn, "nopassword")
        users.create_user(conn, "damaged", password="right")
        conn.execute(
            tapdb_user.update()
            .where(tapdb_user.c.username == "damaged")
            .values(password_hash="scrypt$not$a$hash")
        )
    statements: list[str] = []
    with engine.connect() as conn:
        event.listen(conn, "before_cursor_execute", lambda *a: statements.append(a[2]))
        for who, password, expected in (
            ("real", "right", True),
            (real.euid, "right", True),
            ("real", "wrong", False),
            ("real", "", False),
            ("ghost", "right", False),
            (euid.encode("TDA", 999_999), "right", False),
            ("inactive", "right", False),
            ("nopassword", "right", False),
            ("nopassword", "", False),
            ("damaged", "right", False),
        ):
            scrypt_calls.clear()
            statements.clear()
            assert users.verify_password(conn, who, password) is expected, (who, password)
            assert scrypt_calls == [2**14], (who, password)  # one scrypt, same cost
            assert len(statements) == 1, (who, statements)  # one lookup
    with engine.connect() as conn:
        stored = conn.execute(
            select(tapdb_user.c.password_hash).where(tapdb_user.c.username == "real")
        ).scalar_one()
    assert stored.startswith("scrypt$16384$8$1$")
