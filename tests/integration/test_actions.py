"""ActionDispatcher: checks, atomic handlers (SAVEPOINT), tracking in SQL, action records."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from tapdb_core import euid, instances, lineage
from tapdb_core.actions import ActionDispatcher
from tapdb_core.audit import history
from tapdb_core.db import set_audit_user
from tapdb_core.errors import InstanceNotFoundError, TapdbError
from tapdb_core.templates import TemplateSpec, upsert_templates
from tapdb_core.values import Instance

TARGET = "container/box/action-box/1.0/"
GROUP = "test_actions"


def _action(subtype: str, **definition: Any) -> TemplateSpec:
    return TemplateSpec(
        name=f"Test {subtype}",
        polymorphic_discriminator="action_template",
        category="action",
        type="test",
        subtype=subtype,
        version="1.0",
        instance_prefix="XX",
        json_addl={
            "properties": {"name": f"Test {subtype}"},
            "action_definition": {
                "action_name": subtype,
                "method_name": f"do_action_{subtype}",
                "action_enabled": True,
                "max_executions": -1,
                "required_fields": [],
                **definition,
            },
        },
    )


SPECS = [
    _action("note", required_fields=["note_text", "author"]),
    _action("once", max_executions=1),
    _action("off", action_enabled=False),
    _action("boom"),
    _action("orphan"),
    _action("count"),
    TemplateSpec(
        name="Action box",
        polymorphic_discriminator="container_template",
        category="container",
        type="box",
        subtype="action-box",
        version="1.0",
        instance_prefix="CX",
        json_addl={
            "properties": {"label": ""},
            "action_imports": {
                "note": "action/test/note/1.0/",
                "once": "action/test/once/1.0/",
                "off": "action/test/off/1.0/",
                "orphan": "action/test/orphan/1.0/",
                "count": "action/test/count/1.0/",
                # three keys, one template: handlers that fail in different ways
                "boom": "action/test/boom/1.0/",
                "sql_boom": "action/test/boom/1.0/",
                "soft_fail": "action/test/boom/1.0/",
            },
        },
    ),
]


class Handlers(ActionDispatcher):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Mapping[str, Any]] = []

    def _side_effects(self, instance: Instance) -> None:
        instances.update_properties(self.session, instance.euid, {"touched": True})
        instances.create(self.session, TARGET, "side effect")

    def do_action_note(
        self, instance: Instance, action_ds: Mapping[str, Any], captured_data: Mapping[str, Any]
    ) -> dict[str, Any]:
        self.seen.append(action_ds)
        instances.update_properties(
            self.session, instance.euid, {"label": captured_data["note_text"]}
        )
        return {"status": "success", "message": "noted", "by": self.context.user}

    def do_action_once(
        self, instance: Instance, action_ds: Any, captured_data: Any
    ) -> dict[str, Any]:
        return {"status": "success", "message": "once"}

    def do_action_off(
        self, instance: Instance, action_ds: Any, captured_data: Any
    ) -> dict[str, Any]:
        raise AssertionError("a disabled action must not reach its handler")

    def do_action_boom(
        self, instance: Instance, action_ds: Any, captured_data: Any
    ) -> dict[str, Any]:
        self._side_effects(instance)
        raise RuntimeError("boom went the handler")

    def do_action_sql_boom(
        self, instance: Instance, action_ds: Any, captured_data: Any
    ) -> dict[str, Any]:
        self._side_effects(instance)
        self.session.execute(text("SELECT 1 / 0"))  # aborts the (sub)transaction
        return {"status": "success"}

    def do_action_soft_fail(
        self, instance: Instance, action_ds: Any, captured_data: Any
    ) -> dict[str, Any]:
        self._side_effects(instance)
        return {"status": "error", "message": "handler said no"}

    def do_action_count(
        self, instance: Instance, action_ds: Any, captured_data: Any
    ) -> dict[str, Any]:
        return {"status": "success", "message": "counted"}


@pytest.fixture
def target(engine: Engine) -> Instance:
    with engine.begin() as conn:
        upsert_templates(conn, SPECS)
        return instances.create(conn, TARGET, "box-1")


def _tracking(conn: Connection, euid: str, key: str, group: str = GROUP) -> dict[str, Any]:
    tracked: dict[str, Any] = instances.get(conn, euid).json_addl["action_groups"][group][key]
    return tracked


def _records(conn: Connection) -> list[Instance]:
    return instances.find(conn, category="action")


def test_success_runs_handler_counts_and_records(engine: Engine, target: Instance) -> None:
    handlers = Handlers()
    with engine.begin() as conn:
        set_audit_user(conn, "app")
        result = handlers.execute_action(
            conn,
            target,
            GROUP,
            "note",
            captured_data={"note_text": "hello", "author": "me"},
            user="alice",
        )
        instances.update_properties(conn, target.euid, {"after": 1})  # audited as "app" again
    assert result["status"] == "success"
    assert result["message"] == "noted"
    assert result["by"] == "alice"
    record_euid = result["action_record_euid"]
    assert record_euid.startswith("XX-")
    # the handler saw the stored definition (with its tracking fields)
    assert handlers.seen[0]["action_template_code"] == "action/test/note/1.0/"
    assert handlers.seen[0]["required_fields"] == ["note_text", "author"]
    with engine.connect() as conn:
        now = instances.get(conn, target.euid)
        assert now.properties["label"] == "hello"  # the handler's write is kept
        tracked = _tracking(conn, target.euid, "note")
        assert tracked["action_executed"] == 1
        assert len(tracked["executed_datetime"]) == 1
        record = instances.get(conn, record_euid)
        assert record.name == f"note@{target.euid}"
        assert record.bstatus == "completed"
        assert record.template_code == "action/test/note/1.0/"
        props = record.properties
        assert props["target_instance_euid"] == target.euid
        assert props["action_group"] == GROUP
        assert props["action_key"] == "note"
        assert props["captured_data"] == {"note_text": "hello", "author": "me"}
        assert props["result"]["message"] == "noted"
        assert props["executed_by"] == "alice"
        assert props["executed_at"] == tracked["executed_datetime"][0]
        assert props["action_definition"]["action_name"] == "note"
        kids = lineage.children(conn, target.euid, "action")
        assert [k.instance.euid for k in kids] == [record_euid]
        assert {e.changed_by for e in history(conn, record_euid)} == {"alice"}
        last = history(conn, target.euid)[-1]
        assert (last.column_name, last.changed_by) == ("json_addl", "app")


def test_instance_by_euid_without_record_and_with_action_ds(
    engine: Engine, target: Instance
) -> None:
    handlers = Handlers()
    custom = {"action_name": "custom", "required_fields": ["note_text"]}
    with engine.begin() as conn:
        result = handlers.execute_action(
            conn,
            target.euid,
            GROUP,
            "note",
            action_ds=custom,
            captured_data={"note_text": "x", "author": "y"},
            create_action_record=False,
        )
    assert result["status"] == "success"
    assert result["action_record_euid"] is None
    assert handlers.seen == [custom]
    with engine.connect() as conn:
        assert _records(conn) == []
        assert _tracking(conn, target.euid, "note")["action_executed"] == 1


def test_disabled_action(engine: Engine, target: Instance) -> None:
    with engine.begin() as conn:
        result = Handlers().execute_action(conn, target, GROUP, "off")
        assert result["status"] == "error"
        assert "action off is disabled" in result["message"]
        assert _tracking(conn, target.euid, "off")["action_executed"] == 0
        assert _records(conn) == []


def test_action_ds_can_disable_but_not_enable(engine: Engine, target: Instance) -> None:
    with engine.begin() as conn:
        handlers = Handlers()
        off = handlers.execute_action(
            conn, target, GROUP, "once", action_ds={"action_enabled": False}
        )
        assert "disabled" in off["message"]
        on = handlers.execute_action(conn, target, GROUP, "off", action_ds={"action_enabled": True})
        assert "disabled" in on["message"]


def test_missing_required_fields_are_all_named(engine: Engine, target: Instance) -> None:
    with engine.begin() as conn:
        result = Handlers().execute_action(
            conn, target, GROUP, "note", captured_data={"note_text": "  ", "other": 1}
        )
        assert result["status"] == "error"
        assert result["missing_fields"] == ["note_text", "author"]
        assert "note_text" in result["message"] and "author" in result["message"]
        assert _tracking(conn, target.euid, "note")["action_executed"] == 0


def test_no_handler(engine: Engine, target: Instance) -> None:
    with engine.begin() as conn:
        result = Handlers().execute_action(conn, target, GROUP, "orphan")
        assert result == {"status": "error", "message": "No handler for action: orphan"}
        assert _tracking(conn, target.euid, "orphan")["action_executed"] == 0


def test_unknown_group_or_key_and_missing_instance(engine: Engine, target: Instance) -> None:
    handlers = Handlers()
    with engine.begin() as conn:
        no_group = handlers.execute_action(conn, target, "nope_actions", "note")
        assert no_group["status"] == "error"
        assert "no action group 'nope_actions'" in no_group["message"]
        assert GROUP in no_group["message"]
        no_key = handlers.execute_action(conn, target, GROUP, "nope")
        assert no_key["status"] == "error"
        assert "has no action 'nope'" in no_key["message"]
        with pytest.raises(InstanceNotFoundError):
            handlers.execute_action(conn, euid.encode("CX", 999_999), GROUP, "note")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("boom", "boom went the handler"),
        ("sql_boom", "division by zero"),
        ("soft_fail", "handler said no"),
    ],
)
def test_failing_handler_leaves_no_writes_and_transaction_usable(
    engine: Engine, target: Instance, key: str, message: str
) -> None:
    with engine.begin() as conn:
        set_audit_user(conn, "app")
        result = Handlers().execute_action(conn, target, GROUP, key, user="mallory")
        assert result["status"] == "error"
        assert message in result["message"]
        assert "action_record_euid" not in result
        # nothing the handler wrote survived
        assert "touched" not in instances.get(conn, target.euid).properties
        assert [i.euid for i in instances.find(conn, template_code=TARGET)] == [target.euid]
        assert _tracking(conn, target.euid, key)["action_executed"] == 0
        assert _records(conn) == []
        # the caller's transaction goes on, with its own audit user
        assert conn.execute(text("SELECT tapdb_audit_user()")).scalar() == "app"
        after = instances.create(conn, TARGET, "after the failure")
    with engine.connect() as conn:
        assert instances.get(conn, after.euid).name == "after the failure"
        assert {e.changed_by for e in history(conn, after.euid)} == {"app"}


def test_dispatcher_session_exists_only_inside_handlers() -> None:
    with pytest.raises(TapdbError, match="no action is running"):
        _ = Handlers().session


def test_concurrent_executions_are_all_counted(engine: Engine, target: Instance) -> None:
    handlers = Handlers()
    # both callers start together; the claim (row lock) queues the second behind the first
    barrier = threading.Barrier(2, timeout=30)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            with engine.begin() as conn:
                results.append(handlers.execute_action(conn, target.euid, GROUP, "count"))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert [r["status"] for r in results] == ["success", "success"]
    with engine.connect() as conn:
        tracked = _tracking(conn, target.euid, "count")
        assert tracked["action_executed"] == 2
        assert len(tracked["executed_datetime"]) == 2
        assert len(_records(conn)) == 2


def test_max_executions(engine: Engine, target: Instance) -> None:
    handlers = Handlers()
    with engine.begin() as conn:
        first = handlers.execute_action(conn, target, GROUP, "once")
        assert first["status"] == "success"
        second = handlers.execute_action(conn, target, GROUP, "once")
        assert second["status"] == "error"
        assert "max_executions (1) reached" in second["message"]
    with engine.connect() as conn:
        assert _tracking(conn, target.euid, "once")["action_executed"] == 1
        assert len(_records(conn)) == 1


def test_readme_handler_on_a_seeded_plate(seeded_engine: Engine) -> None:
    """The README's Actions example, with the frozen Instance changed through a function."""

    class MyActionHandler(ActionDispatcher):
        def do_action_set_status(
            self, instance: Instance, action_ds: Any, captured_data: Mapping[str, Any]
        ) -> dict[str, Any]:
            new_status = captured_data.get("status")
            instances.set_status(self.session, instance.euid, str(new_status))
            return {"status": "success", "message": f"Status set to {new_status}"}

    handler = MyActionHandler()
    with seeded_engine.begin() as conn:
        plate = instances.create(
            conn, "container/plate/fixed-plate-96/1.0/", "PLATE-001", create_children=False
        )
        action_definition = plate.json_addl["action_groups"]["core_actions"]["set_status"]
        result = handler.execute_action(
            session=conn,
            instance=plate,
            action_group="core_actions",
            action_key="set_status",
            action_ds=action_definition,
            captured_data={"status": "in_progress"},
            user="john.doe",
        )
    assert result["status"] == "success"
    assert result["message"] == "Status set to in_progress"
    with seeded_engine.connect() as conn:
        assert instances.get(conn, plate.euid).bstatus == "in_progress"
        record = instances.get(conn, result["action_record_euid"])
        assert record.euid.startswith("XX-")
        assert record.template_code == "action/core/set-status/1.0/"
        assert record.properties["executed_by"] == "john.doe"
