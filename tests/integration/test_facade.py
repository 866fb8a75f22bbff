"""The original class API over our functions: connections, sessions, changeable
objects written back, lineage relationships, action handlers that change their
instance, None for lookups that find nothing, the config loader."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select, text

import tapdb_core
from tapdb_core import actions, instances, lineage
from tapdb_core import euid as euids
from tapdb_core.audit import history
from tapdb_core.cli import db_config
from tapdb_core.errors import (
    ConfigurationError,
    CycleError,
    TemplateCodeError,
    TemplateNotFoundError,
    ValidationError,
)
from tapdb_core.facade import (
    ActionDispatcher,
    DetachedInstanceError,
    InstanceFactory,
    InstanceObject,
    TAPDBConnection,
    TapdbSession,
    TemplateManager,
)
from tapdb_core.values import Instance

PLATE = "container/plate/fixed-plate-96/1.0/"
WELL = "container/well/well-96/1.0/"
DNA = "content/sample/dna/1.0/"
SINGLETON = "workflow/assay/accessioning/1.0/"


@pytest.fixture
def db(seeded_engine: Engine) -> Iterator[TAPDBConnection]:
    url = seeded_engine.url
    conn = TAPDBConnection(
        db_hostname=f"{url.host}:{url.port}",
        db_user=url.username,
        db_pass=url.password,
        db_name=url.database,
        app_username="facade-app",
    )
    yield conn
    conn.close()


def test_get_session_manual_pattern(db: TAPDBConnection, seeded_engine: Engine) -> None:
    factory = InstanceFactory(TemplateManager())
    session = db.get_session()
    try:
        assert session.in_transaction()
        plate = factory.create_instance(session, PLATE, "manual", create_children=False)
        session.commit()  # you control when to commit
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()
    with seeded_engine.connect() as conn:
        assert instances.get(conn, plate.euid).name == "manual"
        assert {e.changed_by for e in history(conn, plate.euid)} == {"facade-app"}


def test_session_scope_commit_false_rolls_back(db: TAPDBConnection, seeded_engine: Engine) -> None:
    factory = InstanceFactory()
    with db.session_scope() as session:
        plate = factory.create_instance(session, PLATE, "never kept", create_children=False)
        assert instances.get(session, plate.euid).name == "never kept"
    assert session.closed
    with pytest.raises(RuntimeError), db.session_scope(commit=True) as session:
        factory.create_instance(session, PLATE, "rolled back too", create_children=False)
        raise RuntimeError("caller failed")
    with seeded_engine.connect() as conn:
        assert instances.find(conn, template_code=PLATE) == []


def test_session_scope_sets_audit_user_and_translates_errors(db: TAPDBConnection) -> None:
    with db.session_scope() as session:
        assert session.execute(text("SELECT tapdb_audit_user()")).scalar() == "facade-app"
    factory = InstanceFactory()
    with db.session_scope(commit=True) as session:
        plate = factory.create_instance(session, PLATE, "p", create_children=False)
    # a raw driver error in the body surfaces as our error (here: a self-loop)
    with pytest.raises(CycleError), db.session_scope() as session:
        session.execute(
            text(
                "INSERT INTO generic_instance_lineage (parent_instance_uuid, child_instance_uuid,"
                " relationship_type, name) VALUES (:u, :u, 'generic', 'loop')"
            ),
            {"u": plate.uuid},
        )


def test_link_instances(db: TAPDBConnection, seeded_engine: Engine) -> None:
    factory = InstanceFactory(TemplateManager())
    with db.session_scope(commit=True) as session:
        plate = factory.create_instance(session, PLATE, "P", create_children=False)
        well = factory.create_instance(session, WELL, "W")
        other = factory.create_instance(session, WELL, "W2")
        edge = factory.link_instances(
            session, parent=plate, child=well, relationship_type="contains"
        )
        generic = factory.link_instances(session, plate.euid, other.euid)
    assert edge.name == f"{plate.euid}->{well.euid}"
    assert edge.relationship_type == "contains"
    assert (edge.parent_type, edge.child_type) == (
        plate.polymorphic_discriminator,
        well.polymorphic_discriminator,
    )
    assert generic.relationship_type == "generic"
    with seeded_engine.connect() as conn:
        kids = lineage.children(conn, plate.euid)
        assert {k.instance.euid for k in kids} == {well.euid, other.euid}


def test_get_or_create_singleton_instance(db: TAPDBConnection) -> None:
    factory = InstanceFactory()
    with db.session_scope(commit=True) as session:
        first = factory.get_or_create_singleton_instance(session, SINGLETON, "Accessioning")
    with db.session_scope(commit=True) as session:
        again = factory.get_or_create_singleton_instance(session, SINGLETON, "ignored")
        assert again.euid == first.euid
        assert again.name == "Accessioning"
        with pytest.raises(ValueError, match="not a singleton"):
            factory.get_or_create_singleton_instance(session, PLATE, "nope")


def test_template_manager(db: TAPDBConnection) -> None:
    manager = TemplateManager()
    with db.session_scope() as session:
        template = manager.get_template(session, PLATE)
        assert template is not None
        assert manager.get_template(session, "/container/plate/fixed-plate-96/1.0") == template
        assert manager.get_template_by_euid(session, template.euid) == template
        assert manager.template_code_from_template(template) == PLATE
        assert manager.get_template(session, "container/plate/nope/1.0/") is None
        with pytest.raises(TemplateCodeError):
            manager.get_template(session, "container/plate")
        containers = manager.list_templates(session, category="container")
        assert PLATE in {t.template_code for t in containers}
        assert {t.category for t in containers} == {"container"}
        plates = manager.list_templates(session, category="container", type_="plate")
        assert {t.type for t in plates} == {"plate"}
        manager.clear_cache()
        assert manager.get_template(session, PLATE) == template
        factory = InstanceFactory(manager)
        with pytest.raises(TemplateNotFoundError):
            factory.create_instance(session, "container/plate/nope/1.0/", "x")


def test_connection_url_is_built_safely(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHO_SQL", "yes")
    monkeypatch.setenv("USER", "env-user")
    db = TAPDBConnection(
        db_hostname="db.example.org:6543", db_user="ann", db_pass="p@ss:w/rd?#", db_name="lab"
    )
    try:
        assert db.url.drivername == "postgresql+psycopg"
        assert (db.url.host, db.url.port, db.url.username, db.url.database) == (
            "db.example.org",
            6543,
            "ann",
            "lab",
        )
        assert db.url.password == "p@ss:w/rd?#"
        assert db.engine.echo is True
        assert db.app_username == "env-user"
        assert "p@ss" not in repr(db)
        pool = db.engine.pool
        assert (pool.size(), pool.timeout(), pool._recycle) == (5, 30, 1800)  # type: ignore[attr-defined]
    finally:
        db.close()
    monkeypatch.setenv("ECHO_SQL", "0")
    with TAPDBConnection(db_url="postgres://u@[::1]:5433/x") as db2:
        assert db2.url.drivername == "postgresql+psycopg"
        assert db2.engine.echo is False
        assert (db2.url.host, db2.url.port) == ("::1", 5433)
    with TAPDBConnection(db_hostname="[::1]:5434", db_user="u", db_pass="", db_name="y") as db3:
        assert (db3.url.host, db3.url.port, db3.url.password) == ("::1", 5434, None)


# -- the config loader and connection options of the original -------------------------


def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("DATABASE_URL", "TAPDB_ENV", "TAPDB_DATABASE_NAME"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HOST", "PORT", "USER", "PASSWORD", "DATABASE"):
        monkeypatch.delenv(f"PG{name}", raising=False)
        monkeypatch.delenv(f"TAPDB_TEST_{name}", raising=False)
    monkeypatch.setenv("TAPDB_CONFIG_PATH", str(tmp_path / "absent.yaml"))


def test_get_db_config_for_env_has_the_original_shape_and_precedence(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _clean_env(monkeypatch, tmp_path)
    assert tapdb_core.get_db_config_for_env is db_config.get_db_config_for_env
    monkeypatch.setenv("USER", "ann")
    cfg = db_config.get_db_config_for_env("test")
    assert list(cfg) == [
        "engine_type",
        "host",
        "port",
        "user",
        "password",
        "database",
        "cognito_user_pool_id",
        "tapdb_user_euid_prefix",
        "audit_log_euid_prefix",
    ]
    assert cfg["engine_type"] == "local"
    assert (cfg["host"], cfg["port"], cfg["user"], cfg["password"], cfg["database"]) == (
        "localhost",
        "5433",
        "ann",
        "",
        "tapdb_test",
    )
    assert all(isinstance(v, str) for v in cfg.values())
    # file < PG* < TAPDB_<ENV>_*
    config = tmp_path / "tapdb-config.json"
    config.write_text(
        '{"environments": {"test": {"host": "file-host", "port": 7000, "database": "lab",'
        ' "tapdb_user_euid_prefix": "TUX"}}}',
        encoding="utf-8",
    )
    monkeypatch.setenv("TAPDB_CONFIG_PATH", str(config))
    cfg = db_config.get_db_config_for_env("test")
    assert (cfg["host"], cfg["port"], cfg["database"]) == ("file-host", "7000", "lab")
    assert cfg["tapdb_user_euid_prefix"] == "TUX"
    monkeypatch.setenv("PGHOST", "pg-host")
    assert db_config.get_db_config_for_env("test")["host"] == "pg-host"
    monkeypatch.setenv("TAPDB_TEST_HOST", "env-host")
    assert db_config.get_db_config_for_env("test")["host"] == "env-host"
    # DATABASE_URL, documented by the original but never read there, wins here
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw@url-host:6000/urldb")
    cfg = db_config.get_db_config_for_env("test")
    assert (cfg["host"], cfg["port"], cfg["user"], cfg["password"], cfg["database"]) == (
        "url-host",
        "6000",
        "u",
        "pw",
        "urldb",
    )
    for bad in ("", "Dev!", "../x"):
        with pytest.raises(ConfigurationError):
            db_config.get_db_config_for_env(bad)


def test_db_url_prefix_socket_hosts_and_reflect_tables(db: TAPDBConnection) -> None:
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        with TAPDBConnection(
            db_url_prefix=prefix, db_hostname="h:5439", db_user="u", db_pass="p", db_name="d"
        ) as other:
            assert other.url.drivername == "postgresql+psycopg"
            assert (other.url.host, other.url.port) == ("h", 5439)
    with pytest.raises(ConfigurationError, match="db_url_prefix 'mysql://'"):
        TAPDBConnection(db_url_prefix="mysql://", db_hostname="h", db_user="u", db_name="d")
    # the original README's f"{host}:{port}" with a socket directory as host
    with TAPDBConnection(
        db_hostname="/var/run/postgresql:5433", db_user="u", db_pass="", db_name="d"
    ) as sock:
        assert sock.url.query == {"host": "/var/run/postgresql", "port": "5433"}
    tables = db.reflect_tables()
    assert {"generic_template", "generic_instance", "generic_instance_lineage", "audit_log"} <= set(
        tables
    )
    with db.session_scope() as session:
        codes = session.execute(select(tables["generic_template"].c.euid).limit(1)).scalars()
        assert euids.is_valid(next(iter(codes)))


def test_lookups_that_find_nothing_return_none(db: TAPDBConnection) -> None:
    manager = TemplateManager()
    with db.session_scope() as session:
        # the original README's own example EUID cannot exist here (no '-', no check character)
        assert manager.get_template_by_euid(session, "GT123") is None
        assert manager.get_template_by_euid(session, euids.encode("GT", 999_999)) is None
        assert manager.get_template(session, "container/plate/absent/1.0/") is None
        plate = manager.get_template(session, PLATE)
        assert plate is not None
        assert manager.get_template_by_euid(session, plate.euid) == plate


# -- sessions ---------------------------------------------------------------------------


def test_session_is_a_connection_with_the_orm_transaction_methods(
    db: TAPDBConnection, seeded_engine: Engine
) -> None:
    factory = InstanceFactory()
    session = db.get_session()
    try:
        assert isinstance(session, TapdbSession)
        assert isinstance(session, Connection)  # typed functions take it as it is
        sample = factory.create_instance(session, DNA, "S1", {"concentration": 1.5})
        assert instances.get(session, sample.euid).name == "S1"
        session.commit()
        # the next transaction gets the audit user again
        assert session.execute(text("SELECT tapdb_audit_user()")).scalar() == "facade-app"
        sample.properties["volume_ul"] = 10
        sample.bstatus = "stored"
        assert sample.is_modified
        session.flush()
        assert not sample.is_modified
        assert instances.get(session, sample.euid).bstatus == "stored"
        session.rollback()  # the flushed writes go with the transaction
        assert session.execute(text("SELECT tapdb_audit_user()")).scalar() == "facade-app"
        # the object shows the state before the rolled-back transaction again
        assert (sample.bstatus, sample.properties["volume_ul"]) == ("created", 0)
        sample.properties["volume_ul"] = 20
        session.rollback()  # pending changes are discarded too
        assert sample.properties["volume_ul"] == 0
        sample.bstatus = "pending"
        session.refresh(sample)
        assert (sample.bstatus, sample.is_modified) == ("created", False)
    finally:
        session.close()
    with seeded_engine.connect() as conn:
        stored = instances.get(conn, sample.euid)
        assert (stored.bstatus, stored.properties["volume_ul"]) == ("created", 0)
        assert {e.changed_by for e in history(conn, sample.euid)} == {"facade-app"}


def test_add_writes_back_objects_from_a_closed_session(
    db: TAPDBConnection, seeded_engine: Engine
) -> None:
    with db.session_scope(commit=True) as session:
        sample = InstanceFactory().create_instance(session, DNA, "S1", {"concentration": 1.5})
    sample.bstatus = "stored"
    sample.properties["concentration"] = 2.5
    sample.json_addl["notes"] = ["moved to freezer 3"]
    session = db.get_session()
    try:
        session.add(sample)
        session.commit()
    finally:
        session.close()
    with seeded_engine.connect() as conn:
        stored = instances.get(conn, sample.euid)
        assert stored.bstatus == "stored"
        assert stored.properties["concentration"] == 2.5
        assert stored.json_addl["notes"] == ["moved to freezer 3"]
        changed = {e.column_name: e.changed_by for e in history(conn, sample.euid)[1:]}
        assert changed == {"bstatus": "facade-app", "json_addl": "facade-app"}
    assert sample.value.bstatus == "stored"
    assert not sample.is_modified


def test_objects_made_in_a_session_are_written_at_commit_only(
    db: TAPDBConnection, seeded_engine: Engine
) -> None:
    factory = InstanceFactory()
    with db.session_scope(commit=True) as session:
        kept = factory.create_instance(session, DNA, "kept")
        kept.properties = {"concentration": 3.0}  # after creation, before commit
    with db.session_scope() as session:  # commit=False: rolled back
        session.add(kept)
        kept.bstatus = "discarded"
    with seeded_engine.connect() as conn:
        stored = instances.get(conn, kept.euid)
        assert stored.properties == {"concentration": 3.0}
        assert stored.bstatus == "created"


def test_write_back_is_validated_and_refuses_foreign_objects(
    db: TAPDBConnection, seeded_engine: Engine
) -> None:
    with db.session_scope(commit=True) as session:
        sample = InstanceFactory().create_instance(session, DNA, "S1")
    with pytest.raises(ValidationError) as caught, db.session_scope(commit=True) as session:
        session.add(sample)
        sample.properties["concentration"] = -1  # the template's schema: minimum 0
    assert any("concentration" in v.path for v in caught.value.violations)
    with db.session_scope() as session:
        with pytest.raises(ValidationError, match=r"session\.add"):
            session.add(instances.get(session, sample.euid))  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            sample.bstatus = ""
        with pytest.raises(AttributeError, match="cannot be changed"):
            sample.name = "renamed"  # type: ignore[misc]
    with seeded_engine.connect() as conn:
        assert instances.get(conn, sample.euid).properties["concentration"] == 0


def test_write_back_keeps_what_others_changed_meanwhile(
    db: TAPDBConnection, seeded_engine: Engine
) -> None:
    """Only the keys (and properties) this object changed are written: a stale object
    does not undo another writer's property or an action's execution count."""
    with db.session_scope(commit=True) as session:
        sample = InstanceFactory().create_instance(session, DNA, "S1", {"concentration": 1.0})
    with seeded_engine.begin() as conn:
        instances.update_properties(conn, sample.euid, {"comments": "from elsewhere"})
        done = Handlers().execute_action(
            conn, sample.euid, "core_actions", "set_status", captured_data={"status": "stored"}
        )
        assert done["status"] == "success"
    with db.session_scope(commit=True) as session:
        session.add(sample)  # still holds the state before those writes
        sample.properties["concentration"] = 4.0
        sample.json_addl["notes"] = ["mine"]
    with seeded_engine.connect() as conn:
        stored = instances.get(conn, sample.euid)
        assert stored.properties["concentration"] == 4.0
        assert stored.properties["comments"] == "from elsewhere"
        assert stored.json_addl["notes"] == ["mine"]
        assert stored.bstatus == "stored"
        assert _tracking(conn, sample.euid)["action_executed"] == 1


# -- lineage relationships --------------------------------------------------------------


def test_lineage_relationships_are_lazy_read_only_lookups(
    db: TAPDBConnection, seeded_engine: Engine
) -> None:
    factory = InstanceFactory()
    with db.session_scope(commit=True) as session:
        plate = factory.create_instance(session, PLATE, "P")
        edges = plate.parent_of_lineages
        assert len(edges) == 96
        assert {e.relationship_type for e in edges} == {"contains"}
        assert all(e.parent_instance is plate for e in edges)
        wells = [e.child_instance for e in edges]
        assert {w.euid for w in wells} == {
            r.instance.euid for r in lineage.children(session, plate.euid)
        }
        well = wells[0]
        (up,) = well.child_of_lineages
        assert up.parent_instance is plate  # one object per row in a session
        assert up.child_instance is well
        assert well.template.template_code == WELL
        assert plate.child_of_lineages == ()
        with pytest.raises(AttributeError):
            up.relationship_type = "generic"  # type: ignore[misc]
        up.json_addl["x"] = 1  # a copy: edges are read-only
        assert "x" not in up.json_addl
        instances.delete(session, wells[1].euid)
        assert len(plate.parent_of_lineages) == 95  # deleted instances are not reached
        sample = factory.create_instance(session, DNA, "S")
        edge = factory.link_instances(session, plate, sample, "contains")
        assert (edge.parent_instance, edge.child_instance) == (plate, sample)
        assert sample in [e.child_instance for e in plate.parent_of_lineages]
    with pytest.raises(DetachedInstanceError):
        _ = plate.parent_of_lineages
    with db.session_scope() as session:
        session.add(plate)
        assert len(plate.parent_of_lineages) == 96
        # an edge read without its ends looks them up when asked
        lone = lineage.get_lineage(session, edge.euid)
        assert lone.child_instance_uuid == sample.uuid


# -- actions ----------------------------------------------------------------------------


class Handlers(ActionDispatcher):
    """The original README's handler, plus ones that change more or fail."""

    def do_action_set_status(
        self, instance: Any, action_ds: Mapping[str, Any], captured_data: Mapping[str, Any]
    ) -> dict[str, Any]:
        new_status = captured_data.get("status")
        instance.bstatus = new_status
        mode = captured_data.get("mode")
        if mode in ("count", "bad"):
            props = instance.properties
            props["n"] = props.get("n", 0) + 1
            if mode == "bad":
                props["concentration"] = -5
        if mode == "notes":
            instance.json_addl["notes"] = [*instance.json_addl.get("notes", []), new_status]
        if mode == "fail":
            return {"status": "error", "message": "refused"}
        if mode == "raise":
            raise RuntimeError("handler broke")
        return {"status": "success", "message": f"Status set to {new_status}"}


def _tracking(conn: Connection, euid: str) -> dict[str, Any]:
    stored = instances.get(conn, euid)
    tracked: dict[str, Any] = stored.json_addl["action_groups"]["core_actions"]["set_status"]
    return tracked


def test_handler_changes_are_written_back_inside_the_action(
    db: TAPDBConnection, seeded_engine: Engine
) -> None:
    with db.session_scope(commit=True) as session:
        sample = InstanceFactory().create_instance(session, DNA, "S1")
    with db.session_scope(commit=True) as session:
        result = Handlers().execute_action(
            session,
            sample,
            "core_actions",
            "set_status",
            captured_data={"status": "in_progress", "mode": "notes"},
            user="john.doe",
        )
        assert result["status"] == "success"
        assert sample.bstatus == "in_progress"  # the caller's object follows
        assert sample.json_addl["notes"] == ["in_progress"]
    with seeded_engine.connect() as conn:
        stored = instances.get(conn, sample.euid)
        assert (stored.bstatus, stored.json_addl["notes"]) == ("in_progress", ["in_progress"])
        assert _tracking(conn, sample.euid)["action_executed"] == 1  # counted after the write
        changes = [e for e in history(conn, sample.euid) if e.operation_type == "UPDATE"]
        assert {e.changed_by for e in changes} == {"john.doe"}
        assert "bstatus" in {e.column_name for e in changes}


@pytest.mark.parametrize("mode", ["fail", "raise", "bad"])
def test_failed_handler_or_invalid_change_writes_nothing(
    db: TAPDBConnection, seeded_engine: Engine, mode: str
) -> None:
    with db.session_scope(commit=True) as session:
        sample = InstanceFactory().create_instance(session, DNA, "S1")
        result = Handlers().execute_action(
            session,
            sample,
            "core_actions",
            "set_status",
            captured_data={"status": "in_progress", "mode": mode},
        )
        assert result["status"] == "error"
        assert sample.bstatus == "created"
        # the transaction stays usable
        assert instances.get(session, sample.euid).bstatus == "created"
    with seeded_engine.connect() as conn:
        stored = instances.get(conn, sample.euid)
        assert (stored.bstatus, stored.properties.get("n")) == ("created", None)
        assert _tracking(conn, sample.euid).get("action_executed", 0) == 0


def test_typed_dispatcher_keeps_frozen_values(seeded_engine: Engine) -> None:
    seen: list[object] = []

    class Typed(actions.ActionDispatcher):
        def do_action_set_status(
            self, instance: Instance, action_ds: Any, captured_data: Any
        ) -> dict[str, Any]:
            seen.append(instance)
            instance.bstatus = "x"  # type: ignore[misc]
            return {"status": "success"}

    with seeded_engine.begin() as conn:
        sample = instances.create(conn, DNA, "S1")
        result = Typed().execute_action(
            conn, sample, "core_actions", "set_status", captured_data={"status": "x"}
        )
    assert result["status"] == "error"
    assert type(seen[0]) is Instance
    assert not isinstance(seen[0], InstanceObject)


@pytest.mark.parametrize("isolation", ["READ COMMITTED", "REPEATABLE READ"])
def test_racing_handlers_build_on_the_locked_row(
    db: TAPDBConnection, seeded_engine: Engine, isolation: str
) -> None:
    """Each handler's object is the claimed (locked) row, so read-modify-write in a
    handler loses no update however many callers race."""
    with db.session_scope(commit=True) as session:
        sample = InstanceFactory().create_instance(session, DNA, "S1")
    workers = 4
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()

            def attempt(conn: Connection) -> dict[str, Any]:
                return Handlers().execute_action(
                    conn,
                    sample.euid,
                    "core_actions",
                    "set_status",
                    captured_data={"status": "in_progress", "mode": "count"},
                )

            result = db.database.run_in_transaction(
                attempt, retries=workers + 1, isolation_level=isolation, sleep=lambda _: None
            )
            assert result["status"] == "success", result
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with seeded_engine.connect() as conn:
        assert instances.get(conn, sample.euid).properties["n"] == workers
        assert _tracking(conn, sample.euid)["action_executed"] == workers
