"""tapdb_core: a template-driven object store on PostgreSQL."""

from tapdb_core._version import __version__
from tapdb_core.db import Database, connect

__all__ = ["Database", "__version__", "connect"]
