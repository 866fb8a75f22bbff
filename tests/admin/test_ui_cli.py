"""``tapdb ui``: a real background server over HTTPS, per environment, with
stale pid detection."""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import Engine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tapdb(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tapdb_core", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def cli_env(seeded_engine: Engine, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = seeded_engine.url.render_as_string(hide_password=False)
    env["TAPDB_UI_DIR"] = str(tmp_path / "ui")
    env.pop("TAPDB_SESSION_SECRET", None)
    return env


def test_start_status_stop_over_https(cli_env: dict[str, str], tmp_path: Path) -> None:
    port = _free_port()
    started = _tapdb(cli_env, "ui", "start", "test", "--port", str(port))
    try:
        assert started.returncode == 0, started.stderr
        assert f"https://localhost:{port}/" in started.stdout
        folder = tmp_path / "ui" / "test"
        key = folder / "localhost.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert stat.S_IMODE((folder / "session.secret").stat().st_mode) == 0o600
        context = ssl.create_default_context(cafile=str(folder / "localhost.crt"))
        with urllib.request.urlopen(f"https://localhost:{port}/healthz", context=context) as r:
            assert json.load(r) == {"status": "ok"}
            assert r.headers["Strict-Transport-Security"]
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=context) as r:
            assert json.load(r) == {"status": "ready"}
        status = _tapdb(cli_env, "ui", "status", "test", "--json")
        assert status.returncode == 0 and json.loads(status.stdout)["state"] == "running"
        # another environment has its own pid file
        assert _tapdb(cli_env, "ui", "status", "dev").returncode == 1
        again = _tapdb(cli_env, "ui", "start", "test", "--port", str(port))
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        stopped = _tapdb(cli_env, "ui", "stop", "test")
    assert stopped.returncode == 0, stopped.stderr
    status = _tapdb(cli_env, "ui", "status", "test")
    assert status.returncode == 1 and status.stdout.strip() == "stopped"
    logs = _tapdb(cli_env, "ui", "logs", "test", "-n", "5")
    assert logs.returncode == 0


def test_status_detects_a_stale_pid_file(cli_env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "ui" / "dev"
    folder.mkdir(parents=True)
    # a pid that is alive but is not the UI (this test process, another start time)
    (folder / "ui.pid").write_text(f"{os.getpid()}\n1\nhttps://localhost:1/\n")
    status = _tapdb(cli_env, "ui", "status", "dev")
    assert status.returncode == 1 and status.stdout.startswith("stale")
    stop = _tapdb(cli_env, "ui", "stop", "dev")
    assert "stale pid file removed" in stop.stdout
    assert not (folder / "ui.pid").exists()


def test_production_refuses_to_start_without_secret_and_hosts(cli_env: dict[str, str]) -> None:
    port = _free_port()
    result = _tapdb(cli_env, "ui", "start", "prod", "--port", str(port), "--wait", "15")
    assert result.returncode == 1
    assert "session secret" in result.stderr
