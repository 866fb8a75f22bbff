"""Alembic environment for tapdb_core.

The database URL comes from, in order: an open connection handed over in
``config.attributes["connection"]`` (library and tests), ``-x url=...``,
``DATABASE_URL``, then the TAPDB config of the active environment
(``TAPDB_ENV``, default ``dev``).

Every online run is one transaction that first takes the migration lock and
records the EUID high-water marks (``tapdb_core.schema_guard``). A downgrade
that would drop stored rows or application objects is rolled back with an
error naming them, unless ``-x allow_data_loss=true`` (or
``config.attributes["allow_data_loss"] = True``) says otherwise.
"""

from __future__ import annotations

from sqlalchemy import Connection, create_engine, pool

from alembic import context
from tapdb_core import schema_guard
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


def _allow_data_loss() -> bool:
    if config.attributes.get("allow_data_loss"):
        return True
    flag = context.get_x_argument(as_dictionary=True).get("allow_data_loss", "")
    return flag.strip().lower() in ("1", "true", "yes", "on")


def _may_go_down() -> bool:
    """False when the run can only go up (``upgrade head``) or moves nothing
    (``current``, ``history``): the cost of counting rows is then skipped."""
    try:
        destination = context.get_revision_argument()
    except KeyError:  # commands that move nothing have no destination
        return False
    return destination not in ("head", "heads")


def _run(connection: Connection) -> None:
    guard = schema_guard.DataLossGuard(allowed=_allow_data_loss())
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        transaction_per_migration=False,
        on_version_apply=guard,
    )
    with context.begin_transaction():
        schema_guard.lock_migrations(connection)
        schema_guard.record_euid_high_water(connection)
        guard.prepare(connection, downgrading=_may_go_down())
        context.run_migrations()


def run_migrations_offline() -> None:
    # named paramstyle: the script is printed, not bound, and a pyformat dialect
    # would double every '%' of the revisions' SQL (format('%I'), x % 32)
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
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
