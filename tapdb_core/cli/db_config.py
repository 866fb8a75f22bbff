"""``get_db_config_for_env``: the original's config loader, over :mod:`tapdb_core.config`.

daylily-tapdb's README connects with::

    from daylily_tapdb.cli.db_config import get_db_config_for_env
    cfg = get_db_config_for_env("dev")
    db = TAPDBConnection(db_hostname=f"{cfg['host']}:{cfg['port']}", db_user=cfg["user"], ...)

The same call works here, from ``tapdb_core.cli.db_config`` or ``tapdb_core``.
Settings resolve as everywhere in tapdb_core (``TAPDB_<ENV>_<FIELD>``, then
``PG*``, then the config file, then the default), and ``DATABASE_URL``, which
the original documented but never read, wins for the connection fields.
"""

from __future__ import annotations

from typing import Final

from tapdb_core.config import load_config
from tapdb_core.errors import ConfigurationError

__all__ = ["ORIGINAL_FIELDS", "get_db_config_for_env"]

#: the keys of the original's dict, in its order
ORIGINAL_FIELDS: Final = (
    "engine_type",
    "host",
    "port",
    "user",
    "password",
    "database",
    "cognito_user_pool_id",
    "tapdb_user_euid_prefix",
    "audit_log_euid_prefix",
)


def get_db_config_for_env(env: str, *, database_name: str | None = None) -> dict[str, str]:
    """The settings of environment ``env`` as the original's dict of strings.

    ``database_name`` selects the scoped config file (``tapdb-config-<name>.yaml``),
    as ``--database-name`` / ``TAPDB_DATABASE_NAME`` do. Raises
    :class:`~tapdb_core.errors.ConfigurationError` for an invalid environment
    name or an unreadable config file.
    """
    if not isinstance(env, str) or not env.strip():
        raise ConfigurationError(f"environment must be a non-empty name, got {env!r}")
    config = load_config(env, database_name=database_name)
    return {field: config.get(field) for field in ORIGINAL_FIELDS}
