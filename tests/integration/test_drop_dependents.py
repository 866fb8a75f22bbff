"""restore --clean and schema reset refuse to drop application objects silently (item 12)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, text

from tapdb_core import backup as bk
from tapdb_core import instances, migrate
from tapdb_core.dependents import DependentObjectsError, external_dependents
from tapdb_core.templates import TemplateSpec, upsert_templates

APP_OBJECTS = """
CREATE VIEW app_boxes AS SELECT euid, name FROM generic_instance;
CREATE TABLE app_orders (
    id int PRIMARY KEY,
    box bigint CONSTRAINT fk_app_orders_box REFERENCES generic_instance (uuid),
    domain text DEFAULT tapdb_meridian_domain()
);
CREATE FUNCTION app_label(i generic_instance) RETURNS text LANGUAGE sql AS 'SELECT i.name';
INSERT INTO app_orders (id) VALUES (1), (2);
"""
BOX = TemplateSpec(
    name="Box",
    polymorphic_discriminator="container_template",
    category="container",
    type="box",
    subtype="dep-box",
    version="1.0",
    instance_prefix="CX",
)


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _app_state(conn: Connection) -> tuple[object, ...]:
    return (
        conn.execute(text("SELECT to_regclass('app_boxes') IS NOT NULL")).scalar_one(),
        conn.execute(text("SELECT count(*) FROM app_orders")).scalar_one(),
        conn.execute(
            text("SELECT count(*) FROM pg_constraint WHERE conname = 'fk_app_orders_box'")
        ).scalar_one(),
        conn.execute(
            text("SELECT count(*) FROM pg_attrdef WHERE adrelid = 'app_orders'::regclass")
        ).scalar_one(),
        conn.execute(text("SELECT count(*) FROM pg_proc WHERE proname = 'app_label'")).scalar_one(),
        conn.execute(text("SELECT count(*) FROM generic_instance")).scalar_one(),
    )


@pytest.fixture
def with_app(engine: Engine, tmp_path: Path) -> Path:
    """A database holding tapdb data and application objects; a backup of its tapdb data."""
    with engine.begin() as conn:
        upsert_templates(conn, [BOX])
        instances.create(conn, "container/box/dep-box/1.0/", "box")
    out = tmp_path / "backup.dump"
    bk.backup(_url(engine), out)
    with engine.begin() as conn:
        conn.execute(text(APP_OBJECTS))
    return out


def test_restore_clean_refuses_and_names_them(engine: Engine, with_app: Path) -> None:
    with engine.connect() as conn:
        before = _app_state(conn)
    with pytest.raises(DependentObjectsError) as caught:
        bk.restore(_url(engine), with_app, clean=True)
    message = str(caught.value)
    for name in ("app_boxes", "fk_app_orders_box", "app_orders.domain", "app_label"):
        assert name in message
    assert "drop_dependents" in message
    assert caught.value.exit_code == 2
    assert len(caught.value.dependents) == 4
    with engine.connect() as conn:
        assert _app_state(conn) == before  # nothing was dropped


def test_restore_clean_with_drop_dependents_drops_them_and_keeps_app_rows(
    engine: Engine, with_app: Path
) -> None:
    said: list[str] = []
    info = bk.restore(
        _url(engine), with_app, clean=True, drop_dependents=True, progress=said.append
    )
    assert info.cleaned
    assert any("app_boxes" in line for line in said)
    with engine.connect() as conn:
        view, orders, fk, default, function, boxes = _app_state(conn)
        # the objects that depended on tapdb are gone; the application's table and rows stay
        assert (view, fk, default, function) == (False, 0, 0, 0)
        assert orders == 2 and boxes == 1
        assert external_dependents(conn) == []


def test_drop_schema_refuses_then_drops_with_permission(engine: Engine, with_app: Path) -> None:
    with engine.connect() as conn:
        before = _app_state(conn)
    with pytest.raises(DependentObjectsError, match="app_boxes"), engine.begin() as conn:
        migrate.drop_schema(conn)
    with engine.connect() as conn:
        assert _app_state(conn) == before
    with engine.begin() as conn:
        migrate.drop_schema(conn, drop_dependents=True)
    with engine.connect() as conn:
        assert migrate.current_revision(conn) is None
        assert conn.execute(text("SELECT to_regclass('generic_instance')")).scalar() is None
        assert conn.execute(text("SELECT count(*) FROM app_orders")).scalar_one() == 2


def test_drop_schema_without_dependents_needs_no_permission(engine: Engine) -> None:
    with engine.begin() as conn:
        migrate.drop_schema(conn)
    with engine.connect() as conn:
        assert migrate.current_revision(conn) is None
