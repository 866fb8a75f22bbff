"""Guarantees under every isolation level.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

A cycle guard materialised in a row (REPEATABLE READ safe), EUID high-water
marks that survive downgrades, atomic sequence bumps, redacted secrets in the
audit trail, functions that pg_dump/pg_restore can recreate, template row
versions, and TRUNCATE/DELETE guards. The SQL lives beside this file
(0002_guarantees.upgrade.sql / .downgrade.sql); all three are never edited.
"""

from __future__ import annotations

from pathlib import Path

from tapdb_core.revision_support import execute_sql_file

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_HERE = Path(__file__).resolve().parent


def upgrade() -> None:
    execute_sql_file(_HERE / "0002_guarantees.upgrade.sql")


def downgrade() -> None:
    execute_sql_file(_HERE / "0002_guarantees.downgrade.sql")
