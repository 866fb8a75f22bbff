"""A local PostgreSQL server for development and tests: find binaries, initdb, ``pg_ctl``.

``pg_ctl -w`` owns the server's life cycle (pid file, waiting for readiness, signals).
It pastes the data directory, the log path and its ``-o`` options into a ``/bin/sh``
command line, so the options are shell-quoted here and paths holding characters that
are special inside double quotes are refused.

PostgreSQL refuses to run as root. When this process is root, initdb, pg_ctl and the
server run as an unprivileged OS user (``run_as``, else ``$TAPDB_PG_OS_USER``, else
``postgres`` if that account exists, else ``nobody``). Binaries that user cannot reach
(the ``pgserver`` wheel inside a checkout under root's 0700 home) are copied once into a
root-owned, world-readable cache (``$TAPDB_PG_CACHE``, else ``/var/cache/tapdb``),
checked against a manifest of the original on every use.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import pwd
import re
import select
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from importlib import util as importlib_util
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import attrs
from psycopg import conninfo as pg_conninfo

from tapdb_core.errors import PostgresRuntimeError

__all__ = ["ClusterStatus", "LocalCluster", "PgBinaries", "find_binaries", "free_port"]

ENV_BIN: Final = "TAPDB_PG_BIN"
ENV_OS_USER: Final = "TAPDB_PG_OS_USER"
ENV_CACHE: Final = "TAPDB_PG_CACHE"
DEFAULT_CACHE: Final = Path("/var/cache/tapdb")
REQUIRED_BINARIES: Final = ("initdb", "pg_ctl", "postgres")
STOP_MODES: Final = ("smart", "fast", "immediate")
_MAX_SOCKET_PATH: Final = 103  # sun_path: 108 bytes on Linux, 104 on macOS, NUL included
_SOCKET_NAME_MAX: Final = len("/.s.PGSQL.65535")
_MANIFEST: Final = ".tapdb-manifest"
_VERSION_RE: Final = re.compile(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*(?:[a-z]+\d*)?)")
_SHELL_SPECIAL: Final = re.compile(r'["$`\\\n]')  # special inside sh double quotes


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
            capture_output=True, text=True, timeout=60, check=False, env=_child_env(),
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


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (another process may take it before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _child_env() -> dict[str, str]:
    # PGPORT, PGDATA, PGHOST... would change what initdb/pg_ctl/postgres do; the cluster
    # is defined by our arguments alone. LC_ALL=C: pg_ctl's messages are read below.
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PG")}, "LC_ALL": "C"}


def _is_root() -> bool:
    return os.geteuid() == 0


@attrs.frozen
class _OsUser:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def server_os_user(run_as: str | None = None) -> _OsUser | None:
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
    return _OsUser(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid, groups=groups)


def _untraversable_ancestor(path: Path, uid: int, gids: Sequence[int]) -> Path | None:
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
    return None if user is None else _untraversable_ancestor(path, user.uid, user.groups)


# ------------------------------------------------------ binaries the server user can run


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


def runnable_binaries(bins: PgBinaries, user: _OsUser | None) -> PgBinaries:
    """``bins``, or a copy of its installation that ``user`` can reach and run.

    The copy is made once per installation (its manifest is in the name), in a temporary
    directory renamed into place when complete, and checked against the original's
    manifest on every use: a partial or altered copy is made again.
    """
    if user is None or _untraversable_ancestor(bins.postgres, user.uid, user.groups) is None:
        return bins
    base, parts = _install_parts(bins.bindir)
    manifest = _manifest(base, parts)
    cache = Path(os.environ.get(ENV_CACHE) or DEFAULT_CACHE).absolute()
    _private_dir(cache)
    digest = hashlib.sha256(manifest.encode()).hexdigest()[:16]
    copy = cache / f"pg-{bins.version}-{digest}"
    if not _copy_is_complete(copy, parts, manifest):
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
        if not _copy_is_complete(copy, parts, manifest):
            raise PostgresRuntimeError(f"could not make a complete copy of {base} in {copy}")
    runnable = attrs.evolve(bins, bindir=copy / bins.bindir.relative_to(base))
    blocked = _untraversable_ancestor(runnable.postgres, user.uid, user.groups)
    if blocked is not None:
        raise PostgresRuntimeError(
            f"OS user {user.name!r} cannot enter {blocked}, where PostgreSQL was copied for "
            f"it; set {ENV_CACHE} to a directory it can reach"
        )
    return runnable


# --------------------------------------------------------------------------- cluster


def _tail_lines(path: Path, lines: int, start: int = 0) -> str:
    """The last ``lines`` lines of ``path`` after byte offset ``start``."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(start, size - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:]) if lines > 0 else ""


def _quote_conf_list_item(value: str) -> str:
    # unix_socket_directories is a list PostgreSQL parses itself: double quotes keep a
    # path with commas or spaces in one piece
    return '"' + value.replace('"', '""') + '"' if re.search(r'[\s,"]', value) else value


def _absolute(value: str | os.PathLike[str]) -> Path:
    return Path(value).expanduser().absolute()  # postgres chdirs into its data directory


def _optional_absolute(value: str | os.PathLike[str] | None) -> Path | None:
    return None if value is None else _absolute(value)


@attrs.frozen(kw_only=True)
class ClusterStatus:
    initialized: bool
    running: bool
    pid: int | None
    port: int
    """The port the server listens on when running (from postmaster.pid), else ours."""
    data_dir: Path
    log_file: Path


@attrs.define
class LocalCluster:
    """A PostgreSQL data directory on this machine and the server that runs from it."""

    data_dir: Path = attrs.field(converter=_absolute)
    port: int
    socket_dir: Path | None = attrs.field(default=None, converter=_optional_absolute)
    host: str = "127.0.0.1"
    binaries: PgBinaries | None = None
    run_as: str | None = None
    """OS user to run PostgreSQL as when this process is root (see module docstring)."""
    fast_unsafe: bool = False
    """fsync/synchronous_commit/full_page_writes off: a crash can corrupt data. Tests only."""

    _socket_dir_given: bool = attrs.field(init=False, default=False, repr=False, eq=False)
    _runnable: tuple[PgBinaries, PgBinaries] | None = attrs.field(
        init=False, default=None, repr=False, eq=False
    )

    def __attrs_post_init__(self) -> None:
        self._socket_dir_given = self.socket_dir is not None
        if self.socket_dir is None:
            preferred = self.data_dir / "socket"
            if len(str(preferred)) + _SOCKET_NAME_MAX > _MAX_SOCKET_PATH:
                # named after the data directory, so every LocalCluster for it agrees
                digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
                preferred = Path(tempfile.gettempdir()) / f"tapdb-pg-{digest}"
            self.socket_dir = preferred

    log_file = property(lambda self: self.data_dir / "tapdb-server.log")
    pid_file = property(lambda self: self.data_dir / "postmaster.pid")

    @property
    def is_initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def _connect_host(self) -> str:
        wildcard = {"*": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104
        return wildcard.get(self.host, self.host)

    def url(
        self,
        dbname: str = "postgres",
        user: str = "postgres",
        password: str | None = None,
        driver: str = "postgresql+psycopg",
    ) -> str:
        """SQLAlchemy URL for a TCP connection to this server."""
        host = self._connect_host()
        host = f"[{host}]" if ":" in host else host
        auth = quote(user, safe="") + ("" if password is None else ":" + quote(password, safe=""))
        return f"{driver}://{auth}@{host}:{self.port}/{quote(dbname, safe='')}"

    def conninfo(
        self, dbname: str = "postgres", user: str = "postgres", password: str | None = None
    ) -> str:
        """libpq keyword/value string, as ``psycopg.connect`` takes it."""
        params: dict[str, Any] = {"host": self._connect_host(), "port": self.port}
        params.update(dbname=dbname, user=user)
        if password is not None:
            params["password"] = password
        return pg_conninfo.make_conninfo(**params)

    # ------------------------------------------------------------- as the server's user

    def _os_user(self) -> _OsUser | None:
        return server_os_user(self.run_as)

    def _server_bins(self, user: _OsUser | None) -> PgBinaries:
        """The binaries as the server's OS user can run them (see runnable_binaries)."""
        if self.binaries is None:
            self.binaries = find_binaries()
        if self._runnable is None or self._runnable[0] != self.binaries:
            self._runnable = (self.binaries, runnable_binaries(self.binaries, user))
        return self._runnable[1]

    def _run(
        self, user: _OsUser | None, argv: list[str], pass_fds: Sequence[int] = ()
    ) -> subprocess.CompletedProcess[str]:
        extra: dict[str, Any] = {}
        if user is not None:  # extra_groups drops root's supplementary groups
            extra = {"user": user.uid, "group": user.gid, "extra_groups": list(user.groups)}
        try:
            return subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
                env=_child_env(), cwd="/", pass_fds=pass_fds, **extra,
            )  # fmt: skip
        except OSError as exc:
            raise PostgresRuntimeError(f"cannot run {argv[0]}: {exc}") from exc

    def _pg_ctl(
        self, user: _OsUser | None, *args: str, pass_fds: Sequence[int] = ()
    ) -> subprocess.CompletedProcess[str]:
        pg_ctl = str(self._server_bins(user).pg_ctl)
        return self._run(user, [pg_ctl, *args, "-D", str(self.data_dir)], pass_fds)

    def _require_traversable(self, path: Path, user: _OsUser | None) -> None:
        blocked = None if user is None else _untraversable_ancestor(path, user.uid, user.groups)
        if user is not None and blocked is not None:
            raise PostgresRuntimeError(
                f"PostgreSQL runs as OS user {user.name!r} (this process is root), which "
                f"cannot enter {blocked} on the way to {path}. Use a location it can reach "
                f"or chmod o+x {blocked}"
            )

    def _claim_dir(self, path: Path, user: _OsUser | None, *, follow: bool) -> None:
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
        self._require_traversable(path, user)

    # ------------------------------------------------------------------- init

    def init(
        self, superuser: str = "postgres", password: str | None = None, force: bool = False
    ) -> bool:
        """Create the cluster with initdb. False if it already existed (and not ``force``).

        ``force`` stops and deletes an existing cluster first; a non-empty directory
        that is not a cluster is never deleted.
        """
        if self.is_initialized and not force:
            return False
        if self.is_initialized:
            self.stop(mode="immediate")
            shutil.rmtree(self.data_dir)
        elif self.data_dir.is_dir() and any(self.data_dir.iterdir()):
            raise PostgresRuntimeError(
                f"{self.data_dir} is not empty and is not a PostgreSQL data directory; "
                "refusing to initialise it"
            )
        user = self._os_user()
        self._claim_dir(self.data_dir, user, follow=True)
        argv = [str(self._server_bins(user).initdb), "-D", str(self.data_dir), "-E", "UTF8"]
        argv += ["--no-locale", "-U", superuser] + (["--no-sync"] if self.fast_unsafe else [])
        with self._password_file(password, user) as pwfile:
            if pwfile is None:
                argv += ["--auth-local=trust", "--auth-host=trust"]
            else:
                argv += ["--auth-local=scram-sha-256", "--auth-host=scram-sha-256"]
                argv.append(f"--pwfile={pwfile}")
            result = self._run(user, argv)
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
            raise PostgresRuntimeError(
                f"initdb failed for {self.data_dir} (exit code {result.returncode}):\n{output}"
            )
        return True

    @contextlib.contextmanager
    def _password_file(self, password: str | None, user: _OsUser | None) -> Iterator[Path | None]:
        """A 0600 file for ``initdb --pwfile`` (argv is world-readable), beside the data
        directory: the server's user can reach it there, not always in $TMPDIR."""
        if password is None:
            yield None
            return
        fd, name = tempfile.mkstemp(prefix=".tapdb-pw-", dir=self.data_dir.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                if user is not None:
                    os.fchown(fh.fileno(), user.uid, user.gid)
                fh.write(password + "\n")
            yield Path(name)
        finally:
            Path(name).unlink(missing_ok=True)

    # ------------------------------------------------------------------- pg_ctl

    def status(self) -> ClusterStatus:
        """Whether the server runs, as ``pg_ctl status`` sees it."""
        pid = None
        if self.is_initialized:
            result = self._pg_ctl(self._os_user(), "status")
            found = re.search(r"\(PID: (\d+)\)", result.stdout)
            pid = int(found.group(1)) if result.returncode == 0 and found else None
        port = self.port
        with contextlib.suppress(OSError, UnicodeDecodeError, IndexError, ValueError):
            port = int(self.pid_file.read_text().splitlines()[3]) if pid else port
        return ClusterStatus(
            initialized=self.is_initialized, running=pid is not None, pid=pid, port=port,
            data_dir=self.data_dir, log_file=self.log_file,
        )  # fmt: skip

    def log_tail(self, lines: int = 50) -> str:
        return _tail_lines(self.log_file, lines)

    def _fail(self, message: str, log_offset: int = 0) -> PostgresRuntimeError:
        tail = _tail_lines(self.log_file, 20, start=log_offset) or _tail_lines(self.log_file, 20)
        detail = f"\n--- last lines of {self.log_file} ---\n{tail}" if tail else ""
        return PostgresRuntimeError(f"{message}{detail}")

    def _server_options(self) -> str:
        settings = {"port": str(self.port), "listen_addresses": self.host}
        settings["unix_socket_directories"] = _quote_conf_list_item(str(self.socket_dir))
        if self.fast_unsafe:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        return " ".join(f"-c {shlex.quote(f'{key}={value}')}" for key, value in settings.items())

    def _prepare(self, user: _OsUser | None) -> int:
        """Socket directory and log file ready for the server; returns the log's size."""
        for path in (self.data_dir, self._server_bins(user).bindir):
            if _SHELL_SPECIAL.search(str(path)):
                raise PostgresRuntimeError(
                    f'{path} contains one of " $ ` \\ or a newline, which pg_ctl would '
                    "hand to the shell; use another directory"
                )
        self._require_traversable(self.data_dir, user)
        assert self.socket_dir is not None
        if self._socket_dir_given and os.path.lexists(self.socket_dir):
            self._require_traversable(self.socket_dir, user)  # maybe shared: used as is
        else:
            self._claim_dir(self.socket_dir, user, follow=False)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
        try:
            fd = os.open(self.log_file, flags, 0o600)
        except OSError as exc:
            raise PostgresRuntimeError(f"cannot open log file {self.log_file}: {exc}") from exc
        try:
            if user is not None:
                os.fchown(fd, user.uid, user.gid)
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def start(self, timeout: float = 60.0) -> None:
        """Start the server (``pg_ctl start -w``) and wait until it accepts connections.

        No-op if it runs already. When pg_ctl gives up, the half-started server is
        stopped and gone before this raises.
        """
        if not self.is_initialized:
            raise PostgresRuntimeError(f"{self.data_dir} is not initialised; call init() first")
        current = self.status()
        if current.running and current.port != self.port:
            raise PostgresRuntimeError(
                f"the cluster in {self.data_dir} is already running on port "
                f"{current.port}, not {self.port}"
            )
        if current.running:
            return
        user = self._os_user()
        log_offset = self._prepare(user)
        args = ["start", "-w", "-t", str(math.ceil(timeout)), "-l", str(self.log_file)]
        # every process of the new server inherits the write end: end-of-file on the
        # read end says the last one has exited, however slow the machine is
        read_end, write_end = os.pipe()
        try:
            try:
                result = self._pg_ctl(
                    user, *args, "-o", self._server_options(), pass_fds=[write_end]
                )
            finally:
                os.close(write_end)
            if result.returncode == 0:
                return
            while True:
                if self.status().running:
                    self._pg_ctl(user, "stop", "-m", "immediate", "-w")
                readable, _, _ = select.select([read_end], [], [], 0.2)
                if readable and not os.read(read_end, 1):
                    break
        finally:
            os.close(read_end)
        if "did not start in time" in result.stderr:
            message = (
                f"PostgreSQL in {self.data_dir} did not accept connections on "
                f"{self._connect_host()}:{self.port} within {timeout:g} s"
            )
        else:
            message = (
                f"PostgreSQL in {self.data_dir} exited during startup: {result.stderr.strip()}"
            )
        raise self._fail(message, log_offset)

    def stop(self, mode: str = "fast", timeout: float = 60.0) -> None:
        """Stop the server (``pg_ctl stop -m MODE -w``): ``smart``, ``fast`` or ``immediate``."""
        if mode not in STOP_MODES:
            raise ValueError(f"stop mode must be one of {', '.join(STOP_MODES)}, not {mode!r}")
        if not self.status().running:
            return
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        args = ["stop", "-m", mode, "-w", "-t", str(math.ceil(timeout))]
        result = self._pg_ctl(self._os_user(), *args)
        if result.returncode != 0 and self.status().running:
            raise self._fail(
                f"PostgreSQL in {self.data_dir} did not stop in {mode} mode within {timeout:g} s "
                f"({result.stderr.strip()}); try mode='immediate'",
                log_offset,
            )


@contextlib.contextmanager
def temporary_cluster(
    *, fast_unsafe: bool = True, prefix: str = "tapdb-tmp-"
) -> Iterator[LocalCluster]:
    """A throwaway running cluster in a temporary directory, removed afterwards
    (the tests' and the benchmarks' PostgreSQL). ``fast_unsafe`` turns fsync off."""
    # under root the server's user must reach it: $TMPDIR may be a 0700 directory
    bases = [tempfile.gettempdir(), "/tmp", "/var/tmp"]  # noqa: S108
    base = next((b for b in bases if unreachable_by_server(Path(b, "x")) is None), None)
    workdir = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        workdir.chmod(0o755)
        cluster = LocalCluster(data_dir=workdir / "data", port=free_port(), fast_unsafe=fast_unsafe)
        cluster.init()
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop(mode="immediate")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
