"""EUID formatting planned once per session instead of once per statement.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

``tapdb_euid_format`` (the expression of every generated ``euid`` column)
was an inlinable SQL function: PostgreSQL inlined its nested SQL functions
while preparing the generated-column expression of every INSERT, ~0.6 ms per
statement whatever the row count (a single instance paid it twice: instance
and audit row). As plpgsql it evaluates the same expression, whose plan
plpgsql caches per session. The SQL lives beside this file
(0005_euid_format_planned_once.upgrade.sql / .downgrade.sql); all three are
never edited.
"""

from __future__ import annotations

from pathlib import Path

from tapdb_core.revision_support import execute_sql_file

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_HERE = Path(__file__).resolve().parent


def upgrade() -> None:
    execute_sql_file(_HERE / "0005_euid_format_planned_once.upgrade.sql")


def downgrade() -> None:
    execute_sql_file(_HERE / "0005_euid_format_planned_once.downgrade.sql")
