"""tapdb_core: a template-driven object store on PostgreSQL.

Typed functions live in modules named after what they handle (``templates``,
``instances``, ``lineage``, ``audit``, ``users``, ``actions``); ``connect``
opens a database handle. The daylily-tapdb class API is a thin facade over
them (``TAPDBConnection``, ``TemplateManager``, ``InstanceFactory``,
``ActionDispatcher``).
"""

from tapdb_core._version import __version__
from tapdb_core.db import Database, connect
from tapdb_core.facade import ActionDispatcher, InstanceFactory, TAPDBConnection, TemplateManager

__all__ = [
    "ActionDispatcher",
    "Database",
    "InstanceFactory",
    "TAPDBConnection",
    "TemplateManager",
    "__version__",
    "connect",
]
