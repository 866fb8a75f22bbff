"""Tests for tapdb_core.pgruntime: binary discovery and a real local cluster life cycle."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import make_url

from tapdb_core import pgbinaries, pgbincache, pgosuser
from tapdb_core.errors import PostgresRuntimeError
from tapdb_core.pgruntime import LocalCluster, PgBinaries, find_binaries, free_port

STUB_VERSION = "99.1"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A scratch directory the unprivileged PostgreSQL user can traverse when we are root.

    pytest's tmp_path lives under a 0700 directory, which that user cannot enter.
    """
    path = Path(tempfile.mkdtemp(prefix="tapdb-pgrt-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


ClusterFactory = Callable[..., LocalCluster]


@pytest.fixture
def make_cluster(workdir: Path) -> Iterator[ClusterFactory]:
    """Initialised (not started) clusters under ``workdir``; every one is stopped afterwards."""
    made: list[LocalCluster] = []

    def factory(name: str = "data", **kwargs: Any) -> LocalCluster:
        kwargs.setdefault("port", free_port())
        kwargs.setdefault("fast_unsafe", True)
        password = kwargs.pop("password", None)
        cluster = LocalCluster(data_dir=workdir / name, **kwargs)
        made.append(cluster)
        assert cluster.init(password=password) is True
        return cluster

    yield factory
    for cluster in made:
        cluster.stop(mode="immediate")


def make_stub_bindir(path: Path, names: tuple[str, ...] = ("initdb", "pg_ctl", "postgres")) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name in names:
        stub = path / name
        stub.write_text(f"#!/bin/sh\necho 'postgres (PostgreSQL) {STUB_VERSION}'\n")
        stub.chmod(0o755)
    return path


@pytest.fixture
def isolated_search(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No TAPDB_PG_BIN, an empty PATH, no standard locations, no pgserver."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.delenv(pgbinaries.ENV_BIN, raising=False)
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(pgbinaries, "_standard_locations", lambda: [])
    monkeypatch.setattr(pgbinaries, "_pgserver_bindir", lambda: None)
    return empty


def select_one(cluster: LocalCluster, password: str | None = None) -> int:
    with psycopg.connect(cluster.conninfo(password=password), connect_timeout=5) as conn:
        row = conn.execute("SELECT 1").fetchone()
    assert row is not None
    value: int = row[0]
    return value


def expected_os_uid() -> int:
    if os.geteuid() != 0:
        return os.geteuid()
    name = os.environ.get(pgosuser.ENV_OS_USER)
    if not name:
        try:
            pwd.getpwnam("postgres")
            name = "postgres"
        except KeyError:
            name = "nobody"
    return pwd.getpwnam(name).pw_uid


# --------------------------------------------------------------------------- discovery


def test_version_parsing() -> None:
    assert pgbinaries.parse_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)") == (
        "15.18"
    )
    assert pgbinaries.parse_version("postgres (PostgreSQL) 16.2") == "16.2"
    assert pgbinaries.parse_version("postgres (PostgreSQL) 17beta1") == "17beta1"
    assert pgbinaries.parse_version("something else") is None


def test_explicit_directory_wins_over_environment(
    isolated_search: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = make_stub_bindir(tmp_path / "explicit")
    monkeypatch.setenv(pgbinaries.ENV_BIN, str(tmp_path / "does-not-exist"))

    found = find_binaries(explicit=str(explicit))

    assert found == PgBinaries(bindir=explicit, version=STUB_VERSION, source="explicit")


def test_environment_directory_is_used(
    isolated_search: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_dir = make_stub_bindir(tmp_path / "env")
    # Would be found by the PATH search; the environment must win.
    make_stub_bindir(isolated_search)
    monkeypatch.setenv(pgbinaries.ENV_BIN, str(env_dir))

    found = find_binaries()

    assert (found.bindir, found.source) == (env_dir, "TAPDB_PG_BIN")


def test_environment_directory_without_binaries_is_an_error_naming_it(
    isolated_search: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = make_stub_bindir(tmp_path / "half", names=("pg_ctl",))
    monkeypatch.setenv(pgbinaries.ENV_BIN, str(bad))
    # A valid installation elsewhere must not be fallen back to.
    make_stub_bindir(isolated_search)

    with pytest.raises(PostgresRuntimeError) as info:
        find_binaries()

    message = str(info.value)
    assert str(bad) in message
    assert "TAPDB_PG_BIN" in message
    assert "initdb" in message and "postgres" in message


def test_explicit_directory_that_does_not_exist_is_an_error(
    isolated_search: Path, tmp_path: Path
) -> None:
    with pytest.raises(PostgresRuntimeError, match="not a directory"):
        find_binaries(explicit=tmp_path / "nope")


def test_non_executable_binaries_do_not_count(isolated_search: Path, tmp_path: Path) -> None:
    bindir = make_stub_bindir(tmp_path / "noexec")
    (bindir / "postgres").chmod(0o644)

    with pytest.raises(PostgresRuntimeError, match=r"no executable postgres"):
        find_binaries(explicit=bindir)


def test_path_search_resolves_symlinks_to_the_real_install(
    isolated_search: Path, tmp_path: Path
) -> None:
    real = make_stub_bindir(tmp_path / "install" / "bin", names=(*pgbinaries.REQUIRED_BINARIES,))
    # Only pg_ctl is linked onto PATH, as alternatives/Homebrew farms often do.
    (isolated_search / "pg_ctl").symlink_to(real / "pg_ctl")

    found = find_binaries()

    assert (found.bindir, found.source) == (real, "PATH")


def test_standard_locations_newest_major_first(tmp_path: Path) -> None:
    for major in ("9.6", "12", "15", "10"):
        (tmp_path / "usr/lib/postgresql" / major / "bin").mkdir(parents=True)
    (tmp_path / "opt/homebrew/opt/postgresql@14/bin").mkdir(parents=True)

    locations = pgbinaries._standard_locations(tmp_path)

    debian = [p.parent.name for p in locations if "usr/lib/postgresql" in str(p)]
    assert debian == ["15", "12", "10", "9.6"]
    assert locations.index(tmp_path / "opt/homebrew/opt/postgresql@14/bin") > 3
    assert locations[-2:] == [tmp_path / "opt/homebrew/bin", tmp_path / "usr/local/bin"]


def test_standard_location_used_when_path_has_nothing(
    isolated_search: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    incomplete = make_stub_bindir(tmp_path / "a", names=("initdb",))
    complete = make_stub_bindir(tmp_path / "b")
    monkeypatch.setattr(pgbinaries, "_standard_locations", lambda: [incomplete, complete])

    found = find_binaries()

    assert (found.bindir, found.source) == (complete, "standard")


def test_pgserver_is_the_last_resort(
    isolated_search: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel_bin = make_stub_bindir(tmp_path / "pginstall" / "bin")
    monkeypatch.setattr(pgbinaries, "_pgserver_bindir", lambda: wheel_bin)

    found = find_binaries()

    assert (found.bindir, found.source) == (wheel_bin, "pgserver")


def test_nothing_found_lists_every_place_and_the_remedies(
    isolated_search: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "usr/lib/postgresql/15/bin"
    monkeypatch.setattr(pgbinaries, "_standard_locations", lambda: [missing])

    with pytest.raises(PostgresRuntimeError) as info:
        find_binaries()

    message = str(info.value)
    assert "no pg_ctl on PATH" in message
    assert str(missing) in message
    assert "pgserver: not installed" in message
    assert 'pip install "tapdb-core[local]"' in message
    assert "TAPDB_PG_BIN" in message


def test_tool_prefers_bindir_then_path(isolated_search: Path, tmp_path: Path) -> None:
    bindir = make_stub_bindir(tmp_path / "bin", names=("initdb", "pg_ctl", "postgres", "pg_dump"))
    bins = find_binaries(explicit=bindir)
    make_stub_bindir(isolated_search, names=("pg_dump", "psql"))

    assert bins.tool("pg_dump") == bins.bindir / "pg_dump"
    assert bins.tool("psql") == isolated_search / "psql"
    with pytest.raises(PostgresRuntimeError, match="pg_isready not found"):
        bins.tool("pg_isready")


def test_real_binaries_are_found() -> None:
    bins = find_binaries()

    assert pgbinaries.parse_version(f"(PostgreSQL) {bins.version}") == bins.version
    assert bins.tool("psql").is_file()


# --------------------------------------------------------------------------- small helpers


def test_url_quotes_user_password_and_database() -> None:
    cluster = LocalCluster(data_dir=Path("/nonexistent/data"), port=6543)
    password = "p@ss:w/rd %?#&é'\""

    url = cluster.url(dbname="my db/x", user="us@r", password=password)

    parsed = make_url(url)
    assert parsed.drivername == "postgresql+psycopg"
    assert (parsed.username, parsed.password) == ("us@r", password)
    assert (parsed.host, parsed.port, parsed.database) == ("127.0.0.1", 6543, "my db/x")
    assert "@" not in url.split("://", 1)[1].rsplit("@", 1)[0].replace("%40", "")
    assert cluster.url() == "postgresql+psycopg://postgres@127.0.0.1:6543/postgres"


def test_url_brackets_ipv6_hosts() -> None:
    cluster = LocalCluster(data_dir=Path("/nonexistent/data"), port=6543, host="::1")

    assert make_url(cluster.url(driver="postgresql")).host == "::1"
    assert "@[::1]:6543/" in cluster.url()


def test_conninfo_round_trips() -> None:
    cluster = LocalCluster(data_dir=Path("/nonexistent/data"), port=6543)

    parsed = conninfo_to_dict(cluster.conninfo(dbname="my db", user="o'brien", password="a b"))

    assert parsed == {
        "host": "127.0.0.1",
        "port": "6543",
        "dbname": "my db",
        "user": "o'brien",
        "password": "a b",
    }


def test_free_port_is_bindable() -> None:
    port = free_port()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_socket_dir_defaults_inside_data_dir_and_stays_short() -> None:
    short = LocalCluster(data_dir=Path("/srv/pg/data"), port=5432)
    assert short.socket_dir == Path("/srv/pg/data/socket")

    deep = Path("/srv") / ("x" * 120) / "data"
    first = LocalCluster(data_dir=deep, port=5432)
    second = LocalCluster(data_dir=deep, port=5433)
    assert first.socket_dir is not None
    assert first.socket_dir.parent == Path(tempfile.gettempdir())
    assert len(f"{first.socket_dir}/.s.PGSQL.65535") <= 103
    assert first.socket_dir == second.socket_dir
    assert LocalCluster(data_dir=deep.parent / "other", port=1).socket_dir != first.socket_dir


def test_relative_data_dir_is_made_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)

    assert LocalCluster(data_dir=Path("rel"), port=1).data_dir == tmp_path / "rel"


def test_untraversable_ancestor_is_reported(workdir: Path) -> None:
    locked = workdir / "locked"
    (locked / "inner").mkdir(parents=True)
    locked.chmod(0o700)
    stranger = 54321  # neither owner nor in the group

    assert pgosuser.untraversable_ancestor(locked / "inner" / "data", stranger, ()) == locked
    locked.chmod(0o711)
    assert pgosuser.untraversable_ancestor(locked / "inner" / "data", stranger, ()) is None


def test_os_user_choice_when_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pgosuser, "_is_root", lambda: True)
    cluster = LocalCluster(data_dir=Path("/nonexistent/data"), port=1)

    monkeypatch.setenv(pgosuser.ENV_OS_USER, "nobody")
    user = cluster._os_user()
    assert user is not None and user.name == "nobody"

    monkeypatch.setenv(pgosuser.ENV_OS_USER, "no-such-user-tapdb")
    with pytest.raises(PostgresRuntimeError, match="no-such-user-tapdb"):
        cluster._os_user()
    cluster.run_as = "nobody"  # the attribute beats the environment
    user = cluster._os_user()
    assert user is not None and user.name == "nobody"

    cluster.run_as = "root"
    with pytest.raises(PostgresRuntimeError, match="refuses to run as root"):
        cluster._os_user()

    cluster.run_as = None
    monkeypatch.delenv(pgosuser.ENV_OS_USER)
    real_getpwnam = pwd.getpwnam

    def no_postgres_account(name: str) -> pwd.struct_passwd:
        if name == "postgres":
            raise KeyError(name)
        return real_getpwnam(name)

    monkeypatch.setattr(pwd, "getpwnam", no_postgres_account)
    user = cluster._os_user()
    assert user is not None and user.name == "nobody"


def test_not_root_runs_as_ourselves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pgosuser, "_is_root", lambda: False)

    assert LocalCluster(data_dir=Path("/x"), port=1, run_as="nobody")._os_user() is None


# --------------------------------------------------------------------------- real cluster


def test_full_cycle(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster()
    assert cluster.binaries is not None
    before = cluster.status()
    assert (before.initialized, before.running, before.pid) == (True, False, None)
    cluster.stop()  # not running: no-op

    cluster.start()
    running = cluster.status()
    assert running.running and running.pid is not None
    assert running.port == cluster.port
    assert select_one(cluster) == 1
    assert "ready to accept connections" in cluster.log_tail()
    with psycopg.connect(cluster.conninfo()) as conn:
        settings: dict[str, str] = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'port')"
            ).fetchall()
        )
    assert settings == {"fsync": "off", "port": str(cluster.port)}

    cluster.start()  # already running: no-op
    assert cluster.status().pid == running.pid

    # The server must not run as root (PostgreSQL would refuse anyway).
    uid = os.stat(f"/proc/{running.pid}").st_uid
    assert uid == expected_os_uid()
    assert cluster.data_dir.stat().st_uid == uid

    cluster.stop()
    stopped = cluster.status()
    assert (stopped.running, stopped.pid) == (False, None)
    assert not cluster.pid_file.exists()
    with pytest.raises(psycopg.OperationalError):
        select_one(cluster)
    cluster.stop()  # idempotent


def test_init_is_idempotent_and_force_recreates(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster()
    marker = cluster.data_dir / "marker"
    marker.write_text("x")

    assert cluster.init() is False
    assert marker.exists()
    cluster.start()

    assert cluster.init(force=True) is True
    assert not marker.exists()
    assert not cluster.status().running
    cluster.start()
    assert select_one(cluster) == 1


def test_init_refuses_a_non_empty_foreign_directory(workdir: Path) -> None:
    data = workdir / "data"
    data.mkdir()
    (data / "precious.txt").write_text("keep me")
    cluster = LocalCluster(data_dir=data, port=free_port())

    with pytest.raises(PostgresRuntimeError, match="not empty"):
        cluster.init(force=True)
    assert (data / "precious.txt").read_text() == "keep me"


def test_start_before_init_is_an_error(workdir: Path) -> None:
    with pytest.raises(PostgresRuntimeError, match="init"):
        LocalCluster(data_dir=workdir / "data", port=free_port()).start()


def test_password_goes_through_a_private_file(
    make_cluster: ClusterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "s3cr&t pw'\"x"
    seen: list[list[str]] = []
    real_run = subprocess.run

    def spy(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        seen.append(list(argv))
        for arg in argv:
            if arg.startswith("--pwfile="):
                pwfile = Path(arg.split("=", 1)[1])
                assert stat.S_IMODE(pwfile.stat().st_mode) == 0o600
                assert pwfile.read_text().strip() == password
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    cluster = make_cluster(password=password)
    monkeypatch.undo()

    initdb = next(argv for argv in seen if argv[0].endswith("initdb"))
    assert not any(password in arg for arg in initdb)
    pwfile = Path(next(a for a in initdb if a.startswith("--pwfile=")).split("=", 1)[1])
    assert not pwfile.exists()
    assert "--auth-host=scram-sha-256" in initdb

    cluster.start()
    assert select_one(cluster, password=password) == 1
    with pytest.raises(psycopg.OperationalError):
        select_one(cluster, password="wrong")


def test_start_fails_with_log_tail_when_port_is_taken(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", cluster.port))
        squatter.listen()

        with pytest.raises(PostgresRuntimeError) as info:
            cluster.start(timeout=20)

    message = str(info.value)
    assert "exited during startup" in message
    assert str(cluster.log_file) in message
    assert "could not bind" in message or "Address already in use" in message
    assert not cluster.status().running
    cluster.start()  # the port is free again
    assert select_one(cluster) == 1


def test_start_fails_with_log_tail_on_bad_config(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster()
    with (cluster.data_dir / "postgresql.conf").open("a") as conf:
        conf.write("\nshared_buffers = 'banana'\n")

    with pytest.raises(PostgresRuntimeError) as info:
        cluster.start()

    assert "shared_buffers" in str(info.value)
    assert not cluster.status().running


def test_start_timeout_kills_the_half_started_server(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster()

    # pg_ctl -t 0 gives up before it looks even once, however fast or slow the machine:
    # the server it launched is half-started (or not yet at all) when start() cleans up
    for _ in range(3):
        with pytest.raises(PostgresRuntimeError, match=r"did not accept connections .* within 0 s"):
            cluster.start(timeout=0)

        assert not cluster.status().running
        assert not cluster.pid_file.exists()
    cluster.start()
    assert select_one(cluster) == 1


def _fake_pid_file(cluster: LocalCluster, pid: int) -> None:
    cluster.pid_file.write_text(
        f"{pid}\n{cluster.data_dir}\n{int(time.time())}\n{cluster.port}\n"
        f"{cluster.socket_dir}\n127.0.0.1\n  1234   5678\nready   \n"
    )


def test_stale_pid_file_naming_a_dead_process(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster()
    gone = subprocess.Popen(["true"])
    gone.wait()
    _fake_pid_file(cluster, gone.pid)
    assert not cluster.status().running

    cluster.start()

    assert select_one(cluster) == 1
    assert cluster.status().pid != gone.pid


def test_stale_pid_file_naming_the_caller_does_not_count(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster()
    # pg_ctl (and postgres) never take their parent (grandparent) for the postmaster
    _fake_pid_file(cluster, os.getpid())
    assert not cluster.status().running

    cluster.start()

    assert select_one(cluster) == 1


def test_start_on_another_port_while_running_is_an_error(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster()
    cluster.start()
    moved = LocalCluster(data_dir=cluster.data_dir, port=free_port())

    with pytest.raises(PostgresRuntimeError, match=f"already running on port {cluster.port}"):
        moved.start()


def test_stop_rejects_unknown_mode(workdir: Path) -> None:
    with pytest.raises(ValueError, match="smart, fast, immediate"):
        LocalCluster(data_dir=workdir / "d", port=1).stop(mode="gentle")


def test_long_data_dir_uses_short_socket_dir(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster("deep/" + "d" * 90 + "/data")
    assert cluster.socket_dir is not None
    assert not cluster.socket_dir.is_relative_to(cluster.data_dir)

    cluster.start()

    assert select_one(cluster) == 1
    assert (cluster.socket_dir / f".s.PGSQL.{cluster.port}").exists()
    cluster.stop()
    shutil.rmtree(cluster.socket_dir)


@pytest.mark.skipif(os.geteuid() != 0, reason="the traversal check only applies to root")
def test_root_refuses_a_data_dir_the_server_user_cannot_reach(workdir: Path) -> None:
    locked = workdir / "locked"
    locked.mkdir(mode=0o700)
    locked.chmod(0o700)
    cluster = LocalCluster(data_dir=locked / "data", port=free_port(), fast_unsafe=True)

    with pytest.raises(PostgresRuntimeError, match=f"cannot enter {locked}"):
        cluster.init()


def test_pgserver_binaries(workdir: Path) -> None:
    bindir = pgbinaries._pgserver_bindir()
    if bindir is None:
        pytest.skip("pgserver (tapdb-core[local]) is not installed")
    bins = find_binaries(explicit=bindir)
    cluster = LocalCluster(
        data_dir=workdir / "data", port=free_port(), binaries=bins, fast_unsafe=True
    )
    try:
        assert cluster.init() is True
        cluster.start()
        assert select_one(cluster) == 1
        with psycopg.connect(cluster.conninfo()) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        assert row is not None and row[0].startswith(bins.version)
        cluster.stop()
        assert not cluster.status().running
    finally:
        cluster.stop(mode="immediate")


def test_log_file_symlink_is_refused(make_cluster: ClusterFactory, workdir: Path) -> None:
    cluster = make_cluster()
    target = workdir / "victim"
    target.write_text("root's file\n")
    before = target.stat()
    cluster.log_file.unlink(missing_ok=True)
    cluster.log_file.symlink_to(target)

    with pytest.raises(PostgresRuntimeError, match="cannot open log file"):
        cluster.start()

    after = target.stat()
    assert (after.st_uid, after.st_mode) == (before.st_uid, before.st_mode)
    assert target.read_text() == "root's file\n"


def test_existing_explicit_socket_dir_is_left_as_it_is(
    make_cluster: ClusterFactory, workdir: Path
) -> None:
    shared = workdir / "shared-sockets"
    shared.mkdir()
    shared.chmod(0o1777)
    cluster = make_cluster(socket_dir=shared)

    cluster.start()

    assert select_one(cluster) == 1
    assert (shared / f".s.PGSQL.{cluster.port}").exists()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert shared.stat().st_uid == os.geteuid()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a foreign-owned directory")
def test_short_socket_dir_owned_by_someone_else_is_refused(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster("deep/" + "d" * 90 + "/data")
    assert cluster.socket_dir is not None
    cluster.socket_dir.mkdir(mode=0o777)
    try:
        os.chown(cluster.socket_dir, 54321, 54321)  # a squatter got there first

        with pytest.raises(PostgresRuntimeError, match="owned by uid 54321"):
            cluster.start()
    finally:
        shutil.rmtree(cluster.socket_dir)


@pytest.mark.parametrize("mode", ["smart", "fast", "immediate"])
def test_every_stop_mode_stops_the_server(make_cluster: ClusterFactory, mode: str) -> None:
    cluster = make_cluster()
    cluster.start()

    cluster.stop(mode=mode)

    assert not cluster.status().running
    assert not cluster.pid_file.exists()


def test_options_reach_the_server_through_the_shell_intact(
    make_cluster: ClusterFactory, workdir: Path
) -> None:
    sockets = workdir / "it's a, socket dir"
    cluster = make_cluster("o'brien data dir", socket_dir=sockets)

    cluster.start()

    with psycopg.connect(cluster.conninfo()) as conn:
        row = conn.execute("SHOW unix_socket_directories").fetchone()
    assert row is not None and row[0] == f'"{sockets}"'
    assert (sockets / f".s.PGSQL.{cluster.port}").exists()


@pytest.mark.parametrize("special", ["$(touch pwned)", "`touch pwned`", 'quote"d', "back\\slash"])
def test_paths_the_shell_would_interpret_are_refused(
    make_cluster: ClusterFactory, workdir: Path, special: str
) -> None:
    cluster = make_cluster(f"data {special}")

    with pytest.raises(PostgresRuntimeError, match="hand to the shell"):
        cluster.start()

    assert not cluster.status().running
    assert not list(workdir.rglob("pwned"))


# --------------------------------------------------------------------------- unreachable binaries


def make_wheel_layout(site: Path) -> Path:
    """A pgserver-like tree: pgserver/pginstall/{bin,lib,share} and pgserver.libs."""
    bindir = make_stub_bindir(site / "pgserver" / "pginstall" / "bin")
    for part in ("pgserver/pginstall/lib", "pgserver/pginstall/share/extension", "pgserver.libs"):
        (site / part).mkdir(parents=True)
    (site / "pgserver.libs" / "libpq-x.so.5").write_bytes(b"\0" * 100)
    (site / "pgserver/pginstall/lib/libpq.so").symlink_to("../../../pgserver.libs/libpq-x.so.5")
    (site / "pgserver/pginstall/share/extension/plpgsql.control").write_text("x\n")
    return bindir


@pytest.fixture
def stranger() -> pgosuser.OsUser:
    """An OS user that is neither owner of, nor in the group of, any test directory."""
    return pgosuser.OsUser(name="stranger", uid=54321, gid=54321, groups=(54321,))


def test_binaries_a_user_cannot_reach_are_copied_once_and_checked(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch, stranger: pgosuser.OsUser
) -> None:
    checkout = tmp_path / "checkout"  # under pytest's 0700 directory
    checkout.mkdir()
    checkout.chmod(0o700)
    bindir = make_wheel_layout(checkout / ".venv" / "site-packages")
    monkeypatch.setenv(pgbincache.ENV_CACHE, str(workdir / "cache"))
    bins = find_binaries(bindir)

    copy = pgbincache.runnable_binaries(bins, stranger)

    assert copy.version == bins.version
    assert copy.bindir.is_relative_to(workdir / "cache")
    assert copy.bindir.parts[-3:] == ("pgserver", "pginstall", "bin")
    assert pgosuser.untraversable_ancestor(copy.postgres, stranger.uid, stranger.groups) is None
    site_copy = copy.bindir.parents[2]
    assert (site_copy / "pgserver/pginstall/lib/libpq.so").resolve().read_bytes() == b"\0" * 100
    for path in [site_copy, *site_copy.rglob("*")]:
        if not path.is_symlink():
            want = 0o755 if path.is_dir() or path.parent.name == "bin" else 0o644
            assert stat.S_IMODE(path.stat().st_mode) == want, path
    assert pgbincache.runnable_binaries(bins, stranger) == copy  # made once
    assert pgbincache.runnable_binaries(bins, None) == bins  # not root: used in place

    (copy.bindir / "initdb").unlink()  # a damaged copy is made again
    assert pgbincache.runnable_binaries(bins, stranger) == copy
    assert (copy.bindir / "initdb").is_file()
    assert [p.name for p in (workdir / "cache").iterdir()] == [site_copy.name]

    (bins.bindir / "pg_ctl").write_text("#!/bin/sh\necho changed\n")  # another build
    assert pgbincache.runnable_binaries(bins, stranger).bindir != copy.bindir


def test_a_cache_others_can_write_to_is_refused(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch, stranger: pgosuser.OsUser
) -> None:
    (tmp_path / "locked").mkdir(mode=0o700)
    bins = find_binaries(make_wheel_layout(tmp_path / "locked" / "site"))
    cache = workdir / "cache"
    cache.mkdir()
    cache.chmod(0o777)
    monkeypatch.setenv(pgbincache.ENV_CACHE, str(cache))

    with pytest.raises(PostgresRuntimeError, match="no one else can write"):
        pgbincache.runnable_binaries(bins, stranger)
    assert list(cache.iterdir()) == []


@pytest.mark.skipif(
    os.geteuid() != 0,
    reason="only root runs PostgreSQL as another OS user, who cannot enter a 0700 directory",
)
def test_root_runs_the_wheel_from_a_checkout_in_a_0700_directory(workdir: Path) -> None:
    wheel = pgbinaries._pgserver_bindir()
    if wheel is None or not wheel.is_dir():
        pytest.skip("pgserver (tapdb-core[local]) is not installed")
    private = Path(tempfile.mkdtemp(prefix="tapdb-0700-"))  # as `mktemp -d`, like root's home
    try:
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        site = private / "checkout" / ".venv" / "lib" / "site-packages"
        base, parts = pgbincache._install_parts(wheel)
        for part in parts:
            shutil.copytree(base / part, site / part, symlinks=True)
        bins = find_binaries(site / "pgserver" / "pginstall" / "bin")
        cluster = LocalCluster(
            data_dir=workdir / "data", port=free_port(), binaries=bins, fast_unsafe=True
        )
        try:
            assert cluster.init(password="pw") is True
            cluster.start()
            assert select_one(cluster, password="pw") == 1
            pid = cluster.status().pid
            exe = Path(os.readlink(f"/proc/{pid}/exe"))
            assert not exe.is_relative_to(private)  # a copy the server's user can reach
            assert os.stat(f"/proc/{pid}").st_uid == expected_os_uid()
        finally:
            cluster.stop(mode="immediate")
    finally:
        shutil.rmtree(private, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another OS user")
def test_root_default_data_dir_moves_out_of_a_0700_checkout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import argparse
    import types

    from tapdb_core.cli import pg

    private = Path(tempfile.mkdtemp(prefix="tapdb-0700-"))
    try:
        (private / "checkout").mkdir()
        monkeypatch.chdir(private / "checkout")
        monkeypatch.delenv("TAPDB_DATA_DIR", raising=False)
        cfg = types.SimpleNamespace(env="dev", config_file=None)

        data_dir, source = pg.data_dir_for(argparse.Namespace(), cfg)  # type: ignore[arg-type]

        assert source == "default"
        assert data_dir.is_relative_to(pg.SERVER_DATA_HOME) and data_dir.name == "dev"
        assert data_dir.parent.name.startswith("checkout-")
        assert pgosuser.unreachable_by_server(data_dir) is None
        assert pgosuser.unreachable_by_server(private / "checkout" / "x") == private
        os.chmod(private, 0o755)  # noqa: S103  (reachable: the checkout's own folder again)
        assert pg.data_dir_for(argparse.Namespace(), cfg)[0] == (  # type: ignore[arg-type]
            private / "checkout" / "postgres_data" / "dev"
        )
    finally:
        shutil.rmtree(private, ignore_errors=True)
