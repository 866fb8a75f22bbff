"""external_dependents: application objects built on tapdb's objects (issue 8, item 12)."""

from __future__ import annotations

from sqlalchemy import Engine, text

from tapdb_core.dependents import Dependent, describe, external_dependents


def _found(engine: Engine) -> list[Dependent]:
    with engine.connect() as conn:
        return external_dependents(conn)


def test_freshly_migrated_database_has_none(engine: Engine) -> None:
    assert _found(engine) == []


def test_view_fk_function_column_default_and_trigger_are_found(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                """
                CREATE VIEW app_plates AS SELECT euid, name FROM generic_instance;
                CREATE VIEW app_plates_2 AS SELECT euid FROM app_plates;
                CREATE TABLE app_orders (
                    id int PRIMARY KEY,
                    plate bigint CONSTRAINT fk_app_orders_plate REFERENCES generic_instance (uuid),
                    domain text DEFAULT tapdb_meridian_domain(),
                    snapshot generic_template
                );
                CREATE FUNCTION app_label(i generic_instance) RETURNS text
                    LANGUAGE sql AS 'SELECT i.euid';
                CREATE FUNCTION app_noop() RETURNS trigger LANGUAGE plpgsql
                    AS 'BEGIN RETURN NEW; END';
                CREATE TRIGGER app_watch AFTER INSERT ON generic_instance
                    FOR EACH ROW EXECUTE FUNCTION app_noop();
                """
            )
        )
    found = {(d.kind, d.name): d.depends_on for d in _found(engine)}
    assert set(found) == {
        ("view", "public.app_plates"),
        ("view", "public.app_plates_2"),
        ("table constraint", "fk_app_orders_plate on public.app_orders"),
        ("default value", "for public.app_orders.domain"),
        ("table column", "public.app_orders.snapshot"),
        ("function", "public.app_label(public.generic_instance)"),
        ("trigger", "app_watch on public.generic_instance"),
    }, found
    assert "table generic_instance" in found[("view", "public.app_plates")]
    assert "view app_plates" in found[("view", "public.app_plates_2")]
    assert (
        "type generic_instance" in found[("function", "public.app_label(public.generic_instance)")]
    )
    assert "tapdb_meridian_domain" in found[("default value", "for public.app_orders.domain")]


def test_a_table_with_a_foreign_key_is_one_constraint_not_the_table(engine: Engine) -> None:
    """Dropping tapdb drops the application's foreign key, not its table or rows."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE app_links (id int, t bigint REFERENCES generic_template (uuid));"
                "CREATE INDEX ix_app_links_t ON app_links (t)"
            )
        )
    (only,) = _found(engine)
    assert only.kind == "table constraint"
    assert only.name.endswith("on public.app_links")
    message = describe([only])
    assert "app_links" in message and "generic_template" in message


def test_objects_in_another_schema_are_found(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE SCHEMA app;"
                "CREATE MATERIALIZED VIEW app.audit_counts AS"
                " SELECT count(*) AS n FROM audit_log"
            )
        )
    assert [(d.kind, d.name) for d in _found(engine)] == [("materialized view", "app.audit_counts")]


def test_an_empty_database_has_none(empty_db_url: object) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(empty_db_url)  # type: ignore[call-overload]
    try:
        with engine.connect() as conn:
            conn.execute(
                text("CREATE TABLE unrelated (id int); CREATE VIEW v AS SELECT * FROM unrelated")
            )
            assert external_dependents(conn) == []
    finally:
        engine.dispose()
