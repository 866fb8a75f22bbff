"""tapdb_core: a template-driven object store on PostgreSQL."""

from tapdb_core._version import __version__

__all__ = ["__version__"]
