"""The OS user PostgreSQL runs as, and acting on its behalf.

PostgreSQL refuses to run as root. When this process is root, initdb, pg_ctl and the
server run as an unprivileged OS user (``run_as``, else ``$TAPDB_PG_OS_USER``, else
``postgres`` if that account exists, else ``nobody``). This module chooses that user,
tells which directories it cannot enter, hands directories over to it safely and runs
programs as it. When this process is not root, all of it is ourselves.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from tapdb_core.errors import PostgresRuntimeError
from tapdb_core.pgbinaries import child_env

__all__ = [
    "ENV_OS_USER",
    "OsUser",
    "claim_dir",
    "claim_log",
    "password_file",
    "require_traversable",
    "run_program",
    "server_os_user",
    "unreachable_by_server",
    "untraversable_ancestor",
]

ENV_OS_USER: Final = "TAPDB_PG_OS_USER"


def _is_root() -> bool:
    return os.geteuid() == 0


@attrs.frozen
class OsUser:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def server_os_user(run_as: str | None = None) -> OsUser | None:
    """Whom PostgreSQL runs as: None (ourselves) unless this process is root."""
    if not _is_root():
        return None
    name = run_as or os.environ.get(ENV_OS_USER)
    if not name:
        try:
            name = pwd.getpwnam("postgres").pw_name
        except KeyError:
            name = "nobody"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise PostgresRuntimeError(
            f"OS user {name!r} (to run PostgreSQL as, since this process is root) does not exist"
        ) from None
    if entry.pw_uid == 0:
        raise PostgresRuntimeError(
            f"OS user {name!r} is root; PostgreSQL refuses to run as root. "
            f"Set {ENV_OS_USER} to an unprivileged account"
        )
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return OsUser(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid, groups=groups)


def untraversable_ancestor(path: Path, uid: int, gids: Sequence[int]) -> Path | None:
    """The first existing ancestor of ``path`` that ``uid`` cannot enter, if any
    (``os.access`` cannot tell: it checks the real uid, root here)."""
    for directory in reversed(path.parents):
        try:
            st = directory.stat()
        except FileNotFoundError:
            return None
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if uid != 0 and not st.st_mode & bit:
            return directory
    return None


def unreachable_by_server(path: Path, run_as: str | None = None) -> Path | None:
    """The directory on the way to ``path`` that the server's OS user cannot enter
    (only ever one when this process is root), or None."""
    user = server_os_user(run_as)
    return None if user is None else untraversable_ancestor(path, user.uid, user.groups)


def require_traversable(path: Path, user: OsUser | None) -> None:
    """Refuse a ``path`` the server's OS user could not reach."""
    blocked = None if user is None else untraversable_ancestor(path, user.uid, user.groups)
    if user is not None and blocked is not None:
        raise PostgresRuntimeError(
            f"PostgreSQL runs as OS user {user.name!r} (this process is root), which "
            f"cannot enter {blocked} on the way to {path}. Use a location it can reach "
            f"or chmod o+x {blocked}"
        )


def claim_dir(path: Path, user: OsUser | None, *, follow: bool) -> None:
    """Make ``path`` a 0700 directory owned by the server's OS user.

    Changed through a descriptor opened without following symlinks: that user owns
    the data directory and could otherwise make root chown a file of its choice.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | (0 if follow else os.O_NOFOLLOW))
    except OSError as exc:
        raise PostgresRuntimeError(f"{path} is not a usable directory: {exc}") from exc
    try:
        owner, current = (user.uid if user else os.geteuid()), os.fstat(fd).st_uid
        if current != owner:
            # only a root-owned directory is handed over; anyone else's (think of the
            # predictable short socket directory in /tmp) is not ours to use
            if user is None or current != 0:
                raise PostgresRuntimeError(
                    f"{path} is owned by uid {current}, expected uid {owner}"
                )
            os.fchown(fd, user.uid, user.gid)
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    require_traversable(path, user)


def claim_log(path: Path, user: OsUser | None) -> int:
    """Open (create) the server's log file for ``user`` to append to; returns its size.

    Not following a symlink: the log lives in the directory that user owns.
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise PostgresRuntimeError(f"cannot open log file {path}: {exc}") from exc
    try:
        if user is not None:
            os.fchown(fd, user.uid, user.gid)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


@contextlib.contextmanager
def password_file(
    password: str | None, user: OsUser | None, directory: Path
) -> Iterator[Path | None]:
    """A 0600 file for ``initdb --pwfile`` (argv is world-readable) in ``directory``
    (beside the data directory: the server's user can reach it there, not always in
    $TMPDIR), removed afterwards. None without a password."""
    if password is None:
        yield None
        return
    fd, name = tempfile.mkstemp(prefix=".tapdb-pw-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if user is not None:
                os.fchown(fh.fileno(), user.uid, user.gid)
            fh.write(password + "\n")
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def run_program(
    user: OsUser | None, argv: list[str], pass_fds: Sequence[int] = ()
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program as ``user`` (None: ourselves), its output captured."""
    extra: dict[str, Any] = {}
    if user is not None:  # extra_groups drops root's supplementary groups
        extra = {"user": user.uid, "group": user.gid, "extra_groups": list(user.groups)}
    try:
        return subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
            env=child_env(), cwd="/", pass_fds=pass_fds, **extra,
        )  # fmt: skip
    except OSError as exc:
        raise PostgresRuntimeError(f"cannot run {argv[0]}: {exc}") from exc
