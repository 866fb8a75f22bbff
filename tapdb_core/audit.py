"""Read the audit trail the database writes."""

from __future__ import annotations

from sqlalchemy import Connection, select

from tapdb_core import euid as euids
from tapdb_core.tables import audit_log
from tapdb_core.values import AuditEntry


def history(conn: Connection, euid: str, *, limit: int | None = None) -> list[AuditEntry]:
    """Every audit row of the object with this EUID, oldest first: who, when,
    operation, column, old and new value."""
    euids.parse(euid)
    query = (
        select(audit_log).where(audit_log.c.rel_table_euid_fk == euid).order_by(audit_log.c.uuid)
    )
    if limit is not None:
        query = query.limit(limit)
    return [AuditEntry.from_row(r) for r in conn.execute(query)]
