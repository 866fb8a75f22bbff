"""Connections end to end against a local PostgreSQL that requires passwords
(scram-sha-256 for every connection): a password (IAM token or secret) per new
DBAPI connection, a pool that outlives token expiry, secret rotation, quoting,
redaction, the read-only engine, the CA bundle and region resolution."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError

from tapdb_core.aurora import aws, ca
from tapdb_core.aurora.connection import (
    AuroraSettings,
    IamTokenProvider,
    SecretPasswordProvider,
    make_engine,
    ssl_args,
)
from tapdb_core.config import load_config
from tapdb_core.pgruntime import LocalCluster
from tests.aurora.conftest import SUPERUSER

HARD_PASSWORD = "p @+/%:w?#&=x"


@pytest.fixture
def admin(password_cluster: tuple[LocalCluster, str]) -> Iterator[Engine]:
    cluster, password = password_cluster
    engine = create_engine(
        cluster.url(user=SUPERUSER, password=password), isolation_level="AUTOCOMMIT"
    )
    yield engine
    engine.dispose()


@pytest.fixture
def app_role(admin: Engine) -> Iterator[str]:
    name = f"app_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {name} LOGIN PASSWORD 'initial-unused'"))
    yield name
    with admin.connect() as conn:
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :n"),
            {"n": name},
        )
        conn.execute(text(f"DROP ROLE IF EXISTS {name}"))


def set_password(admin: Engine, role: str, password: str) -> None:
    with admin.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute(
            psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                psycopg.sql.Identifier(role), psycopg.sql.Literal(password)
            )
        )


def settings_for(cluster: LocalCluster, user: str, **kw: str) -> AuroraSettings:
    values = {"region": "eu-west-1", "sslmode": "disable", **kw}
    return AuroraSettings(
        env="dev", host="127.0.0.1", port=cluster.port, database="postgres", user=user, **values
    )


class RotatingTokens:
    """Like IAM: every call mints a new password, and only the newest one logs in
    (the server's password is rotated in step, the old token 'expires')."""

    def __init__(self, admin: Engine, role: str) -> None:
        self.admin, self.role, self.issued = admin, role, []

    def __call__(self) -> str:
        token = f"token-{len(self.issued)}-{secrets.token_urlsafe(12)}"
        set_password(self.admin, self.role, token)
        self.issued.append(token)
        return token


def test_fresh_token_per_connection_and_pool_outlives_expiry(
    password_cluster: tuple[LocalCluster, str], admin: Engine, app_role: str
) -> None:
    cluster, _ = password_cluster
    tokens = RotatingTokens(admin, app_role)
    engine = make_engine(
        settings_for(cluster, app_role), provider=tokens, pool_size=1, max_overflow=0
    )
    try:
        assert engine.url.password is None  # never baked into the URL
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == app_role
        assert len(tokens.issued) == 1
        # the token expires: the server no longer accepts it
        set_password(admin, app_role, "expired-" + secrets.token_hex(8))
        with engine.connect() as conn:  # the pooled, authenticated connection still works
            assert conn.execute(text("SELECT 1")).scalar() == 1
        # the server drops the connection (failover, idle timeout): a new one is opened
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :n"),
                {"n": app_role},
            )
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == app_role
        assert len(tokens.issued) == 2
        assert tokens.issued[1] not in repr(engine.url) and tokens.issued[1] not in str(engine.url)
    finally:
        engine.dispose()
    # the original's way (a token baked into the URL) fails once it has expired
    baked = create_engine(
        URL.create(
            "postgresql+psycopg",
            username=app_role,
            password=tokens.issued[0],
            host="127.0.0.1",
            port=cluster.port,
            database="postgres",
        )
    )
    with pytest.raises(OperationalError, match="password authentication failed"):
        baked.connect()
    baked.dispose()


def test_real_iam_token_logs_in_and_never_shows(
    password_cluster: tuple[LocalCluster, str],
    admin: Engine,
    app_role: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster, _ = password_cluster
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    session = boto3.session.Session(
        aws_access_key_id="AKIDTEST", aws_secret_access_key="secret", region_name="eu-west-1"
    )
    iam = IamTokenProvider(
        rds=session.client("rds"),
        host="lims.cluster-abc.eu-west-1.rds.amazonaws.com",
        port=5432,
        user=app_role,
        region="eu-west-1",
    )
    issued: list[str] = []

    def token_the_server_accepts() -> str:
        token = iam()  # signed locally, offline
        set_password(admin, app_role, token)
        issued.append(token)
        return token

    caplog.set_level(logging.DEBUG)
    engine = make_engine(
        settings_for(cluster, app_role), provider=token_the_server_accepts, echo=True
    )
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == app_role
    finally:
        engine.dispose()
    token = issued[0]
    assert (
        "Action=connect" in token and f"DBUser={app_role}" in token and "X-Amz-Signature=" in token
    )
    assert token not in caplog.text
    assert token not in repr(iam) and "secret" not in repr(iam)
    # a refused login: the error names the user, never the token
    stale = make_engine(settings_for(cluster, app_role), provider=lambda: token + "x")
    with pytest.raises(OperationalError) as caught:
        stale.connect()
    stale.dispose()
    assert token not in str(caught.value) and token not in repr(caught.value)
    assert token not in caplog.text


def test_secret_password_rotation_and_special_characters(
    aws_env: str, password_cluster: tuple[LocalCluster, str], admin: Engine, app_role: str
) -> None:
    cluster, _ = password_cluster
    sm = aws.client(aws.aws_target(), "secretsmanager")
    arn = sm.create_secret(
        Name="lims-master-password",
        SecretString=json.dumps({"username": app_role, "password": HARD_PASSWORD}),
    )["ARN"]
    set_password(admin, app_role, HARD_PASSWORD)
    settings = settings_for(cluster, app_role, auth="secret", secret_arn=arn)
    engine = make_engine(settings)  # provider from the settings: Secrets Manager (moto)
    provider = SecretPasswordProvider(secrets=sm, secret_id=arn)
    fixed = make_engine(settings, provider=provider)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == app_role
        with fixed.connect():
            pass
        assert provider.fetches == 1
        # rotation: the server and the secret change; the cached password is stale
        rotated = "rotated/" + HARD_PASSWORD + secrets.token_hex(4)
        set_password(admin, app_role, rotated)
        sm.put_secret_value(
            SecretId=arn, SecretString=json.dumps({"username": app_role, "password": rotated})
        )
        fixed.dispose()
        with fixed.connect() as conn:  # fails once with the cached one, refetches, logs in
            assert conn.execute(text("SELECT current_user")).scalar() == app_role
        assert provider.fetches == 2
        assert HARD_PASSWORD not in repr(provider) and rotated not in str(fixed.url)
    finally:
        engine.dispose()
        fixed.dispose()


def test_secret_is_cached_briefly(aws_env: str) -> None:
    sm = aws.client(aws.aws_target(), "secretsmanager")
    arn = sm.create_secret(Name="s", SecretString=json.dumps({"password": "one"}))["ARN"]
    now = [0.0]
    provider = SecretPasswordProvider(secrets=sm, secret_id=arn, ttl=60, clock=lambda: now[0])
    assert provider() == "one"
    sm.put_secret_value(SecretId=arn, SecretString=json.dumps({"password": "two"}))
    now[0] = 59
    assert provider() == "one" and provider.fetches == 1
    now[0] = 61
    assert provider() == "two" and provider.fetches == 2


@pytest.mark.parametrize("password", [HARD_PASSWORD, "a b", "a@b", "a+b", "a/b", "100%", "%41"])
def test_special_characters_in_passwords_survive(
    password: str, password_cluster: tuple[LocalCluster, str], admin: Engine, app_role: str
) -> None:
    cluster, _ = password_cluster
    set_password(admin, app_role, password)
    # the Aurora engine: the password is a connection parameter, never URL text
    engine = make_engine(settings_for(cluster, app_role), provider=lambda: password)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == app_role
    engine.dispose()
    # a URL built from config settings percent-encodes it (libpq and SQLAlchemy agree)
    environ = {
        "TAPDB_DEV_HOST": "127.0.0.1",
        "TAPDB_DEV_PORT": str(cluster.port),
        "TAPDB_DEV_USER": app_role,
        "TAPDB_DEV_PASSWORD": password,
        "TAPDB_DEV_DATABASE": "postgres",
        "TAPDB_CONFIG_PATH": "/nonexistent.json",
    }
    url = load_config("dev", environ=environ, config_file=None).url()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (app_role,)
    by_url = create_engine(url)
    with by_url.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == app_role
    by_url.dispose()


def test_read_only_engine_goes_to_the_reader_and_refuses_writes(
    password_cluster: tuple[LocalCluster, str], admin: Engine, app_role: str
) -> None:
    cluster, _ = password_cluster
    set_password(admin, app_role, "pw")
    settings = settings_for(cluster, app_role, reader_host="localhost")
    reader = make_engine(settings, provider=lambda: "pw", read_only=True)
    writer = make_engine(settings, provider=lambda: "pw")
    try:
        assert reader.url.host == "localhost" and writer.url.host == "127.0.0.1"
        with reader.connect() as conn:
            assert conn.execute(text("SHOW transaction_read_only")).scalar() == "on"
            with pytest.raises(DBAPIError, match="read-only transaction"):
                conn.execute(text("CREATE TEMP TABLE t (x int)"))
        with writer.connect() as conn:
            assert conn.execute(text("SHOW transaction_read_only")).scalar() == "off"
    finally:
        reader.dispose()
        writer.dispose()


# ------------------------------------------------------------------ CA bundle


def _pem() -> bytes:
    certifi = pytest.importorskip("certifi")
    return Path(certifi.where()).read_bytes()


def test_ca_bundle_fetched_once_cached_private_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAPDB_CONFIG_DIR", str(tmp_path))
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return _pem()

    path = ca.ensure_ca_bundle(fetch=fetch)
    assert path == tmp_path / "certs" / ca.BUNDLE_NAME
    assert path.stat().st_mode & 0o777 == 0o600
    assert ca.ensure_ca_bundle(fetch=fetch) == path
    assert fetched == [ca.RDS_CA_URL]  # once
    path.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    ca.ensure_ca_bundle(fetch=fetch)  # a damaged cache is replaced
    assert len(fetched) == 2 and ca.check_bundle(path.read_bytes()) > 1
    with pytest.raises(ca.CaBundleError):
        ca.ensure_ca_bundle(tmp_path / "missing.pem", fetch=fetch)
    path.unlink()
    with pytest.raises(ca.CaBundleError, match="no PEM certificate"):
        ca.ensure_ca_bundle(fetch=lambda url: b"<html>captive portal</html>")
    assert not path.exists()
    settings = AuroraSettings(env="dev", host="h", sslmode="verify-full")
    assert ssl_args(settings, fetch=fetch) == {"sslmode": "verify-full", "sslrootcert": str(path)}
    assert ssl_args(AuroraSettings(env="dev", host="h", sslmode="require")) == {
        "sslmode": "require"
    }


# ------------------------------------------------------------------ region


def test_region_resolution_has_no_hard_coded_fallback() -> None:
    none = lambda profile: None  # noqa: E731
    env = {"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "ap-south-1"}
    assert aws.resolve_region("us-east-2", "eu-west-3", environ=env, profile_region=none) == (
        "us-east-2",
        "--region",
    )
    assert aws.resolve_region(None, "eu-west-3", environ=env, profile_region=none) == (
        "eu-west-3",
        "config",
    )
    assert aws.resolve_region(None, None, environ=env, profile_region=none) == (
        "eu-central-1",
        "$AWS_REGION",
    )
    assert (
        aws.resolve_region(
            None, None, environ={"AWS_DEFAULT_REGION": "ap-south-1"}, profile_region=none
        )[0]
        == "ap-south-1"
    )
    assert (
        aws.resolve_region(None, None, environ={}, profile_region=lambda p: "sa-east-1")[0]
        == "sa-east-1"
    )
    with pytest.raises(aws.RegionMissingError, match="no AWS region"):
        aws.resolve_region(None, None, environ={}, profile_region=none)
