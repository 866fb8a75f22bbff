"""bootstrap local from nothing, then pg commands and later commands finding the server."""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapdb_core import migrate
from tapdb_core.pgruntime import LocalCluster, free_port
from tests.acceptance.conftest import Cli, assert_one_line_error, isolated_env


def pgserver_bin() -> Path | None:
    """The PostgreSQL binaries of the pgserver wheel, if installed (located, not imported)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        return None
    bindir = Path(spec.origin).parent / "pginstall" / "bin"
    return bindir if (bindir / "pg_ctl").exists() else None


@pytest.fixture
def sandbox() -> Iterator[Path]:
    """A world-traversable temporary directory (the server runs unprivileged under root)."""
    path = Path(tempfile.mkdtemp(prefix="tapdb-boot-"))
    path.chmod(0o755)
    yield path
    for data_dir in path.glob("data/*"):
        if (data_dir / "PG_VERSION").exists():
            LocalCluster(data_dir=data_dir, port=1).stop(mode="immediate")
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_bootstrap_local_then_later_commands(sandbox: Path) -> None:
    home = sandbox / "home"
    home.mkdir()
    (sandbox / "work").mkdir()
    elsewhere = sandbox / "elsewhere"
    elsewhere.mkdir()
    port = free_port()
    env = isolated_env(home)
    first = {"TAPDB_DATA_DIR": str(sandbox / "data")}
    wheel = pgserver_bin()
    if wheel is not None:  # as on a machine without PostgreSQL: the wheel's binaries
        first["TAPDB_PG_BIN"] = str(wheel)
    cli = Cli({**env, **first}, sandbox / "work")

    done = cli("bootstrap", "local", "--port", str(port), "--demo")
    assert done.returncode == 0, done.stderr
    assert f"postgresql+psycopg://postgres@127.0.0.1:{port}/tapdb_dev" in done.stdout
    assert "demo: 96-well plate CX-" in done.stdout and "96 wells" in done.stdout
    assert "next steps:" in done.stdout
    plate = done.stdout.split("demo: 96-well plate ")[1].split()[0]

    config = home / ".config" / "tapdb" / "tapdb-config.json"
    assert config.stat().st_mode & 0o777 == 0o600
    recorded = json.loads(config.read_text())["environments"]["dev"]
    assert recorded["port"] == port
    assert recorded["data_dir"] == str(sandbox / "data" / "dev")
    if wheel is not None:
        assert recorded["pg_bin"] == str(wheel)

    # from another directory, without TAPDB_DATA_DIR: the recorded settings lead back
    later = Cli(env, elsewhere)
    info_run, status_run, graph_run = later.many(
        ["--env", "dev", "info", "--json"],
        ["db", "schema", "status", "dev", "--json"],
        ["--env", "dev", "lineage", "graph", plate, "--depth", "1"],
    )
    assert info_run.returncode == 0, info_run.stderr
    info = json.loads(info_run.stdout)
    assert info["settings"]["port"] == {"value": str(port), "source": str(config)}
    assert info["status"]["revision"] == migrate.head_revision()
    assert status_run.returncode == 0, status_run.stdout
    status = json.loads(status_run.stdout)
    assert status["tables"]["generic_instance"]["live"] == 97
    assert status["tables"]["tapdb_user"]["active"] == 1  # the admin user
    assert graph_run.stdout.count("->") == 96

    # running it again is harmless
    done = cli("bootstrap", "local", "--json")
    assert done.returncode == 0, done.stderr
    again = json.loads(done.stdout)
    assert again["port"] == port
    assert (again["initialised"], again["started"], again["database_created"]) == (
        False,
        False,
        False,
    )
    assert again["templates"]["created"] == 0 and again["admin_created"] is False

    pg_status, pg_logs = later.many(
        ["pg", "status", "dev", "--json"], ["pg", "logs", "dev", "-n", "5"]
    )
    assert pg_status.returncode == 0
    assert json.loads(pg_status.stdout)["running"] is True
    assert pg_logs.returncode == 0 and pg_logs.stdout

    assert later("pg", "stop-local", "dev").returncode == 0
    stopped, unreachable = later.many(["pg", "status", "dev"], ["user", "list", "dev"])
    assert stopped.returncode == 1
    assert unreachable.returncode == 1
    assert_one_line_error(unreachable, f"server at 127.0.0.1:{port} is unreachable")

    done = later("pg", "start-local", "dev")  # the recorded port, from the config file
    assert done.returncode == 0, done.stderr
    assert f"127.0.0.1:{port}" in done.stdout
    assert later("pg", "stop-local", "dev").returncode == 0
