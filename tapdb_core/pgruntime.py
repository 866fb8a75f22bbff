"""A local PostgreSQL cluster for development and tests: initdb, then ``pg_ctl -w``,
which owns the server's life cycle (pid file, waiting for readiness, signals).

Its helpers: tapdb_core.pgbinaries finds the binaries, tapdb_core.pgshell quotes what
pg_ctl hands to the shell, and as root tapdb_core.pgosuser runs the server as an
unprivileged OS user, from binaries it can reach (tapdb_core.pgbincache).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import select
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import attrs
from psycopg import conninfo as pg_conninfo

from tapdb_core.errors import PostgresRuntimeError
from tapdb_core.pgbinaries import PgBinaries, find_binaries
from tapdb_core.pgbincache import runnable_binaries
from tapdb_core.pgosuser import (
    OsUser,
    claim_dir,
    claim_log,
    password_file,
    require_traversable,
    run_program,
    server_os_user,
    unreachable_by_server,
)
from tapdb_core.pgshell import refuse_shell_special, server_options

__all__ = [
    "STOP_MODES",
    "ClusterStatus",
    "LocalCluster",
    "PgBinaries",
    "find_binaries",
    "free_port",
    "temporary_cluster",
    "unreachable_by_server",
]

STOP_MODES: Final = ("smart", "fast", "immediate")
_MAX_SOCKET_PATH: Final = 103  # sun_path: 108 bytes on Linux, 104 on macOS, NUL included
_SOCKET_NAME_MAX: Final = len("/.s.PGSQL.65535")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (another process may take it before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


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
    """OS user to run PostgreSQL as when this process is root (see tapdb_core.pgosuser)."""
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

    def _os_user(self) -> OsUser | None:
        return server_os_user(self.run_as)

    def _server_bins(self, user: OsUser | None) -> PgBinaries:
        """The binaries as the server's OS user can run them (see runnable_binaries)."""
        if self.binaries is None:
            self.binaries = find_binaries()
        if self._runnable is None or self._runnable[0] != self.binaries:
            self._runnable = (self.binaries, runnable_binaries(self.binaries, user))
        return self._runnable[1]

    def _pg_ctl(
        self, user: OsUser | None, *args: str, pass_fds: Sequence[int] = ()
    ) -> subprocess.CompletedProcess[str]:
        pg_ctl = str(self._server_bins(user).pg_ctl)
        return run_program(user, [pg_ctl, *args, "-D", str(self.data_dir)], pass_fds)

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
        claim_dir(self.data_dir, user, follow=True)
        argv = [str(self._server_bins(user).initdb), "-D", str(self.data_dir), "-E", "UTF8"]
        argv += ["--no-locale", "-U", superuser] + (["--no-sync"] if self.fast_unsafe else [])
        with password_file(password, user, self.data_dir.parent) as pwfile:
            if pwfile is None:
                argv += ["--auth-local=trust", "--auth-host=trust"]
            else:
                argv += ["--auth-local=scram-sha-256", "--auth-host=scram-sha-256"]
                argv.append(f"--pwfile={pwfile}")
            result = run_program(user, argv)
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
            raise PostgresRuntimeError(
                f"initdb failed for {self.data_dir} (exit code {result.returncode}):\n{output}"
            )
        return True

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

    def _prepare(self, user: OsUser | None) -> int:
        """Socket directory and log file ready for the server; returns the log's size."""
        for path in (self.data_dir, self._server_bins(user).bindir):
            refuse_shell_special(path)
        require_traversable(self.data_dir, user)
        assert self.socket_dir is not None
        if self._socket_dir_given and os.path.lexists(self.socket_dir):
            require_traversable(self.socket_dir, user)  # maybe shared: used as is
        else:
            claim_dir(self.socket_dir, user, follow=False)
        return claim_log(self.log_file, user)

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
        assert self.socket_dir is not None  # set on construction
        options = server_options(
            self.port, self.host, self.socket_dir, fast_unsafe=self.fast_unsafe
        )
        # every process of the new server inherits the write end: end-of-file on the
        # read end says the last one has exited, however slow the machine is
        read_end, write_end = os.pipe()
        try:
            try:
                result = self._pg_ctl(user, *args, "-o", options, pass_fds=[write_end])
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
