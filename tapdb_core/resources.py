"""Where the migrations and the template packs are, found through the package.

In a wheel they are package data (``tapdb_core/_alembic``, ``tapdb_core/_seeds``,
mapped there by setup.cfg); in a source checkout (editable install) they are
the repository's top-level ``alembic/`` and ``seeds/`` next to the package.
Never the current directory: ``tapdb`` must work from anywhere.
"""

from __future__ import annotations

from pathlib import Path

from tapdb_core.errors import ConfigurationError

_PACKAGE_DIR = Path(__file__).resolve().parent


def _locate(packaged: str, checkout: str, marker: str) -> Path:
    for candidate in (_PACKAGE_DIR / packaged, _PACKAGE_DIR.parent / checkout):
        if (candidate / marker).exists():
            return candidate
    raise ConfigurationError(
        f"cannot find {checkout}/ next to the tapdb_core package (looked in "
        f"{_PACKAGE_DIR / packaged} and {_PACKAGE_DIR.parent / checkout}); "
        "reinstall tapdb-core"
    )


def alembic_dir() -> Path:
    """Directory holding ``env.py`` and ``versions/``."""
    return _locate("_alembic", "alembic", "env.py")


def seeds_dir() -> Path:
    """Directory of the core template packs shipped with tapdb_core."""
    return _locate("_seeds", "seeds", "_metadata.json")
