"""Templates, users, audit history and the database handle, against real PostgreSQL."""

from __future__ import annotations

import attrs
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from tapdb_core import audit, connect, instances, templates, users
from tapdb_core.errors import (
    ConflictError,
    EUIDError,
    SchemaVersionError,
    TemplateCodeError,
    TemplateNotFoundError,
    UserNotFoundError,
    ValidationError,
)
from tapdb_core.templates import TemplateSpec

SPEC = TemplateSpec(
    name="Widget",
    polymorphic_discriminator="generic_template",
    category="generic",
    type="widget",
    subtype="basic",
    version="1.0",
    instance_prefix="WQ",
    json_addl={"properties": {"colour": "red"}},
)


def test_template_lookup_list_and_errors(seeded_engine: Engine) -> None:
    with seeded_engine.connect() as conn:
        plate = templates.get_template(conn, "container/plate/fixed-plate-96/1.0")
        assert plate.template_code == "container/plate/fixed-plate-96/1.0/"
        assert templates.get_template_by_euid(conn, plate.euid) == plate
        assert templates.resolve_template(conn, plate.euid) == plate
        wells = templates.list_templates(conn, category="container", type="well")
        assert [w.subtype for w in wells] == ["well-384", "well-96"]
        with pytest.raises(TemplateNotFoundError, match=r"no/such/thing/1\.0"):
            templates.get_template(conn, "no/such/thing/1.0")
        with pytest.raises(TemplateCodeError, match="invalid template code"):
            templates.get_template(conn, "container/plate")
        with pytest.raises(EUIDError):
            templates.get_template_by_euid(conn, "not-an-euid")


def test_cache_never_serves_stale_or_deleted_templates(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        templates.upsert_template(conn, SPEC)
    with seeded_engine.connect() as conn:
        first = templates.get_template(conn, "generic/widget/basic/1.0")
    changed = attrs.evolve(SPEC, json_addl={"properties": {"colour": "blue"}})
    with seeded_engine.begin() as conn:
        assert templates.upsert_template(conn, changed).outcome == "updated"
    with seeded_engine.connect() as conn:
        second = templates.get_template(conn, "generic/widget/basic/1.0")
    assert first.json_addl["properties"]["colour"] == "red"
    assert second.json_addl["properties"]["colour"] == "blue" and second.euid == first.euid
    # a change rolled back must not leave its version in the cache
    with seeded_engine.connect() as conn:
        conn.begin()
        templates.upsert_template(conn, attrs.evolve(SPEC, name="Rolled back"))
        assert templates.get_template(conn, "generic/widget/basic/1.0").name == "Rolled back"
        conn.rollback()
    with seeded_engine.connect() as conn:
        assert templates.get_template(conn, "generic/widget/basic/1.0").name == "Widget"
    with seeded_engine.begin() as conn:
        templates.delete_template(conn, "generic/widget/basic/1.0")
    with seeded_engine.connect() as conn, pytest.raises(TemplateNotFoundError):
        templates.get_template(conn, "generic/widget/basic/1.0")


def test_upsert_outcomes_and_no_audit_noise(seeded_engine: Engine) -> None:
    def audit_rows() -> int:
        with seeded_engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one())

    with seeded_engine.begin() as conn:
        assert templates.upsert_template(conn, SPEC).outcome == "created"
    before = audit_rows()
    with seeded_engine.begin() as conn:
        assert templates.upsert_template(conn, SPEC).outcome == "unchanged"
        assert templates.upsert_template(conn, SPEC, overwrite=False).outcome == "skipped"
    assert audit_rows() == before
    with pytest.raises(EUIDError, match="TUS"), seeded_engine.begin() as conn:
        templates.upsert_template(conn, attrs.evolve(SPEC, subtype="other", instance_prefix="TUS"))


def test_users_lifecycle_and_passwords(engine: Engine) -> None:
    with engine.begin() as conn:
        ann = users.create_user(
            conn, "o'brien", role="admin", email="ob@example.org", password="s3cret"
        )
        assert ann.euid.startswith("TDA-")
        assert users.verify_password(conn, "o'brien", "s3cret")
        assert not users.verify_password(conn, "o'brien", "wrong")
        assert not users.verify_password(conn, "nobody", "s3cret")
        stored = conn.execute(text("SELECT password_hash FROM tapdb_user")).scalar_one()
        assert stored.startswith("scrypt$") and "s3cret" not in stored
        users.create_user(conn, "x'); drop table tapdb_user; --")
        assert [u.username for u in users.list_users(conn)] == [
            "o'brien",
            "x'); drop table tapdb_user; --",
        ]
        assert users.set_role(conn, ann.euid, "user").role == "user"
        assert not users.deactivate(conn, "o'brien").is_active
        assert not users.verify_password(conn, "o'brien", "s3cret")  # inactive
        assert users.activate(conn, "o'brien").is_active
        users.set_password(conn, "o'brien", "n3w")
        assert users.verify_password(conn, "o'brien", "n3w")
        with pytest.raises(ValidationError, match="empty"):
            users.set_password(conn, "o'brien", "")
        with pytest.raises(ValidationError, match="role"):
            users.set_role(conn, "o'brien", "root")
        with pytest.raises(UserNotFoundError):
            users.deactivate(conn, "ghost")
    with pytest.raises(ConflictError, match="username"), engine.begin() as conn:
        users.create_user(conn, "o'brien")
    with engine.begin() as conn:
        users.delete_user(conn, "o'brien")
        with pytest.raises(UserNotFoundError):
            users.get_user(conn, "o'brien")
        trail = audit.history(conn, ann.euid)
    assert trail[0].operation_type == "INSERT"
    assert trail[-1].operation_type == "DELETE" and trail[-1].old_value["username"] == "o'brien"


def test_connect_sets_audit_user_per_transaction_and_checks_revision(
    seeded_template_url: URL, empty_db_url: URL, seeded_engine: Engine
) -> None:
    url = seeded_engine.url.render_as_string(hide_password=False)
    db = connect(url, app_username="app")
    try:
        with db.begin(user="dora") as conn:
            made = instances.create(conn, "content/sample/dna/1.0", "S")
        with db.begin() as conn:
            instances.set_status(conn, made.euid, "received")
        with db.begin() as conn:
            trail = audit.history(conn, made.euid)
            setting = conn.execute(
                text("SELECT current_setting('tapdb.audit_user', true)")
            ).scalar()
    finally:
        db.dispose()
    assert [(e.operation_type, e.changed_by) for e in trail] == [
        ("INSERT", "dora"),
        ("UPDATE", "app"),
    ]
    assert setting == "app"
    empty = connect(empty_db_url.render_as_string(hide_password=False))
    try:
        with pytest.raises(SchemaVersionError, match="tapdb db schema migrate"), empty.begin():
            pass
    finally:
        empty.dispose()
