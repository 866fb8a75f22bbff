"""Roles: the audit machinery runs as the schema owner.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

The functions that write ``audit_log`` or create EUID sequences become SECURITY
DEFINER (owned by the schema owner, with a fixed ``search_path``), so an
application role granted by ``tapdb db roles`` needs no privilege on
``audit_log`` beyond SELECT. The SQL lives beside this file
(0003_roles.upgrade.sql / .downgrade.sql); both belong to this revision and are
never edited once landed.
"""

from __future__ import annotations

from pathlib import Path

from tapdb_core.revision_support import execute_sql_file

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_HERE = Path(__file__).resolve().parent


def upgrade() -> None:
    execute_sql_file(_HERE / "0003_roles.upgrade.sql")


def downgrade() -> None:
    execute_sql_file(_HERE / "0003_roles.downgrade.sql")
