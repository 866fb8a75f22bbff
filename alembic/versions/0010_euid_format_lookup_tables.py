"""EUID formatting reads two digits at a time from constant tables.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

Every stored generated ``euid`` column calls ``tapdb_euid_format``: a 96-well
plate writes 386 EUIDs, a bulk load two per instance. Revision 0007's body ran
a plpgsql loop, about ten statements per base-32 digit (~4 us a call). For
the EUIDs tapdb issues (a sequence value below 2^30, a prefix of 2 or 3
letters, with or without a domain) this body is one expression, plpgsql's
simple-expression path: the value is read ten bits at a time from constant
``bytea`` tables (the two characters and the Luhn mod-32 contribution of
every 10-bit value), the DOMAIN+PREFIX tail with ascii() (~1 us a call).
Anything else runs revision 0007's loop as it landed. Same signature, same
result for every input (``tests/integration/test_euid_sql.py`` compares it
with revision 0007's body over ranges, extremes, every 10-bit value at every
position and every character at every tail position), still IMMUTABLE
PARALLEL SAFE plpgsql with no SET clause and no reference to our objects.
The SQL lives beside this file (0010_euid_format_lookup_tables.upgrade.sql /
.downgrade.sql); all three are never edited.
"""

from __future__ import annotations

from pathlib import Path

from tapdb_core.revision_support import execute_sql_file

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

_HERE = Path(__file__).resolve().parent


def upgrade() -> None:
    execute_sql_file(_HERE / "0010_euid_format_lookup_tables.upgrade.sql")


def downgrade() -> None:
    execute_sql_file(_HERE / "0010_euid_format_lookup_tables.downgrade.sql")
