"""Run the Alembic migrations shipped with the package (no alembic.ini needed)."""

from __future__ import annotations

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import ProgrammingError

from alembic import command
from tapdb_core.resources import alembic_dir


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` pointing at the packaged revisions."""
    config = Config()
    config.set_main_option("script_location", str(alembic_dir()))
    if url is not None:
        config.cmd_opts = None
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        # env.py reads -x url=...; emulate it for programmatic calls
        config.attributes["url"] = url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"expected a single Alembic head, found {heads}")
    return heads[0]


def upgrade(connection: Connection, revision: str = "head", sql: bool = False) -> None:
    """Migrate the database of ``connection`` to ``revision`` inside its transaction."""
    command.upgrade(alembic_config(connection=connection), revision, sql=sql)


def downgrade(
    connection: Connection, revision: str = "base", *, allow_data_loss: bool = False
) -> None:
    """Migrate down to ``revision``; refuses (DataLossRefusedError) to drop stored rows or
    application objects unless ``allow_data_loss``."""
    config = alembic_config(connection=connection)
    config.attributes["allow_data_loss"] = allow_data_loss
    command.downgrade(config, revision)


def current_revision(bind: Connection | Engine) -> str | None:
    """The revision recorded in ``alembic_version``, or None for an unmigrated database."""

    def read(conn: Connection) -> str | None:
        exists = conn.execute(text("SELECT to_regclass('alembic_version') IS NOT NULL")).scalar()
        if not exists:
            return None
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except ProgrammingError:
            return None

    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return read(conn)
    return read(bind)


def is_known_revision(revision: str) -> bool:
    """True when ``revision`` is one of the revisions shipped with this code."""
    from alembic.util import CommandError

    try:
        found = ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except CommandError:  # ResolutionError subclasses it: no such revision
        return False
    # get_revision also accepts unique prefixes; alembic_version holds whole ids
    return found is not None and found.revision == revision


def drop_schema(connection: Connection, *, drop_dependents: bool = False) -> None:
    """Remove every tapdb object (rows included) inside the caller's transaction.

    Refuses with :class:`~tapdb_core.dependents.DependentObjectsError`, before
    dropping anything, while objects tapdb did not create depend on tapdb's
    (an application's view, foreign key, function...): the drops CASCADE and
    would take them along. ``drop_dependents`` drops them first instead.
    """
    from tapdb_core import dependents

    if drop_dependents:
        dependents.drop_external_dependents(connection)
    else:
        dependents.refuse_dependents(
            connection, "drop the tapdb schema", "drop_dependents=True (--drop-dependents)"
        )
    downgrade(connection, "base", allow_data_loss=True)
    connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
