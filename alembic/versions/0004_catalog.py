"""Constraint names the code can state, and a template generation counter.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Renames the two lineage foreign keys whose generated names were truncated at
63 characters, and adds ``tapdb_template_generation``, moved by every statement
that writes ``generic_template``, which keeps process-wide template caches
honest across processes. The SQL lives beside this file
(0004_catalog.upgrade.sql / .downgrade.sql); all three are never edited.
"""

from __future__ import annotations

from pathlib import Path

from tapdb_core.revision_support import execute_sql_file

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_HERE = Path(__file__).resolve().parent


def upgrade() -> None:
    execute_sql_file(_HERE / "0004_catalog.upgrade.sql")


def downgrade() -> None:
    execute_sql_file(_HERE / "0004_catalog.downgrade.sql")
