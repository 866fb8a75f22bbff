"""Trigger functions plan their queries for the tables as they are now.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

A long-lived connection kept the generic plans its trigger functions made
while a table was tiny (sequential scans) as the table grew: the cycle guard
scanned every instance for each link. The functions whose queries read
growing tables now re-plan on every call (``plan_cache_mode =
force_custom_plan``). The SQL lives beside this file
(0008_plans_at_every_size.upgrade.sql / .downgrade.sql); all three are never
edited.
"""

from __future__ import annotations

from pathlib import Path

from tapdb_core.revision_support import execute_sql_file

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

_HERE = Path(__file__).resolve().parent


def upgrade() -> None:
    execute_sql_file(_HERE / "0008_plans_at_every_size.upgrade.sql")


def downgrade() -> None:
    execute_sql_file(_HERE / "0008_plans_at_every_size.downgrade.sql")
