"""Hostile input at every public entry point: a ValidationError naming the field, and
nothing written.

Each case runs in a transaction of its own. The error must come before any SQL
statement fails: the row counts are taken afterwards in the *same* transaction,
which a driver or server error would have aborted.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL

from tapdb_core import instances, lineage, templates, users
from tapdb_core.errors import ValidationError
from tapdb_core.templates import TemplateSpec

DNA = "content/sample/dna/1.0/"
TABLES = ("generic_instance", "generic_instance_lineage", "generic_template", "tapdb_user")


def _deep(levels: int) -> object:
    value: object = "x"
    for _ in range(levels):
        value = {"a": value}
    return value


#: values no JSON column can hold, by class
BAD_JSON: dict[str, object] = {
    "nul": "a\x00b",
    "lone_surrogate": "\ud800",
    "nan": float("nan"),
    "infinity": float("inf"),
    "set": {1, 2},
    "bytes": b"raw",
    "datetime": datetime.datetime(2024, 5, 1, 12, 0),
    "object": object(),
    "depth_5000": _deep(5000),
}
#: strings no text column can hold
BAD_TEXT: dict[str, str] = {"nul": "tube\x00 1", "lone_surrogate": "tube \udc80"}


@pytest.fixture(scope="module")
def world(
    seeded_template_url: URL, server_url: URL, admin_engine: Engine
) -> Iterator[tuple[Engine, dict[str, Any]]]:
    """One database for the module: every case rolls back, so they cannot interfere."""
    name = f"tapdb_test_hostile_{os.getpid()}"
    with admin_engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "tapdb_test_seeded"'))
    engine = create_engine(server_url.set(database=name))
    with engine.begin() as conn:
        a = instances.create(conn, DNA, "a")
        b = instances.create(conn, DNA, "b")
        lineage.link(conn, a, b)
        users.create_user(conn, "alice")
    try:
        yield engine, {"a": a.euid, "b": b.euid}
    finally:
        engine.dispose()
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _counts(conn: Connection) -> dict[str, int]:
    return {t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES}


def _spec(**changes: Any) -> TemplateSpec:
    values: dict[str, Any] = {
        "name": "Hostile",
        "polymorphic_discriminator": "generic_template",
        "category": "generic",
        "type": "hostile",
        "subtype": "basic",
        "version": "1.0",
        "instance_prefix": "HQ",
        **changes,
    }
    return TemplateSpec(**values)


Call = Callable[[Connection, dict[str, Any], object], object]

#: entry points taking JSON, the bad value placed at key "notes": (call, pointer)
JSON_ENTRY_POINTS: dict[str, tuple[Call, str]] = {
    "create": (
        lambda c, w, v: instances.create(c, DNA, "x", {"notes": v}),
        "/properties/notes",
    ),
    "create_tree": (
        lambda c, w, v: instances.create_tree(c, DNA, "x", {"notes": v}),
        "/properties/notes",
    ),
    "plan": (
        lambda c, w, v: instances.plan(c, DNA, "x", {"notes": v}),
        "/properties/notes",
    ),
    "create_many": (
        lambda c, w, v: instances.create_many(c, DNA, [("ok", {}), ("x", {"notes": v})]),
        "/rows/1/properties/notes",
    ),
    "update_properties": (
        lambda c, w, v: instances.update_properties(c, w["a"], {"notes": v}),
        "/properties/notes",
    ),
    "find": (
        lambda c, w, v: instances.find(c, properties={"notes": v}),
        "/properties/notes",
    ),
    "get_or_create_singleton": (
        lambda c, w, v: instances.get_or_create_singleton(
            c, "workflow/assay/accessioning/1.0/", "x", {"notes": v}
        ),
        "/properties/notes",
    ),
    "link": (
        lambda c, w, v: lineage.link(c, w["b"], w["a"], "derived_from", {"notes": v}),
        "/json_addl/notes",
    ),
    "upsert_templates": (
        lambda c, w, v: templates.upsert_templates(
            c, [_spec(json_addl={"properties": {"notes": v}})]
        ),
        "/templates/0/json_addl/properties/notes",
    ),
}

#: entry points taking text: (call, pointer)
TEXT_ENTRY_POINTS: dict[str, tuple[Call, str]] = {
    "create.name": (lambda c, w, v: instances.create(c, DNA, v), "/name"),  # type: ignore[arg-type]
    "create_many.name": (
        lambda c, w, v: instances.create_many(c, DNA, ["ok", v]),  # type: ignore[list-item]
        "/rows/1/name",
    ),
    "create_many.pair_name": (
        lambda c, w, v: instances.create_many(c, DNA, [(v, None)]),  # type: ignore[list-item]
        "/rows/0/name",
    ),
    "set_status": (lambda c, w, v: instances.set_status(c, w["a"], v), "/bstatus"),  # type: ignore[arg-type]
    "update_properties.euid": (
        lambda c, w, v: instances.update_properties(c, v, {}),  # type: ignore[arg-type]
        "/euid",
    ),
    "find.category": (lambda c, w, v: instances.find(c, category=v), "/category"),  # type: ignore[arg-type]
    "find.bstatus": (lambda c, w, v: instances.find(c, bstatus=v), "/bstatus"),  # type: ignore[arg-type]
    "link.relationship_type": (
        lambda c, w, v: lineage.link(c, w["b"], w["a"], v),  # type: ignore[arg-type]
        "/relationship_type",
    ),
    "unlink.relationship_type": (
        lambda c, w, v: lineage.unlink(c, w["a"], w["b"], v),  # type: ignore[arg-type]
        "/relationship_type",
    ),
    "unlink.euid": (lambda c, w, v: lineage.unlink(c, euid=v), "/euid"),  # type: ignore[arg-type]
    "get_lineage": (lambda c, w, v: lineage.get_lineage(c, v), "/euid"),  # type: ignore[arg-type]
    "descendants.relationship_types": (
        lambda c, w, v: lineage.descendants(c, w["a"], relationship_types=["contains", v]),  # type: ignore[list-item]
        "/relationship_types/1",
    ),
    "create_user.username": (lambda c, w, v: users.create_user(c, v), "/username"),  # type: ignore[arg-type]
    "create_user.email": (
        lambda c, w, v: users.create_user(c, "bob", email=v),  # type: ignore[arg-type]
        "/email",
    ),
    "create_user.display_name": (
        lambda c, w, v: users.create_user(c, "bob", display_name=v),  # type: ignore[arg-type]
        "/display_name",
    ),
    "create_user.password": (
        lambda c, w, v: users.create_user(c, "bob", password=v),  # type: ignore[arg-type]
        "/password",
    ),
    "get_user": (lambda c, w, v: users.get_user(c, v), "/user"),  # type: ignore[arg-type]
    "set_role": (lambda c, w, v: users.set_role(c, v, "admin"), "/user"),  # type: ignore[arg-type]
    "delete_user": (lambda c, w, v: users.delete_user(c, v), "/user"),  # type: ignore[arg-type]
    "set_password": (
        lambda c, w, v: users.set_password(c, "alice", v),  # type: ignore[arg-type]
        "/password",
    ),
    "verify_password": (
        lambda c, w, v: users.verify_password(c, "alice", v),  # type: ignore[arg-type]
        "/password",
    ),
    "upsert_templates.name": (
        lambda c, w, v: templates.upsert_templates(c, [_spec(name=v)]),
        "/templates/0/name",
    ),
}

#: entry points taking counts: (call, pointer)
COUNT_ENTRY_POINTS: dict[str, tuple[Call, str]] = {
    "find.limit": (lambda c, w, v: instances.find(c, limit=v), "/limit"),  # type: ignore[arg-type]
    "find.offset": (lambda c, w, v: instances.find(c, offset=v), "/offset"),  # type: ignore[arg-type]
    "descendants.max_depth": (
        lambda c, w, v: lineage.descendants(c, w["a"], max_depth=v),  # type: ignore[arg-type]
        "/max_depth",
    ),
    "ancestors.max_depth": (
        lambda c, w, v: lineage.ancestors(c, w["b"], max_depth=v),  # type: ignore[arg-type]
        "/max_depth",
    ),
    "path.max_length": (
        lambda c, w, v: lineage.path(c, w["a"], w["b"], max_length=v),  # type: ignore[arg-type]
        "/max_length",
    ),
    "graph.depth": (lambda c, w, v: lineage.graph(c, w["a"], depth=v), "/depth"),  # type: ignore[arg-type]
}
BAD_COUNTS: dict[str, object] = {"negative": -1, "very_negative": -(2**70), "float": 2.5}

#: bulk rows that are not rows: (rows, pointer)
BAD_ROWS: dict[str, tuple[list[Any], str]] = {
    "none_row": ([None], "/rows/0"),
    "none_after_good_rows": (["a", ("b", {}), None], "/rows/2"),
    "none_name": ([(None, {})], "/rows/0/name"),
    "one_tuple": ([("a",)], "/rows/0"),
    "triple": ([("a", {}, 1)], "/rows/0"),
    "number": ([7], "/rows/0"),
    "properties_not_object": ([("a", [1, 2])], "/rows/0/properties"),
}


def _refused(
    world: tuple[Engine, dict[str, Any]], call: Callable[[Connection], object], pointer: str
) -> None:
    engine, _ = world
    with engine.connect() as conn, conn.begin():
        before = _counts(conn)
        with pytest.raises(ValidationError) as caught:
            call(conn)
        message = str(caught.value)
        assert pointer in message, message
        assert caught.value.violations[0].path == pointer
        # the transaction is still usable (no statement failed) and unchanged
        assert _counts(conn) == before
        conn.rollback()


@pytest.mark.parametrize("entry", sorted(JSON_ENTRY_POINTS))
@pytest.mark.parametrize("bad", sorted(BAD_JSON))
def test_bad_json_values_are_refused(
    world: tuple[Engine, dict[str, Any]], entry: str, bad: str
) -> None:
    call, pointer = JSON_ENTRY_POINTS[entry]
    if bad == "depth_5000":
        pointer += "/a"  # the first value below the allowed depth: somewhere under it
    value = BAD_JSON[bad]
    engine, refs = world
    with engine.connect() as conn, conn.begin():
        before = _counts(conn)
        with pytest.raises(ValidationError) as caught:
            call(conn, refs, value)
        path = caught.value.violations[0].path
        assert path.startswith(pointer), (path, pointer)
        assert path in str(caught.value)
        assert _counts(conn) == before
        conn.rollback()


@pytest.mark.parametrize("entry", sorted(TEXT_ENTRY_POINTS))
@pytest.mark.parametrize("bad", sorted(BAD_TEXT))
def test_bad_text_is_refused(world: tuple[Engine, dict[str, Any]], entry: str, bad: str) -> None:
    call, pointer = TEXT_ENTRY_POINTS[entry]
    _refused(world, lambda conn: call(conn, world[1], BAD_TEXT[bad]), pointer)


@pytest.mark.parametrize("entry", sorted(COUNT_ENTRY_POINTS))
@pytest.mark.parametrize("bad", sorted(BAD_COUNTS))
def test_bad_counts_are_refused(world: tuple[Engine, dict[str, Any]], entry: str, bad: str) -> None:
    call, pointer = COUNT_ENTRY_POINTS[entry]
    _refused(world, lambda conn: call(conn, world[1], BAD_COUNTS[bad]), pointer)


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_bulk_rows_are_refused(world: tuple[Engine, dict[str, Any]], case: str) -> None:
    rows, pointer = BAD_ROWS[case]
    _refused(world, lambda conn: instances.create_many(conn, DNA, rows), pointer)


def test_good_values_next_to_the_bad_ones_are_stored_verbatim(
    world: tuple[Engine, dict[str, Any]],
) -> None:
    """The checks refuse only what cannot be stored: the rest round-trips."""
    engine, _ = world
    fine = {
        "notes": "tab\tnewline\n\u00e9\U0001f9ea",
        "big": 10**40,
        "neg": -0.5,
        "deep": _deep(50),
    }
    with engine.connect() as conn, conn.begin():
        made = instances.create(conn, DNA, "ünïcødé \U0001f9ea", fine)
        again = instances.get(conn, made.euid)
        assert again.name == "ünïcødé \U0001f9ea"
        assert {k: again.properties[k] for k in fine} == fine
        assert instances.create_many(conn, DNA, [("r1", fine), "r2"]) == 2
        conn.rollback()
