"""Foundation: tables, EUID sequences and functions, audit, soft delete, acyclic lineage.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

The SQL lives beside this file (0001_foundation.upgrade.sql / .downgrade.sql)
so it can be read as SQL; both belong to this revision and are never edited.
"""

from __future__ import annotations

from pathlib import Path

from alembic import context, op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_HERE = Path(__file__).resolve().parent


def _execute_file(name: str) -> None:
    sql = (_HERE / name).read_text(encoding="utf-8")
    if context.is_offline_mode():
        op.execute(sql)
        return
    # The file holds many statements and $$-quoted bodies full of '%': hand it
    # to psycopg as one parameterless query so nothing rewrites placeholders.
    driver_connection = op.get_bind().connection.driver_connection
    assert driver_connection is not None
    driver_connection.execute(sql)


def upgrade() -> None:
    _execute_file("0001_foundation.upgrade.sql")


def downgrade() -> None:
    _execute_file("0001_foundation.downgrade.sql")
