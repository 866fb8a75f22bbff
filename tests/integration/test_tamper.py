"""The tamper check: the live schema against the fingerprint of a fresh migration."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL

from tapdb_core import migrate, tamper


def _audit_insert_function(conn: Connection) -> str:
    """The function behind generic_instance's audit trigger, whatever its revision named it."""
    return str(
        conn.execute(
            text(
                "SELECT tgfoid::regprocedure::text FROM pg_trigger"
                " WHERE tgname = 'tapdb_90_audit_insert' AND tgrelid = 'generic_instance'::regclass"
            )
        ).scalar_one()
    )


def test_fingerprint_file_matches_a_fresh_migration(empty_db_url: URL) -> None:
    """Every revision must regenerate it: python scripts/fingerprint_schema.py"""
    engine = create_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            migrate.upgrade(conn)
        with engine.connect() as conn:
            live = tamper.fingerprint(conn)
    finally:
        engine.dispose()
    expected = tamper.load_expected()
    assert live["revision"] == migrate.head_revision() == expected["revision"]
    assert live == expected, "run scripts/fingerprint_schema.py and commit the result"


def test_fresh_database_is_ok(engine: Engine) -> None:
    with engine.connect() as conn:
        report = tamper.check_integrity(conn)
    assert report.ok and report.compared and report.problems == ()
    assert report.functions_checked > 30
    expected = tamper.expected_triggers()
    assert report.triggers_checked == sum(len(v) for v in expected.values())
    assert "tapdb_10_append_only" in expected["audit_log"]
    assert "tapdb_40_soft_delete" in expected["generic_instance"]


def test_legitimate_changes_are_not_tampering(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("SELECT tapdb_set_meridian_domain('R')"))
        conn.execute(text("SELECT tapdb_set_identity_prefix('tapdb_user', 'MBR')"))
        conn.execute(
            text(
                "CREATE FUNCTION app_notify() RETURNS trigger LANGUAGE plpgsql"
                " AS $$ BEGIN RETURN NULL; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER app_notify AFTER INSERT ON generic_instance"
                " FOR EACH STATEMENT EXECUTE FUNCTION app_notify()"
            )
        )
    with engine.connect() as conn:
        report = tamper.check_integrity(conn)
    assert report.ok, report.problems


TAMPERING = [
    (
        "ALTER TABLE audit_log DISABLE TRIGGER tapdb_10_append_only",
        "trigger tapdb_10_append_only on audit_log is disabled",
    ),
    (
        "ALTER TABLE generic_instance DISABLE TRIGGER ALL",
        "trigger tapdb_40_soft_delete on generic_instance is disabled",
    ),
    (
        "ALTER TABLE generic_instance ENABLE REPLICA TRIGGER tapdb_40_soft_delete",
        "trigger tapdb_40_soft_delete on generic_instance is replica-only",
    ),
    (
        "DROP TRIGGER tapdb_40_soft_delete ON generic_instance",
        "trigger tapdb_40_soft_delete on generic_instance is missing",
    ),
    (
        "CREATE OR REPLACE FUNCTION tapdb_audit_user() RETURNS text LANGUAGE sql STABLE"
        " AS $$ SELECT 'nobody'::text $$",
        "function tapdb_audit_user() has been replaced",
    ),
    (
        "CREATE OR REPLACE FUNCTION tapdb_meridian_domain() RETURNS text LANGUAGE sql IMMUTABLE"
        " AS $$ SELECT 'R'::text || current_user $$",
        "function tapdb_meridian_domain() has been replaced",
    ),
    (
        "ALTER FUNCTION {audit_fn} SECURITY INVOKER",
        "function {audit_fn} is no longer SECURITY DEFINER",
    ),
    ("ALTER FUNCTION {audit_fn} RESET search_path", "function {audit_fn} settings changed"),
    (
        "GRANT EXECUTE ON FUNCTION tapdb_ensure_euid_sequence(text) TO PUBLIC",
        "function tapdb_ensure_euid_sequence(text) is executable by PUBLIC again",
    ),
    (
        "CREATE FUNCTION tapdb_audit_user(p text) RETURNS text LANGUAGE sql AS $$ SELECT p $$",
        "unexpected function tapdb_audit_user(text)",
    ),
    (
        "CREATE TRIGGER zz_swallow BEFORE INSERT ON audit_log FOR EACH ROW"
        " EXECUTE FUNCTION tapdb_refuse_truncate_trg()",
        "unexpected trigger zz_swallow on audit_log",
    ),
    (
        "DROP TRIGGER tapdb_90_audit_update ON generic_template;"
        " CREATE TRIGGER tapdb_90_audit_update AFTER UPDATE ON generic_template"
        " FOR EACH ROW EXECUTE FUNCTION tapdb_before_update_trg()",
        "trigger tapdb_90_audit_update on generic_template has been redefined",
    ),
    ("GRANT INSERT, DELETE ON audit_log TO PUBLIC", "PUBLIC may DELETE on audit_log"),
]


@pytest.mark.parametrize(("statement", "expected"), TAMPERING)
def test_tampering_is_reported(engine: Engine, statement: str, expected: str) -> None:
    with engine.begin() as conn:
        audit_fn = _audit_insert_function(conn)
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute(statement.format(audit_fn=audit_fn))
    with engine.connect() as conn:
        report = tamper.check_integrity(conn)
    assert report.tampered and not report.ok
    wanted = expected.format(audit_fn=audit_fn)
    assert any(p.startswith(wanted) for p in report.problems), report.problems


def test_another_revision_is_not_compared(engine: Engine) -> None:
    with engine.connect() as conn:
        report = tamper.check_integrity(conn, {**tamper.load_expected(), "revision": "9999"})
    assert not report.compared and not report.ok and report.problems == ()
