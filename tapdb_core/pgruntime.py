"""A local PostgreSQL server for development and tests: find binaries, init, start, stop.

The server is spawned directly (``postgres -D ... -c port=...``) instead of through
``pg_ctl start``, because ``pg_ctl`` hands its ``-o`` options, the data directory and
the log path to ``/bin/sh``; with an argument list nothing we are given is ever
interpreted by a shell.

PostgreSQL refuses to run as root. When this process is root, initdb and the server
run as an unprivileged OS user (``run_as``, else ``$TAPDB_PG_OS_USER``, else
``postgres`` if that account exists, else ``nobody``) and the directories they need are
handed over to that user.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from importlib import util as importlib_util
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import attrs
from psycopg import conninfo as pg_conninfo
from psycopg import pq

from tapdb_core.errors import PostgresRuntimeError

__all__ = [
    "ClusterStatus",
    "LocalCluster",
    "PgBinaries",
    "find_binaries",
    "free_port",
]

ENV_BIN: Final = "TAPDB_PG_BIN"
ENV_OS_USER: Final = "TAPDB_PG_OS_USER"
REQUIRED_BINARIES: Final = ("initdb", "pg_ctl", "postgres")

# sun_path is 108 bytes on Linux but 104 on macOS; stay under both, NUL included.
_MAX_SOCKET_PATH: Final = 103
_SOCKET_NAME_MAX: Final = len("/.s.PGSQL.65535")
_LOG_NAME: Final = "tapdb-server.log"
_PID_FILE: Final = "postmaster.pid"
_STOP_SIGNALS: Final = {
    "smart": signal.SIGTERM,
    "fast": signal.SIGINT,
    "immediate": signal.SIGQUIT,
}
_VERSION_RE: Final = re.compile(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*(?:[a-z]+\d*)?)")

# Every server this process spawned, by pid. Popen objects must outlive the
# LocalCluster that made them: only they can reap the exited server, and an unreaped
# zombie would still look alive to kill(pid, 0).
_SPAWNED: dict[int, subprocess.Popen[bytes]] = {}


# --------------------------------------------------------------------------- binaries


@attrs.frozen(kw_only=True)
class PgBinaries:
    """One PostgreSQL installation's ``bin`` directory."""

    bindir: Path
    version: str
    """Server version as ``postgres --version`` reports it, e.g. ``"15.18"``."""
    source: str
    """Where it was found: ``explicit``, ``TAPDB_PG_BIN``, ``PATH``, ``standard``, ``pgserver``."""

    @property
    def initdb(self) -> Path:
        return self.bindir / "initdb"

    @property
    def pg_ctl(self) -> Path:
        return self.bindir / "pg_ctl"

    @property
    def postgres(self) -> Path:
        return self.bindir / "postgres"

    def tool(self, name: str) -> Path:
        """A client program (``pg_dump``, ``psql``, ...) matching this server if possible.

        The copy in ``bindir`` is preferred because ``pg_dump`` refuses to dump a server
        newer than itself; ``PATH`` is only the fallback.
        """
        candidate = self.bindir / name
        if _is_executable(candidate):
            return candidate
        found = shutil.which(name)
        if found is not None:
            return Path(found)
        raise PostgresRuntimeError(
            f"{name} not found: not in {self.bindir} and not on PATH; "
            "install the PostgreSQL client programs"
        )


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _missing_binaries(bindir: Path) -> list[str]:
    return [name for name in REQUIRED_BINARIES if not _is_executable(bindir / name)]


def parse_version(text: str) -> str | None:
    """``"postgres (PostgreSQL) 15.18 (Debian ...)"`` -> ``"15.18"``."""
    match = _VERSION_RE.search(text)
    return match.group(1) if match else None


def _server_version(bindir: Path) -> str:
    postgres = bindir / "postgres"
    try:
        result = subprocess.run(
            [str(postgres), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=_child_env(),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise PostgresRuntimeError(f"cannot run {postgres} --version: {exc}") from exc
    version = parse_version(result.stdout)
    if result.returncode != 0 or version is None:
        output = (result.stdout + result.stderr).strip()
        raise PostgresRuntimeError(
            f"{postgres} --version failed (exit code {result.returncode}): {output!r}"
        )
    return version


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
    """The binaries of the optional ``pgserver`` wheel, or None if it is not installed.

    The package is located without being imported: importing it runs platformdirs
    code at import time (directories created, warnings emitted) that we do not need.
    """
    module = sys.modules.get("pgserver")
    origin: str | None
    if module is not None:
        origin = getattr(module, "__file__", None)
    else:
        try:
            spec = importlib_util.find_spec("pgserver")
        except (ImportError, ValueError):
            spec = None
        origin = spec.origin if spec is not None else None
    if origin is None:
        return None
    return Path(origin).parent / "pginstall" / "bin"


def _path_candidates() -> list[Path]:
    found = shutil.which("pg_ctl")
    if found is None:
        return []
    # bindir must be absolute: the programs are started with cwd="/".
    linked = Path(found).absolute()
    # Resolve first so a symlink farm (Homebrew, alternatives) leads to the real install
    # whose initdb/postgres/pg_dump all belong together.
    candidates = [linked.resolve().parent]
    if linked.parent not in candidates:
        candidates.append(linked.parent)
    return candidates


def _checked(bindir: Path, source: str) -> PgBinaries:
    """Binaries from a directory the user named; anything wrong with it is an error."""
    if not bindir.is_dir():
        raise PostgresRuntimeError(f"{source}: {bindir} is not a directory")
    missing = _missing_binaries(bindir)
    if missing:
        raise PostgresRuntimeError(
            f"{source}: {bindir} has no executable {', '.join(missing)} "
            f"(it must contain {', '.join(REQUIRED_BINARIES)})"
        )
    return PgBinaries(bindir=bindir, version=_server_version(bindir), source=source)


def find_binaries(explicit: str | os.PathLike[str] | None = None) -> PgBinaries:
    """Locate ``initdb``, ``pg_ctl`` and ``postgres`` from one installation.

    Order: ``explicit``, else ``$TAPDB_PG_BIN``; then the directory of ``pg_ctl`` on
    ``PATH``; then the usual installation directories; then the ``pgserver`` wheel.
    A directory given explicitly or through the environment must be valid: falling back
    silently would run a different PostgreSQL than the one asked for.
    """
    if explicit is not None:
        return _checked(Path(explicit).expanduser().absolute(), "explicit")
    env_dir = os.environ.get(ENV_BIN)
    if env_dir:
        return _checked(Path(env_dir).expanduser().absolute(), ENV_BIN)

    tried: list[str] = []
    searched: list[tuple[str, list[Path]]] = [
        ("PATH", _path_candidates()),
        ("standard", _standard_locations()),
    ]
    if not searched[0][1]:
        tried.append("PATH: no pg_ctl on PATH")
    pgserver_dir = _pgserver_bindir()
    if pgserver_dir is None:
        tried.append("pgserver: not installed")
    else:
        searched.append(("pgserver", [pgserver_dir]))

    seen: set[Path] = set()
    for source, candidates in searched:
        for bindir in candidates:
            if bindir in seen:
                continue
            seen.add(bindir)
            if not bindir.is_dir():
                tried.append(f"{source}: {bindir} (does not exist)")
                continue
            missing = _missing_binaries(bindir)
            if missing:
                tried.append(f"{source}: {bindir} (no {', '.join(missing)})")
                continue
            try:
                version = _server_version(bindir)
            except PostgresRuntimeError as exc:
                tried.append(f"{source}: {bindir} ({exc})")
                continue
            return PgBinaries(bindir=bindir, version=version, source=source)

    places = "\n  ".join(tried)
    raise PostgresRuntimeError(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found. Tried:\n  "
        f"{places}\n"
        'Fix: pip install "tapdb-core[local]" (bundled binaries), or install PostgreSQL, '
        f"or set {ENV_BIN} to the directory holding initdb, pg_ctl and postgres."
    )


# --------------------------------------------------------------------------- helpers


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (another process may take it before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _child_env() -> dict[str, str]:
    # PGPORT, PGDATA, PGHOST... would silently change what initdb/postgres do; the
    # cluster must be defined by our arguments alone.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _is_root() -> bool:
    return os.geteuid() == 0


@attrs.frozen
class _OsUser:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def _lookup_os_user(name: str) -> _OsUser:
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
    """The first existing ancestor of ``path`` that ``uid`` cannot enter, if any.

    ``os.access`` cannot answer this: it checks the real uid, which is root here.
    """
    for directory in reversed(path.parents):
        try:
            st = directory.stat()
        except FileNotFoundError:
            return None
        if uid == 0:
            continue
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return directory
    return None


def _tail_lines(path: Path, lines: int, start: int = 0) -> str:
    """The last ``lines`` lines of ``path`` after byte offset ``start``, read from the end."""
    if lines <= 0:
        return ""
    try:
        with path.open("rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            pos = end
            chunk = b""
            while pos > start and chunk.count(b"\n") <= lines:
                step = min(8192, pos - start)
                pos -= step
                fh.seek(pos)
                chunk = fh.read(step) + chunk
    except FileNotFoundError:
        return ""
    text = chunk.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _quote_conf_list_item(value: str) -> str:
    # unix_socket_directories is a comma-separated list parsed by PostgreSQL itself;
    # double quotes keep a path containing commas or spaces in one piece.
    if re.search(r'[\s,"]', value):
        return '"' + value.replace('"', '""') + '"'
    return value


def _process_name(pid: int) -> str | None:
    comm = Path(f"/proc/{pid}/comm")
    if comm.parent.is_dir():
        try:
            return comm.read_text().strip()
        except OSError:
            return None
    ps = shutil.which("ps")
    if ps is None:
        return None
    result = subprocess.run(
        [ps, "-o", "comm=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    name = result.stdout.strip()
    return Path(name).name if name else None


def _is_zombie(pid: int) -> bool:
    # A zombie (exited, not yet reaped by a parent that is not us) still answers
    # kill(pid, 0); on Linux its state letter says the truth.
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line.rpartition(")")[2].split()[:1] == ["Z"]


def _process_cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


# --------------------------------------------------------------------------- cluster


@attrs.frozen(kw_only=True)
class ClusterStatus:
    initialized: bool
    running: bool
    pid: int | None
    port: int
    """The port the server listens on when running (from postmaster.pid), else ours."""
    data_dir: Path
    log_file: Path


def _absolute(value: str | os.PathLike[str]) -> Path:
    # postgres chdirs into the data directory, so a relative path would mean
    # something else to it than to us.
    return Path(value).expanduser().absolute()


def _optional_absolute(value: str | os.PathLike[str] | None) -> Path | None:
    return None if value is None else _absolute(value)


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

    def __attrs_post_init__(self) -> None:
        self._socket_dir_given = self.socket_dir is not None
        if self.socket_dir is None:
            self.socket_dir = self._default_socket_dir()

    # ----------------------------------------------------------------- properties

    @property
    def log_file(self) -> Path:
        return self.data_dir / _LOG_NAME

    @property
    def pid_file(self) -> Path:
        return self.data_dir / _PID_FILE

    @property
    def is_initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def _sockdir(self) -> Path:
        if self.socket_dir is None:  # only if someone assigned None after construction
            self.socket_dir = self._default_socket_dir()
        return self.socket_dir

    def _default_socket_dir(self) -> Path:
        preferred = self.data_dir / "socket"
        if len(str(preferred)) + _SOCKET_NAME_MAX <= _MAX_SOCKET_PATH:
            return preferred
        # Named after the data directory so that every LocalCluster for it agrees.
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"tapdb-pg-{digest}"

    def _bins(self) -> PgBinaries:
        if self.binaries is None:
            self.binaries = find_binaries()
        return self.binaries

    def _connect_host(self) -> str:
        return {"*": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(  # noqa: S104
            self.host, self.host
        )

    # ----------------------------------------------------------------- urls

    def url(
        self,
        dbname: str = "postgres",
        user: str = "postgres",
        password: str | None = None,
        driver: str = "postgresql+psycopg",
    ) -> str:
        """SQLAlchemy URL for a TCP connection to this server."""
        host = self._connect_host()
        if ":" in host:
            host = f"[{host}]"
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"{driver}://{auth}@{host}:{self.port}/{quote(dbname, safe='')}"

    def conninfo(
        self, dbname: str = "postgres", user: str = "postgres", password: str | None = None
    ) -> str:
        """libpq keyword/value string, as ``psycopg.connect`` takes it."""
        params: dict[str, Any] = {
            "host": self._connect_host(),
            "port": self.port,
            "dbname": dbname,
            "user": user,
        }
        if password is not None:
            params["password"] = password
        return pg_conninfo.make_conninfo(**params)

    # ----------------------------------------------------------------- os user

    def _os_user(self) -> _OsUser | None:
        """Whom to run PostgreSQL as, or None to run it as ourselves (we are not root)."""
        if not _is_root():
            return None
        name = self.run_as or os.environ.get(ENV_OS_USER)
        if not name:
            try:
                pwd.getpwnam("postgres")
                name = "postgres"
            except KeyError:
                name = "nobody"
        return _lookup_os_user(name)

    def _run_kwargs(self, user: _OsUser | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"env": _child_env(), "cwd": "/"}
        if user is not None:
            # extra_groups drops root's supplementary groups, which the server would
            # otherwise keep.
            kwargs.update(user=user.uid, group=user.gid, extra_groups=list(user.groups))
        return kwargs

    def _require_traversable(self, path: Path, user: _OsUser | None) -> None:
        if user is None:
            return
        blocked = _untraversable_ancestor(path, user.uid, user.groups)
        if blocked is not None:
            raise PostgresRuntimeError(
                f"PostgreSQL runs as OS user {user.name!r} (this process is root), which "
                f"cannot enter {blocked} on the way to {path}. Use a location it can reach "
                f"or chmod o+x {blocked}"
            )

    def _claim_dir(self, path: Path, user: _OsUser | None, *, follow: bool) -> None:
        """Make ``path`` a 0700 directory owned by the server's OS user, creating it if needed.

        Ownership and mode are changed through a descriptor opened without following
        symlinks: the server's user owns the data directory and could otherwise plant a
        link that makes root chown a file of its choice.
        """
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        flags = os.O_RDONLY | os.O_DIRECTORY | (0 if follow else os.O_NOFOLLOW)
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            raise PostgresRuntimeError(f"{path} is not a usable directory: {exc}") from exc
        try:
            owner = user.uid if user is not None else os.geteuid()
            current = os.fstat(fd).st_uid
            if current != owner:
                # Only a root-owned directory (made by us, or by whoever runs us as root)
                # is handed over; anyone else's - think of the predictable short socket
                # directory in the shared temp dir - is not ours to use.
                if user is None or current != 0:
                    raise PostgresRuntimeError(
                        f"{path} is owned by uid {current}, expected uid {owner}"
                    )
                os.fchown(fd, user.uid, user.gid)
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
        self._require_traversable(path, user)

    def _prepare_socket_dir(self, user: _OsUser | None) -> None:
        path = self._sockdir()
        if self._socket_dir_given and os.path.lexists(path):
            # A directory the caller named and that already exists may be shared
            # (/tmp, /var/run/postgresql): use it as it is.
            self._require_traversable(path, user)
            return
        self._claim_dir(path, user, follow=False)

    def _open_log(self, user: _OsUser | None) -> int:
        """Append descriptor on the server log, owned by the server's OS user."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
        try:
            fd = os.open(self.log_file, flags, 0o600)
        except OSError as exc:
            raise PostgresRuntimeError(f"cannot open log file {self.log_file}: {exc}") from exc
        if user is not None:
            os.fchown(fd, user.uid, user.gid)
        return fd

    # ----------------------------------------------------------------- init

    def init(
        self, superuser: str = "postgres", password: str | None = None, force: bool = False
    ) -> bool:
        """Create the cluster with initdb. False if it already existed (and not ``force``).

        ``force`` stops and deletes an existing cluster first; a non-empty directory
        that is not a cluster is never deleted.
        """
        if self.is_initialized:
            if not force:
                return False
            self.stop(mode="immediate")
            shutil.rmtree(self.data_dir)
        elif self.data_dir.is_dir() and any(self.data_dir.iterdir()):
            raise PostgresRuntimeError(
                f"{self.data_dir} is not empty and is not a PostgreSQL data directory; "
                "refusing to initialise it"
            )
        bins = self._bins()
        user = self._os_user()
        self._claim_dir(self.data_dir, user, follow=True)

        argv = [
            str(bins.initdb),
            "-D",
            str(self.data_dir),
            "-E",
            "UTF8",
            "--no-locale",
            "-U",
            superuser,
        ]
        if self.fast_unsafe:
            argv.append("--no-sync")
        with self._password_file(password, user) as pwfile:
            if pwfile is None:
                argv += ["--auth-local=trust", "--auth-host=trust"]
            else:
                argv += [
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                ]
            result = subprocess.run(
                argv, capture_output=True, text=True, check=False, **self._run_kwargs(user)
            )
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
            raise PostgresRuntimeError(
                f"initdb failed for {self.data_dir} (exit code {result.returncode}):\n{output}"
            )
        return True

    @contextlib.contextmanager
    def _password_file(self, password: str | None, user: _OsUser | None) -> Iterator[Path | None]:
        """A 0600 file holding ``password`` for ``initdb --pwfile``; argv is world-readable."""
        if password is None:
            yield None
            return
        fd, name = tempfile.mkstemp(prefix="tapdb-pw-")  # mkstemp creates it 0600
        path = Path(name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                if user is not None:
                    os.fchown(fh.fileno(), user.uid, user.gid)
                fh.write(password + "\n")
            self._require_traversable(path, user)
            yield path
        finally:
            path.unlink(missing_ok=True)

    # ----------------------------------------------------------------- status

    def _read_pid_file(self) -> list[str] | None:
        try:
            return self.pid_file.read_text().splitlines()
        except (FileNotFoundError, UnicodeDecodeError):
            return None

    def _postmaster_alive(self, pid: int) -> bool:
        """Whether ``pid`` is the postmaster of this data directory."""
        spawned = _SPAWNED.get(pid)
        if spawned is not None and spawned.poll() is not None:
            del _SPAWNED[pid]
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # alive, belongs to someone else; the checks below decide
        if _is_zombie(pid):
            return False
        name = _process_name(pid)
        if name is not None and name not in ("postgres", "postmaster"):
            return False
        # pids are recycled (quickly, in containers): a postgres with this pid could be
        # another cluster's. Its postmaster's working directory is its data directory.
        cwd = _process_cwd(pid)
        return cwd is None or cwd == self.data_dir.resolve()

    def _running_pid(self) -> int | None:
        lines = self._read_pid_file()
        if not lines:
            return None
        try:
            pid = int(lines[0].strip())
        except ValueError:
            return None
        return pid if pid > 0 and self._postmaster_alive(pid) else None

    def status(self) -> ClusterStatus:
        pid = self._running_pid()
        port = self.port
        if pid is not None:
            lines = self._read_pid_file() or []
            if len(lines) > 3 and lines[3].strip().isdigit():
                port = int(lines[3].strip())
        return ClusterStatus(
            initialized=self.is_initialized,
            running=pid is not None,
            pid=pid,
            port=port,
            data_dir=self.data_dir,
            log_file=self.log_file,
        )

    def log_tail(self, lines: int = 50) -> str:
        return _tail_lines(self.log_file, lines)

    # ----------------------------------------------------------------- start/stop

    def _remove_stale_pid_file(self) -> None:
        # Only reached when _running_pid() found no live postmaster for this directory;
        # postgres itself would refuse to start while the named pid is any live process.
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()

    def _server_argv(self) -> list[str]:
        settings = {
            "port": str(self.port),
            "listen_addresses": self.host,
            "unix_socket_directories": _quote_conf_list_item(str(self._sockdir())),
        }
        if self.fast_unsafe:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        argv = [str(self._bins().postgres), "-D", str(self.data_dir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def _fail(self, message: str, log_offset: int = 0) -> PostgresRuntimeError:
        tail = _tail_lines(self.log_file, 20, start=log_offset) or _tail_lines(self.log_file, 20)
        detail = f"\n--- last lines of {self.log_file} ---\n{tail}" if tail else ""
        return PostgresRuntimeError(f"{message}{detail}")

    def _ready(self, pid: int) -> bool:
        lines = self._read_pid_file()
        # Line 8 of postmaster.pid is the server state (PostgreSQL >= 10).
        if not lines or lines[0].strip() != str(pid) or len(lines) < 8:
            return False
        if lines[7].strip() != "ready":
            return False
        ping_info = pg_conninfo.make_conninfo(self.conninfo(), connect_timeout=2)
        return pq.PGconn.ping(ping_info.encode()) == pq.Ping.OK

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it accepts connections. No-op if running."""
        if not self.is_initialized:
            raise PostgresRuntimeError(f"{self.data_dir} is not initialised; call init() first")
        current = self.status()
        if current.running:
            if current.port != self.port:
                raise PostgresRuntimeError(
                    f"the cluster in {self.data_dir} is already running on port "
                    f"{current.port}, not {self.port}"
                )
            return
        self._remove_stale_pid_file()

        user = self._os_user()
        self._require_traversable(self.data_dir, user)
        self._prepare_socket_dir(user)
        argv = self._server_argv()
        log = self._open_log(user)
        log_offset = os.fstat(log).st_size
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C meant for us must not reach the server.
                start_new_session=True,
                **self._run_kwargs(user),
            )
        except OSError as exc:
            raise PostgresRuntimeError(f"cannot run {argv[0]}: {exc}") from exc
        finally:
            os.close(log)
        _SPAWNED[proc.pid] = proc

        deadline = time.monotonic() + timeout
        while True:
            code = proc.poll()
            if code is not None:
                _SPAWNED.pop(proc.pid, None)
                raise self._fail(
                    f"PostgreSQL in {self.data_dir} exited during startup (exit code {code})",
                    log_offset,
                )
            if self._ready(proc.pid):
                return
            if time.monotonic() >= deadline:
                # A half-started server would hold the port and postmaster.pid and make
                # the retry fail in a confusing way.
                self._kill(proc)
                raise self._fail(
                    f"PostgreSQL in {self.data_dir} did not accept connections on "
                    f"{self._connect_host()}:{self.port} within {timeout:g} s",
                    log_offset,
                )
            time.sleep(0.05)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _SPAWNED.pop(proc.pid, None)

    def stop(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """Stop the server: ``smart``, ``fast`` or ``immediate``, as in ``pg_ctl stop -m``."""
        if mode not in _STOP_SIGNALS:
            raise ValueError(f"stop mode must be one of {', '.join(_STOP_SIGNALS)}, not {mode!r}")
        pid = self._running_pid()
        if pid is None:
            return
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        try:
            os.kill(pid, _STOP_SIGNALS[mode])
        except ProcessLookupError:
            return
        except PermissionError as exc:
            raise PostgresRuntimeError(
                f"not allowed to stop PostgreSQL (pid {pid}) in {self.data_dir}: {exc}"
            ) from exc
        deadline = time.monotonic() + timeout
        while self._postmaster_alive(pid):
            if time.monotonic() >= deadline:
                raise self._fail(
                    f"PostgreSQL (pid {pid}) in {self.data_dir} did not stop within "
                    f"{timeout:g} s in {mode} mode; try mode='immediate'",
                    log_offset,
                )
            time.sleep(0.05)


@contextlib.contextmanager
def temporary_cluster(
    *, fast_unsafe: bool = True, prefix: str = "tapdb-tmp-"
) -> Iterator[LocalCluster]:
    """A throwaway running cluster in a temporary directory, removed afterwards
    (the tests' and the benchmarks' PostgreSQL). ``fast_unsafe`` turns fsync off."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        workdir.chmod(
            0o755
        )  # the unprivileged server user must reach the data dir when we are root
        cluster = LocalCluster(data_dir=workdir / "data", port=free_port(), fast_unsafe=fast_unsafe)
        cluster.init()
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
