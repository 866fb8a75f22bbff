"""PostgreSQL binaries the server's OS user can run, copied when it cannot reach them.

When this process is root, the server runs as an unprivileged user (tapdb_core.pgosuser).
Binaries that user cannot reach (the ``pgserver`` wheel inside a checkout under root's
0700 home) are copied once into a root-owned, world-readable cache (``$TAPDB_PG_CACHE``,
else ``/var/cache/tapdb``), checked against a manifest of the original on every use.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import attrs

from tapdb_core.errors import PostgresRuntimeError
from tapdb_core.pgbinaries import PgBinaries
from tapdb_core.pgosuser import OsUser, untraversable_ancestor

__all__ = ["DEFAULT_CACHE", "ENV_CACHE", "runnable_binaries"]

ENV_CACHE: Final = "TAPDB_PG_CACHE"
DEFAULT_CACHE: Final = Path("/var/cache/tapdb")
_MANIFEST: Final = ".tapdb-manifest"


def _install_parts(bindir: Path) -> tuple[Path, list[str]]:
    """What a ``bin`` directory needs beside it: its base and the subtrees under it."""
    if bindir.parent.name == "pginstall" and bindir.parent.parent.name == "pgserver":
        # the wheel's programs load libpq from $ORIGIN/../../../pgserver.libs
        base = bindir.parents[2]
        parts = ["pgserver/pginstall/bin", "pgserver/pginstall/lib", "pgserver/pginstall/share"]
        parts.append("pgserver.libs")
    else:
        base, parts = bindir.parent, [bindir.name, "lib", "share"]
    return base, [part for part in parts if (base / part).is_dir()]


def _manifest(base: Path, parts: Sequence[str]) -> str:
    """Every file under ``parts``: path, size (or link target), executable or not."""
    rows = []
    for part in parts:
        for dirpath, dirnames, filenames in os.walk(base / part):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath, name)
                st = path.lstat()
                what = os.readlink(path) if stat.S_ISLNK(st.st_mode) else st.st_size
                rows.append(f"{path.relative_to(base)}\t{what}\t{st.st_mode & 0o100:o}")
    return "\n".join(rows) + "\n"


def _private_dir(path: Path) -> None:
    """A directory only we can write to, that everyone can enter."""
    path.mkdir(parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise PostgresRuntimeError(
            f"{path} must be a directory owned by uid {os.geteuid()} that no one else can "
            f"write to (set {ENV_CACHE} to use another one)"
        )
    path.chmod(0o755)


def _copy_is_complete(copy: Path, parts: Sequence[str], manifest: str) -> bool:
    try:
        recorded = (copy / _MANIFEST).read_text()
        owner = copy.lstat().st_uid
    except OSError:
        return False
    return owner == os.geteuid() and recorded == manifest == _manifest(copy, parts)


def _make_copy(base: Path, parts: Sequence[str], manifest: str, copy: Path) -> None:
    """Copy ``parts`` of ``base`` to ``copy`` through a temporary directory renamed into
    place when complete (another process may win the rename: its copy is as good)."""
    cache = copy.parent
    scratch = Path(tempfile.mkdtemp(prefix=".partial-", dir=cache))
    try:
        for part in parts:
            shutil.copytree(base / part, scratch / part, symlinks=True)
        for dirpath, _, filenames in os.walk(scratch):
            os.chmod(dirpath, 0o755)  # noqa: S103  (a copy for another user to run)
            for path in (Path(dirpath, name) for name in filenames):
                if not path.is_symlink():
                    path.chmod(0o755 if path.stat().st_mode & 0o100 else 0o644)
        (scratch / _MANIFEST).write_text(manifest)
        (scratch / _MANIFEST).chmod(0o644)
        if copy.exists() and not _copy_is_complete(copy, parts, manifest):
            shutil.rmtree(copy)
        with contextlib.suppress(OSError):  # another process renamed its copy first
            scratch.rename(copy)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def runnable_binaries(bins: PgBinaries, user: OsUser | None) -> PgBinaries:
    """``bins``, or a copy of its installation that ``user`` can reach and run.

    The copy is made once per installation (its manifest is in the name), in a temporary
    directory renamed into place when complete, and checked against the original's
    manifest on every use: a partial or altered copy is made again.
    """
    if user is None or untraversable_ancestor(bins.postgres, user.uid, user.groups) is None:
        return bins
    base, parts = _install_parts(bins.bindir)
    manifest = _manifest(base, parts)
    cache = Path(os.environ.get(ENV_CACHE) or DEFAULT_CACHE).absolute()
    _private_dir(cache)
    digest = hashlib.sha256(manifest.encode()).hexdigest()[:16]
    copy = cache / f"pg-{bins.version}-{digest}"
    if not _copy_is_complete(copy, parts, manifest):
        _make_copy(base, parts, manifest, copy)
        if not _copy_is_complete(copy, parts, manifest):
            raise PostgresRuntimeError(f"could not make a complete copy of {base} in {copy}")
    runnable = attrs.evolve(bins, bindir=copy / bins.bindir.relative_to(base))
    blocked = untraversable_ancestor(runnable.postgres, user.uid, user.groups)
    if blocked is not None:
        raise PostgresRuntimeError(
            f"OS user {user.name!r} cannot enter {blocked}, where PostgreSQL was copied for "
            f"it; set {ENV_CACHE} to a directory it can reach"
        )
    return runnable
