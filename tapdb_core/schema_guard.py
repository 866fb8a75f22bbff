"""What every migration run does around Alembic's steps (called from alembic/env.py).

* One migration at a time per database: a transaction-level advisory lock, so
  concurrent ``tapdb db setup`` runs wait for each other instead of colliding
  in the catalog.
* EUIDs are never reissued: before any step, every EUID sequence's last value
  is recorded in ``tapdb_euid_high_water``, which outlives downgrades; a
  re-created sequence starts past it (revision 0002).
* A downgrade that would drop stored rows or application objects built on
  tapdb's tables refuses unless explicitly allowed, and says what it would drop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import attrs
from sqlalchemy import Connection, func, select, table, text

from tapdb_core.errors import DataLossRefusedError

#: revisions whose downgrade drops tables holding user data
DESTRUCTIVE_DOWNGRADES: Final = frozenset({"0001"})

#: the tables whose rows a destructive downgrade would lose, in report order
DATA_TABLES: Final = (
    "generic_template",
    "generic_instance",
    "generic_instance_lineage",
    "tapdb_user",
    "audit_log",
    "tapdb_action_set",
)

_MIGRATION_LOCK: Final = text("SELECT pg_advisory_xact_lock(hashtext('tapdb_migrations'))")

_RECORD_HIGH_WATER: Final = text(
    """
    INSERT INTO tapdb_euid_high_water (euid_prefix, last_value)
    SELECT upper(substr(s.sequencename, length('tapdb_euid_seq_') + 1)), s.last_value
      FROM pg_sequences s
     WHERE s.schemaname = current_schema()
       AND s.sequencename LIKE 'tapdb\\_euid\\_seq\\_%'
       AND s.last_value IS NOT NULL
    ON CONFLICT (euid_prefix) DO UPDATE
       SET last_value = greatest(tapdb_euid_high_water.last_value, EXCLUDED.last_value),
           recorded_dt = now()
     WHERE EXCLUDED.last_value > tapdb_euid_high_water.last_value
    """
)


@attrs.frozen
class StoredData:
    """What a destructive downgrade would drop: row counts and dependent objects."""

    row_counts: tuple[tuple[str, int], ...]
    dependents: tuple[str, ...]

    @property
    def is_empty(self) -> bool:
        return not self.dependents and all(count == 0 for _, count in self.row_counts)

    def describe(self) -> str:
        parts = [f"{table} ({count:,} rows)" for table, count in self.row_counts if count]
        if self.dependents:
            parts.append("application objects that depend on tapdb: " + ", ".join(self.dependents))
        return "; ".join(parts)


def _exists(conn: Connection, relation: str) -> bool:
    return bool(conn.execute(text("SELECT to_regclass(:r) IS NOT NULL"), {"r": relation}).scalar())


def lock_migrations(conn: Connection) -> None:
    """Serialise migration runs on this database until the transaction ends."""
    conn.execute(_MIGRATION_LOCK)


def record_euid_high_water(conn: Connection) -> None:
    """Remember how far every EUID sequence has gone (a no-op before revision 0002)."""
    if _exists(conn, "tapdb_euid_high_water"):
        conn.execute(_RECORD_HIGH_WATER)


def stored_data(conn: Connection) -> StoredData | None:
    """Rows and application objects a destructive downgrade would drop; None when
    the database holds no tapdb tables."""
    present = [t for t in DATA_TABLES if _exists(conn, t)]
    if not present:
        return None
    counts = tuple(
        (name, int(conn.execute(select(func.count()).select_from(table(name))).scalar_one()))
        for name in present
    )
    return StoredData(row_counts=counts, dependents=tuple(_dependents(conn)))


def _dependents(conn: Connection) -> Sequence[str]:
    from tapdb_core.dependents import external_dependents

    return [f"{d.kind} {d.name} (on {d.depends_on})" for d in external_dependents(conn)]


@attrs.define
class DataLossGuard:
    """An Alembic ``on_version_apply`` hook that rolls the whole run back when a
    destructive downgrade step ran over stored data without permission.

    Alembic calls the hook after a step's SQL, inside the run's single
    transaction, so raising undoes the step; what would be lost is measured by
    :meth:`prepare` before any step runs.
    """

    allowed: bool
    before: StoredData | None = None

    def prepare(self, conn: Connection, *, downgrading: bool) -> None:
        # counting rows costs a scan: only when the run may go down
        self.before = stored_data(conn) if downgrading and not self.allowed else None

    def __call__(self, *, step: Any, **_: Any) -> None:
        if self.allowed or step.is_upgrade or step.up_revision_id not in DESTRUCTIVE_DOWNGRADES:
            return
        if self.before is None or self.before.is_empty:
            return
        raise DataLossRefusedError(
            f"refusing to downgrade past revision {step.up_revision_id}: it would drop "
            f"{self.before.describe()}. Take a backup first (tapdb db data backup ENV); to "
            "drop them anyway, run the downgrade again with -x allow_data_loss=true"
        )
