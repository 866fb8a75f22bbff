"""Finding a PostgreSQL installation: the ``bin`` directory holding initdb, pg_ctl and
postgres, its version, and the client programs (pg_dump, ...) that go with it.

Searched in order: an explicit directory, ``$TAPDB_PG_BIN``, ``pg_ctl`` on ``PATH``,
the usual installation directories, and the ``pgserver`` wheel's embedded binaries.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from importlib import util as importlib_util
from pathlib import Path
from typing import Final

import attrs

from tapdb_core.errors import PostgresRuntimeError

__all__ = [
    "ENV_BIN",
    "REQUIRED_BINARIES",
    "PgBinaries",
    "child_env",
    "find_binaries",
    "parse_version",
]

ENV_BIN: Final = "TAPDB_PG_BIN"
REQUIRED_BINARIES: Final = ("initdb", "pg_ctl", "postgres")
_VERSION_RE: Final = re.compile(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*(?:[a-z]+\d*)?)")


@attrs.frozen(kw_only=True)
class PgBinaries:
    """One PostgreSQL installation's ``bin`` directory."""

    bindir: Path
    version: str
    """Server version as ``postgres --version`` reports it, e.g. ``"15.18"``."""
    source: str
    """Where it was found: ``explicit``, ``TAPDB_PG_BIN``, ``PATH``, ``standard``, ``pgserver``."""

    initdb = property(lambda self: self.bindir / "initdb")
    pg_ctl = property(lambda self: self.bindir / "pg_ctl")
    postgres = property(lambda self: self.bindir / "postgres")

    def tool(self, name: str) -> Path:
        """A client program (``pg_dump``, ``psql``, ...), from ``bindir`` if there (pg_dump
        refuses servers newer than itself), else from ``PATH``."""
        candidate = self.bindir / name
        found = str(candidate) if _is_executable(candidate) else shutil.which(name)
        if found is None:
            raise PostgresRuntimeError(
                f"{name} not found: not in {self.bindir} and not on PATH; "
                "install the PostgreSQL client programs"
            )
        return Path(found)


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def child_env() -> dict[str, str]:
    """The environment initdb, pg_ctl and postgres run in."""
    # PGPORT, PGDATA, PGHOST... would change what initdb/pg_ctl/postgres do; the cluster
    # is defined by our arguments alone. LC_ALL=C: pg_ctl's messages are read.
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PG")}, "LC_ALL": "C"}


def parse_version(text: str) -> str | None:
    """``"postgres (PostgreSQL) 15.18 (Debian ...)"`` -> ``"15.18"``."""
    match = _VERSION_RE.search(text)
    return match.group(1) if match else None


def _inspect(bindir: Path, source: str) -> PgBinaries:
    missing = [name for name in REQUIRED_BINARIES if not _is_executable(bindir / name)]
    if not bindir.is_dir() or missing:
        why = (
            "is not a directory"
            if not bindir.is_dir()
            else f"has no executable {', '.join(missing)}"
        )
        raise PostgresRuntimeError(
            f"{source}: {bindir} {why} (it must contain {', '.join(REQUIRED_BINARIES)})"
        )
    try:
        result = subprocess.run(
            [str(bindir / "postgres"), "--version"],
            capture_output=True, text=True, timeout=60, check=False, env=child_env(),
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        raise PostgresRuntimeError(f"cannot run {bindir / 'postgres'} --version: {exc}") from exc
    version = parse_version(result.stdout)
    if result.returncode != 0 or version is None:
        raise PostgresRuntimeError(
            f"{bindir / 'postgres'} --version failed (exit code {result.returncode}): "
            f"{(result.stdout + result.stderr).strip()!r}"
        )
    return PgBinaries(bindir=bindir, version=version, source=source)


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def _standard_locations(root: Path = Path("/")) -> list[Path]:
    """Usual installation directories, newest major version first within each family."""

    def newest_first(pattern: str) -> list[Path]:
        found = [p for p in root.glob(pattern) if p.is_dir()]
        return sorted(found, key=lambda p: _version_key(p.parent.name), reverse=True)

    return [
        *newest_first("usr/lib/postgresql/*/bin"),
        *newest_first("usr/pgsql-*/bin"),
        *newest_first("opt/homebrew/opt/postgresql@*/bin"),
        *newest_first("usr/local/opt/postgresql@*/bin"),
        root / "opt/homebrew/bin",
        root / "usr/local/bin",
    ]


def _pgserver_bindir() -> Path | None:
    """The ``pgserver`` wheel's binaries, located without importing it (its import
    creates directories and emits warnings)."""
    module = sys.modules.get("pgserver")
    origin = getattr(module, "__file__", None) if module is not None else None
    if module is None:
        with contextlib.suppress(ImportError, ValueError):
            spec = importlib_util.find_spec("pgserver")
            origin = spec.origin if spec is not None else None
    return None if origin is None else Path(origin).parent / "pginstall" / "bin"


def _path_candidates() -> list[Path]:
    found = shutil.which("pg_ctl")
    if found is None:
        return []
    linked = Path(found).absolute()  # absolute: the programs run with cwd="/"
    # the resolved link first: a symlink farm (Homebrew, alternatives) leads to the
    # real installation, whose initdb/postgres/pg_dump belong together
    return list(dict.fromkeys([linked.resolve().parent, linked.parent]))


def find_binaries(explicit: str | os.PathLike[str] | None = None) -> PgBinaries:
    """Locate ``initdb``, ``pg_ctl`` and ``postgres`` of one installation.

    Order: ``explicit``, else ``$TAPDB_PG_BIN`` (either must be valid: falling back would
    run another PostgreSQL than the one asked for); then ``pg_ctl`` on ``PATH``; then the
    usual installation directories; then the ``pgserver`` wheel.
    """
    if explicit is not None:
        return _inspect(Path(explicit).expanduser().absolute(), "explicit")
    if os.environ.get(ENV_BIN):
        return _inspect(Path(os.environ[ENV_BIN]).expanduser().absolute(), ENV_BIN)
    tried = [] if shutil.which("pg_ctl") else ["PATH: no pg_ctl on PATH"]
    searched = [("PATH", d) for d in _path_candidates()]
    searched += [("standard", d) for d in _standard_locations()]
    wheel = _pgserver_bindir()
    searched += [("pgserver", wheel)] if wheel else []
    seen: set[Path] = set()
    for source, bindir in searched:
        if bindir in seen:
            continue
        seen.add(bindir)
        if not bindir.is_dir():
            tried.append(f"{source}: {bindir} (does not exist)")
            continue
        try:
            return _inspect(bindir, source)
        except PostgresRuntimeError as exc:
            tried.append(f"{source}: {bindir} ({str(exc).split(f'{bindir} ', 1)[-1]})")
    if wheel is None:
        tried.append("pgserver: not installed")
    places = "\n  ".join(tried)
    raise PostgresRuntimeError(
        f"no PostgreSQL server binaries (initdb, pg_ctl, postgres) found. Tried:\n  {places}\n"
        'Fix: pip install "tapdb-core[local]" (bundled binaries), or install PostgreSQL, '
        f"or set {ENV_BIN} to the directory holding initdb, pg_ctl and postgres."
    )
