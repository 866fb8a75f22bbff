"""tapdb_core.commands in-process, against the real PostgreSQL: one test (at least)
per command function; the CLI's subprocess tests stay in tests/acceptance."""

from __future__ import annotations

import io
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL

from tapdb_core import commands, instances, lineage, migrate
from tapdb_core.commands import _session
from tapdb_core.errors import (
    DatabaseMissingError,
    DatabaseUnavailableError,
    RefusedError,
    SchemaNotReadyError,
    TapdbWarning,
    UsageError,
    UserNotFoundError,
)

DEMO_TEMPLATE = "container/plate/fixed-plate-96/1.0/"
_names = itertools.count()


@pytest.fixture(autouse=True)
def _private_oplog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPDB_OPLOG", str(tmp_path / "operations.log"))
    monkeypatch.delenv("TAPDB_AUDIT_USER", raising=False)


@pytest.fixture
def new_db(server_url: URL, admin_engine: Engine) -> Iterator[commands.Target]:
    """A target whose database does not exist yet (dropped afterwards)."""
    name = f"tapdb_cmd_{os.getpid()}_{next(_names)}"
    yield commands.Target.from_url(server_url.set(database=name))
    with admin_engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _target(engine_or_url: Engine | URL, **kwargs: str) -> commands.Target:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else engine_or_url
    return commands.Target.from_url(url, **kwargs)


def _refuse(action: str) -> None:
    raise RefusedError(f"not confirmed: {action}")


# --------------------------------------------------------------------------- sessions


def test_session_refuses_a_database_without_the_schema(empty_db_url: URL) -> None:
    target = _target(empty_db_url)
    with pytest.raises(SchemaNotReadyError, match="has no tapdb schema") as info:
        with commands.session(target):
            pass
    assert "tapdb db schema apply dev" in str(info.value) and info.value.exit_code == 1
    with commands.session(target, need_schema=False) as s, s.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1


def test_session_explains_a_missing_database(new_db: commands.Target) -> None:
    with pytest.raises(DatabaseMissingError, match="tapdb db create dev"):
        with commands.session(new_db):
            pass


def test_session_records_effects_only_for_writes(engine: Engine) -> None:
    target = _target(engine)
    _session.forget_effects()
    with commands.session(target) as s, s.begin() as conn:
        conn.execute(text("SELECT count(*) FROM generic_template"))
    assert not _session.has_effects()
    with commands.session(target) as s, s.begin() as conn:
        conn.execute(text("CREATE TEMPORARY TABLE t_effect (x int)"))
        conn.execute(text("INSERT INTO t_effect VALUES (1)"))
    assert _session.has_effects()
    _session.forget_effects()


def test_who_am_i_precedence(monkeypatch: pytest.MonkeyPatch, db_url: URL) -> None:
    target = _target(db_url)
    configured = commands.Target(
        env="dev", url=target.url, from_database_url=False, audit_user="from-config"
    )
    monkeypatch.setenv("USER", "os-user")
    assert commands.actor_and_source(target) == ("os-user", "$USER")
    assert commands.actor_and_source(configured) == ("from-config", "audit_user of environment dev")
    monkeypatch.setenv("TAPDB_AUDIT_USER", "from-env")
    assert commands.actor_and_source(configured) == ("from-env", "$TAPDB_AUDIT_USER")
    flagged = commands.Target.from_url(db_url, audit_as="flagged")
    assert commands.actor_and_source(flagged) == ("flagged", "--as")
    with pytest.raises(UsageError):
        commands.actor(commands.Target.from_url(db_url, audit_as="  "))


# --------------------------------------------------------------------------- databases


def test_create_and_delete_database(new_db: commands.Target, admin_engine: Engine) -> None:
    created = commands.create_database(new_db)
    assert created.created and created.database == new_db.database
    assert commands.create_database(new_db).created is False

    asked: list[str] = []
    with pytest.raises(RefusedError):
        commands.delete_database(new_db, confirm=_refuse)
    assert commands.delete_database(new_db, confirm=asked.append).deleted
    assert asked == ["drop the database"]
    asked.clear()
    assert commands.delete_database(new_db, confirm=asked.append).deleted is False
    assert asked == []  # nothing to drop: nothing to ask


def test_setup_database_creates_migrates_and_seeds(new_db: commands.Target) -> None:
    result = commands.setup_database(new_db, identity_prefixes={"tapdb_user": "TXA"})
    assert result.created and result.revision_before is None
    assert result.revision == migrate.head_revision()
    assert len(result.seed.created) > 50
    again = commands.setup_database(new_db)
    assert not again.created and again.revision_before == again.revision
    assert again.seed.created == () and len(again.seed.unchanged) == len(result.seed.created)
    user = commands.create_user(new_db, "prefixed")
    assert user.euid.startswith("TXA")

    with pytest.raises(RefusedError):
        commands.setup_database(new_db, recreate=True, confirm=_refuse)
    assert commands.list_users(new_db)  # nothing was dropped
    fresh = commands.setup_database(new_db, recreate=True, confirm=lambda _a: None)
    assert fresh.created and commands.list_users(new_db) == []


# --------------------------------------------------------------------------- schema


def test_migrate_pending_and_sql(empty_db_url: URL) -> None:
    target = _target(empty_db_url)
    pending = commands.pending_migrations(target)
    assert pending.revision is None and pending.pending[-1] == migrate.head_revision()
    buffer = io.StringIO()
    assert commands.migration_sql(target, buffer).pending == pending.pending
    assert "CREATE TABLE generic_template" in buffer.getvalue()
    with commands.session(target, need_schema=False) as s, s.connect() as conn:
        assert migrate.current_revision(conn) is None  # --sql ran nothing

    done = commands.migrate(target)
    assert done.applied == pending.pending and done.revision == migrate.head_revision()
    again = commands.migrate(target)
    assert again.applied == () and again.revision_before == again.revision
    assert commands.pending_migrations(target).pending == ()


def test_migration_sql_builds_the_same_schema_as_migrating(empty_db_url: URL) -> None:
    """The printed script, run by hand, must build what `migrate` builds: every
    function and trigger as in the fingerprint (the script once doubled each '%')."""
    from tapdb_core import tamper

    buffer = io.StringIO()
    commands.migration_sql(_target(empty_db_url), buffer)
    script = buffer.getvalue()
    assert "total % 32" in script  # revision 0007's body, as written
    engine = create_engine(empty_db_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.connection.driver_connection.execute(script)  # type: ignore[union-attr]
            report = tamper.check_integrity(conn)
            assert report.compared and report.ok, report.problems
            tpl = conn.execute(
                text(
                    "INSERT INTO generic_template (name, polymorphic_discriminator, category,"
                    " type, subtype, version, instance_prefix)"
                    " VALUES ('s', 'container_template', 'container', 'plate', 's', '1.0', 'CX')"
                    " RETURNING uuid"
                )
            ).scalar_one()
            made = conn.execute(
                text(
                    "INSERT INTO generic_instance (name, template_uuid) VALUES ('x', :t)"
                    " RETURNING euid_seq, euid"
                ),
                {"t": tpl},
            ).one()
    finally:
        engine.dispose()
    from tapdb_core import euid

    assert made.euid == euid.encode("CX", made.euid_seq)


def test_apply_schema_sets_configured_identity_prefixes(empty_db_url: URL) -> None:
    from tapdb_core.config import load_config

    cfg = load_config(
        "dev",
        environ={
            "DATABASE_URL": empty_db_url.render_as_string(hide_password=False),
            "TAPDB_DEV_AUDIT_LOG_EUID_PREFIX": "AXB",
        },
    )
    result = commands.apply_schema(_target(empty_db_url), cfg)
    assert result.identity_prefixes_set == ("audit_log=AXB",)
    assert commands.apply_schema(_target(empty_db_url), cfg).identity_prefixes_set == ()


def test_schema_status(seeded_engine: Engine, empty_db_url: URL, new_db: commands.Target) -> None:
    status = commands.schema_status(_target(seeded_engine))
    assert status.ok and status.problems == () and status.tampered == ()
    assert status.revision == status.head == migrate.head_revision()
    assert status.tables is not None and status.tables["generic_template"]["live"] > 50
    assert status.integrity is not None and status.integrity.compared

    with seeded_engine.begin() as conn:
        conn.execute(text("ALTER TABLE generic_instance DISABLE TRIGGER tapdb_40_soft_delete"))
    status = commands.schema_status(_target(seeded_engine))
    assert not status.ok
    assert status.triggers is not None
    assert status.triggers["generic_instance"].disabled == ("tapdb_40_soft_delete",)

    empty = commands.schema_status(_target(empty_db_url))
    assert not empty.ok and empty.revision is None and empty.tables is None
    assert "no tapdb schema: run `tapdb db schema apply dev`" in empty.problems
    missing = commands.schema_status(new_db)
    assert not missing.database_exists and missing.problem is not None
    assert missing.problems == ("database missing: run `tapdb db setup dev`",)


def test_schema_status_reports_a_changed_function(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE OR REPLACE FUNCTION tapdb_soft_delete() RETURNS trigger"
                " LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$"
            )
        )
    status = commands.schema_status(_target(engine))
    if status.integrity is None or not status.integrity.compared:
        pytest.skip("no schema fingerprint for this revision")
    assert not status.ok and status.tampered


def test_reset_schema(engine: Engine, empty_db_url: URL) -> None:
    target = _target(engine)
    with pytest.raises(RefusedError):
        commands.reset_schema(target, confirm=_refuse)
    asked: list[str] = []
    result = commands.reset_schema(target, confirm=asked.append)
    assert result.reset and result.revision_before == migrate.head_revision()
    assert asked == ["drop every tapdb table, row and function"]
    with engine.connect() as conn:
        assert migrate.current_revision(conn) is None
    nothing = commands.reset_schema(_target(empty_db_url), confirm=_refuse)
    assert not nothing.reset and nothing.revision_before is None


# --------------------------------------------------------------------------- data


def test_seed_and_validate_packs(db_url: URL, tmp_path: Path) -> None:
    target = _target(db_url)
    planned = commands.seed(target, dry_run=True)
    assert planned.dry_run and len(planned.created) > 50
    assert commands.list_templates(target) == []
    done = commands.seed(target)
    assert done.created == planned.created
    assert len(commands.list_templates(target)) == len(done.created)

    assert commands.validate_packs().ok
    broken = tmp_path / "packs"
    broken.mkdir()
    (broken / "bad.json").write_text('{"templates": [{"category": 1}]}', encoding="utf-8")
    assert not commands.validate_packs([broken]).ok
    with pytest.raises(UsageError, match="nothing was seeded"):
        commands.seed(target, pack_dirs=[broken])


def test_backup_verify_restore(seeded_engine: Engine, empty_db_url: URL, tmp_path: Path) -> None:
    source = _target(seeded_engine)
    with commands.session(source) as s, s.begin() as conn:
        instances.create(conn, DEMO_TEMPLATE, "to back up")
    out = tmp_path / "b.dump"
    info = commands.backup(source, out)
    assert info.path == out and out.stat().st_mode & 0o777 == 0o600
    contents = commands.verify_backup(out)
    assert contents.revision == migrate.head_revision()
    assert contents.row_counts["generic_instance"] == info.contents.row_counts["generic_instance"]
    with pytest.raises(UsageError, match="no such file"):
        commands.verify_backup(tmp_path / "missing.dump")
    with pytest.raises(UsageError, match="is a directory"):
        commands.backup(source, tmp_path)

    target = _target(empty_db_url)
    with pytest.raises(RefusedError):
        commands.restore(target, out, confirm=_refuse)
    restored = commands.restore(target, out, confirm=lambda _a: None)
    assert not restored.cleaned
    engine = create_engine(empty_db_url)
    try:
        with engine.connect() as conn:
            count = conn.execute(text("SELECT count(*) FROM generic_instance")).scalar()
    finally:
        engine.dispose()
    assert count == contents.row_counts["generic_instance"]
    with pytest.raises(UsageError, match="only goes with --clean"):
        commands.restore(target, out, drop_dependents=True)


# --------------------------------------------------------------------------- users


def test_user_commands_and_the_audit_user(engine: Engine) -> None:
    target = _target(engine, audit_as="alice")
    user = commands.create_user(target, "o'brien", email="ob@example.org", password="pw-123456")
    assert user.username == "o'brien" and user.role == "user"
    assert [u.euid for u in commands.list_users(target)] == [user.euid]
    assert commands.get_user(target, user.euid) == commands.get_user(target, "o'brien")
    assert commands.set_user_role(target, "o'brien", "admin").role == "admin"
    assert not commands.deactivate_user(target, user.euid).is_active
    assert commands.list_users(target) == []
    assert len(commands.list_users(target, include_inactive=True)) == 1
    assert commands.activate_user(target, user.euid).is_active
    changed = commands.set_user_password(target, user.euid, "new-pw-654321", require_change=True)
    assert changed.require_password_change
    with pytest.raises(RefusedError):
        commands.delete_user(target, user.euid, confirm=_refuse)
    asked: list[str] = []
    assert commands.delete_user(target, user.euid, confirm=asked.append).euid == user.euid
    assert asked and "o'brien" in asked[0]
    with pytest.raises(UserNotFoundError):
        commands.get_user(target, user.euid)
    with engine.connect() as conn:
        who = set(conn.execute(text("SELECT DISTINCT changed_by FROM audit_log")).scalars())
    assert who == {"alice"}


def test_user_commands_warn_about_a_shadowed_username(engine: Engine) -> None:
    target = _target(engine)
    alice = commands.create_user(target, "alice")
    with engine.begin() as conn:  # an account from before EUID-shaped names were refused
        old = conn.execute(
            text("INSERT INTO tapdb_user (username) VALUES (:u) RETURNING euid"),
            {"u": alice.euid},
        ).scalar_one()
    with pytest.warns(TapdbWarning, match=f"not as the username of user {old}"):
        assert commands.get_user(target, alice.euid).username == "alice"
    with pytest.warns(TapdbWarning, match="is read as an EUID"):
        commands.set_user_role(target, alice.euid, "admin")


# --------------------------------------------------------------------------- templates, objects


def test_templates_objects_history_and_graph(seeded_engine: Engine) -> None:
    target = _target(seeded_engine)
    found = commands.list_templates(target, category="container")
    assert found and all(t.category == "container" for t in found)
    plate = commands.show_template(target, DEMO_TEMPLATE)
    assert commands.show_template(target, plate.euid) == plate

    with commands.session(target) as s, s.begin() as conn:
        tree = instances.create_tree(conn, DEMO_TEMPLATE, "plate")
    root = tree.root
    view = commands.show_object(target, root.euid)
    assert view.instance.euid == root.euid and view.parents == ()
    assert len(view.children) == 96
    well = view.children[0].instance
    assert [p.instance.euid for p in commands.show_object(target, well.euid).parents] == [root.euid]
    history = commands.object_history(target, root.euid)
    assert history and history[0].operation_type == "INSERT"
    assert len(commands.object_history(target, root.euid, limit=1)) == 1
    with pytest.raises(UsageError):
        commands.object_history(target, root.euid, limit=0)

    graph = commands.lineage_graph(target, root.euid, depth=1)
    assert isinstance(graph, lineage.Graph)
    assert len(graph.to_cytoscape()["nodes"]) == 97
    with pytest.raises(UsageError):
        commands.lineage_graph(target, root.euid, depth=0)


# --------------------------------------------------------------------------- roles, info


def test_grant_roles(engine: Engine, admin_engine: Engine) -> None:
    app = f"tapdb_cmd_app_{os.getpid()}_{next(_names)}"
    try:
        result = commands.grant_roles(_target(engine), app_role=app, app_password="s3cret-pw")
        assert [(r.name, r.kind, r.created, r.password_set) for r in result.roles] == [
            (app, "app", True, True)
        ]
        again = commands.grant_roles(_target(engine), app_role=app)
        assert not again.roles[0].created
        with pytest.raises(UsageError):
            commands.grant_roles(_target(engine), app_role=app, readonly_role=app)
    finally:
        with engine.begin() as conn:
            if conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": app}).first():
                conn.execute(text(f'DROP OWNED BY "{app}"'))
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP ROLE IF EXISTS "{app}"'))


def test_server_status(engine: Engine, new_db: commands.Target) -> None:
    status = commands.server_status(_target(engine))
    assert status.reachable and status.database_exists
    assert status.revision == status.head == migrate.head_revision()
    assert status.server_version
    missing = commands.server_status(new_db)
    assert missing.reachable and missing.database_exists is False and missing.problem
    nowhere = commands.Target.from_url("postgresql://nobody@127.0.0.1:1/none")
    down = commands.server_status(nowhere)
    assert not down.reachable and down.problem and "unreachable" in down.problem


def test_unreachable_server_is_one_explained_error() -> None:
    nowhere = commands.Target.from_url("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(DatabaseUnavailableError, match=r"127\.0\.0\.1:1 is unreachable"):
        commands.list_users(nowhere)
