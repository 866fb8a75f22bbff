"""Actions: run ``do_action_<key>`` handlers on instances, atomically, with tracking.

An instance's actions live in ``json_addl["action_groups"][group][key]`` (put
there at creation from its template's ``action_imports``, see
:func:`tapdb_core.planning.materialise_actions`; stored by reference to a
shared, immutable action set until the first execution is counted, see
:mod:`tapdb_core.action_sets`). :class:`ActionDispatcher`,
inside one SAVEPOINT, claims the execution (locks the instance row and checks
the stored definition against it), and only then runs the handler, counts the
execution in SQL and records it as an instance of the action template linked
under its target. Either all of that happens or none of it does; a handler
never runs for an execution that ``max_executions`` does not allow.

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
import functools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs
from sqlalchemy import Connection, select, text

from tapdb_core import action_sets, instances, lineage
from tapdb_core import euid as euids
from tapdb_core.db import set_audit_user
from tapdb_core.dberrors import translated
from tapdb_core.errors import InstanceNotFoundError, TapdbError
from tapdb_core.tables import generic_instance as gi
from tapdb_core.templates import get_template, templates_by_uuid
from tapdb_core.values import Instance, Template

logger = logging.getLogger(__name__)

#: relationship type of the edge target -> action record
ACTION_RELATIONSHIP: Final = "action"
#: bstatus of action records
RECORD_STATUS: Final = "completed"

# The count. It runs under the row lock taken before the checks (the claim), so
# the count it increments is the one the checks saw; the WHERE still re-checks
# that the action exists and that max_executions (>= 0 means a limit) is not
# reached, so the count can never pass the limit. Paths are bound text[].
# Copy on write (revision 0006): ``c.j`` is the instance's effective json_addl,
# its shared action set included; the row stores it as its own copy from now
# on and drops the reference, in this same UPDATE.
_TRACK_EXECUTION: Final = text(
    f"""
    UPDATE generic_instance g
       SET json_addl = jsonb_set(
               jsonb_set(c.j, CAST(:count_path AS text[]),
                         to_jsonb(coalesce((c.j #>> CAST(:count_path AS text[]))::numeric, 0)::bigint + 1)),
               CAST(:dates_path AS text[]),
               CASE WHEN jsonb_typeof(c.j #> CAST(:dates_path AS text[])) = 'array'
                    THEN c.j #> CAST(:dates_path AS text[])
                    ELSE '[]'::jsonb END || jsonb_build_array(to_jsonb(now()))),
           action_set_digest = NULL
      FROM (SELECT {action_sets.effective_sql("e")} AS j
              FROM generic_instance e WHERE e.uuid = :uuid) c
     WHERE g.uuid = :uuid
       AND jsonb_typeof(c.j #> CAST(:action_path AS text[])) = 'object'
       AND (coalesce((c.j #>> CAST(:max_path AS text[]))::numeric, -1) < 0
            OR coalesce((c.j #>> CAST(:count_path AS text[]))::numeric, 0)
               < (c.j #>> CAST(:max_path AS text[]))::numeric)
    RETURNING (g.json_addl #>> CAST(:count_path AS text[]))::bigint AS executed,
              to_jsonb(now()) #>> '{{}}' AS executed_at
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
#: (connection, instance, group, key) of the handlers running in this thread / task
_running: contextvars.ContextVar[frozenset[tuple[int, int, str, str]]] = contextvars.ContextVar(
    "tapdb_actions_running", default=frozenset()
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
        instance as it is now in the database, read under a row lock) governs:
        it must exist, be enabled, be below ``max_executions`` (a value >= 0 is
        a limit) and its ``required_fields`` must be present and non-blank in
        ``captured_data``. ``action_ds`` replaces the definition the handler
        sees and that is recorded (its ``required_fields`` and
        ``action_enabled`` are enforced too); by default the handler gets the
        stored definition.

        Inside one SAVEPOINT, in this order: the execution is claimed (the
        instance row is locked ``FOR NO KEY UPDATE`` and the checks run on the
        locked, current row), the handler runs, the execution is counted
        (``action_executed`` + 1 and ``now()`` appended to
        ``executed_datetime``, in one UPDATE) and, with
        ``create_action_record``, an action record is written (an instance of
        the action template named ``<key>@<target euid>``, bstatus
        ``completed``, edge target -> record of type ``"action"``). Concurrent
        callers of any action on the instance queue on the row lock until the
        claim's transaction ends, and then see its count: a handler never
        runs for an execution that ``max_executions`` forbids (with a limit of
        1 it runs once, however many callers race). Under REPEATABLE READ or
        SERIALIZABLE a caller whose snapshot predates another's committed
        execution gets :class:`~tapdb_core.errors.SerializationError` (retry
        the transaction) before its handler runs. The lock does not conflict
        with the ``FOR KEY SHARE`` of foreign-key checks until the count is
        written. A handler that calls the same action on the same instance in
        the same transaction gets an error result instead of running twice.

        When the handler raises, returns a non-dict or a result with status
        ``"error"``, the SAVEPOINT is rolled back, the claim with it: no
        partial writes, and the caller's transaction stays usable. ``user`` is
        the audit user of those writes only; the transaction's audit user is
        restored afterwards.

        Returns the handler's result plus ``action_record_euid`` (None when no
        record was made), or ``{"status": "error", "message": ...}`` (nothing
        written). A missing instance raises :class:`InstanceNotFoundError`.
        """
        euid = instance.euid if isinstance(instance, Instance) else instance
        previous_user = session.execute(_CURRENT_AUDIT_USER).scalar() or None
        savepoint = session.begin_nested()
        try:
            if user:
                set_audit_user(session, user)
            outcome = self._claim_and_run(
                session,
                euid,
                _Request(
                    group=action_group,
                    key=action_key,
                    action_ds=action_ds,
                    captured=dict(captured_data or {}),
                    user=user or previous_user,
                    create_record=create_action_record,
                ),
            )
            if outcome.failed:
                savepoint.rollback()
                return outcome.result
            savepoint.commit()
        except BaseException:
            if savepoint.is_active:
                savepoint.rollback()
            raise
        # A rolled-back SAVEPOINT undoes set_config by itself; after a release, undo it here.
        if user:
            set_audit_user(session, previous_user)
        return outcome.result

    def _call_handler(
        self,
        handler: Callable[..., Any],
        session: Connection,
        target: Instance,
        action_ds: dict[str, Any],
        captured_data: dict[str, Any],
    ) -> Any:
        """Call one handler, inside the SAVEPOINT, after the claim.

        The class API (:class:`tapdb_core.facade.ActionDispatcher`) overrides
        this to hand handlers a changeable object and write its changes back
        here, before the execution is counted.
        """
        return handler(target, action_ds, captured_data)

    def _claim_and_run(self, session: Connection, euid: str, request: _Request) -> _Outcome:
        """Claim (lock the row, check), run the handler, count, record: inside the SAVEPOINT."""
        target = _locked_target(session, euid)  # the claim: held until the SAVEPOINT ends
        where = f"{request.group}/{request.key} on {target.euid}"
        checked = _check(target, request, where)
        if isinstance(checked, _Outcome):
            return checked
        handler = getattr(self, f"do_action_{request.key}", None)
        if not callable(handler):
            logger.warning("no handler for action %s", where)
            return _Outcome.error(f"No handler for action: {request.key}")
        running = (id(session), target.uuid, request.group, request.key)
        if running in _running.get():
            # the row lock is ours already, so it cannot stop a handler calling itself
            return _Outcome.error(f"action {where} is already running in this transaction")
        token = _running.set(_running.get() | {running})
        try:
            outcome = _run_handler(
                functools.partial(self._call_handler, handler, session),
                session,
                target,
                checked.definition,
                request,
                where,
            )
        finally:
            _running.reset(token)
        if outcome.failed:
            return outcome
        executed_at = _count(session, target, request)
        if executed_at is None:  # cannot happen under the row lock; kept as a last guard
            return _Outcome.error(_limit_message(where, checked.max_executions))
        if not request.create_record:
            return outcome.with_record(None)
        try:
            template = _action_template(session, checked.stored, checked.definition)
            record = _record(
                session,
                template,
                target,
                request=request,
                definition=checked.definition,
                result=outcome.result,
                executed_at=executed_at,  # same text as stored in json_addl
            )
        except TapdbError as exc:
            return _Outcome.error(f"action {where} could not be recorded: {exc}")
        return outcome.with_record(record.euid)


@attrs.frozen(kw_only=True)
class _Request:
    """One call of :meth:`ActionDispatcher.execute_action`, as the steps need it."""

    group: str
    key: str
    action_ds: Mapping[str, Any] | None
    captured: dict[str, Any]
    user: str | None
    """The effective user: the ``user`` argument, else the transaction's audit user."""
    create_record: bool

    def path(self, *leaf: str) -> list[str]:
        return ["action_groups", self.group, self.key, *leaf]


@attrs.frozen(kw_only=True)
class _Checked:
    """An action that passed its checks, with the definitions that govern it."""

    stored: Mapping[str, Any]
    definition: dict[str, Any]
    max_executions: int


@attrs.frozen
class _Outcome:
    """What execute_action returns, and whether the SAVEPOINT must be rolled back."""

    result: dict[str, Any]
    failed: bool

    @classmethod
    def error(cls, message: str, **extra: Any) -> _Outcome:
        return cls(_error(message, **extra), True)

    def with_record(self, euid: str | None) -> _Outcome:
        return _Outcome({**self.result, "action_record_euid": euid}, False)


def _locked_target(session: Connection, euid: str) -> Instance:
    """The live instance, its row locked until the SAVEPOINT ends.

    ``FOR NO KEY UPDATE`` is the weakest lock that serialises claims: it does
    not conflict with the ``FOR KEY SHARE`` that foreign-key checks take (an
    edge or child pointing at this instance).
    """
    euids.parse(euid)
    with translated():
        row = session.execute(
            select(*action_sets.instance_columns())
            .where(gi.c.euid == euid, gi.c.is_deleted.is_(False))
            .with_for_update(key_share=True, of=gi)
        ).one_or_none()
    if row is None:
        raise InstanceNotFoundError(f"instance {euid} not found")
    return action_sets.instance(session, row)


def _stored_definition(
    target: Instance, request: _Request, where: str
) -> Mapping[str, Any] | _Outcome:
    groups = target.json_addl.get("action_groups")
    group = groups.get(request.group) if isinstance(groups, Mapping) else None
    stored = group.get(request.key) if isinstance(group, Mapping) else None
    if isinstance(stored, Mapping):
        return stored
    if not isinstance(group, Mapping):
        known = sorted(groups) if isinstance(groups, Mapping) else []
        return _Outcome.error(
            f"action {where}: instance has no action group {request.group!r}"
            f" (groups: {', '.join(known) or 'none'})"
        )
    return _Outcome.error(
        f"action {where}: group {request.group!r} has no action {request.key!r}"
        f" (actions: {', '.join(sorted(group)) or 'none'})"
    )


def _check(target: Instance, request: _Request, where: str) -> _Checked | _Outcome:
    """The checks of the stored (and the caller's) definition against the locked row."""
    stored = _stored_definition(target, request, where)
    if isinstance(stored, _Outcome):
        return stored
    definition = dict(stored) if request.action_ds is None else dict(request.action_ds)
    if not (
        _enabled(stored.get("action_enabled", True))
        and _enabled(definition.get("action_enabled", True))
    ):
        return _Outcome.error(f"action {request.key} is disabled ({where})")
    required = list(
        dict.fromkeys(
            _field_list(stored.get("required_fields"))
            + _field_list(definition.get("required_fields"))
        )
    )
    missing = [f for f in required if _missing(request.captured.get(f))]
    if missing:
        return _Outcome.error(
            f"action {where}: missing required fields: {', '.join(missing)}",
            missing_fields=missing,
        )
    max_executions = _as_int(stored.get("max_executions"), -1)
    executed = _as_int(stored.get("action_executed"), 0)
    if max_executions is None or executed is None:
        return _Outcome.error(
            f"action {where}: max_executions / action_executed must be integers, got "
            f"{stored.get('max_executions')!r} / {stored.get('action_executed')!r}"
        )
    if 0 <= max_executions <= executed:
        return _Outcome.error(_limit_message(where, max_executions))
    return _Checked(stored=stored, definition=definition, max_executions=max_executions)


def _count(session: Connection, target: Instance, request: _Request) -> str | None:
    """Count the execution (the row is locked); its timestamp, or None if the limit is reached."""
    with translated():
        tracked = session.execute(
            _TRACK_EXECUTION,
            {
                "uuid": target.uuid,
                "action_path": request.path(),
                "count_path": request.path("action_executed"),
                "dates_path": request.path("executed_datetime"),
                "max_path": request.path("max_executions"),
            },
        ).one_or_none()
    return None if tracked is None else str(tracked.executed_at)


def _run_handler(
    handler: Callable[..., Any],
    session: Connection,
    target: Instance,
    definition: dict[str, Any],
    request: _Request,
    where: str,
) -> _Outcome:
    """Call the handler with the context set; its result, or a failure."""
    token = _context.set(
        ActionContext(
            session=session, action_group=request.group, action_key=request.key, user=request.user
        )
    )
    try:
        result = handler(target, definition, request.captured)
    except Exception as exc:
        logger.exception("action %s failed", where)
        return _Outcome.error(str(exc) or type(exc).__name__)
    finally:
        _context.reset(token)
    if not isinstance(result, Mapping):
        return _Outcome.error(
            f"handler of {where} returned {type(result).__name__}, expected a dict"
        )
    if result.get("status") == "error":
        return _Outcome(dict(result), True)
    return _Outcome(dict(result), False)


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
    request: _Request,
    definition: Mapping[str, Any],
    result: Mapping[str, Any],
    executed_at: str,
) -> Instance:
    """Write the action record (one insert, bstatus ``completed``) and its edge."""
    properties = _json_safe(
        {
            "target_instance_euid": target.euid,
            "target_instance_uuid": target.uuid,
            "action_group": request.group,
            "action_key": request.key,
            "action_definition": definition,
            "captured_data": request.captured,
            "result": result,
            "executed_by": request.user,
            "executed_at": executed_at,
        }
    )
    planned = instances.plan(
        session,
        template.template_code,
        f"{request.key}@{target.euid}",
        properties,
        create_children=False,
    )
    planned = attrs.evolve(planned, nodes=(attrs.evolve(planned.root, bstatus=RECORD_STATUS),))
    record = instances.write_plan(session, planned).root
    lineage.link(session, target, record, relationship_type=ACTION_RELATIONSHIP)
    return record
