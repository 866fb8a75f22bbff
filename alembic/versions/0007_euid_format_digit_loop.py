"""EUID formatting walks only the digits a sequence value has.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Every stored generated ``euid`` column calls ``tapdb_euid_format``: two calls
per instance written (the row and its audit row). Revision 0005's body
evaluated all 13 possible digits and 7 tail characters; this one loops over
the digits present, about twice as fast, with the same result for every
input (``tests/integration/test_euid_sql.py`` compares it with Python and
with revision 0005's expression). The SQL lives beside this file
(0007_euid_format_digit_loop.upgrade.sql / .downgrade.sql); all three are
never edited.
"""

from __future__ import annotations

from pathlib import Path

from tapdb_core.revision_support import execute_sql_file

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

_HERE = Path(__file__).resolve().parent


def upgrade() -> None:
    execute_sql_file(_HERE / "0007_euid_format_digit_loop.upgrade.sql")


def downgrade() -> None:
    execute_sql_file(_HERE / "0007_euid_format_digit_loop.downgrade.sql")
