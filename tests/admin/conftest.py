"""Fixtures for the admin UI: an app over a fresh seeded database, users of
both roles, and logged-in HTTP clients."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

pytest.importorskip("starlette", reason="the admin UI needs the 'admin' extra")
pytest.importorskip("httpx2", reason="route tests need httpx2 (Starlette's test client)")

from starlette.applications import Starlette
from starlette.testclient import TestClient

from tapdb_core import users
from tapdb_core.admin import AdminSettings, create_app

ADMIN_PASSWORD = "admin-password-1"
USER_PASSWORD = "user-password-1"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    m = _CSRF.search(html)
    assert m, "no CSRF token in the page"
    return m.group(1)


@pytest.fixture
def admin_app(seeded_engine: Engine) -> Starlette:
    with seeded_engine.begin() as conn:
        users.create_user(conn, "alice", role="admin", password=ADMIN_PASSWORD)
        users.create_user(conn, "bob", role="user", password=USER_PASSWORD)
    settings = AdminSettings(database_url="postgresql://unused", env="test")
    return create_app(settings, engine=seeded_engine)


def login(client: TestClient, username: str, password: str) -> TestClient:
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return client


@pytest.fixture
def anon(admin_app: Starlette) -> Iterator[TestClient]:
    with TestClient(admin_app) as client:
        yield client


@pytest.fixture
def admin_client(admin_app: Starlette) -> Iterator[TestClient]:
    with TestClient(admin_app) as client:
        yield login(client, "alice", ADMIN_PASSWORD)


@pytest.fixture
def user_client(admin_app: Starlette) -> Iterator[TestClient]:
    with TestClient(admin_app) as client:
        yield login(client, "bob", USER_PASSWORD)


def session_csrf(client: TestClient) -> str:
    return csrf_of(client.get("/").text)
