"""Fixtures of the Aurora tests: moto in server mode on 127.0.0.1 (a real HTTP
endpoint botocore talks to, started once per session and reset before each test),
dummy credentials, and a config directory of the test's own."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapdb_core.pgruntime import LocalCluster, free_port, unreachable_by_server

pytest.importorskip("boto3")
pytest.importorskip("moto")

REGION = "eu-west-1"
SUPERUSER = "tapdb_admin"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto server started for this session."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    url = None
    seen: list[str] = []
    for line in proc.stderr:  # it prints the bound address once it listens
        seen.append(line)
        found = re.search(r"Running on (http://127\.0\.0\.1:\d+)", line)
        if found:
            url = found.group(1)
            break
    if url is None:
        proc.kill()
        raise RuntimeError("moto server did not start: " + "".join(seen[-20:]))
    # keep draining its log so the pipe never fills
    drain = threading.Thread(target=lambda: [None for _ in proc.stderr or ()], daemon=True)
    drain.start()
    host, port = url.rsplit("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10):
        pass
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    drain.join(timeout=10)
    proc.stderr.close()


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Environment pointing boto3 (and the CLI) at a freshly reset moto server."""
    reset = f"{moto_endpoint}/moto-api/reset"
    request = urllib.request.Request(reset, method="POST")  # noqa: S310 - loopback http
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        response.read()
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_REGION", REGION)
    return moto_endpoint


@pytest.fixture
def tapdb_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file and config directory of this test's own."""
    home = tmp_path / "tapdb"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("TAPDB_CONFIG_PATH", str(home / "tapdb-config.json"))
    monkeypatch.setenv("TAPDB_CONFIG_DIR", str(home))
    monkeypatch.setenv("TAPDB_OPLOG", str(home / "operations.log"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("TAPDB_ENV", raising=False)
    return home


@pytest.fixture(scope="session")
def password_cluster() -> Iterator[tuple[LocalCluster, str]]:
    """A PostgreSQL of its own that authenticates every connection with a password
    (the harness's server may trust local connections)."""
    bases = [tempfile.gettempdir(), "/tmp", "/var/tmp"]  # noqa: S108 - as pgruntime
    base = next((b for b in bases if unreachable_by_server(Path(b, "x")) is None), None)
    workdir = Path(tempfile.mkdtemp(prefix="tapdb-aurora-test-", dir=base))
    workdir.chmod(0o755)
    password = secrets.token_urlsafe(16)
    cluster = LocalCluster(data_dir=workdir / "data", port=free_port(), fast_unsafe=True)
    try:
        cluster.init(superuser=SUPERUSER, password=password)
        hba = (cluster.data_dir / "pg_hba.conf").read_text()
        assert "trust" not in [
            line.split()[-1]
            for line in hba.splitlines()
            if line.split() and not line.startswith("#")
        ]
        cluster.start()
        yield cluster, password
    finally:
        cluster.stop(mode="immediate")
        shutil.rmtree(workdir, ignore_errors=True)
