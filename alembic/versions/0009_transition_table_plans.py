"""The update triggers' plans hold whatever size an earlier statement had.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

plpgsql froze the transition tables' row counts of a session's first UPDATE
into the audit and edge triggers' queries: after one big UPDATE every later
one-row UPDATE (each row of a soft DELETE) was JIT-compiled (~300 ms a row),
and after a small one a big UPDATE joined the transition tables in a
quadratic nested loop. The functions now run without JIT, join by hash or
merge (or by a set difference) and evaluate each row's audit form once. The
SQL lives beside this file (0009_transition_table_plans.upgrade.sql /
.downgrade.sql); all three are never edited.
"""

from __future__ import annotations

from pathlib import Path

from tapdb_core.revision_support import execute_sql_file

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

_HERE = Path(__file__).resolve().parent


def upgrade() -> None:
    execute_sql_file(_HERE / "0009_transition_table_plans.upgrade.sql")


def downgrade() -> None:
    execute_sql_file(_HERE / "0009_transition_table_plans.downgrade.sql")
