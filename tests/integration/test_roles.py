"""Role separation: the application role runs the library but cannot forge the audit
trail; the read-only role only reads.

Each test connects as freshly created roles (unique names: roles are cluster-wide)
and drops them afterwards.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable, Iterator

import attrs
import pytest
from psycopg import errors as pgerrors
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tapdb_core import audit, instances, lineage, roles, templates, users
from tapdb_core.db import set_audit_user
from tapdb_core.templates import TemplateSpec

PLATE96 = "container/plate/fixed-plate-96/1.0/"
_names = itertools.count()


@attrs.frozen
class Granted:
    app: str
    readonly: str
    app_url: URL
    readonly_url: URL
    result: roles.RolesResult


def unique_role(kind: str) -> str:
    return f"tapdb_t_{kind}_{os.getpid()}_{next(_names)}"


def drop_roles(engine: Engine, admin: Engine, names: list[str]) -> None:
    """Drop the roles' grants in the test database, then the roles (cluster-wide)."""
    with engine.begin() as conn:
        for name in names:
            exists = conn.execute(
                text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}
            ).first()
            if exists:
                quoted = conn.dialect.identifier_preparer.quote(name)
                conn.execute(text(f"DROP OWNED BY {quoted}"))
    with admin.connect() as conn:
        for name in names:
            quoted = conn.dialect.identifier_preparer.quote(name)
            conn.execute(text(f"DROP ROLE IF EXISTS {quoted}"))


@pytest.fixture
def grant(
    admin_engine: Engine,
) -> Iterator[Callable[[Engine], Granted]]:
    made: list[tuple[Engine, list[str]]] = []

    def run(engine: Engine) -> Granted:
        app, readonly = unique_role("app"), unique_role("ro")
        made.append((engine, [app, readonly]))
        app_pw, ro_pw = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        with engine.begin() as conn:
            result = roles.grant_roles(
                conn,
                app_role=app,
                readonly_role=readonly,
                app_password=app_pw,
                readonly_password=ro_pw,
            )
        return Granted(
            app=app,
            readonly=readonly,
            app_url=engine.url.set(username=app, password=app_pw),
            readonly_url=engine.url.set(username=readonly, password=ro_pw),
            result=result,
        )

    yield run
    for engine, names in made:
        drop_roles(engine, admin_engine, names)


@pytest.fixture
def granted(seeded_engine: Engine, grant: Callable[[Engine], Granted]) -> Granted:
    return grant(seeded_engine)


@pytest.fixture
def app_engine(granted: Granted) -> Iterator[Engine]:
    engine = create_engine(granted.app_url)
    yield engine
    engine.dispose()


@pytest.fixture
def readonly_engine(granted: Granted) -> Iterator[Engine]:
    engine = create_engine(granted.readonly_url)
    yield engine
    engine.dispose()


def _denied(engine: Engine, statement: str, *, setup: str | None = None) -> DBAPIError:
    """Run ``statement`` in a rolled-back transaction; it must fail for lack of privilege."""
    with engine.connect() as conn:
        if setup:
            conn.execute(text(setup))
        with pytest.raises(DBAPIError) as err:
            conn.execute(text(statement))
        conn.rollback()
    assert isinstance(err.value.orig, pgerrors.InsufficientPrivilege), (
        statement,
        type(err.value.orig),
        str(err.value.orig),
    )
    return err.value


# --------------------------------------------------------------------------- the app works


def test_roles_are_created_with_safe_attributes(granted: Granted, seeded_engine: Engine) -> None:
    with seeded_engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolinherit, rolcanlogin,"
                " rolreplication, rolbypassrls, rolpassword LIKE 'SCRAM-SHA-256$%' AS scram"
                " FROM pg_authid WHERE rolname IN (:a, :r)"
            ),
            {"a": granted.app, "r": granted.readonly},
        ).all()
    assert len(rows) == 2
    for row in rows:
        assert row.rolcanlogin and row.scram
        assert not (row.rolsuper or row.rolcreatedb or row.rolcreaterole or row.rolinherit)
        assert not (row.rolreplication or row.rolbypassrls)
    assert [r.created for r in granted.result.roles] == [True, True]


def test_app_role_runs_the_library(app_engine: Engine, seeded_engine: Engine) -> None:
    templates.clear_cache()
    spec = TemplateSpec(
        name="role probe",
        polymorphic_discriminator="content_template",
        category="content",
        type="probe",
        subtype="roles",
        version="1.0",
        instance_prefix="RPQ",  # new prefix: its sequence is created as the owner
    )
    with app_engine.begin() as conn:
        set_audit_user(conn, "ann")
        [outcome] = templates.upsert_templates(conn, [spec])
        assert outcome.outcome == "created"
        tree = instances.create_tree(conn, PLATE96, "ROLE-PLATE")
        probe = instances.create(conn, "content/probe/roles/1.0/", "probe-1")
        well = tree.instances[1]
        edge = lineage.link(conn, well, probe, "contains")
        instances.update_properties(conn, probe.euid, {"volume": 3})
        deleted = instances.delete(conn, probe.euid)
        assert deleted == [probe.euid]
        user = users.create_user(conn, "role-user", password="s3cret-pass")
        users.set_password(conn, "role-user", "an0ther-pass")
        users.delete_user(conn, user.euid)
        history = audit.history(conn, probe.euid)
    assert {h.operation_type for h in history} >= {"INSERT", "UPDATE", "DELETE"}
    assert all(h.changed_by == "ann" for h in history)
    with seeded_engine.connect() as conn:
        # the soft delete really was soft, and the edge is there
        assert conn.execute(
            text("SELECT is_deleted FROM generic_instance WHERE euid = :e"), {"e": probe.euid}
        ).scalar_one()
        assert conn.execute(
            text("SELECT count(*) FROM generic_instance_lineage WHERE euid = :e"),
            {"e": edge.euid},
        ).scalar_one()
        # the user is gone, and its deletion is audited
        assert conn.execute(
            text(
                "SELECT count(*) FROM audit_log WHERE rel_table_name = 'tapdb_user'"
                " AND rel_table_euid_fk = :e AND operation_type = 'DELETE'"
            ),
            {"e": user.euid},
        ).scalar_one()
        owner = conn.execute(
            text(
                "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'tapdb_euid_seq_rpq'::regclass"
            )
        ).scalar_one()
        table_owner = conn.execute(
            text("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'audit_log'::regclass")
        ).scalar_one()
    assert owner == table_owner


def test_grant_roles_is_idempotent_and_repairs_widened_privileges(
    granted: Granted, seeded_engine: Engine, grant: Callable[[Engine], Granted]
) -> None:
    quoted = '"' + granted.app + '"'
    with seeded_engine.begin() as conn:
        conn.execute(
            text(f"GRANT INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER ON audit_log TO {quoted}")
        )
    with seeded_engine.begin() as conn:
        again = roles.grant_roles(conn, app_role=granted.app, readonly_role=granted.readonly)
    assert [r.created for r in again.roles] == [False, False]
    assert [r.password_set for r in again.roles] == [False, False]
    with seeded_engine.connect() as conn:
        privileges = (
            conn.execute(
                text(
                    "SELECT privilege_type FROM information_schema.role_table_grants"
                    " WHERE grantee = :g AND table_name = 'audit_log' ORDER BY 1"
                ),
                {"g": granted.app},
            )
            .scalars()
            .all()
        )
    assert privileges == ["SELECT"]


def test_unsafe_roles_are_refused(seeded_engine: Engine, admin_engine: Engine) -> None:
    with seeded_engine.connect() as conn:
        owner = conn.execute(
            text("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'audit_log'::regclass")
        ).scalar_one()
    with seeded_engine.begin() as conn, pytest.raises(roles.RolesError, match="owns the tapdb"):
        roles.grant_roles(conn, app_role=owner)
    for bad in ("", "pg_app", "x" * 64, " app"):
        with seeded_engine.begin() as conn, pytest.raises(roles.RoleNameError):
            roles.grant_roles(conn, app_role=bad)
    with seeded_engine.begin() as conn, pytest.raises(roles.RoleNameError, match="differ"):
        roles.grant_roles(conn, app_role="same_name", readonly_role="same_name")
    superuser = unique_role("su")
    try:
        with admin_engine.connect() as conn:
            conn.execute(text(f'CREATE ROLE "{superuser}" SUPERUSER'))
        with seeded_engine.begin() as conn, pytest.raises(roles.RolesError, match="superuser"):
            roles.grant_roles(conn, app_role=superuser)
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP ROLE IF EXISTS "{superuser}"'))


def test_odd_role_names_and_passwords_are_quoted(
    seeded_engine: Engine, admin_engine: Engine
) -> None:
    name = f'odd "role"; DROP TABLE audit_log; -- {os.getpid()}'
    password = "pa'ss\"word; --$$"
    try:
        with seeded_engine.begin() as conn:
            roles.grant_roles(conn, app_role=name, app_password=password)
        engine = create_engine(seeded_engine.url.set(username=name, password=password))
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT current_user")).scalar_one() == name
                assert conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one() > 0
        finally:
            engine.dispose()
    finally:
        drop_roles(seeded_engine, admin_engine, [name])


# --------------------------------------------------------------------------- attacks fail

ATTACKS = [
    "UPDATE audit_log SET changed_by = 'mallory'",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log",
    "INSERT INTO audit_log (euid_prefix, euid_seq, rel_table_name, rel_table_uuid_fk,"
    " operation_type, changed_by) VALUES ('ADT', 999999, 'generic_instance', 1, 'INSERT', 'x')",
    "ALTER TABLE audit_log DISABLE TRIGGER tapdb_10_append_only",
    "ALTER TABLE audit_log DISABLE TRIGGER ALL",
    "ALTER TABLE generic_instance DISABLE TRIGGER tapdb_40_soft_delete",
    "ALTER TABLE generic_instance DISABLE TRIGGER tapdb_90_audit_update",
    "DROP TRIGGER tapdb_10_append_only ON audit_log",
    "DROP TRIGGER tapdb_40_soft_delete ON generic_instance",
    "CREATE OR REPLACE FUNCTION tapdb_audit_user() RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$",
    "CREATE OR REPLACE FUNCTION tapdb_soft_delete_trg() RETURNS trigger LANGUAGE plpgsql"
    " AS $$ BEGIN RETURN OLD; END $$",
    "ALTER FUNCTION tapdb_audit_insert_trg() SECURITY INVOKER",
    "DROP FUNCTION tapdb_audit_user()",
    "SET session_replication_role = replica",
    "TRUNCATE generic_instance",
    "TRUNCATE tapdb_user",
    "ALTER TABLE generic_instance ADD COLUMN evil text",
    "DROP TABLE audit_log",
    "CREATE TABLE evil (x int)",
    "CREATE FUNCTION tapdb_identity_prefix(p_entity varchar) RETURNS text LANGUAGE sql"
    " AS $$ SELECT 'ZZ' $$",
    "CREATE TRIGGER evil BEFORE INSERT ON audit_log FOR EACH ROW"
    " EXECUTE FUNCTION tapdb_audit_log_append_only_trg()",
    "UPDATE tapdb_identity_prefix_config SET euid_prefix = 'QQ'",
    "DELETE FROM tapdb_identity_prefix_config",
    "SELECT tapdb_set_identity_prefix('audit_log', 'QQ')",
    "DELETE FROM alembic_version",
]


@pytest.mark.parametrize("statement", ATTACKS)
def test_app_role_cannot_forge_the_audit_trail(app_engine: Engine, statement: str) -> None:
    _denied(app_engine, statement)


def test_app_role_cannot_hard_delete_and_delete_is_audited(
    app_engine: Engine, seeded_engine: Engine
) -> None:
    with app_engine.begin() as conn:
        tree = instances.create_tree(conn, PLATE96, "DOOMED")
    with app_engine.begin() as conn:
        set_audit_user(conn, "mallory")
        conn.execute(text("DELETE FROM generic_instance"))
        conn.execute(text("DELETE FROM generic_instance_lineage"))
        conn.execute(text("DELETE FROM generic_template"))
    with seeded_engine.connect() as conn:
        live = conn.execute(
            text("SELECT count(*) FROM generic_instance WHERE NOT is_deleted")
        ).scalar_one()
        kept = conn.execute(
            text("SELECT count(*) FROM generic_instance WHERE euid = :e"), {"e": tree.root.euid}
        ).scalar_one()
        audited = conn.execute(
            text(
                "SELECT count(*) FROM audit_log WHERE operation_type = 'DELETE'"
                " AND changed_by = 'mallory' AND rel_table_euid_fk = :e"
            ),
            {"e": tree.root.euid},
        ).scalar_one()
    assert live == 0 and kept == 1 and audited == 1


def test_temporary_tables_do_not_capture_audit_rows(
    app_engine: Engine, seeded_engine: Engine
) -> None:
    """A SECURITY DEFINER function resolves names in its own schema, never pg_temp."""
    with app_engine.begin() as conn:
        euid = instances.create(conn, PLATE96, "TARGET", create_children=False).euid
    with seeded_engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one()
    with app_engine.begin() as conn:
        conn.execute(text("CREATE TEMPORARY TABLE audit_log (LIKE public.audit_log)"))
        conn.execute(text("SET LOCAL search_path = pg_temp, public"))
        conn.execute(
            text("UPDATE generic_instance SET bstatus = 'hijack' WHERE euid = :e"), {"e": euid}
        )
        captured = conn.execute(text("SELECT count(*) FROM pg_temp.audit_log")).scalar_one()
    with seeded_engine.connect() as conn:
        after = conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one()
    assert captured == 0 and after == before + 1


def test_readonly_role_cannot_create_euid_sequences(
    readonly_engine: Engine,
) -> None:
    _denied(readonly_engine, "SELECT tapdb_ensure_euid_sequence('QQ')")


# --------------------------------------------------------------------------- read-only


def test_readonly_role_reads_everything(readonly_engine: Engine) -> None:
    with readonly_engine.connect() as conn:
        for table in (
            "generic_template",
            "generic_instance",
            "generic_instance_lineage",
            "tapdb_user",
            "audit_log",
            "tapdb_identity_prefix_config",
            "alembic_version",
        ):
            conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
        templates.clear_cache()
        assert templates.get_template(conn, PLATE96).instance_prefix == "CX"


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO tapdb_user (username) VALUES ('ro')",
        "UPDATE generic_instance SET bstatus = 'x'",
        "DELETE FROM generic_instance",
        "UPDATE tapdb_user SET role = 'admin'",
        "DELETE FROM tapdb_user",
        "INSERT INTO audit_log (euid_prefix, euid_seq, rel_table_name, rel_table_uuid_fk,"
        " operation_type, changed_by) VALUES ('ADT', 999999, 'x', 1, 'INSERT', 'x')",
        "TRUNCATE audit_log",
        "SELECT nextval('tapdb_euid_seq_gt')",
        "SELECT setval('tapdb_euid_seq_gt', 1)",
        "ALTER TABLE generic_instance DISABLE TRIGGER ALL",
        "CREATE TABLE ro_evil (x int)",
    ],
)
def test_readonly_role_writes_nothing(readonly_engine: Engine, statement: str) -> None:
    _denied(readonly_engine, statement)


def test_temporary_tables_do_not_blind_the_cycle_guard(app_engine: Engine) -> None:
    """The guard reads the real edge table whatever the caller's search_path."""
    with app_engine.begin() as conn:
        tree = instances.create_tree(conn, PLATE96, "LOOP")
    plate, well = tree.root, tree.instances[1]
    with app_engine.connect() as conn:
        conn.execute(
            text(
                "CREATE TEMPORARY TABLE generic_instance_lineage"
                " (LIKE public.generic_instance_lineage INCLUDING DEFAULTS)"
            )
        )
        conn.execute(text("SET search_path = pg_temp, public"))
        with pytest.raises(DBAPIError) as err:
            conn.execute(
                text(
                    "INSERT INTO public.generic_instance_lineage"
                    " (parent_instance_uuid, child_instance_uuid) VALUES (:p, :c)"
                ),
                {"p": well.uuid, "c": plate.uuid},
            )
        conn.rollback()
    assert isinstance(err.value.orig, pgerrors.CheckViolation), err.value.orig
    assert "cycle" in str(err.value.orig)
