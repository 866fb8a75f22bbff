"""tapdb_core: a template-driven object store on PostgreSQL.

Typed functions live in modules named after what they handle (``templates``,
``instances``, ``lineage``, ``audit``, ``users``, ``actions``); ``connect``
opens a database handle. The daylily-tapdb class API is a facade over them
(``TAPDBConnection``, ``TemplateManager``, ``InstanceFactory``,
``ActionDispatcher``, ``get_db_config_for_env``). Names are imported on first
use, so ``tapdb --version`` does not pay for SQLAlchemy and Alembic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tapdb_core._version import __version__

if TYPE_CHECKING:
    from tapdb_core.cli.db_config import get_db_config_for_env
    from tapdb_core.db import Database, connect
    from tapdb_core.facade import (
        ActionDispatcher,
        InstanceFactory,
        InstanceObject,
        LineageObject,
        TAPDBConnection,
        TapdbSession,
        TemplateManager,
    )

_LAZY = {
    "Database": "tapdb_core.db",
    "connect": "tapdb_core.db",
    "ActionDispatcher": "tapdb_core.facade",
    "InstanceFactory": "tapdb_core.facade",
    "TAPDBConnection": "tapdb_core.facade",
    "TemplateManager": "tapdb_core.facade",
    "InstanceObject": "tapdb_core.facade",
    "LineageObject": "tapdb_core.facade",
    "TapdbSession": "tapdb_core.facade",
    "get_db_config_for_env": "tapdb_core.cli.db_config",
}

__all__ = [
    "ActionDispatcher",
    "Database",
    "InstanceFactory",
    "InstanceObject",
    "LineageObject",
    "TAPDBConnection",
    "TapdbSession",
    "TemplateManager",
    "__version__",
    "connect",
    "get_db_config_for_env",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tapdb_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
