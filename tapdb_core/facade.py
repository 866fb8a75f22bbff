"""The original daylily-tapdb class API, as a layer over the typed functions.

Code written against daylily-tapdb 0.1.13 runs unchanged but for its imports::

    db = TAPDBConnection(db_hostname="localhost:5432", db_user="me", db_name="tapdb_dev")
    templates = TemplateManager()
    factory = InstanceFactory(templates)
    with db.session_scope(commit=True) as session:
        plate = factory.create_instance(session, "container/plate/fixed-plate-96/1.0/", "P1")
        plate.bstatus = "in_progress"  # written back when the session commits
        for edge in plate.parent_of_lineages:
            print(edge.child_instance.euid)

There is no ORM. A session (:class:`TapdbSession`) is a SQLAlchemy
:class:`~sqlalchemy.Connection` with the ORM session's transaction methods
(``add``, ``flush``, ``commit``, ``rollback``, ``close``): pass it to any
``tapdb_core`` function as it is. The objects this layer returns
(:class:`InstanceObject`, :class:`LineageObject`) wrap the frozen values of the
typed API: ``bstatus``, ``json_addl`` and ``properties`` of an instance can be
changed and are written back (validated, audited) by ``session.flush()`` /
``commit()``, by ``session.add(obj)`` + commit, or, in an action handler, by the
action itself; lineage relationships are read-only lookups made when accessed.
``obj.value`` is the frozen :class:`~tapdb_core.values.Instance` as last read
or written.
"""

from __future__ import annotations

import copy
import getpass
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Final

from sqlalchemy import Connection, Engine, RootTransaction, Table, create_engine, select, update
from sqlalchemy.engine import URL, make_url

from tapdb_core import action_sets, actions, inputcheck, instances, lineage, templates
from tapdb_core.config import load_config, normalise_url
from tapdb_core.db import Database, start_transaction
from tapdb_core.dberrors import translated
from tapdb_core.errors import (
    ConfigurationError,
    EUIDError,
    InstanceNotFoundError,
    TapdbError,
    TemplateNotFoundError,
    ValidationError,
    Violation,
)
from tapdb_core.jsonvalues import json_equal
from tapdb_core.planning import validate_json_addl
from tapdb_core.tables import generic_instance as gi
from tapdb_core.tables import generic_instance_lineage as gl
from tapdb_core.tables import metadata
from tapdb_core.values import Instance, Lineage, Template

__all__ = [
    "ActionDispatcher",
    "DetachedInstanceError",
    "InstanceFactory",
    "InstanceObject",
    "LineageObject",
    "TAPDBConnection",
    "TapdbSession",
    "TemplateManager",
]

_TRUE_STRINGS = frozenset({"true", "1", "yes"})
_DRIVER = "postgresql+psycopg"
#: URL prefixes the original accepted for component-built URLs (any of them means psycopg 3 here)
_URL_PREFIXES: Final = (
    "postgresql://",
    "postgres://",
    "postgresql+psycopg2://",
    "postgresql+psycopg://",
)


class DetachedInstanceError(TapdbError):
    """A relationship was read on an object whose session is closed (as in SQLAlchemy's ORM)."""


def _env_user() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser() or "tapdb"
    except (KeyError, OSError):
        return "tapdb"


def _split_hostname(hostname: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6addr]:port`` or a socket directory -> (host, port)."""
    value = hostname.strip()
    if not value:
        raise ConfigurationError("db_hostname must not be empty")
    if value.startswith("/"):
        # a socket directory; the original README's f"{host}:{port}" appends the port
        directory, sep, port_text = value.rpartition(":")
        if sep and port_text.isdigit() and 0 < int(port_text) < 65536:
            return directory, int(port_text)
        return value, None
    host, port = value, ""
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            raise ConfigurationError(f"db_hostname {hostname!r}: unclosed '['")
        host, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigurationError(f"db_hostname {hostname!r}: expected ':port' after ']'")
            port = rest[1:]
    elif value.count(":") == 1:
        host, port = value.split(":")
    if not port:
        return host, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"db_hostname {hostname!r}: port {port!r} is not a port number")
    return host, int(port)


def _check_prefix(db_url_prefix: str | None) -> None:
    if db_url_prefix is not None and db_url_prefix not in _URL_PREFIXES:
        raise ConfigurationError(
            f"db_url_prefix {db_url_prefix!r} is not supported: use one of "
            + ", ".join(_URL_PREFIXES)
            + " (tapdb_core always connects with psycopg 3)"
        )


def _build_url(
    db_url: str | None,
    db_hostname: str | None,
    db_user: str | None,
    db_pass: str | None,
    db_name: str | None,
) -> URL:
    if db_url:
        return make_url(normalise_url(db_url))
    if db_hostname is None and db_user is None and db_pass is None and db_name is None:
        # Nothing given: the active environment's config (which honours DATABASE_URL).
        return make_url(load_config().url())
    # Components given: missing ones come from the active environment's config.
    cfg = load_config() if None in (db_hostname, db_user, db_pass, db_name) else None

    def setting(given: str | None, field: str) -> str | None:
        if given is not None:
            return given
        return cfg.get(field) if cfg is not None else None

    if db_hostname is not None:
        host, port = _split_hostname(db_hostname)
    else:
        config = cfg if cfg is not None else load_config()
        host, port = config.host, config.port
    query: dict[str, str] = {}
    host_arg: str | None = host
    port_arg: int | None = port
    if host.startswith("/"):  # unix socket directory: libpq takes it as a parameter
        query["host"] = host
        if port is not None:
            query["port"] = str(port)
        host_arg = port_arg = None
    return URL.create(
        _DRIVER,
        username=setting(db_user, "user"),
        password=setting(db_pass, "password") or None,
        host=host_arg,
        port=port_arg,
        database=setting(db_name, "database"),
        query=query,
    )


# -- writing changes back -----------------------------------------------------------


def _rebased(
    current: Mapping[str, Any], old: Mapping[str, Any], new: Mapping[str, Any], *, depth: int = 0
) -> dict[str, Any]:
    """``current`` with the changes ``old`` -> ``new`` applied.

    Changes are taken per top-level key and, inside ``properties``, per property,
    so a write-back does not undo what others changed meanwhile in keys this
    object did not touch (an action's execution count, another property).
    """
    result = copy.deepcopy(dict(current))
    for key in old.keys() - new.keys():
        result.pop(key, None)
    for key, value in new.items():
        before = old.get(key)
        if key in old and json_equal(before, value):
            continue
        here = result.get(key)
        if (
            depth == 0
            and key == "properties"
            and isinstance(value, Mapping)
            and isinstance(before, Mapping)
            and isinstance(here, Mapping)
        ):
            result[key] = _rebased(here, before, value, depth=1)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _write_json_addl(conn: Connection, base: Instance, wanted: Mapping[str, Any]) -> Instance:
    """Apply the changes base.json_addl -> wanted to the live row (locked, validated, audited)."""
    inputcheck.check_json("/json_addl", wanted)
    with translated():
        row = conn.execute(
            # NO KEY UPDATE, as instances.update_properties: foreign-key checks are not blocked
            select(*action_sets.instance_columns())
            .where(gi.c.uuid == base.uuid, gi.c.is_deleted.is_(False))
            .with_for_update(key_share=True, of=gi)
        ).one_or_none()
        if row is None:
            raise InstanceNotFoundError(f"instance {base.euid} not found")
        current = action_sets.instance(conn, row)
        merged = _rebased(current.json_addl, base.json_addl, wanted)
        if json_equal(merged, current.json_addl):
            return current
        template = templates.templates_by_uuid(conn, [current.template_uuid])[current.template_uuid]
        instances.lock_templates(conn, [template])
        validate_json_addl(template, merged, where=f"instance {current.euid}")
        row = conn.execute(
            update(gi)
            .where(gi.c.uuid == current.uuid)
            .values(json_addl=merged)
            .returning(*action_sets.instance_columns())
        ).one()
    return action_sets.instance(conn, row)


def _check_status(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(
            "bstatus must be a non-empty string", [Violation(path="/bstatus", message=repr(value))]
        )
    return value


# -- objects --------------------------------------------------------------------------


def _open_session(obj: object, session: Connection | None) -> Connection:
    if session is None or session.closed:
        raise DetachedInstanceError(
            f"{obj!r} is not attached to an open session: pass it to session.add() "
            "(or to a class API call) in an open session first"
        )
    return session


def _instance_by_uuid(conn: Connection, uuid: int) -> Instance:
    with translated():
        row = conn.execute(
            select(*action_sets.instance_columns()).where(gi.c.uuid == uuid)
        ).one_or_none()
    if row is None:  # pragma: no cover - edges keep their ends (foreign keys, soft delete)
        raise InstanceNotFoundError(f"instance with uuid {uuid} not found")
    return action_sets.instance(conn, row)


_INSTANCE_SETTABLE: Final = frozenset({"bstatus", "json_addl", "properties"})


class InstanceObject:
    """An instance as the original's ORM object: ``bstatus``, ``json_addl`` and
    ``properties`` can be changed (in place too: ``obj.properties["x"] = 1``);
    other columns are read-only. Changes are pending until written back.

    Equal to another :class:`InstanceObject` of the same row.
    """

    __slots__ = ("_json_addl", "_session", "_status", "_value")

    _value: Instance
    _status: str | None
    _json_addl: dict[str, Any] | None
    _session: Connection | None

    def __init__(self, value: Instance, session: Connection | None = None) -> None:
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "_status", None)
        object.__setattr__(self, "_json_addl", None)
        object.__setattr__(self, "_session", session)

    def __setattr__(self, name: str, value: object) -> None:
        if name not in _INSTANCE_SETTABLE:
            raise AttributeError(
                f"{name!r} of an instance cannot be changed here; bstatus, json_addl and "
                "properties can (other changes go through tapdb_core.instances)"
            )
        object.__setattr__(self, name, value)

    # -- the frozen value and the read-only columns ----------------------------------

    @property
    def value(self) -> Instance:
        """The frozen instance as last read or written (pending changes not included)."""
        return self._value

    @property
    def uuid(self) -> int:
        return self._value.uuid

    @property
    def euid(self) -> str:
        return self._value.euid

    @property
    def name(self) -> str:
        return self._value.name

    @property
    def polymorphic_discriminator(self) -> str:
        return self._value.polymorphic_discriminator

    @property
    def category(self) -> str:
        return self._value.category

    @property
    def type(self) -> str:
        return self._value.type

    @property
    def subtype(self) -> str:
        return self._value.subtype

    @property
    def version(self) -> str:
        return self._value.version

    @property
    def template_uuid(self) -> int:
        return self._value.template_uuid

    @property
    def template_code(self) -> str:
        return self._value.template_code

    @property
    def is_singleton(self) -> bool:
        return self._value.is_singleton

    @property
    def is_deleted(self) -> bool:
        return self._value.is_deleted

    @property
    def created_dt(self) -> Any:
        return self._value.created_dt

    @property
    def modified_dt(self) -> Any:
        return self._value.modified_dt

    # -- what can change -------------------------------------------------------------

    @property
    def bstatus(self) -> str:
        return self._value.bstatus if self._status is None else self._status

    @bstatus.setter
    def bstatus(self, value: str) -> None:
        object.__setattr__(self, "_status", _check_status(value))

    @property
    def json_addl(self) -> dict[str, Any]:
        """This object's own copy: change it in place or assign a new mapping."""
        if self._json_addl is None:
            object.__setattr__(self, "_json_addl", copy.deepcopy(self._value.json_addl))
        assert self._json_addl is not None
        return self._json_addl

    @json_addl.setter
    def json_addl(self, value: Mapping[str, Any]) -> None:
        if not isinstance(value, Mapping):
            raise ValidationError(
                "json_addl must be an object",
                [Violation(path="/json_addl", message=type(value).__name__)],
            )
        object.__setattr__(self, "_json_addl", copy.deepcopy(dict(value)))

    @property
    def properties(self) -> dict[str, Any]:
        """``json_addl["properties"]`` (this object's copy, changeable in place)."""
        addl = self.json_addl
        props = addl.get("properties")
        if not isinstance(props, dict):
            props = addl["properties"] = {}
        return props

    @properties.setter
    def properties(self, value: Mapping[str, Any]) -> None:
        if not isinstance(value, Mapping):
            raise ValidationError(
                "properties must be an object",
                [Violation(path="/properties", message=type(value).__name__)],
            )
        self.json_addl["properties"] = copy.deepcopy(dict(value))

    @property
    def is_modified(self) -> bool:
        """True when there are changes not written back yet."""
        return (self._status is not None and self._status != self._value.bstatus) or (
            self._json_addl is not None and not json_equal(self._json_addl, self._value.json_addl)
        )

    # -- relationships (lazy, read-only) ---------------------------------------------

    @property
    def parent_of_lineages(self) -> tuple[LineageObject, ...]:
        """Live edges from this instance to live children, oldest first."""
        return self._edges(child_side=False)

    @property
    def child_of_lineages(self) -> tuple[LineageObject, ...]:
        """Live edges from live parents to this instance, oldest first."""
        return self._edges(child_side=True)

    @property
    def template(self) -> Template:
        conn = _open_session(self, self._session)
        uuid = self._value.template_uuid
        return templates.templates_by_uuid(conn, [uuid])[uuid]

    def _edges(self, *, child_side: bool) -> tuple[LineageObject, ...]:
        conn = _open_session(self, self._session)
        mine, theirs = (
            (gl.c.child_instance_uuid, "parent_instance_uuid")
            if child_side
            else (gl.c.parent_instance_uuid, "child_instance_uuid")
        )
        with translated():
            edges = [
                Lineage.from_row(r)
                for r in conn.execute(
                    select(gl)
                    .where(mine == self._value.uuid, gl.c.is_deleted.is_(False))
                    .order_by(gl.c.uuid)
                )
            ]
            wanted = {getattr(e, theirs) for e in edges}
            # soft-deleted ends are left out, as walks leave them out
            others = {
                value.uuid: value
                for value in action_sets.instances(
                    conn,
                    conn.execute(
                        select(*action_sets.instance_columns()).where(
                            gi.c.uuid.in_(wanted), gi.c.is_deleted.is_(False)
                        )
                    ),
                )
            }
        found = []
        for edge in edges:
            other = others.get(getattr(edge, theirs))
            if other is not None:
                wrapped = _wrap(conn, other)
                parent, child = (wrapped, self) if child_side else (self, wrapped)
                found.append(LineageObject(edge, conn, parent=parent, child=child))
        return tuple(found)

    # -- bookkeeping -----------------------------------------------------------------

    def _bind(self, session: Connection) -> None:
        object.__setattr__(self, "_session", session)

    def _replace_value(self, value: Instance) -> None:
        if isinstance(self._session, TapdbSession):
            self._session._remember(self)  # restored if the transaction rolls back
        object.__setattr__(self, "_value", value)

    def _rebase(self, value: Instance) -> None:
        """Take ``value`` as the stored state, keeping the changes not written back."""
        old = self._value
        if self._status is not None and self._status == value.bstatus:
            object.__setattr__(self, "_status", None)
        if self._json_addl is not None:
            if json_equal(self._json_addl, old.json_addl):
                object.__setattr__(self, "_json_addl", None)
            else:
                object.__setattr__(
                    self, "_json_addl", _rebased(value.json_addl, old.json_addl, self._json_addl)
                )
        self._replace_value(value)

    def _discard(self) -> None:
        object.__setattr__(self, "_status", None)
        object.__setattr__(self, "_json_addl", None)

    def _write_back(self, conn: Connection) -> None:
        """Write the pending changes through ``conn`` (json_addl first, then bstatus)."""
        if not self.is_modified:
            return
        value = self._value
        if self._json_addl is not None and not json_equal(self._json_addl, value.json_addl):
            value = _write_json_addl(conn, value, self._json_addl)
            object.__setattr__(self, "_json_addl", None)
        if self._status is not None and self._status != value.bstatus:
            value = instances.set_status(conn, value.euid, self._status)
        object.__setattr__(self, "_status", None)
        self._replace_value(value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InstanceObject):
            return NotImplemented
        return self._value.uuid == other._value.uuid

    def __hash__(self) -> int:
        return hash(("instance", self._value.uuid))

    def __repr__(self) -> str:
        changed = ", modified" if self.is_modified else ""
        return f"<instance {self.euid} {self.name!r} {self.template_code}{changed}>"


class LineageObject:
    """An edge parent -> child, read-only; ``parent_instance`` / ``child_instance``
    are looked up when read (or known already, when the edge came from one of them)."""

    __slots__ = ("_child", "_parent", "_session", "_value")

    def __init__(
        self,
        value: Lineage,
        session: Connection | None = None,
        *,
        parent: InstanceObject | None = None,
        child: InstanceObject | None = None,
    ) -> None:
        self._value = value
        self._session = session
        self._parent = parent
        self._child = child

    @property
    def value(self) -> Lineage:
        return self._value

    @property
    def uuid(self) -> int:
        return self._value.uuid

    @property
    def euid(self) -> str:
        return self._value.euid

    @property
    def name(self) -> str:
        return self._value.name

    @property
    def relationship_type(self) -> str:
        return self._value.relationship_type

    @property
    def parent_instance_uuid(self) -> int:
        return self._value.parent_instance_uuid

    @property
    def child_instance_uuid(self) -> int:
        return self._value.child_instance_uuid

    @property
    def parent_type(self) -> str | None:
        return self._value.parent_type

    @property
    def child_type(self) -> str | None:
        return self._value.child_type

    @property
    def json_addl(self) -> dict[str, Any]:
        """A copy: edges are read-only here."""
        return copy.deepcopy(self._value.json_addl)

    @property
    def is_deleted(self) -> bool:
        return self._value.is_deleted

    @property
    def created_dt(self) -> Any:
        return self._value.created_dt

    @property
    def parent_instance(self) -> InstanceObject:
        if self._parent is None:
            conn = _open_session(self, self._session)
            self._parent = _wrap(conn, _instance_by_uuid(conn, self._value.parent_instance_uuid))
        return self._parent

    @property
    def child_instance(self) -> InstanceObject:
        if self._child is None:
            conn = _open_session(self, self._session)
            self._child = _wrap(conn, _instance_by_uuid(conn, self._value.child_instance_uuid))
        return self._child

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LineageObject):
            return NotImplemented
        return self._value.uuid == other._value.uuid

    def __hash__(self) -> int:
        return hash(("lineage", self._value.uuid))

    def __repr__(self) -> str:
        return f"<lineage {self.euid} {self.name} ({self.relationship_type})>"


def _wrap(session: Connection, value: Instance) -> InstanceObject:
    """The session's object for this row (one per row in a :class:`TapdbSession`)."""
    if isinstance(session, TapdbSession):
        return session._object_for(value)
    return InstanceObject(value, session)


def _adopt(session: Connection, obj: InstanceObject) -> None:
    """Bind ``obj`` to ``session`` (tracked there when it is a :class:`TapdbSession`)."""
    if isinstance(session, TapdbSession):
        session.add(obj)
    else:
        obj._bind(session)


def _ref(session: Connection, value: InstanceObject | Instance | str) -> Instance | str:
    if isinstance(value, InstanceObject):
        _adopt(session, value)
        return value.euid
    return value


# -- sessions ---------------------------------------------------------------------------


class TapdbSession(Connection):
    """A connection with the ORM session's transaction methods.

    Every transaction it begins (the first, and each one after ``commit()`` or
    ``rollback()``, begun by the next statement) gets the audit user. Objects
    the class API returns through it, and objects given to :meth:`add`, are
    tracked: :meth:`flush` (and :meth:`commit`, which flushes first) writes
    their pending changes back; :meth:`rollback` discards them. Being a
    :class:`~sqlalchemy.Connection`, it goes to every typed function as it is.
    """

    def __init__(self, engine: Engine, audit_user: str | None) -> None:
        super().__init__(engine)
        self._tapdb_audit_user = audit_user
        self._tapdb_objects: dict[int, InstanceObject] = {}
        #: objects whose stored state this transaction changed, with the state before it
        self._tapdb_before: dict[int, tuple[InstanceObject, Instance]] = {}

    def begin(self) -> RootTransaction:
        transaction = super().begin()
        start_transaction(self, self._tapdb_audit_user)
        return transaction

    @property
    def audit_user(self) -> str | None:
        return self._tapdb_audit_user

    def set_audit_user(self, user: str | None) -> None:
        """Name the audit user of this and every later transaction of the session."""
        self._tapdb_audit_user = user
        if self.in_transaction():
            from tapdb_core.db import set_audit_user

            set_audit_user(self, user)

    def add(self, obj: InstanceObject | LineageObject) -> None:
        """Track ``obj`` here: its pending changes are written at flush / commit."""
        if isinstance(obj, LineageObject):
            obj._session = self  # read-only: nothing to write back
            return
        if not isinstance(obj, InstanceObject):
            raise ValidationError(
                f"session.add() takes objects the class API returned, not {type(obj).__name__}: "
                "create objects with InstanceFactory (tapdb_core has no ORM classes)",
                [Violation(path="/instance", message=type(obj).__name__)],
            )
        obj._bind(self)
        self._tapdb_objects[obj.uuid] = obj

    def add_all(self, objects: Iterable[InstanceObject | LineageObject]) -> None:
        for obj in objects:
            self.add(obj)

    def flush(self) -> None:
        """Write the pending changes of the tracked objects, in the order they were tracked."""
        for obj in list(self._tapdb_objects.values()):
            obj._write_back(self)

    def refresh(self, obj: InstanceObject) -> None:
        """Read ``obj`` again from the database, dropping its pending changes."""
        self.add(obj)
        obj._discard()
        obj._rebase(instances.get(self, obj.euid, include_deleted=True))

    def commit(self) -> None:
        with translated():
            self.flush()
            super().commit()
        self._tapdb_before.clear()

    def rollback(self) -> None:
        """Roll back; the objects show their state from before the transaction again
        (pending changes discarded, as the ORM's rollback expires them)."""
        super().rollback()
        self._forget_transaction()

    def close(self) -> None:
        self._forget_transaction()
        self._tapdb_objects.clear()
        super().close()

    def _remember(self, obj: InstanceObject) -> None:
        self._tapdb_before.setdefault(id(obj), (obj, obj.value))

    def _forget_transaction(self) -> None:
        for obj, before in self._tapdb_before.values():
            object.__setattr__(obj, "_value", before)
        self._tapdb_before.clear()
        for obj in self._tapdb_objects.values():
            obj._discard()

    def _object_for(self, value: Instance) -> InstanceObject:
        obj = self._tapdb_objects.get(value.uuid)
        if obj is None:
            obj = InstanceObject(value, self)
            self._tapdb_objects[value.uuid] = obj
        else:
            obj._rebase(value)
        return obj

    def _end(self, commit: bool) -> None:
        """Commit (flushing first) or roll back without the ORM-style bookkeeping after it."""
        if commit:
            self.flush()
            Connection.commit(self)
            self._tapdb_before.clear()
        else:
            Connection.rollback(self)
            self._forget_transaction()


# -- the original's classes -------------------------------------------------------------


class TAPDBConnection:
    """An engine (pooled, pre-ping) plus the two transaction patterns of the original.

    ``db_url`` wins over the components; components not given (``db_hostname``
    as ``host:port``, ``db_user``, ``db_pass``, ``db_name``) come from the active
    environment's config (``tapdb_core.config.load_config``); with no argument at
    all the whole URL does. ``db_url_prefix`` (``postgresql://``,
    ``postgres://``, ``postgresql+psycopg2://``) is accepted for the original's
    sake: every URL here uses psycopg 3. ``echo_sql`` defaults to ``$ECHO_SQL``
    (true/1/yes), ``app_username`` (the audit user) to ``$USER``. Everything
    after ``db_url`` is keyword-only: the original's positional order differs
    (``db_pass`` before ``db_user``), so positional calls could swap them silently.
    """

    def __init__(
        self,
        db_url: str | None = None,
        *,
        db_url_prefix: str | None = None,
        db_hostname: str | None = None,
        db_user: str | None = None,
        db_pass: str | None = None,
        db_name: str | None = None,
        pool_size: int = 5,
        max_overflow: int = 10,
        pool_timeout: float = 30,
        pool_recycle: int = 1800,
        echo_sql: bool | None = None,
        app_username: str | None = None,
    ) -> None:
        _check_prefix(db_url_prefix)
        if echo_sql is None:
            echo_sql = os.environ.get("ECHO_SQL", "").strip().lower() in _TRUE_STRINGS
        self.app_username: str = app_username or _env_user()
        self.url: URL = _build_url(db_url, db_hostname, db_user, db_pass, db_name)
        engine = create_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_recycle=pool_recycle,
            pool_pre_ping=True,
            echo=echo_sql,
        )
        self.database = Database(engine=engine, app_username=self.app_username)

    @property
    def engine(self) -> Engine:
        return self.database.engine

    def __repr__(self) -> str:
        return f"TAPDBConnection({self.url.render_as_string(hide_password=True)!r})"

    def get_session(self) -> TapdbSession:
        """A session with a transaction begun and the audit user set for it.

        The caller commits or rolls back and closes it; after ``commit()`` or
        ``rollback()`` the next statement begins a new transaction, with the
        audit user set again.
        """
        self.database.ensure_schema()
        with translated():
            session = TapdbSession(self.engine, self.app_username)
            try:
                session.begin()
            except BaseException:
                session.close()
                raise
        return session

    def set_audit_user(self, session: Connection, user: str | None = None) -> None:
        """(Re)name the audit user of the session's current transaction (and, for a
        :class:`TapdbSession`, of its later ones)."""
        name = user or self.app_username
        if isinstance(session, TapdbSession):
            session.set_audit_user(name)
        else:
            from tapdb_core.db import set_audit_user

            set_audit_user(session, name)

    @contextmanager
    def session_scope(self, commit: bool = False) -> Iterator[TapdbSession]:
        """A session whose transaction has the audit user set: flushed and committed
        on success only when ``commit`` is true, rolled back otherwise (and on any
        error); always closed. Driver errors we understand surface as tapdb errors."""
        session = self.get_session()
        try:
            with translated():
                yield session
                session._end(commit)
        except BaseException:
            try:
                Connection.rollback(session)
            except Exception:  # noqa: S110 - the original error matters more
                pass
            raise
        finally:
            session.close()

    def reflect_tables(self) -> Mapping[str, Table]:
        """The tables by name, as SQLAlchemy Core :class:`~sqlalchemy.Table` objects.

        The original reflected the database into an automap base of ORM classes;
        here the tables are declared (``tapdb_core.tables``) and the database is
        checked to be at the schema revision they describe.
        """
        self.database.ensure_schema()
        return metadata.tables

    def close(self) -> None:
        """Dispose of the engine's pooled connections."""
        self.database.dispose()

    def __enter__(self) -> TAPDBConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class TemplateManager:
    """Template lookups by code or EUID (soft-deleted templates excluded), cached.

    As in the original, lookups return None when there is no such template (an
    EUID that cannot exist included); a malformed template code still raises
    :class:`~tapdb_core.errors.TemplateCodeError`.
    """

    def get_template(self, session: Connection, template_code: str) -> Template | None:
        try:
            return templates.get_template(session, template_code)
        except TemplateNotFoundError:
            return None

    def get_template_by_euid(self, session: Connection, euid: str) -> Template | None:
        try:
            return templates.get_template_by_euid(session, euid)
        except (TemplateNotFoundError, EUIDError):
            return None

    def list_templates(
        self,
        session: Connection,
        category: str | None = None,
        type_: str | None = None,
        include_deleted: bool = False,
        *,
        subtype: str | None = None,
    ) -> list[Template]:
        return templates.list_templates(
            session,
            category=category,
            type=type_,
            subtype=subtype,
            include_deleted=include_deleted,
        )

    @staticmethod
    def template_code_from_template(template: Template) -> str:
        """``category/type/subtype/version/``."""
        return template.template_code

    def clear_cache(self) -> None:
        """Forget cached templates (the cache is shared by every manager)."""
        templates.clear_cache()


class InstanceFactory:
    """Create and link instances (errors are ``ValueError`` subclasses, as in the original)."""

    def __init__(self, template_manager: TemplateManager | None = None) -> None:
        self.template_manager = template_manager or TemplateManager()

    def create_instance(
        self,
        session: Connection,
        template_code: str,
        name: str,
        properties: Mapping[str, Any] | None = None,
        create_children: bool = True,
    ) -> InstanceObject:
        """Create an instance and, from its template's layouts, its children."""
        created = instances.create(
            session, template_code, name, properties, create_children=create_children
        )
        return _wrap(session, created)

    def link_instances(
        self,
        session: Connection,
        parent: InstanceObject | Instance | str,
        child: InstanceObject | Instance | str,
        relationship_type: str = "generic",
    ) -> LineageObject:
        """Add the edge parent -> child (named ``<parent euid>-><child euid>``)."""
        edge = lineage.link(
            session,
            _ref(session, parent),
            _ref(session, child),
            relationship_type=relationship_type,
        )
        return LineageObject(
            edge,
            session,
            parent=parent if isinstance(parent, InstanceObject) else None,
            child=child if isinstance(child, InstanceObject) else None,
        )

    def get_or_create_singleton_instance(
        self,
        session: Connection,
        template_code: str,
        name: str,
        properties: Mapping[str, Any] | None = None,
    ) -> InstanceObject:
        """The live instance of a singleton template, created when there is none."""
        found = instances.get_or_create_singleton(session, template_code, name, properties)
        return _wrap(session, found)


class ActionDispatcher(actions.ActionDispatcher):
    """:class:`tapdb_core.actions.ActionDispatcher` for the class API.

    Handlers get an :class:`InstanceObject` of the claimed (locked) row, so the
    original's ``instance.bstatus = new_status`` works: when the handler
    succeeds, its changes are written back inside the action's SAVEPOINT,
    audited under the action's user, before the execution is counted; when it
    fails, nothing is written. ``instance`` may be an :class:`InstanceObject`
    (refreshed from the database after a successful action, as the original's
    handler changed that very object), an ``Instance`` or an EUID.
    """

    def execute_action(
        self,
        session: Connection,
        instance: InstanceObject | Instance | str,
        action_group: str,
        action_key: str,
        action_ds: Mapping[str, Any] | None = None,
        captured_data: Mapping[str, Any] | None = None,
        create_action_record: bool = True,
        user: str | None = None,
    ) -> dict[str, Any]:
        result = super().execute_action(
            session,
            _ref(session, instance),
            action_group,
            action_key,
            action_ds,
            captured_data,
            create_action_record,
            user,
        )
        if isinstance(instance, InstanceObject) and result.get("status") != "error":
            instance._rebase(instances.get(session, instance.euid, include_deleted=True))
        return result

    def _call_handler(
        self,
        handler: Callable[..., Any],
        session: Connection,
        target: Instance,
        action_ds: dict[str, Any],
        captured_data: dict[str, Any],
    ) -> Any:
        # Not the session's tracked object: only the handler's changes belong to this SAVEPOINT.
        obj = InstanceObject(target, session)
        result = handler(obj, action_ds, captured_data)
        if isinstance(result, Mapping) and result.get("status") != "error":
            obj._write_back(session)
        return result
