"""Actions claim their execution before the handler runs (issue 8, item 13).

Eight callers race for an action with ``max_executions = 1``: the handler (a
label printer, an email) must run once in all, not once per caller with seven
rolled back. The race is real: the callers start together behind a Barrier,
each in its own transaction, at READ COMMITTED and at REPEATABLE READ.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tapdb_core import instances
from tapdb_core.actions import ActionDispatcher
from tapdb_core.errors import SerializationError
from tapdb_core.templates import TemplateSpec, upsert_templates
from tapdb_core.values import Instance

CALLERS = 8
GROUP = "claim_actions"
TARGET = "container/box/claim-box/1.0/"

SPECS = [
    TemplateSpec(
        name="Print a label once",
        polymorphic_discriminator="action_template",
        category="action",
        type="claim",
        subtype="print",
        version="1.0",
        instance_prefix="XX",
        json_addl={
            "properties": {"name": "print"},
            "action_definition": {
                "action_name": "print",
                "method_name": "do_action_print",
                "action_enabled": True,
                "max_executions": 1,
                "required_fields": [],
            },
        },
    ),
    TemplateSpec(
        name="Claim box",
        polymorphic_discriminator="container_template",
        category="container",
        type="box",
        subtype="claim-box",
        version="1.0",
        instance_prefix="CX",
        json_addl={
            "properties": {"label": ""},
            "action_imports": {
                "print": "action/claim/print/1.0/",
                "print_fails": "action/claim/print/1.0/",
            },
        },
    ),
]


class Printer(ActionDispatcher):
    """Counts every handler call across threads (the side effect a rollback cannot undo)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.calls = 0

    def _count(self) -> None:
        with self._lock:
            self.calls += 1

    def do_action_print(
        self, instance: Instance, action_ds: Mapping[str, Any], captured_data: Any
    ) -> dict[str, Any]:
        self._count()
        return {"status": "success", "message": "printed"}

    def do_action_print_fails(
        self, instance: Instance, action_ds: Mapping[str, Any], captured_data: Any
    ) -> dict[str, Any]:
        self._count()
        raise RuntimeError("printer jammed")


@pytest.fixture
def box(engine: Engine) -> Instance:
    with engine.begin() as conn:
        upsert_templates(conn, SPECS)
        return instances.create(conn, TARGET, "box")


def _race(engine: Engine, isolation: str, printer: Printer, euid: str, key: str) -> list[Any]:
    """Run execute_action from CALLERS threads at once; each thread's result or exception."""
    barrier = threading.Barrier(CALLERS, timeout=60)
    outcomes: list[Any] = [None] * CALLERS

    def call(i: int) -> None:
        try:
            with engine.connect() as conn:
                conn.execution_options(isolation_level=isolation)
                with conn.begin():
                    # the snapshot (REPEATABLE READ) is taken before anyone claims
                    conn.execute(text("SELECT 1")).scalar()
                    barrier.wait()
                    outcomes[i] = printer.execute_action(conn, euid, GROUP, key)
        except BaseException as exc:  # reported by the test
            outcomes[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


def _executions(engine: Engine, euid: str, key: str) -> tuple[int, int]:
    """(action_executed stored on the instance, action records linked under it)."""
    with engine.connect() as conn:
        tracked = instances.get(conn, euid).json_addl["action_groups"][GROUP][key]
        records = conn.execute(
            text(
                "SELECT count(*) FROM generic_instance_lineage l"
                " JOIN generic_instance p ON p.uuid = l.parent_instance_uuid"
                " WHERE p.euid = :euid AND l.relationship_type = 'action'"
            ),
            {"euid": euid},
        ).scalar_one()
    return int(tracked["action_executed"]), int(records)


@pytest.mark.parametrize("isolation", ["READ COMMITTED", "REPEATABLE READ"])
def test_handler_runs_once_among_racing_callers(
    engine: Engine, box: Instance, isolation: str
) -> None:
    printer = Printer()
    outcomes = _race(engine, isolation, printer, box.euid, "print")

    successes = [o for o in outcomes if isinstance(o, dict) and o["status"] == "success"]
    refused = [o for o in outcomes if isinstance(o, dict) and o["status"] == "error"]
    raised = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(successes) == 1, outcomes
    for result in refused:
        assert "max_executions (1) reached" in result["message"]
    if isolation == "READ COMMITTED":
        # callers queue on the row lock and then see the claim: nobody needs a retry
        assert not raised, raised
    else:
        # a snapshot older than the winner's claim cannot claim: retry the transaction
        assert all(isinstance(e, SerializationError) and e.retryable for e in raised), raised
    assert len(successes) + len(refused) + len(raised) == CALLERS
    # the side effect happened exactly once, committed or rolled back alike
    assert printer.calls == 1
    assert _executions(engine, box.euid, "print") == (1, 1)


@pytest.mark.parametrize("isolation", ["READ COMMITTED", "REPEATABLE READ"])
def test_failing_handler_gives_the_claim_back(
    engine: Engine, box: Instance, isolation: str
) -> None:
    """A handler that fails rolls its claim back: the next caller may try again."""
    printer = Printer()
    outcomes = _race(engine, isolation, printer, box.euid, "print_fails")

    jammed = [o for o in outcomes if isinstance(o, dict) and "printer jammed" in o["message"]]
    raised = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(o["status"] == "error" for o in outcomes if isinstance(o, dict))
    # every caller that got past the claim ran the handler once; none was refused by the limit
    assert printer.calls == len(jammed) >= 1
    assert len(jammed) + len(raised) == CALLERS
    assert all(isinstance(e, SerializationError) for e in raised), raised
    assert _executions(engine, box.euid, "print_fails") == (0, 0)
    with engine.begin() as conn:  # the claim is free again
        assert printer.execute_action(conn, box.euid, GROUP, "print")["status"] == "success"


def test_claim_lock_does_not_block_foreign_key_checks(engine: Engine, box: Instance) -> None:
    """While a handler runs (the row is claimed), a foreign-key check on the row does not wait.

    Inserting an edge or a row that references the instance takes ``FOR KEY
    SHARE`` on it; the claim's ``FOR NO KEY UPDATE`` must not conflict with it.
    """
    shared = threading.Event()
    failures: list[BaseException] = []

    def key_share(euid: str) -> None:
        try:
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '30s'"))
                conn.execute(
                    text("SELECT 1 FROM generic_instance WHERE euid = :euid FOR KEY SHARE"),
                    {"euid": euid},
                ).one()
            shared.set()
        except BaseException as exc:  # reported by the handler's assertion
            failures.append(exc)

    class Checking(Printer):
        def do_action_print(
            self, instance: Instance, action_ds: Mapping[str, Any], captured_data: Any
        ) -> dict[str, Any]:
            worker = threading.Thread(target=key_share, args=(instance.euid,))
            worker.start()
            worker.join(timeout=60)
            if not shared.is_set():
                return {"status": "error", "message": f"FOR KEY SHARE waited: {failures}"}
            return {"status": "success"}

    with engine.begin() as conn:
        result = Checking().execute_action(conn, box.euid, GROUP, "print")
    assert result["status"] == "success", result


def test_handler_calling_its_own_action_does_not_run_twice(engine: Engine, box: Instance) -> None:
    """The row lock is the caller's already, so re-entry is refused explicitly."""
    nested: list[dict[str, Any]] = []

    class Recursive(Printer):
        def do_action_print(
            self, instance: Instance, action_ds: Mapping[str, Any], captured_data: Any
        ) -> dict[str, Any]:
            self._count()
            nested.append(self.execute_action(self.session, instance.euid, GROUP, "print"))
            return {"status": "success"}

    printer = Recursive()
    with engine.begin() as conn:
        result = printer.execute_action(conn, box.euid, GROUP, "print")
    assert result["status"] == "success"
    assert nested[0]["status"] == "error"
    assert "already running" in nested[0]["message"]
    assert printer.calls == 1
    assert _executions(engine, box.euid, "print") == (1, 1)
