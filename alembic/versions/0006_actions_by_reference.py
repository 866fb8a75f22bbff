"""Action definitions stored once (tapdb_action_set), referenced by instances.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Every instance carried its own ~3.5 KB copy of the action definitions its
template imports; a 96-well plate wrote the same JSON 97 times and a bulk
load once per row. Distinct ``action_groups`` documents now live once in the
immutable ``tapdb_action_set`` (keyed by the SHA-256 of their canonical
JSON) and instances reference them until their action state changes (copy
on write). Readers and the audit trail see the same ``json_addl`` as before.
The SQL lives beside this file (0006_actions_by_reference.upgrade.sql /
.downgrade.sql); all three are never edited.
"""

from __future__ import annotations

from pathlib import Path

from tapdb_core.revision_support import execute_sql_file

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_HERE = Path(__file__).resolve().parent


def upgrade() -> None:
    execute_sql_file(_HERE / "0006_actions_by_reference.upgrade.sql")


def downgrade() -> None:
    execute_sql_file(_HERE / "0006_actions_by_reference.downgrade.sql")
