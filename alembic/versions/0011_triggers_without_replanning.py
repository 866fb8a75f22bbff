"""Triggers that neither re-plan nor walk when there is nothing to find.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

tapdb_euid_format pins its own search_path: it ran under the caller's path for
a row and under the audit trigger's for its audit row, and plpgsql planned all
of its expressions again at every switch (~0.4 ms a single-instance INSERT).
The insert and update audit functions read their prefix and sequence directly
instead of through two function calls a statement. The cycle walk is skipped
when no new edge's child has an edge out of it (a plate's new wells). What the
triggers write and refuse is unchanged. The SQL lives beside this file
(0011_triggers_without_replanning.upgrade.sql / .downgrade.sql); all three are
never edited.
"""

from __future__ import annotations

from pathlib import Path

from tapdb_core.revision_support import execute_sql_file

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None

_HERE = Path(__file__).resolve().parent


def upgrade() -> None:
    execute_sql_file(_HERE / "0011_triggers_without_replanning.upgrade.sql")


def downgrade() -> None:
    execute_sql_file(_HERE / "0011_triggers_without_replanning.downgrade.sql")
