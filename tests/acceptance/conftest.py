"""Acceptance tests: the real ``tapdb`` executable, run as a subprocess.

Every run gets an isolated environment: no inherited ``TAPDB_*``, ``PG*`` or
``DATABASE_URL`` variables, ``HOME`` in a temporary directory (so no config file
of the machine is read or written) and a temporary working directory. The
server of the session-wide test cluster (``server_url``) is passed with
``TAPDB_<ENV>_HOST/PORT/USER/PASSWORD/DATABASE`` variables.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import select
import shutil
import subprocess
import sys
import termios
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

_names = itertools.count()


def tapdb_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m tapdb_core``."""
    beside = Path(sys.executable).with_name("tapdb")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("tapdb")
    if found:
        return [found]
    return [sys.executable, "-m", "tapdb_core"]


def isolated_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(("TAPDB_", "PG")) or k == "DATABASE_URL")
    }
    env.update(
        HOME=str(home),
        TAPDB_OPLOG=str(home / "operations.log"),
        TAPDB_CONNECT_TIMEOUT="5",
    )
    return env


def server_vars(server: URL, env: str, database: str) -> dict[str, str]:
    prefix = f"TAPDB_{env.upper()}_"
    values = {
        prefix + "HOST": server.host or "127.0.0.1",
        prefix + "PORT": str(server.port or 5432),
        prefix + "USER": server.username or "postgres",
        prefix + "DATABASE": database,
    }
    if server.password:
        values[prefix + "PASSWORD"] = str(server.password)
    return values


class Cli:
    """Runs ``tapdb`` with an isolated environment."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd
        self.command = tapdb_command()

    def __call__(
        self,
        *args: str,
        input: str | None = "",
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command, *args],
            input=input,
            env={**self.env, **(env or {})},
            cwd=cwd or self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def many(
        self, *argvs: Sequence[str], env: Mapping[str, str] | None = None
    ) -> list[subprocess.CompletedProcess[str]]:
        """Independent read-only runs, concurrently (start-up dominates a run)."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda argv: self(*argv, env=env), argvs))

    def in_terminal(
        self,
        argv: Sequence[str],
        answers: Sequence[tuple[str, str]],
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
    ) -> tuple[int, str]:
        """Run with a terminal (its controlling tty) as stdin/stdout/stderr and answer
        each prompt (marker text, answer) in turn. Returns exit code and all output."""
        master, slave = os.openpty()

        def controlling_tty() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # after setsid: getpass opens /dev/tty

        proc = subprocess.Popen(
            [*self.command, *argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            start_new_session=True,
            preexec_fn=controlling_tty,  # not thread-safe: no other thread runs meanwhile
        )
        os.close(slave)
        output, pending, seen = b"", list(answers), 0
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.2)
                if ready:
                    try:
                        chunk = os.read(master, 4096)
                    except OSError:  # EIO: the child closed the terminal
                        break
                    if not chunk:
                        break
                    output += chunk
                if pending and pending[0][0].encode() in output[seen:]:
                    seen = output.index(pending[0][0].encode(), seen) + len(pending[0][0])
                    os.write(master, pending.pop(0)[1].encode() + b"\n")
                if proc.poll() is not None and not ready:
                    break
            code = proc.wait(timeout=30)
        finally:
            os.close(master)
            if proc.poll() is None:
                proc.kill()
        return code, output.decode(errors="replace")


def assert_one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The run failed with one ``tapdb: error:`` line on stderr (no traceback)."""
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("tapdb: error:")]
    assert len(errors) == 1, done.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def cli(tmp_path: Path, home: Path) -> Cli:
    work = tmp_path / "work"
    work.mkdir()
    return Cli(isolated_env(home), work)


@pytest.fixture
def new_db_name(admin_engine: Engine) -> Iterator[str]:
    """A database name nobody uses yet; dropped afterwards if a test created it."""
    name = f"tapdb_cli_{os.getpid()}_{next(_names)}"
    yield name
    with admin_engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def database_exists(admin: Engine, name: str) -> bool:
    with admin.connect() as conn:
        return (
            conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
            is not None
        )
