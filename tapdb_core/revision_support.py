"""What Alembic revisions share: running a revision's SQL file as it is written."""

from __future__ import annotations

from pathlib import Path

from alembic import context, op


def execute_sql_file(path: Path) -> None:
    """Run a file of SQL statements (``$$`` bodies and ``%`` included) in the migration."""
    sql = path.read_text(encoding="utf-8")
    if context.is_offline_mode():
        op.execute(sql)
        return
    # Many statements and $$-quoted bodies full of '%': hand them to psycopg as
    # one parameterless query so nothing rewrites placeholders.
    driver_connection = op.get_bind().connection.driver_connection
    assert driver_connection is not None
    driver_connection.execute(sql)
