"""Alembic environment for tapdb_core.

The database URL comes from, in order: an open connection handed over in
``config.attributes["connection"]`` (library and tests), ``-x url=...``,
``DATABASE_URL``, then the TAPDB config of the active environment
(``TAPDB_ENV``, default ``dev``).
"""

from __future__ import annotations

from sqlalchemy import Connection, create_engine, pool

from alembic import context
from tapdb_core.config import resolve_database_url
from tapdb_core.tables import metadata

config = context.config
target_metadata = metadata


def _url() -> str:
    if config.attributes.get("url"):
        return str(config.attributes["url"])
    x_args = context.get_x_argument(as_dictionary=True)
    if x_args.get("url"):
        return str(x_args["url"])
    return resolve_database_url()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection, target_metadata=target_metadata, transaction_per_migration=False
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    shared = config.attributes.get("connection")
    if shared is not None:
        _run(shared)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
