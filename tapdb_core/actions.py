"""Actions: run ``do_action_<key>`` handlers on instances, atomically, with tracking.

An instance's actions live in ``json_addl["action_groups"][group][key]`` (put
there at creation from its template's ``action_imports``, see
:func:`tapdb_core.planning.materialise_actions`). :class:`ActionDispatcher`
checks the stored definition, runs the handler inside a SAVEPOINT, counts the
execution in SQL and records it as an instance of the action template linked
under its target. Either all of that happens or none of it does.

Handlers are methods of a subclass::

    class Handlers(ActionDispatcher):
        def do_action_set_status(self, instance, action_ds, captured_data):
            set_status(self.session, instance.euid, captured_data["status"])
            return {"status": "success", "message": "status set"}

While a handler runs, :attr:`ActionDispatcher.session` is the caller's
connection (and :attr:`ActionDispatcher.context` says which action runs for
whom). Both are per thread / per task, so one dispatcher may serve many
threads at once. ``Instance`` values are frozen: handlers change objects by
calling library functions (:func:`tapdb_core.instances.set_status`,
:func:`~tapdb_core.instances.update_properties`, ...) with ``self.session``.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs
from sqlalchemy import Connection, text

from tapdb_core import instances, lineage
from tapdb_core.db import set_audit_user
from tapdb_core.errors import TapdbError
from tapdb_core.templates import get_template, templates_by_uuid
from tapdb_core.values import Instance, Template

logger = logging.getLogger(__name__)

#: relationship type of the edge target -> action record
ACTION_RELATIONSHIP: Final = "action"
#: bstatus of action records
RECORD_STATUS: Final = "completed"

# One statement, so concurrent executions serialise on the row lock and each
# sees the other's count (READ COMMITTED re-evaluates SET and WHERE on the
# newest row version). The WHERE re-checks that the action still exists and
# that max_executions (>= 0 means a limit) is not reached. Paths are bound text[].
_TRACK_EXECUTION: Final = text(
    """
    UPDATE generic_instance
       SET json_addl = jsonb_set(
               jsonb_set(json_addl, CAST(:count_path AS text[]),
                         to_jsonb(coalesce((json_addl #>> CAST(:count_path AS text[]))::numeric, 0)::bigint + 1)),
               CAST(:dates_path AS text[]),
               CASE WHEN jsonb_typeof(json_addl #> CAST(:dates_path AS text[])) = 'array'
                    THEN json_addl #> CAST(:dates_path AS text[])
                    ELSE '[]'::jsonb END || jsonb_build_array(to_jsonb(now())))
     WHERE uuid = :uuid
       AND jsonb_typeof(json_addl #> CAST(:action_path AS text[])) = 'object'
       AND (coalesce((json_addl #>> CAST(:max_path AS text[]))::numeric, -1) < 0
            OR coalesce((json_addl #>> CAST(:count_path AS text[]))::numeric, 0)
               < (json_addl #>> CAST(:max_path AS text[]))::numeric)
    RETURNING (json_addl #>> CAST(:count_path AS text[]))::bigint AS executed,
              to_jsonb(now()) #>> '{}' AS executed_at
    """
)

_CURRENT_AUDIT_USER: Final = text("SELECT current_setting('tapdb.audit_user', true)")

_FALSE_STRINGS: Final = frozenset({"false", "0", "no", "off", "n", "f"})


@attrs.frozen(kw_only=True)
class ActionContext:
    """What a running handler may want besides its three arguments."""

    session: Connection
    """The caller's connection, inside the action's SAVEPOINT."""
    action_group: str
    action_key: str
    user: str | None
    """Who runs the action (also the audit user of its writes), when known."""


_context: contextvars.ContextVar[ActionContext | None] = contextvars.ContextVar(
    "tapdb_action_context", default=None
)


def _error(message: str, **extra: Any) -> dict[str, Any]:
    return {"status": "error", "message": message, **extra}


def _as_int(value: Any, default: int) -> int | None:
    """An integer from a JSON value (int, integral float, numeric string); None if not one."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return int(number) if number.is_integer() else None
    return None


def _enabled(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_STRINGS
    return value is None or bool(value)


def _field_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [str(v) for v in value]
    return []


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _json_safe(value: Any) -> Any:
    """A plain-JSON copy (anything JSON cannot hold becomes its ``str``)."""
    return json.loads(json.dumps(value, default=str))


class ActionDispatcher:
    """Routes ``execute_action`` to ``do_action_<action_key>`` methods of a subclass.

    ``db`` is optional and only kept (as ``self.db``) for handlers that want it;
    every call works on the connection passed to :meth:`execute_action`.
    """

    def __init__(self, db: Any = None) -> None:
        self.db = db

    # -- what handlers see ----------------------------------------------------------

    @property
    def context(self) -> ActionContext:
        """The running action (only inside a handler)."""
        ctx = _context.get()
        if ctx is None:
            raise TapdbError("no action is running: context/session exist only inside a handler")
        return ctx

    @property
    def session(self) -> Connection:
        """The caller's connection while a handler runs (inside the action's SAVEPOINT)."""
        return self.context.session

    # -- dispatching ----------------------------------------------------------------

    def execute_action(
        self,
        session: Connection,
        instance: Instance | str,
        action_group: str,
        action_key: str,
        action_ds: Mapping[str, Any] | None = None,
        captured_data: Mapping[str, Any] | None = None,
        create_action_record: bool = True,
        user: str | None = None,
    ) -> dict[str, Any]:
        """Run action ``action_group/action_key`` on ``instance`` (a value or an EUID).

        The stored definition (``json_addl.action_groups[group][key]`` of the
        instance as it is now in the database) governs: it must exist, be
        enabled, be below ``max_executions`` (a value >= 0 is a limit) and its
        ``required_fields`` must be present and non-blank in ``captured_data``.
        ``action_ds`` replaces the definition the handler sees and that is
        recorded (its ``required_fields`` and ``action_enabled`` are enforced
        too); by default the handler gets the stored definition.

        The handler, the execution count (``action_executed`` + 1 and ``now()``
        appended to ``executed_datetime``, in one UPDATE) and, with
        ``create_action_record``, an action record (an instance of the action
        template named ``<key>@<target euid>``, bstatus ``completed``, edge
        target -> record of type ``"action"``) run in one SAVEPOINT. When the
        handler raises, returns a non-dict or a result with status ``"error"``,
        the SAVEPOINT is rolled back: no partial writes, and the caller's
        transaction stays usable. ``user`` is the audit user of those writes
        only; the transaction's audit user is restored afterwards.

        Returns the handler's result plus ``action_record_euid`` (None when no
        record was made), or ``{"status": "error", "message": ...}`` (nothing
        written). A missing instance raises :class:`InstanceNotFoundError`.
        """
        captured = dict(captured_data or {})
        target = instances.get(
            session, instance.euid if isinstance(instance, Instance) else instance
        )
        where = f"{action_group}/{action_key} on {target.euid}"

        groups = target.json_addl.get("action_groups")
        group = groups.get(action_group) if isinstance(groups, Mapping) else None
        stored = group.get(action_key) if isinstance(group, Mapping) else None
        if not isinstance(stored, Mapping):
            known = sorted(groups) if isinstance(groups, Mapping) else []
            if not isinstance(group, Mapping):
                return _error(
                    f"action {where}: instance has no action group {action_group!r}"
                    f" (groups: {', '.join(known) or 'none'})"
                )
            return _error(
                f"action {where}: group {action_group!r} has no action {action_key!r}"
                f" (actions: {', '.join(sorted(group)) or 'none'})"
            )
        definition = dict(stored) if action_ds is None else dict(action_ds)

        if not (
            _enabled(stored.get("action_enabled", True))
            and _enabled(definition.get("action_enabled", True))
        ):
            return _error(f"action {action_key} is disabled ({where})")

        required = list(
            dict.fromkeys(
                _field_list(stored.get("required_fields"))
                + _field_list(definition.get("required_fields"))
            )
        )
        missing = [f for f in required if _missing(captured.get(f))]
        if missing:
            return _error(
                f"action {where}: missing required fields: {', '.join(missing)}",
                missing_fields=missing,
            )

        max_executions = _as_int(stored.get("max_executions"), -1)
        executed = _as_int(stored.get("action_executed"), 0)
        if max_executions is None or executed is None:
            return _error(
                f"action {where}: max_executions / action_executed must be integers, got "
                f"{stored.get('max_executions')!r} / {stored.get('action_executed')!r}"
            )
        if 0 <= max_executions <= executed:
            return _error(_limit_message(where, max_executions))

        handler = getattr(self, f"do_action_{action_key}", None)
        if not callable(handler):
            logger.warning("no handler for action %s", where)
            return _error(f"No handler for action: {action_key}")

        previous_user = session.execute(_CURRENT_AUDIT_USER).scalar() or None
        savepoint = session.begin_nested()
        token = _context.set(
            ActionContext(
                session=session,
                action_group=action_group,
                action_key=action_key,
                user=user or previous_user,
            )
        )
        try:
            if user:
                set_audit_user(session, user)
            try:
                result = handler(target, definition, captured)
            except Exception as exc:
                logger.exception("action %s failed", where)
                savepoint.rollback()
                return _error(str(exc) or type(exc).__name__)
            if not isinstance(result, Mapping):
                savepoint.rollback()
                return _error(
                    f"handler of {where} returned {type(result).__name__}, expected a dict"
                )
            result = dict(result)
            if result.get("status") == "error":
                savepoint.rollback()
                return result

            tracked = session.execute(
                _TRACK_EXECUTION,
                {
                    "uuid": target.uuid,
                    "action_path": ["action_groups", action_group, action_key],
                    "count_path": ["action_groups", action_group, action_key, "action_executed"],
                    "dates_path": ["action_groups", action_group, action_key, "executed_datetime"],
                    "max_path": ["action_groups", action_group, action_key, "max_executions"],
                },
            ).one_or_none()
            if tracked is None:  # another transaction used the last execution meanwhile
                savepoint.rollback()
                return _error(_limit_message(where, max_executions))

            record_euid: str | None = None
            if create_action_record:
                try:
                    template = _action_template(session, stored, definition)
                    record = _record(
                        session,
                        template,
                        target,
                        action_group=action_group,
                        action_key=action_key,
                        definition=definition,
                        captured=captured,
                        result=result,
                        user=user or previous_user,
                        executed_at=tracked.executed_at,  # same text as stored in json_addl
                    )
                except TapdbError as exc:
                    savepoint.rollback()
                    return _error(f"action {where} could not be recorded: {exc}")
                record_euid = record.euid
            savepoint.commit()
        except BaseException:
            if savepoint.is_active:
                savepoint.rollback()
            raise
        finally:
            _context.reset(token)
        # A rolled-back SAVEPOINT undoes set_config by itself; after a release, undo it here.
        if user:
            set_audit_user(session, previous_user)
        return {**result, "action_record_euid": record_euid}


def _limit_message(where: str, max_executions: int) -> str:
    return f"action {where}: max_executions ({max_executions}) reached"


def _action_template(
    session: Connection, stored: Mapping[str, Any], definition: Mapping[str, Any]
) -> Template:
    for source in (stored, definition):
        code = source.get("action_template_code")
        if isinstance(code, str) and code:
            return get_template(session, code)
    for source in (stored, definition):
        uuid = _as_int(source.get("action_template_uuid"), -1)
        if uuid is not None and uuid > 0:
            found = templates_by_uuid(session, [uuid]).get(uuid)
            if found is not None and not found.is_deleted:
                return found
    raise TapdbError("the action definition names no live action template")


def _record(
    session: Connection,
    template: Template,
    target: Instance,
    *,
    action_group: str,
    action_key: str,
    definition: Mapping[str, Any],
    captured: Mapping[str, Any],
    result: Mapping[str, Any],
    user: str | None,
    executed_at: str,
) -> Instance:
    """Write the action record (one insert, bstatus ``completed``) and its edge."""
    properties = _json_safe(
        {
            "target_instance_euid": target.euid,
            "target_instance_uuid": target.uuid,
            "action_group": action_group,
            "action_key": action_key,
            "action_definition": definition,
            "captured_data": captured,
            "result": result,
            "executed_by": user,
            "executed_at": executed_at,
        }
    )
    planned = instances.plan(
        session,
        template.template_code,
        f"{action_key}@{target.euid}",
        properties,
        create_children=False,
    )
    planned = attrs.evolve(planned, nodes=(attrs.evolve(planned.root, bstatus=RECORD_STATUS),))
    record = instances.write_plan(session, planned).root
    lineage.link(session, target, record, relationship_type=ACTION_RELATIONSHIP)
    return record
