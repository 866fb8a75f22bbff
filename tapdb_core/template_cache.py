"""The process-wide template cache, kept honest across processes.

Entries are per database (URL without password). The database keeps a
generation counter that every statement writing ``generic_template`` moves
(revision 0004); each transaction reads it once (``Database.begin`` reads it in
the same round trip that sets the audit user) and the database's entries are
dropped when it moved. So a template changed by another process, another
service or ``psql`` is never served from the cache by a later transaction.
Writes through this process clear the cache at once, and a transaction that
wrote templates bypasses it (it may still roll back).

A transaction that started before a change may still get the older template:
instance writes prove at write time that the template they validated against is
still the live row (``instances.lock_templates``), so nothing invalid is stored.

Writes that prove their templates themselves may skip the generation read:
:func:`cached_assuming` serves an entry under the generation last seen for the
database and records it as assumed; the write then refuses to store anything
unless the database's generation is still that one (``instances.write_plan``),
and the caller plans again from the live rows. A single instance is then one
round trip instead of two.
"""

from __future__ import annotations

import threading
import weakref
from typing import Final

from sqlalchemy import Connection, Engine, text

from tapdb_core.values import Template

_lock = threading.Lock()
_entries: dict[tuple[str, str], Template] = {}
#: the generation each database's entries were read under
_generations: dict[str, int] = {}

_WRITE_MARK: Final = "tapdb_templates_written_in"
_SEEN: Final = "tapdb_template_generation_seen"
_ASSUMED: Final = "tapdb_template_generation_assumed"
_READ_GENERATION: Final = text("SELECT generation FROM tapdb_template_generation WHERE id = 1")


#: moves whenever any entry is added or dropped, or a database's generation
#: moves: while it stays, every look-up served from the entries gives the same
#: objects (see :meth:`WriteLookup.token`)
_epoch = 0


def _moved() -> None:
    """Called with ``_lock`` held after the entries or generations changed."""
    global _epoch
    _epoch += 1


def clear() -> None:
    """Forget every cached template."""
    with _lock:
        _entries.clear()
        _generations.clear()
        _moved()


#: each engine's database key, rendered once (it was ~10 us per template lookup)
_db_keys: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


def database_key(conn: Connection) -> str:
    """The key of the connection's database in process-wide caches (URL without password)."""
    engine = conn.engine
    key = _db_keys.get(engine)
    if key is None:
        key = _db_keys[engine] = engine.url.render_as_string(hide_password=True)
    return key


_db_key = database_key


def note_generation(conn: Connection, generation: int) -> None:
    """Record the generation this transaction sees (read by the caller already)."""
    conn.info[_SEEN] = (conn.get_transaction(), generation)


def _generation(conn: Connection) -> int:
    seen = conn.info.get(_SEEN)
    if seen is not None and seen[0] is conn.get_transaction():
        return int(seen[1])
    generation = int(conn.execute(_READ_GENERATION).scalar_one())
    note_generation(conn, generation)
    return generation


def _usable(conn: Connection) -> int | None:
    """The generation to use the cache under, or None to bypass it."""
    if conn.info.get(_WRITE_MARK) is conn.get_transaction():
        return None
    generation = _generation(conn)
    key = _db_key(conn)
    with _lock:
        known = _generations.get(key)
        if known is None or generation > known:
            for entry in [k for k in _entries if k[0] == key]:
                del _entries[entry]
            _generations[key] = generation
            _moved()
        elif generation < known:
            # an older snapshot than the cache's: read the database directly
            return None
    return generation


def mark_written(conn: Connection) -> None:
    """This transaction wrote templates: bypass the cache for it, and clear it."""
    conn.info[_WRITE_MARK] = conn.get_transaction()
    clear()


def remember(conn: Connection, key: str, template: Template) -> Template:
    generation = _usable(conn)
    if generation is not None:
        with _lock:
            if _generations.get(_db_key(conn)) == generation:
                _entries[(_db_key(conn), key)] = template
                _moved()
    return template


def cached(conn: Connection, key: str) -> Template | None:
    if _usable(conn) is None:
        return None
    with _lock:
        return _entries.get((_db_key(conn), key))


def cached_assuming(conn: Connection, key: str) -> Template | None:
    """An entry for a write that proves :func:`assumed_generation` itself.

    In a transaction that has not read the generation yet, the entry is served
    under the generation last seen for this database without reading it, and
    that generation is recorded as assumed. Otherwise as :func:`cached`.
    """
    transaction = conn.get_transaction()
    if conn.info.get(_WRITE_MARK) is transaction:
        return None
    seen = conn.info.get(_SEEN)
    if seen is not None and seen[0] is transaction:
        return cached(conn, key)
    db = _db_key(conn)
    with _lock:
        known = _generations.get(db)
        entry = _entries.get((db, key))
    if known is None or entry is None:
        return None
    assumed = conn.info.get(_ASSUMED)
    if assumed is None or assumed[0] is not transaction:
        conn.info[_ASSUMED] = (transaction, known)
    elif assumed[1] != known:
        return None  # the cache moved on since this transaction's first assumption
    return entry


class WriteLookup:
    """:func:`cached_assuming` for the many look-ups of one plan: the
    transaction's state (templates written, generation read) is checked once
    here, not per key. Make a new one after anything reads the database (a
    miss served by a query may read the generation)."""

    __slots__ = ("_db", "_generation", "_info", "_mode", "_token", "_transaction")

    def __init__(self, conn: Connection) -> None:
        transaction = conn.get_transaction()
        info = conn.info
        self._transaction = transaction
        self._info = info
        self._db = _db_key(conn)
        self._generation: int | None = None
        self._token: tuple[str, int] | None = None
        if info.get(_WRITE_MARK) is transaction:
            self._mode = "bypass"
            return
        seen = info.get(_SEEN)
        if seen is not None and seen[0] is transaction:
            # as cached() does for every key: entries of the generation seen
            self._generation = _usable(conn)
            self._mode = "bypass" if self._generation is None else "seen"
        else:
            self._mode = "assume"
        with _lock:
            self._token = (self._db, _epoch)

    def __call__(self, key: str) -> Template | None:
        if self._mode == "bypass":
            return None
        with _lock:
            known = _generations.get(self._db)
            entry = _entries.get((self._db, key))
        if known is None or entry is None:
            return None
        if self._mode == "seen":
            return entry if known == self._generation else None
        info, transaction = self._info, self._transaction
        assumed = info.get(_ASSUMED)
        if assumed is None or assumed[0] is not transaction:
            info[_ASSUMED] = (transaction, known)
        elif assumed[1] != known:
            return None  # the cache moved on since this transaction's first assumption
        return entry

    def token(self) -> tuple[str, int] | None:
        """While two look-ups give the same token (not None), they serve the
        same objects for every key: no entry of the database was added or
        dropped in between. None when this look-up does not serve entries or
        they changed since it was made."""
        if self._mode == "bypass" or self._token is None:
            return None
        with _lock:
            return self._token if self._token[1] == _epoch else None


def lookup_for_write(conn: Connection) -> WriteLookup:
    """A :class:`WriteLookup` for one plan of a write."""
    return WriteLookup(conn)


def assumed_generation(conn: Connection) -> int | None:
    """The generation this transaction's cached templates were assumed under, if any."""
    assumed = conn.info.get(_ASSUMED)
    if assumed is not None and assumed[0] is conn.get_transaction():
        return int(assumed[1])
    return None


def confirm_assumption(conn: Connection) -> None:
    """A write proved the assumed generation: this transaction has seen it."""
    generation = assumed_generation(conn)
    conn.info.pop(_ASSUMED, None)
    if generation is not None:
        seen = conn.info.get(_SEEN)
        if seen is None or seen[0] is not conn.get_transaction():
            note_generation(conn, generation)


def refute_assumption(conn: Connection) -> None:
    """The assumed generation was wrong: forget it and every cached template."""
    conn.info.pop(_ASSUMED, None)
    clear()
