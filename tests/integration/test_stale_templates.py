"""Nothing invalid is written whatever the template cache holds: a template
tightened or deleted by another process, or by a racing transaction, after it
was cached is caught at write time (templates carry row_version and writes
share-lock the templates they rely on)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text

from tapdb_core import instances, templates
from tapdb_core.errors import TemplateNotFoundError, ValidationError
from tapdb_core.templates import TemplateSpec, upsert_templates

CODE = "content/sample/dna/1.0/"
TIGHT = {
    "type": "object",
    "properties": {
        "properties": {
            "type": "object",
            "properties": {"concentration": {"type": "number", "maximum": 10}},
        }
    },
}


#: a rack whose tubes are named after its EUID: written in three statements
#: (EUIDs drawn first, names rendered, then the rows), not in one
EUID_NAMED = "container/rack/euid-named-rack/1.0/"


def _euid_named_rack(engine: Engine) -> None:
    with engine.begin() as conn:
        upsert_templates(
            conn,
            [
                TemplateSpec(
                    name="EUID-named rack",
                    polymorphic_discriminator="container_template",
                    category="container",
                    type="rack",
                    subtype="euid-named-rack",
                    version="1.0",
                    instance_prefix="CX",
                    json_addl={
                        "properties": {},
                        "instantiation_layouts": [
                            {
                                "relationship_type": "contains",
                                "child_templates": [
                                    {
                                        "template_code": CODE,
                                        "count": 3,
                                        "name_pattern": "{parent_euid}-tube-{i}",
                                    }
                                ],
                            }
                        ],
                    },
                )
            ],
        )


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM generic_instance")).scalar_one())


def _other_process(engine: Engine, sql: str, params: dict[str, str]) -> None:
    """Run SQL from a separate Python process (its own cache, its own connection)."""
    url = engine.url.render_as_string(hide_password=False)
    script = (
        "import json, sys\n"
        "from sqlalchemy import create_engine, text\n"
        "engine = create_engine(sys.argv[1])\n"
        "with engine.begin() as conn:\n"
        "    conn.execute(text(sys.argv[2]), json.loads(sys.argv[3]))\n"
        "engine.dispose()\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, url, sql, json.dumps(params)], check=True, timeout=60
    )


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    templates.clear_cache()


def test_schema_tightened_by_another_process_is_enforced(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        instances.create(conn, CODE, "before", {"concentration": 25.5})  # caches the template
    _other_process(
        seeded_engine,
        "UPDATE generic_template SET json_addl_schema = CAST(:s AS jsonb)"
        " WHERE category = 'content' AND type = 'sample' AND subtype = 'dna' AND version = '1.0'",
        {"s": json.dumps(TIGHT)},
    )
    before = _count(seeded_engine)
    with pytest.raises(ValidationError, match="concentration"), seeded_engine.begin() as conn:
        instances.create(conn, CODE, "after", {"concentration": 25.5})
    with pytest.raises(ValidationError), seeded_engine.begin() as conn:
        instances.create_many(conn, CODE, [("bulk", {"concentration": 99})])
    assert _count(seeded_engine) == before
    with seeded_engine.begin() as conn:  # valid data still goes in
        instances.create(conn, CODE, "fits", {"concentration": 5})


def test_update_properties_checks_the_live_schema(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        sample = instances.create(conn, CODE, "s", {"concentration": 5})
    _other_process(
        seeded_engine,
        "UPDATE generic_template SET json_addl_schema = CAST(:s AS jsonb)"
        " WHERE category = 'content' AND type = 'sample' AND subtype = 'dna' AND version = '1.0'",
        {"s": json.dumps(TIGHT)},
    )
    with pytest.raises(ValidationError), seeded_engine.begin() as conn:
        instances.update_properties(conn, sample.euid, {"concentration": 50})


def test_template_deleted_by_another_process_gets_no_new_instances(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        instances.create(conn, CODE, "before")
    _other_process(
        seeded_engine,
        "DELETE FROM generic_template WHERE category = 'content' AND type = 'sample'"
        " AND subtype = 'dna' AND version = :v",
        {"v": "1.0"},
    )
    before = _count(seeded_engine)
    with pytest.raises(TemplateNotFoundError), seeded_engine.begin() as conn:
        instances.create(conn, CODE, "after")
    assert _count(seeded_engine) == before


def _wait_until_blocked(
    engine: Engine, application_name: str, thread_alive: Callable[[], bool]
) -> None:
    """Until the backend of that connection waits on a lock (a condition, not a delay)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE application_name = :a AND wait_event_type = 'Lock'"
                ),
                {"a": application_name},
            ).scalar_one()
        if waiting:
            return
        if not thread_alive():
            raise AssertionError(f"{application_name} finished without waiting")
        time.sleep(0.01)
    raise AssertionError(f"{application_name} never waited for the template lock")


@pytest.mark.parametrize("level", ["READ COMMITTED", "REPEATABLE READ"])
@pytest.mark.parametrize("code", [CODE, EUID_NAMED], ids=["one-statement", "three-statements"])
def test_writer_racing_a_schema_change_cannot_store_what_it_forbids(
    seeded_engine: Engine, level: str, code: str
) -> None:
    """A template change is in flight (uncommitted) while a writer validates
    against the old, cached row: the writer waits for the change and then
    refuses (READ COMMITTED: validated against the new rules; REPEATABLE READ:
    a serialization failure to retry). Both ways of writing a tree."""
    _euid_named_rack(seeded_engine)
    with seeded_engine.begin() as conn:
        instances.create(conn, code, "warm", {"concentration": 1})  # cache the old rules
    before = _count(seeded_engine)
    changer = seeded_engine.connect()
    changer.begin()
    changer.execute(
        text(
            "UPDATE generic_template SET json_addl_schema = CAST(:s AS jsonb)"
            " WHERE subtype = :subtype AND version = '1.0'"
        ),
        {"s": json.dumps(TIGHT), "subtype": code.split("/")[2]},
    )
    outcome: list[BaseException | None] = []
    app = f"stale-writer-{level.replace(' ', '-')}"

    def writer() -> None:
        try:
            with seeded_engine.connect().execution_options(isolation_level=level) as conn:
                with conn.begin():
                    conn.execute(
                        text("SELECT set_config('application_name', :a, false)"), {"a": app}
                    )
                    instances.create(conn, code, "racer", {"concentration": 50})
            outcome.append(None)
        except BaseException as exc:  # reported to the main thread
            outcome.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        _wait_until_blocked(seeded_engine, app, thread.is_alive)
        changer.commit()
    finally:
        changer.close()
        thread.join()
    assert outcome and outcome[0] is not None, "the forbidden instance was written"
    error = outcome[0]
    if level == "READ COMMITTED":
        assert isinstance(error, ValidationError), error
    else:
        assert getattr(error, "retryable", False), error
    assert _count(seeded_engine) == before


def test_meridian_domain_changed_between_draw_and_insert(seeded_engine: Engine) -> None:
    """The writer of a tree named after EUIDs computes them from the domain it
    drew with the sequence values; a domain changed by someone else before its
    INSERT runs must not make the stored EUIDs differ from the returned ones."""
    from sqlalchemy import event

    from tapdb_core import euid

    _euid_named_rack(seeded_engine)
    fired: list[bool] = []

    def change_domain_first(conn: object, cursor: object, statement: str, *_: object) -> None:
        if "INSERT INTO generic_instance (" in statement and not fired:
            fired.append(True)
            with seeded_engine.connect() as other:
                other.execute(text("SELECT tapdb_set_meridian_domain('R7')"))
                other.commit()

    with seeded_engine.connect() as conn:
        event.listen(conn, "before_cursor_execute", change_domain_first)
        with conn.begin():
            tree = instances.create_tree(conn, EUID_NAMED, "R")
        event.remove(conn, "before_cursor_execute", change_domain_first)
    assert fired
    with seeded_engine.connect() as conn:
        stored = set(
            conn.execute(
                text("SELECT euid FROM generic_instance WHERE uuid = ANY(:u)"),
                {"u": [i.uuid for i in tree.instances]},
            ).scalars()
        )
        later = instances.create(conn, "content/sample/dna/1.0/", "after the change")
    assert stored == {i.euid for i in tree.instances}
    assert all(euid.parse(e).domain is None for e in stored)
    assert [i.name for i in tree.instances[1:]] == [f"{tree.root.euid}-tube-{i}" for i in (1, 2, 3)]
    assert later.euid.startswith("R7-")


def test_cache_follows_a_change_made_by_another_process(seeded_engine: Engine) -> None:
    """Issue 9's two-process case: the next transaction after a template change
    made with plain SQL elsewhere gets the new row, not the cached one."""
    with seeded_engine.begin() as conn:
        before = templates.get_template(conn, CODE)  # cached now
    with seeded_engine.begin() as conn:
        assert templates.get_template(conn, CODE) is before  # served from the cache
    _other_process(
        seeded_engine,
        "UPDATE generic_template SET name = :n"
        " WHERE category = 'content' AND type = 'sample' AND subtype = 'dna' AND version = '1.0'",
        {"n": "renamed elsewhere"},
    )
    with seeded_engine.begin() as conn:
        after = templates.get_template(conn, CODE)
    assert after.name == "renamed elsewhere"
    assert after.row_version == before.row_version + 1


def test_template_generation_moves_with_every_template_write(seeded_engine: Engine) -> None:
    def generation() -> int:
        with seeded_engine.connect() as conn:
            return int(
                conn.execute(text("SELECT generation FROM tapdb_template_generation")).scalar_one()
            )

    start = generation()
    with seeded_engine.begin() as conn:
        conn.execute(
            text("UPDATE generic_template SET bstatus = bstatus WHERE category = 'content'")
        )
    with seeded_engine.begin() as conn:
        conn.execute(text("SELECT 1 FROM generic_template")).all()  # reads move nothing
    assert generation() == start + 1


def test_a_warm_single_create_is_one_statement_in_a_new_transaction(seeded_engine: Engine) -> None:
    """The cached templates are used under the generation last seen, without
    reading it first; the write itself proves it."""
    from sqlalchemy import event

    with seeded_engine.begin() as conn:
        instances.create(conn, CODE, "warm-up")
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    with seeded_engine.connect() as conn:
        event.listen(conn, "before_cursor_execute", count)
        with conn.begin():
            made = instances.create(conn, CODE, "one statement")
        event.remove(conn, "before_cursor_execute", count)
    assert len(statements) == 1, statements
    assert "tapdb_template_generation" in statements[0]
    assert made.json_addl["action_groups"]


def test_an_action_template_changed_elsewhere_reaches_the_next_instance(
    seeded_engine: Engine,
) -> None:
    """Action templates are not locked by the write, but any template write moves
    the generation the write checks: the cached plan is refused and redone."""
    with seeded_engine.begin() as conn:
        first = instances.create(conn, CODE, "before")
    group = first.json_addl["action_groups"]
    name, actions = next(iter(group.items()))
    key, definition = next(iter(actions.items()))
    _other_process(
        seeded_engine,
        "UPDATE generic_template SET json_addl = jsonb_set(json_addl,"
        " '{action_definition,comment}', to_jsonb(CAST(:c AS text)))"
        " WHERE uuid = CAST(:u AS bigint)",
        {"c": "changed elsewhere", "u": str(definition["action_template_uuid"])},
    )
    with seeded_engine.begin() as conn:
        second = instances.create(conn, CODE, "after")
    assert second.json_addl["action_groups"][name][key]["comment"] == "changed elsewhere"
    assert "comment" not in first.json_addl["action_groups"][name][key]


def test_a_refused_assumption_writes_nothing_and_the_retry_succeeds(seeded_engine: Engine) -> None:
    """The generation moves between planning and writing (another process changes
    an unrelated template): the write is refused before anything is drawn, and
    create plans again from the live rows, in the same transaction."""
    from sqlalchemy import event

    with seeded_engine.begin() as conn:
        instances.create(conn, CODE, "warm-up")
    writes: list[str] = []

    def move_generation_first(conn: object, cursor: object, statement: str, *_: object) -> None:
        if "INSERT INTO generic_instance" in statement:
            writes.append(statement)
            if len(writes) == 1:
                _other_process(
                    seeded_engine,
                    "UPDATE generic_template SET bstatus = bstatus"
                    " WHERE category = 'container' AND type = 'plate' AND version = :v",
                    {"v": "1.0"},
                )

    before = _count(seeded_engine)
    with seeded_engine.connect() as conn:
        event.listen(conn, "before_cursor_execute", move_generation_first)
        with conn.begin():
            made = instances.create(conn, CODE, "retried")
        event.remove(conn, "before_cursor_execute", move_generation_first)
    assert len(writes) == 2  # refused once, written once
    assert _count(seeded_engine) == before + 1
    assert made.name == "retried"
