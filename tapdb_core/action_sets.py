"""Action definitions stored once and referenced by instances (revision 0006).

An instance's ``json_addl`` as everybody sees it -- the library's
:class:`~tapdb_core.values.Instance`, the audit trail, ``tapdb object show``
-- still holds ``action_groups``. In the database, a new instance stores its
own keys (properties, ...) and ``action_set_digest``, the SHA-256 of the
canonical JSON of its ``action_groups``, which live once in the immutable
``tapdb_action_set``. The first change of its action state (an execution
counted) gives the instance its own copy (:mod:`tapdb_core.actions`).

This module splits documents for writing (:class:`Splitter`) and puts them
back together for reading: :func:`instances` in Python (each distinct set is
fetched and decoded once per process), :func:`effective_json_addl` /
:func:`effective_sql` (and the SQL function ``tapdb_instance_json_addl``) in
the database.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import marshal
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, cast

import attrs
from sqlalchemy import ColumnElement, Connection, Table, case, func, select
from sqlalchemy.dialects.postgresql import JSONB

from tapdb_core import template_cache
from tapdb_core.errors import TapdbError
from tapdb_core.layouts import copy_json
from tapdb_core.tables import action_set
from tapdb_core.tables import generic_instance as gi
from tapdb_core.values import Instance

__all__ = [
    "ACTION_GROUPS",
    "SetRow",
    "Splitter",
    "digest",
    "effective_json_addl",
    "effective_sql",
    "instance",
    "instance_columns",
    "instance_sql_columns",
    "instances",
]

ACTION_GROUPS: Final = "action_groups"

# Inserts a tree's distinct action sets in the statement that inserts the
# instances: the instances' foreign-key checks run at the end of that
# statement and see them. A set that exists already is left as it is (it is
# immutable, and equal by its digest).
INSERT_SETS_CTE: Final = """
    WITH tapdb_sets AS (
        INSERT INTO tapdb_action_set (digest, action_groups)
        SELECT s.digest, s.action_groups
          FROM jsonb_to_recordset(CAST(:sets AS jsonb)) AS s(digest text, action_groups jsonb)
        ON CONFLICT (digest) DO NOTHING
    )
"""


# The same for the one set of a one-instance write, from bound values (digest,
# groups as JSON; no recordset): a set that exists already is found by its key
# and its JSON is not even parsed (a generic plan evaluates the cast only for
# a row that gets through).
INSERT_SET_CTE: Final = """
    WITH tapdb_sets AS (
        INSERT INTO tapdb_action_set (digest, action_groups)
        SELECT CAST(:action_set_digest AS text), CAST(:action_groups AS jsonb)
         WHERE CAST(:action_set_digest AS text) IS NOT NULL
           AND NOT EXISTS (SELECT FROM tapdb_action_set s
                            WHERE s.digest = CAST(:action_set_digest AS text))
        ON CONFLICT (digest) DO NOTHING
    )
"""


# Whether the row of a set one write needs is committed, as the statement that
# wrote with it saw it (in its RETURNING): NULL when the statement inserted the
# set itself (not visible to its own snapshot), false when an open transaction
# inserted it (perhaps this one, in an earlier statement or a savepoint: it may
# still roll back), true once the inserting transaction committed. age() is the
# distance from this transaction's id (assigned: the statement inserts), signed
# and across epochs, so the full id of the row's xmin is ours minus its age; a
# permanent (frozen) id reads as the maximum age and is committed; a status the
# server no longer keeps reads as NULL.
SET_COMMITTED_SQL: Final = """
    (SELECT CASE WHEN age(s.xmin) = 2147483647 THEN true
                 ELSE pg_xact_status(CAST(CAST(CAST(CAST(pg_current_xact_id() AS text) AS bigint)
                                               - age(s.xmin) AS text) AS xid8)) = 'committed'
             END
       FROM tapdb_action_set s
      WHERE s.digest = CAST(:action_set_digest AS text))
"""

# Digests whose rows a write saw committed, per database: sets are never
# updated or deleted (triggers refuse), so a write that needs one of them can
# skip the insert. Only a schema taken below revision 0006 and back, or a
# restore, can remove one: the write then fails on its foreign key, the
# database's entries are forgotten and the error is a TransientError.
_committed_lock = threading.Lock()
_committed: dict[str, set[str]] = {}
_COMMITTED_LIMIT: Final = 10_000


def is_committed(conn: Connection, digest: str) -> bool:
    """Whether a write on ``conn`` saw ``digest``'s row committed (see above)."""
    with _committed_lock:
        return digest in _committed.get(template_cache.database_key(conn), ())


def note_committed(conn: Connection, digest: str) -> None:
    key = template_cache.database_key(conn)
    with _committed_lock:
        known = _committed.setdefault(key, set())
        if len(known) >= _COMMITTED_LIMIT:
            known.clear()
        known.add(digest)


def forget_committed(conn: Connection) -> None:
    """Forget every set known committed in ``conn``'s database (one went missing)."""
    with _committed_lock:
        _committed.pop(template_cache.database_key(conn), None)


def digest(groups: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of an ``action_groups`` document."""
    canonical = json.dumps(
        groups, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@attrs.frozen
class SetRow:
    """One ``tapdb_action_set`` row to make sure of."""

    digest: str
    action_groups: Mapping[str, Any]


# Digests (and marshalled copies) of action_groups dicts recently split, by
# identity: plans share one dict per template (tapdb_core.planning), so a plate
# or a stream of single instances hashes its actions once. The memo keeps each
# dict alive, so an id is never reused while its entry exists.
_memo_lock = threading.Lock()
_memo: dict[int, tuple[Mapping[str, Any], str, bytes, str, str]] = {}
_MEMO_LIMIT: Final = 256


def _remembered(groups: Mapping[str, Any]) -> tuple[str, bytes, str, str]:
    """(digest, marshalled copy, the set row as JSON, ``groups`` as JSON) of an
    ``action_groups`` dict."""
    with _memo_lock:
        hit = _memo.get(id(groups))
    if hit is not None and hit[0] is groups:
        return hit[1], hit[2], hit[3], hit[4]
    found = digest(groups)
    marshalled = marshal.dumps(dict(groups))
    groups_json = json.dumps(groups)
    row = f'{{"digest": "{found}", "action_groups": {groups_json}}}'
    with _memo_lock:
        if len(_memo) >= _MEMO_LIMIT:
            _memo.clear()
        _memo[id(groups)] = (groups, found, marshalled, row, groups_json)
    return found, marshalled, row, groups_json


class Splitter:
    """Splits the ``json_addl`` of new instances into what a row stores and a set.

    Documents of one tree or batch mostly share one ``action_groups`` (every
    well of a plate): each distinct one is serialised and hashed once.
    """

    def __init__(self) -> None:
        self._known: dict[str, Mapping[str, Any]] = {}
        self._rows: dict[str, str] = {}

    def split(self, json_addl: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        """(``json_addl`` without ``action_groups``, its set's digest); the
        document unchanged and None when it has no non-empty ``action_groups``."""
        groups = json_addl.get(ACTION_GROUPS)
        if not isinstance(groups, Mapping) or not groups:
            return dict(json_addl), None
        own = {k: v for k, v in json_addl.items() if k != ACTION_GROUPS}
        found, _, row, _ = _remembered(groups)
        self._known.setdefault(found, groups)
        self._rows.setdefault(found, row)
        return own, found

    def split_json(
        self, json_addl: Mapping[str, Any], *, shared: bool = False
    ) -> tuple[str, str | None]:
        """:meth:`split` with the stored part as JSON text. ``shared``: the document
        is one the planner shares across plans (never changed), so its split is
        remembered by identity and done once."""
        if not shared:
            own, found = self.split(json_addl)
            return json.dumps(own), found
        stored = _stored(json_addl)
        if stored.digest is not None and stored.groups is not None:
            self._known.setdefault(stored.digest, stored.groups)
            self._rows.setdefault(stored.digest, stored.set_row)
        return stored.own_json, stored.digest

    def groups_json(self, found: str) -> str:
        """The ``action_groups`` of a set met so far (by its digest), as JSON."""
        return _remembered(self._known[found])[3]

    def sets(self) -> list[SetRow]:
        """Every distinct set met so far."""
        return [SetRow(d, g) for d, g in self._known.items()]

    def sets_json(self) -> str:
        """:meth:`sets` as the JSON :data:`INSERT_SETS_CTE` reads."""
        return "[" + ", ".join(self._rows.values()) + "]"


@attrs.frozen
class _Stored:
    """How a shared document is written and copied (see :func:`_stored`)."""

    own_json: str
    digest: str | None
    groups: Mapping[str, Any] | None
    set_row: str
    marshalled: bytes | None


# The split of documents the planner shares across plans (every well of a
# plate of one template has the same document for its address, plate after
# plate), by identity; an entry keeps its document alive, so an id is not
# reused while it exists.
_docs_lock = threading.Lock()
_docs: dict[int, tuple[Mapping[str, Any], _Stored]] = {}
_DOCS_LIMIT: Final = 4096


def _stored(json_addl: Mapping[str, Any]) -> _Stored:
    with _docs_lock:
        hit = _docs.get(id(json_addl))
    if hit is not None and hit[0] is json_addl:
        return hit[1]
    own, found = Splitter().split(json_addl)
    groups = json_addl.get(ACTION_GROUPS) if found is not None else None
    try:
        marshalled: bytes | None = marshal.dumps(cast(Any, json_addl))
    except ValueError:  # not plain dicts, lists and scalars: copied the slow way
        marshalled = None
    stored = _Stored(
        own_json=json.dumps(own),
        digest=found,
        groups=groups,
        set_row=_remembered(groups)[2] if groups is not None else "",
        marshalled=marshalled,
    )
    with _docs_lock:
        if len(_docs) >= _DOCS_LIMIT:
            _docs.clear()
        _docs[id(json_addl)] = (json_addl, stored)
    return stored


def own_copy(json_addl: Mapping[str, Any], *, shared: bool = False) -> dict[str, Any]:
    """A deep copy of ``json_addl`` for a value handed out: nothing in it is
    shared with the plan, the planner's caches or another value. ``shared``: the
    document is one the planner shares across plans (copied from bytes kept for it)."""
    if shared:
        marshalled = _stored(json_addl).marshalled
        if marshalled is not None:
            # bytes this process marshalled itself (never input)
            copied: dict[str, Any] = marshal.loads(marshalled)  # noqa: S302
            return copied
    groups = json_addl.get(ACTION_GROUPS)
    if not isinstance(groups, Mapping) or not groups:
        return {k: copy_json(v) for k, v in json_addl.items()}
    marshalled_groups = _remembered(groups)[1]
    return {
        # bytes this process marshalled itself (never input)
        k: marshal.loads(marshalled_groups) if k == ACTION_GROUPS else copy_json(v)  # noqa: S302
        for k, v in json_addl.items()
    }


def effective_json_addl(table: Table | Any = gi) -> ColumnElement[Any]:
    """The ``json_addl`` an instance row stands for, as a column expression of
    ``table`` (``generic_instance`` or an alias of it), labelled ``json_addl``.
    For SQL that needs the whole document in the database; the library's own
    reads use :func:`instance_columns` and :func:`instances`."""
    groups = (
        select(action_set.c.action_groups)
        .where(action_set.c.digest == table.c.action_set_digest)
        .scalar_subquery()
    )
    merged = table.c.json_addl.op("||", return_type=JSONB)(
        func.jsonb_build_object(ACTION_GROUPS, groups)
    )
    return case((table.c.action_set_digest.is_(None), table.c.json_addl), else_=merged).label(
        "json_addl"
    )


def effective_sql(alias: str) -> str:
    """SQL text of :func:`effective_json_addl` for hand-written queries over the
    ``generic_instance`` alias ``alias`` (a fixed identifier of the caller's, never input)."""
    if not alias.isidentifier():
        raise ValueError(f"not an SQL alias: {alias!r}")
    return (
        f"CASE WHEN {alias}.action_set_digest IS NULL THEN {alias}.json_addl"
        f" ELSE {alias}.json_addl || jsonb_build_object('action_groups',"
        f" (SELECT s.action_groups FROM tapdb_action_set s"
        f" WHERE s.digest = {alias}.action_set_digest)) END"
    )


# -- reading instances -------------------------------------------------------------------
#
# Rows are read as stored (own json_addl and the digest): a set's JSON crosses the
# wire and is decoded once per process, not once per row. Sets never change, so
# the decoded copy kept here (as marshal bytes: a fresh, independent copy per
# instance costs a few microseconds) is never stale.

_sets_lock = threading.Lock()
_sets: dict[tuple[str, str], bytes] = {}
#: distinct sets remembered per process (templates x versions: usually dozens)
_SETS_LIMIT: Final = 10_000


def instance_columns(table: Table | Any = gi) -> Sequence[ColumnElement[Any]]:
    """Every column of ``table`` (``generic_instance`` or an alias), the stored
    ``json_addl`` and ``action_set_digest`` included: turn such rows into values
    with :func:`instances` / :func:`instance`."""
    return list(table.c)


def instance_sql_columns(alias: str) -> str:
    """SQL select-list of every instance column of ``alias`` (see :func:`instance_columns`)."""
    if not alias.isidentifier():
        raise ValueError(f"not an SQL alias: {alias!r}")
    return ", ".join(f"{alias}.{c.name}" for c in gi.c)


_db_key = template_cache.database_key


def _known_sets(conn: Connection, digests: set[str]) -> dict[str, bytes]:
    """The marshalled ``action_groups`` of each digest, read once per process."""
    key = _db_key(conn)
    with _sets_lock:
        found = {d: _sets[(key, d)] for d in digests if (key, d) in _sets}
    missing = digests - found.keys()
    if missing:
        rows = conn.execute(
            select(action_set.c.digest, action_set.c.action_groups).where(
                action_set.c.digest.in_(sorted(missing))
            )
        ).all()
        fetched = {r.digest: marshal.dumps(r.action_groups) for r in rows}
        if missing - fetched.keys():  # pragma: no cover - the foreign key forbids it
            raise TapdbError(f"action sets missing: {', '.join(sorted(missing - fetched.keys()))}")
        with _sets_lock:
            if len(_sets) + len(fetched) > _SETS_LIMIT:
                _sets.clear()
            _sets.update({(key, d): b for d, b in fetched.items()})
        found.update(fetched)
    return found


_INSTANCE_FIELDS: Final = tuple(f.name for f in attrs.fields(Instance))


def _value(mapping: Mapping[str, Any], sets: Mapping[str, bytes]) -> Instance:
    digest = mapping.get("action_set_digest")
    if digest is None:
        return Instance.from_row(mapping)
    # bytes this process marshalled itself (never input)
    groups = marshal.loads(sets[digest])  # noqa: S302
    fields = {name: mapping[name] for name in _INSTANCE_FIELDS}
    fields["json_addl"] = {**mapping["json_addl"], ACTION_GROUPS: groups}
    # the row's columns have the fields' types already (psycopg decoded them)
    return Instance(**fields)


def _mapping(row: Any) -> Mapping[str, Any]:
    mapping = getattr(row, "_mapping", row)
    if not isinstance(mapping, Mapping):
        raise TypeError(f"expected a row or mapping, got {type(row).__name__}")
    return mapping


def instances(conn: Connection, rows: Iterable[Any]) -> list[Instance]:
    """Values of instance rows read with :func:`instance_columns` (extra columns
    are ignored), each with its whole ``json_addl``."""
    with collector_paused():
        mappings = [_mapping(r) for r in rows]
        digests = {m.get("action_set_digest") for m in mappings} - {None}
        sets = _known_sets(conn, {str(d) for d in digests}) if digests else {}
        return [_value(m, sets) for m in mappings]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while many values are built.

    Thousands of instances of ~100 objects each (their action definitions):
    the collector would run over and over on objects that are all alive
    (measured: half the time of a 5,000-node walk), and none of them can form
    a cycle. It is switched back on afterwards if it was on.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def instance(conn: Connection, row: Any) -> Instance:
    """The value of one instance row (see :func:`instances`)."""
    return instances(conn, [row])[0]
