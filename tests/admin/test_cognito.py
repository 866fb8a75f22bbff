"""Cognito login and ``tapdb cognito`` against moto in server mode on 127.0.0.1;
what moto does not model (auth flow not enabled, throttling) with botocore's
Stubber on a real client."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from tapdb_core import users
from tapdb_core.admin import AdminSettings, CognitoSettings, create_app
from tests.aurora.conftest import moto_endpoint  # noqa: F401 - the session's moto server

from .conftest import csrf_of

boto3 = pytest.importorskip("boto3")
from botocore.stub import Stubber  # noqa: E402

REGION = "eu-west-1"
PASSWORD = "Correct-Horse-1"


@pytest.fixture
def moto(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:  # noqa: F811
    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        response.read()
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", REGION)
    return moto_endpoint


@pytest.fixture
def pool(moto: str) -> dict[str, Any]:
    idp = boto3.client("cognito-idp", region_name=REGION, endpoint_url=moto)
    pool_id = idp.create_user_pool(PoolName="tapdb-test-users", UsernameAttributes=["email"])[
        "UserPool"
    ]["Id"]
    client_id = idp.create_user_pool_client(
        UserPoolId=pool_id, ClientName="tapdb", ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    return {"idp": idp, "pool": pool_id, "client": client_id, "endpoint": moto}


def _add(pool: dict[str, Any], email: str, password: str, permanent: bool = True) -> None:
    pool["idp"].admin_create_user(
        UserPoolId=pool["pool"],
        Username=email,
        UserAttributes=[{"Name": "email", "Value": email}],
        MessageAction="SUPPRESS",
        TemporaryPassword=password if not permanent else "Temp-Pass-123!",
    )
    if permanent:
        pool["idp"].admin_set_user_password(
            UserPoolId=pool["pool"], Username=email, Password=password, Permanent=True
        )


@pytest.fixture
def cognito_app(pool: dict[str, Any], seeded_engine: Engine) -> Iterator[TestClient]:
    settings = AdminSettings(
        database_url="x",
        auth_mode="cognito",
        cognito=CognitoSettings(
            user_pool_id=pool["pool"],
            app_client_id=pool["client"],
            region=REGION,
            endpoint_url=pool["endpoint"],
        ),
    )
    with TestClient(create_app(settings, engine=seeded_engine)) as client:
        yield client


def _login(client: TestClient, email: str, password: str) -> Any:
    token = csrf_of(client.get("/login").text)
    return client.post(
        "/login",
        data={"username": email, "password": password, "csrf_token": token},
        follow_redirects=False,
    )


def test_first_login_provisions_a_user_with_role_user(
    cognito_app: TestClient, pool: dict[str, Any], seeded_engine: Engine
) -> None:
    _add(pool, "ann@example.org", PASSWORD)
    r = _login(cognito_app, "ann@example.org", PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert cognito_app.get("/").status_code == 200
    with seeded_engine.begin() as conn:
        ann = users.get_user(conn, "ann@example.org")
    assert ann.role == "user" and ann.email == "ann@example.org"
    # a user may browse, not change
    assert cognito_app.post("/api/lineage", json={}).status_code == 403


def test_wrong_password_is_refused_and_counted(
    cognito_app: TestClient, pool: dict[str, Any]
) -> None:
    _add(pool, "ann@example.org", PASSWORD)
    r = _login(cognito_app, "ann@example.org", "Wrong-Pass-1")
    assert r.status_code == 401 and "Wrong email or password" in r.text
    assert _login(cognito_app, "nobody@example.org", PASSWORD).status_code == 401
    assert cognito_app.get("/", follow_redirects=False).status_code == 303


def test_new_password_challenge_then_change_password(
    cognito_app: TestClient, pool: dict[str, Any]
) -> None:
    _add(pool, "ben@example.org", "Temp-Pass-123!", permanent=False)
    r = _login(cognito_app, "ben@example.org", "Temp-Pass-123!")
    assert r.status_code == 200 and "Choose a new password" in r.text
    r = cognito_app.post(
        "/login/new-password",
        data={
            "csrf_token": csrf_of(r.text),
            "new_password": "Mine-Pass-456!",
            "confirm_password": "Mine-Pass-456!",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert cognito_app.get("/").status_code == 200
    # change it again while logged in (Cognito change_password with the access token)
    token = csrf_of(cognito_app.get("/change-password").text)
    r = cognito_app.post(
        "/change-password",
        data={
            "csrf_token": token,
            "old_password": "Mine-Pass-456!",
            "new_password": "Next-Pass-789!",
            "confirm_password": "Next-Pass-789!",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    pool["idp"].admin_initiate_auth(
        UserPoolId=pool["pool"],
        ClientId=pool["client"],
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "ben@example.org", "PASSWORD": "Next-Pass-789!"},
    )


@pytest.mark.parametrize(
    ("code", "message", "status", "shown"),
    [
        (
            "InvalidParameterException",
            "Auth flow not enabled for this client",
            502,
            "InvalidParameterException",
        ),
        ("TooManyRequestsException", "Rate exceeded", 503, "busy"),
    ],
)
def test_what_moto_does_not_model_with_stubber(
    cognito_app: TestClient, pool: dict[str, Any], code: str, message: str, status: int, shown: str
) -> None:
    real = boto3.client("cognito-idp", region_name=REGION, endpoint_url=pool["endpoint"])
    with Stubber(real) as stub:
        stub.add_client_error(
            "admin_initiate_auth", service_error_code=code, service_message=message
        )
        cognito_app.app.state.admin.cognito = real  # type: ignore[attr-defined]
        r = _login(cognito_app, "ann@example.org", PASSWORD)
        stub.assert_no_pending_responses()
    assert r.status_code == status and shown in r.text


# -- tapdb cognito ------------------------------------------------------------------


def _tapdb(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tapdb_core", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def cli_env(moto: str, seeded_engine: Engine, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = seeded_engine.url.render_as_string(hide_password=False)
    env["TAPDB_COGNITO_DIR"] = str(tmp_path / "cognito")
    env["AWS_ENDPOINT_URL"] = moto
    return env


def test_cognito_commands(
    cli_env: dict[str, str], tmp_path: Path, seeded_engine: Engine, moto: str
) -> None:
    r = _tapdb(cli_env, "cognito", "setup", "test", "--endpoint-url", moto)
    assert r.returncode == 0, r.stderr
    binding_file = tmp_path / "cognito" / "test.json"
    assert stat.S_IMODE(binding_file.stat().st_mode) == 0o600
    binding = json.loads(binding_file.read_text())
    assert set(binding) == {"user_pool_id", "app_client_id", "region", "endpoint_url"}
    # setup again reuses the pool and client
    assert _tapdb(cli_env, "cognito", "setup", "test").returncode == 0
    assert json.loads(binding_file.read_text()) == binding
    status = _tapdb(cli_env, "cognito", "status", "test", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["ok"] is True

    r = _tapdb(
        cli_env,
        "cognito",
        "add-user",
        "test",
        "cat@example.org",
        "--role",
        "admin",
        "--password-stdin",
        stdin="Cat-Pass-123!\n",
    )
    assert r.returncode == 0, r.stderr
    assert "Cat-Pass" not in r.stdout + r.stderr
    with seeded_engine.begin() as conn:
        assert users.get_user(conn, "cat@example.org").role == "admin"
    idp = boto3.client("cognito-idp", region_name=REGION, endpoint_url=moto)
    idp.admin_initiate_auth(
        UserPoolId=binding["user_pool_id"],
        ClientId=binding["app_client_id"],
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "cat@example.org", "PASSWORD": "Cat-Pass-123!"},
    )
    listed = json.loads(_tapdb(cli_env, "cognito", "list-users", "test", "--json").stdout)
    assert [u["email"] for u in listed] == ["cat@example.org"]

    r = _tapdb(cli_env, "cognito", "add-app", "test", "reports")
    assert r.returncode == 0
    apps = json.loads(_tapdb(cli_env, "cognito", "list-apps", "test", "--json").stdout)
    assert {a["name"] for a in apps} == {"tapdb", "reports"}
    bound = next(a["id"] for a in apps if a["bound"])
    refused = _tapdb(cli_env, "cognito", "remove-app", "test", bound)
    assert refused.returncode == 1 and "refused" in refused.stderr
    other = next(a["id"] for a in apps if not a["bound"])
    assert _tapdb(cli_env, "cognito", "remove-app", "test", other).returncode == 0

    # moto does not enforce auth flows: break them, see status say so, fix them
    idp.update_user_pool_client(
        UserPoolId=binding["user_pool_id"],
        ClientId=binding["app_client_id"],
        ExplicitAuthFlows=["ALLOW_REFRESH_TOKEN_AUTH"],
    )
    assert _tapdb(cli_env, "cognito", "status", "test").returncode == 1
    assert _tapdb(cli_env, "cognito", "fix-auth-flows", "test").returncode == 0
    flows = idp.describe_user_pool_client(
        UserPoolId=binding["user_pool_id"], ClientId=binding["app_client_id"]
    )["UserPoolClient"]["ExplicitAuthFlows"]
    assert "ALLOW_ADMIN_USER_PASSWORD_AUTH" in flows

    assert _tapdb(cli_env, "cognito", "remove-user", "test", "cat@example.org").returncode == 0
    assert json.loads(_tapdb(cli_env, "cognito", "list-users", "test", "--json").stdout) == []


def test_list_pools_reads_every_page(cli_env: dict[str, str], moto: str) -> None:
    idp = boto3.client("cognito-idp", region_name=REGION, endpoint_url=moto)
    for i in range(65):
        idp.create_user_pool(PoolName=f"pool-{i:02d}")
    pools = json.loads(_tapdb(cli_env, "cognito", "list-pools", "test", "--json").stdout)
    assert len(pools) == 65
