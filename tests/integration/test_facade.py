"""The original class API (TAPDBConnection, TemplateManager, InstanceFactory) over our functions."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import redirect_stdout
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tapdb_core import instances, lineage
from tapdb_core.audit import history
from tapdb_core.errors import CycleError, TemplateCodeError, TemplateNotFoundError
from tapdb_core.facade import InstanceFactory, TAPDBConnection, TemplateManager

PLATE = "container/plate/fixed-plate-96/1.0/"
WELL = "container/well/well-96/1.0/"
SINGLETON = "workflow/assay/accessioning/1.0/"

# The README's "2. Connect and create objects", verbatim.
README_QUICK_START = """\
import os
from daylily_tapdb import TAPDBConnection, TemplateManager, InstanceFactory
from daylily_tapdb.cli.db_config import get_db_config_for_env

# Connect to database using canonical config loader (recommended)
env = os.environ.get("TAPDB_ENV", "dev")
cfg = get_db_config_for_env(env)
db = TAPDBConnection(
    db_hostname=f"{cfg['host']}:{cfg['port']}",
    db_user=cfg["user"],
    db_pass=cfg["password"],
    db_name=cfg["database"],
)

# Initialize managers
templates = TemplateManager()
factory = InstanceFactory(templates)

# Create an instance from a template
with db.session_scope(commit=True) as session:
    plate = factory.create_instance(
        session=session,
        template_code='container/plate/fixed-plate-96/1.0/',
        name='PLATE-001'
    )
    print(f"Created: {plate.euid}")  # e.g., CX1234
"""


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


def test_readme_quick_start_runs_with_only_the_import_changed(seeded_engine: Engine) -> None:
    url = seeded_engine.url
    code = README_QUICK_START.replace(
        "from daylily_tapdb import TAPDBConnection, TemplateManager, InstanceFactory",
        "from tapdb_core import TAPDBConnection, TemplateManager, InstanceFactory",
    )
    # the config loader of the original CLI, answering with the test database
    code = code.replace("from daylily_tapdb.cli.db_config import get_db_config_for_env\n", "")
    assert "daylily_tapdb" not in code

    def get_db_config_for_env(env: str) -> dict[str, Any]:
        return {
            "host": url.host,
            "port": url.port,
            "user": url.username,
            "password": url.password or "",
            "database": url.database,
        }

    namespace: dict[str, Any] = {"get_db_config_for_env": get_db_config_for_env}
    out = io.StringIO()
    with redirect_stdout(out):
        exec(compile(code, "README quick start", "exec"), namespace)  # noqa: S102
    namespace["db"].close()
    printed = out.getvalue().strip()
    assert printed.startswith("Created: CX-")
    euid = printed.removeprefix("Created: ")
    with seeded_engine.connect() as conn:  # committed, with its wells
        plate = instances.get(conn, euid)
        assert plate.name == "PLATE-001"
        assert len(lineage.children(conn, euid, "contains")) == 96


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
