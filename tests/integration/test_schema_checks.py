"""Instance writes refuse what the template's json_addl_schema refuses (jsonschema-rs).

The regression of issue 9: a nested ``$id`` starts a new resource, so the
``$ref`` inside it means that resource's ``$defs`` (an integer), not the
root's (a string). The old home-made fast check resolved it against the root,
said "valid", and the instance was written.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text

from tapdb_core import instances, templates
from tapdb_core.errors import ValidationError
from tapdb_core.templates import TemplateSpec

CODE = "generic/schema/nested-id/1.0/"

# The schema, applied to json_addl["properties"] (where create and
# update_properties put the caller's properties).
NESTED_ID = {
    "$defs": {"x": {"type": "string"}},
    "properties": {
        "a": {"$id": "urn:sub", "$defs": {"x": {"type": "integer"}}, "$ref": "#/$defs/x"}
    },
}
SCHEMA: dict[str, Any] = {
    "$defs": {"x": {"type": "string"}},
    "properties": {"properties": NESTED_ID},
}


@pytest.fixture
def engine(seeded_engine: Engine) -> Engine:
    templates.clear_cache()
    with seeded_engine.begin() as conn:
        templates.upsert_templates(
            conn,
            [
                TemplateSpec(
                    name="nested $id",
                    polymorphic_discriminator="generic_template",
                    category="generic",
                    type="schema",
                    subtype="nested-id",
                    version="1.0",
                    instance_prefix="GX",
                    json_addl={"properties": {}},
                    json_addl_schema=SCHEMA,
                )
            ],
        )
    return seeded_engine


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM generic_instance WHERE subtype = 'nested-id'")
            ).scalar_one()
        )


def test_create_refuses_the_nested_id_counterexample(engine: Engine) -> None:
    with pytest.raises(ValidationError) as exc, engine.begin() as conn:
        instances.create(conn, CODE, "bad", {"a": "hi"})
    assert [v.path for v in exc.value.violations] == ["/properties/a"]
    assert "integer" in exc.value.violations[0].message
    assert _count(engine) == 0
    with engine.begin() as conn:
        instances.create(conn, CODE, "good", {"a": 3})
    assert _count(engine) == 1


def test_update_and_bulk_refuse_it_too(engine: Engine) -> None:
    with engine.begin() as conn:
        euid = instances.create(conn, CODE, "good", {"a": 3}).euid
    with pytest.raises(ValidationError), engine.begin() as conn:
        instances.update_properties(conn, euid, {"a": "hi"})
    with pytest.raises(ValidationError) as exc, engine.begin() as conn:
        instances.create_many(conn, CODE, [("ok", {"a": 1}), ("bad", {"a": "hi"})])
    assert "bulk row 1" in str(exc.value)
    assert _count(engine) == 1
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT json_addl -> 'properties' -> 'a' FROM generic_instance WHERE euid = :e"),
            {"e": euid},
        ).scalar_one()
    assert stored == 3


def test_a_template_whose_schema_fetches_a_remote_reference_refuses_every_write(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE generic_template SET json_addl_schema = CAST(:s AS jsonb) "
                "WHERE subtype = 'nested-id'"
            ),
            {"s": '{"$ref": "https://example.com/schema.json"}'},
        )
    templates.clear_cache()
    with pytest.raises(ValidationError, match="not a valid JSON Schema"), engine.begin() as conn:
        instances.create(conn, CODE, "x", {"a": 3})
    assert _count(engine) == 0
