"""The admin UI over HTTP against a real PostgreSQL: login, roles, CSRF,
redirect safety, escaping, keyset pages and the graph API."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.testclient import TestClient

from tapdb_core import audit, instances, lineage, templates, users
from tapdb_core.admin import AdminSettings, AdminUser, create_app
from tapdb_core.admin.security import LoginThrottle, safe_next
from tapdb_core.errors import ConfigurationError

from .conftest import ADMIN_PASSWORD, csrf_of, login, session_csrf

XSS = "<script>alert(1)</script>"
PLATE = "container/plate/fixed-plate-96/1.0/"
TUBE = "container/tube/generic/1.0/"


@pytest.fixture
def objects(seeded_engine: Engine) -> dict[str, str]:
    with seeded_engine.begin() as conn:
        plate = instances.create(conn, PLATE, "plate-1")
        tube = instances.create(conn, TUBE, XSS)
        other = instances.create(conn, TUBE, "tube-2")
        lineage.link(conn, plate.euid, tube.euid, "contains")
        template = templates.get_template(conn, TUBE)
    return {
        "plate": plate.euid,
        "xss": tube.euid,
        "other": other.euid,
        "tube_template": template.euid,
    }


def _pages(o: dict[str, str]) -> list[str]:
    return [
        "/",
        "/search?q=tube",
        "/templates",
        f"/templates/{o['tube_template']}",
        "/instances",
        f"/object/{o['xss']}",
        f"/object/{o['plate']}",
        f"/graph?start={o['xss']}",
    ]


def _apis(o: dict[str, str]) -> list[str]:
    return [
        "/api/dashboard",
        "/api/search?q=tube",
        "/api/templates",
        f"/api/templates/{o['tube_template']}",
        "/api/instances",
        f"/api/object/{o['xss']}",
        f"/api/graph?start={o['plate']}&depth=1",
    ]


def _mutations(o: dict[str, str]) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(method, path, json body) of every mutating API."""
    return [
        ("POST", f"/api/templates/{o['tube_template']}/instances", {"name": "x"}),
        ("POST", f"/api/object/{o['other']}/status", {"status": "done"}),
        ("POST", f"/api/object/{o['other']}/delete", None),
        ("DELETE", f"/api/object/{o['other']}", None),
        ("POST", "/api/lineage", {"parent_euid": o["plate"], "child_euid": o["other"]}),
        ("POST", f"/api/object/{o['other']}/action", {"group": "core", "key": "x"}),
    ]


def _form_mutations(o: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    return [
        (f"/templates/{o['tube_template']}/create", {"name": "x"}),
        (f"/object/{o['other']}/status", {"status": "done"}),
        (f"/object/{o['other']}/delete", {}),
        (f"/object/{o['other']}/link", {"other": o["plate"], "direction": "parent"}),
        (f"/object/{o['other']}/action", {"group": "core", "key": "x"}),
        ("/users", {"username": "eve", "password": "long-enough-1", "role": "admin"}),
        ("/users/NOPE/role", {"role": "admin"}),
    ]


# -- no session ---------------------------------------------------------------------


def test_every_page_redirects_to_login_without_a_session(
    anon: TestClient, objects: dict[str, str]
) -> None:
    for path in [*_pages(objects), "/users"]:
        r = anon.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/login?next="), path


def test_every_api_is_401_without_a_session(anon: TestClient, objects: dict[str, str]) -> None:
    for path in [*_apis(objects), "/api/users"]:
        r = anon.get(path)
        assert r.status_code == 401, path
        assert r.json() == {"error": "login required"}
    for method, path, body in _mutations(objects):
        r = anon.request(method, path, json=body)
        assert r.status_code == 401, path


def test_health_needs_no_login_and_reveals_nothing(anon: TestClient) -> None:
    assert anon.get("/healthz").json() == {"status": "ok"}
    r = anon.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready"}


def test_readyz_says_not_ready_when_the_database_is_gone(seeded_engine: Engine) -> None:
    from sqlalchemy import create_engine

    broken = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    app = create_app(AdminSettings(database_url="x"), engine=broken)
    with TestClient(app) as client:
        r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {"status": "not ready"}


# -- user role ----------------------------------------------------------------------


def test_user_can_browse_every_page_and_api(
    user_client: TestClient, objects: dict[str, str]
) -> None:
    for path in _pages(objects):
        r = user_client.get(path)
        assert r.status_code == 200, path
    for path in _apis(objects):
        r = user_client.get(path)
        assert r.status_code == 200, (path, r.text)


def test_user_gets_403_on_every_mutation_and_admin_page(
    user_client: TestClient, objects: dict[str, str], seeded_engine: Engine
) -> None:
    token = session_csrf(user_client)
    for method, path, body in _mutations(objects):
        r = user_client.request(method, path, json=body, headers={"X-CSRF-Token": token})
        assert r.status_code == 403, path
    for path, form in _form_mutations(objects):
        r = user_client.post(path, data={**form, "csrf_token": token})
        assert r.status_code == 403, path
    assert user_client.get("/users").status_code == 403
    assert user_client.get("/api/users").status_code == 403
    with seeded_engine.begin() as conn:
        other = instances.get(conn, objects["other"])
        assert other.bstatus != "done" and not other.is_deleted
        assert lineage.parents(conn, objects["other"]) == []
        assert [u.username for u in users.list_users(conn)] == ["alice", "bob"]


def test_admin_controls_are_absent_for_user(
    user_client: TestClient, objects: dict[str, str]
) -> None:
    page = user_client.get(f"/object/{objects['other']}").text
    assert "admin-controls" not in page and "Soft-delete" not in page
    page = user_client.get(f"/templates/{objects['tube_template']}").text
    assert "create-form" not in page
    page = user_client.get(f"/graph?start={objects['other']}").text
    assert 'data-admin="false"' in page and "g-link-mode" not in page
    assert 'href="/users"' not in user_client.get("/").text


# -- admin role ---------------------------------------------------------------------


def test_admin_sees_every_page(admin_client: TestClient, objects: dict[str, str]) -> None:
    for path in [*_pages(objects), "/users"]:
        assert admin_client.get(path).status_code == 200, path
    assert "admin-controls" in admin_client.get(f"/object/{objects['other']}").text


def test_csrf_missing_or_wrong_is_403_for_admin(
    admin_client: TestClient, objects: dict[str, str], seeded_engine: Engine
) -> None:
    for method, path, body in _mutations(objects):
        assert admin_client.request(method, path, json=body).status_code == 403, path
        r = admin_client.request(method, path, json=body, headers={"X-CSRF-Token": "forged"})
        assert r.status_code == 403, path
    for path, form in _form_mutations(objects):
        assert admin_client.post(path, data=form).status_code == 403, path
    with seeded_engine.begin() as conn:
        assert not instances.get(conn, objects["other"], include_deleted=True).is_deleted


def test_admin_mutations_work_with_the_token(
    admin_client: TestClient, objects: dict[str, str], seeded_engine: Engine
) -> None:
    h = {"X-CSRF-Token": session_csrf(admin_client)}
    r = admin_client.post(
        f"/api/object/{objects['other']}/status", json={"status": "done"}, headers=h
    )
    assert r.status_code == 200 and r.json()["bstatus"] == "done"
    r = admin_client.post(
        "/api/lineage",
        json={
            "parent_euid": objects["plate"],
            "child_euid": objects["other"],
            "relationship_type": "contains",
        },
        headers=h,
    )
    assert r.status_code == 201
    again = admin_client.post(
        "/api/lineage",
        json={
            "parent_euid": objects["plate"],
            "child_euid": objects["other"],
            "relationship_type": "contains",
        },
        headers=h,
    )
    assert again.status_code == 409
    r = admin_client.delete(f"/api/object/{objects['other']}", headers=h)
    assert r.json() == {"deleted": [objects["other"]]}
    with seeded_engine.begin() as conn:
        history = audit.history(conn, objects["other"])
    assert {a.changed_by for a in history if a.operation_type != "INSERT"} == {"alice"}


def test_create_from_template_form_with_children_and_links(
    admin_client: TestClient, objects: dict[str, str], seeded_engine: Engine
) -> None:
    with seeded_engine.begin() as conn:
        plate_t = templates.get_template(conn, PLATE)
    page = admin_client.get(f"/templates/{plate_t.euid}")
    token = csrf_of(page.text)
    r = admin_client.post(
        f"/templates/{plate_t.euid}/create",
        data={
            "csrf_token": token,
            "name": "form-plate",
            "create_children": "on",
            "prop_barcode": "BC1",
            "parents": objects["other"],
            "relationship_type": "contains",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    euid = r.headers["location"].rsplit("/", 1)[1]
    with seeded_engine.begin() as conn:
        made = instances.get(conn, euid)
        assert made.properties["barcode"] == "BC1"
        assert len(lineage.children(conn, euid)) == 96
        assert [p.instance.euid for p in lineage.parents(conn, euid)] == [objects["other"]]


def test_create_is_all_or_nothing_and_shows_errors_by_field(
    admin_client: TestClient, objects: dict[str, str], seeded_engine: Engine
) -> None:
    token = session_csrf(admin_client)
    tube_t = objects["tube_template"]
    with seeded_engine.begin() as conn:
        before = len(instances.find(conn, template_code=TUBE, limit=None))
    r = admin_client.post(
        f"/templates/{tube_t}/create",
        data={"csrf_token": token, "name": "t", "parents": "CX-ZZZZZZ9"},
    )
    assert r.status_code in (400, 404)
    assert "Nothing was created" in r.text
    r = admin_client.post(
        f"/templates/{tube_t}/create",
        data={"csrf_token": token, "name": "t", "prop_volume_ul": "-5"},
    )
    assert r.status_code == 400
    assert 'class="field-error"' in r.text
    r = admin_client.post(f"/templates/{tube_t}/create", data={"csrf_token": token, "name": ""})
    assert r.status_code == 400 and "required" in r.text
    with seeded_engine.begin() as conn:
        assert len(instances.find(conn, template_code=TUBE, limit=None)) == before


# -- sessions and login -------------------------------------------------------------


def test_login_sets_a_hardened_rotated_cookie_and_logout_is_post_only(
    admin_app: Starlette,
) -> None:
    with TestClient(admin_app) as client:
        page = client.get("/login")
        anon_cookie = client.cookies.get("tapdb_admin")
        r = client.post(
            "/login",
            data={
                "username": "alice",
                "password": ADMIN_PASSWORD,
                "csrf_token": csrf_of(page.text),
            },
            follow_redirects=False,
        )
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "max-age=28800" in cookie
        assert client.cookies.get("tapdb_admin") != anon_cookie
        logged_in = client.cookies.get("tapdb_admin")
        assert client.get("/logout").status_code == 405
        assert client.post("/logout", data={}).status_code == 403
        token = session_csrf(client)
        client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
        assert client.get("/", follow_redirects=False).status_code == 303
        # the old cookie replayed after logout is refused
        client.cookies.set("tapdb_admin", logged_in or "")
        assert client.get("/", follow_redirects=False).status_code == 303


def test_secure_cookie_and_hsts_under_https(seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        users.create_user(conn, "carol", role="admin", password=ADMIN_PASSWORD)
    app = create_app(AdminSettings(database_url="x", https_only=True), engine=seeded_engine)
    with TestClient(app, base_url="https://testserver") as client:
        r = client.get("/login")
        assert "secure" in r.headers["set-cookie"].lower()
        assert r.headers["strict-transport-security"].startswith("max-age=")


def test_login_without_csrf_token_is_refused(anon: TestClient) -> None:
    r = anon.post("/login", data={"username": "alice", "password": ADMIN_PASSWORD})
    assert r.status_code == 403


def test_wrong_password_and_inactive_user(anon: TestClient, seeded_engine: Engine) -> None:
    token = csrf_of(anon.get("/login").text)
    r = anon.post("/login", data={"username": "alice", "password": "nope", "csrf_token": token})
    assert r.status_code == 401 and "Wrong user name or password" in r.text
    with seeded_engine.begin() as conn:
        users.deactivate(conn, "bob")
    r = anon.post(
        "/login", data={"username": "bob", "password": "user-password-1", "csrf_token": token}
    )
    assert r.status_code == 401


def test_deactivation_ends_an_open_session(user_client: TestClient, seeded_engine: Engine) -> None:
    assert user_client.get("/").status_code == 200
    with seeded_engine.begin() as conn:
        users.deactivate(conn, "bob")
    assert user_client.get("/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "http:/x",
        "javascript:alert(1)",
        "/%0a/x\n",
    ],
)
def test_next_only_accepts_local_paths(anon: TestClient, target: str) -> None:
    assert safe_next(target) in ("/", "/%0a/x\n"[:0] or "/")
    token = csrf_of(anon.get("/login").text)
    r = anon.post(
        "/login",
        data={"username": "alice", "password": ADMIN_PASSWORD, "csrf_token": token, "next": target},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/"


def test_next_keeps_a_local_path(anon: TestClient, objects: dict[str, str]) -> None:
    r = anon.get(f"/object/{objects['plate']}", follow_redirects=False)
    login_url = r.headers["location"]
    page = anon.get(login_url)
    nxt = f"/object/{objects['plate']}"
    assert f'value="{nxt}"' in page.text
    r = anon.post(
        "/login",
        data={
            "username": "alice",
            "password": ADMIN_PASSWORD,
            "csrf_token": csrf_of(page.text),
            "next": nxt,
        },
        follow_redirects=False,
    )
    assert r.headers["location"] == nxt


def test_failed_logins_are_slowed_per_user_and_address() -> None:
    now = [1000.0]
    throttle = LoginThrottle(free=3, max_delay=60, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.wait_for("user:a", "addr:1") == 0
        throttle.failed("user:a", "addr:1")
    assert throttle.wait_for("user:a", "addr:2") > 0  # same user, other address
    assert throttle.wait_for("user:b", "addr:1") > 0  # same address, other user
    assert throttle.wait_for("user:b", "addr:2") == 0
    now[0] += 61
    assert throttle.wait_for("user:a", "addr:1") == 0


def test_throttled_login_answers_429_even_with_the_right_password(anon: TestClient) -> None:
    token = csrf_of(anon.get("/login").text)
    for _ in range(3):
        anon.post("/login", data={"username": "alice", "password": "bad", "csrf_token": token})
    r = anon.post(
        "/login", data={"username": "alice", "password": ADMIN_PASSWORD, "csrf_token": token}
    )
    assert r.status_code == 429 and "Too many failed logins" in r.text


def test_must_change_password_first(anon: TestClient, seeded_engine: Engine) -> None:
    with seeded_engine.begin() as conn:
        users.create_user(conn, "dave", password="temporary-1", require_password_change=True)
    login(anon, "dave", "temporary-1")
    r = anon.get("/", follow_redirects=False)
    assert r.headers["location"] == "/change-password"
    token = csrf_of(anon.get("/change-password").text)
    r = anon.post(
        "/change-password",
        data={
            "csrf_token": token,
            "old_password": "temporary-1",
            "new_password": "brand-new-1",
            "confirm_password": "brand-new-1",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert anon.get("/").status_code == 200
    with seeded_engine.begin() as conn:
        assert users.verify_password(conn, "dave", "brand-new-1")


# -- headers, escaping ----------------------------------------------------------------


def test_security_headers_and_csp_without_inline_scripts(
    admin_client: TestClient, objects: dict[str, str]
) -> None:
    for path in [*_pages(objects), "/login"]:
        r = admin_client.get(path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        body = r.text.lower()
        assert "<script>" not in body.replace("&lt;script&gt;", "")
        for attr in (" onclick=", " onload=", " onerror=", " onsubmit=", " onchange="):
            assert attr not in body, (path, attr)
        assert (
            '<script src="http' not in body and '<link rel="stylesheet" href="http' not in body
        )  # no CDN


def test_hostile_name_renders_inert_on_every_page_and_in_the_graph(
    admin_client: TestClient, objects: dict[str, str]
) -> None:
    pages = [*_pages(objects), "/search?q=script", f"/instances?name={XSS}"]
    shown = 0
    for path in pages:
        body = admin_client.get(path).text
        assert XSS not in body, path
        shown += "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert shown >= 4
    graph = admin_client.get(f"/api/graph?start={objects['plate']}&depth=1")
    raw = graph.text
    assert graph.headers["content-type"].startswith("application/json")
    labels = [n["data"]["label"] for n in graph.json()["elements"]["nodes"]]
    assert XSS in labels  # the data is kept as it is ...
    assert raw.count(XSS) == 1  # JSON, served as application/json with nosniff
    # ... and the graph page puts it in Cytoscape labels or textContent only
    js = admin_client.get("/static/graph.js").text
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js


def test_unknown_host_is_refused(admin_app: Starlette) -> None:
    with TestClient(admin_app, base_url="http://evil.example") as client:
        assert client.get("/healthz").status_code == 400


# -- lists, search, graph --------------------------------------------------------------


def test_search_jumps_to_an_exact_euid(admin_client: TestClient, objects: dict[str, str]) -> None:
    r = admin_client.get(f"/search?q={objects['plate'].lower()}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/object/{objects['plate']}"
    r = admin_client.get("/api/search?q=address=A1")
    assert [i["properties"]["address"] for i in r.json()["instances"]] == ["A1"]
    r = admin_client.get("/api/search?q=container/tube/generic")
    assert {i["name"] for i in r.json()["instances"]} == {XSS, "tube-2"}


def test_instance_list_keyset_pages_cover_everything_once(
    admin_client: TestClient, objects: dict[str, str], admin_app: Starlette
) -> None:
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        r = admin_client.get("/api/instances", params={"after": after} if after else {})
        body = r.json()
        seen += [i["euid"] for i in body["items"]]
        pages += 1
        after = body["next_after"]
        if after is None:
            break
    assert pages >= 2  # 99 instances, 50 a page
    assert len(seen) == len(set(seen)) == 99
    r = admin_client.get(
        "/api/instances", params={"template": "container/tube/generic/*/", "name": "tube"}
    )
    assert [i["name"] for i in r.json()["items"]] == ["tube-2"]
    r = admin_client.get("/api/instances", params={"property": '{"address": "H12"}'})
    assert len(r.json()["items"]) == 1


def test_list_queries_use_no_offset_and_no_full_count(
    admin_client: TestClient, seeded_engine: Engine, objects: dict[str, str]
) -> None:
    from sqlalchemy import event

    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.lower())

    event.listen(seeded_engine, "before_cursor_execute", record)
    try:
        for path in [
            "/",
            "/instances?after=999999",
            "/instances?property=address%3DA1",
            "/templates",
            f"/object/{objects['plate']}",
        ]:
            assert admin_client.get(path).status_code == 200
    finally:
        event.remove(seeded_engine, "before_cursor_execute", record)
    assert not [s for s in statements if " offset " in s and "offset 0)" not in s]
    assert not [s for s in statements if "count(*)" in s]
    # the property filter is the GIN index's expression, not the subscript form
    assert [s for s in statements if "json_addl -> 'properties'" in s]
    assert not [s for s in statements if "json_addl[" in s]


def test_graph_api_plate_has_97_nodes_with_grid_cells(
    admin_client: TestClient, objects: dict[str, str]
) -> None:
    data = admin_client.get(f"/api/graph?start={objects['plate']}&depth=1").json()
    nodes = data["elements"]["nodes"]
    assert len(nodes) == 98  # plate, 96 wells, the linked tube
    cells = {(n["data"]["row"], n["data"]["col"]) for n in nodes if n["data"]["row"] is not None}
    assert cells == {(r, c) for r in range(8) for c in range(12)}
    assert data["more_not_shown"] == 0


def test_graph_is_capped_with_a_count_of_what_is_left_out(
    seeded_engine: Engine, objects: dict[str, str]
) -> None:
    app = create_app(AdminSettings(database_url="x", graph_node_cap=10), engine=seeded_engine)
    with seeded_engine.begin() as conn:
        users.create_user(conn, "erin", role="user", password="erin-password")
    with TestClient(app) as client:
        login(client, "erin", "erin-password")
        data = client.get(f"/api/graph?start={objects['plate']}&depth=1").json()
    assert len(data["elements"]["nodes"]) == 10
    assert data["truncated"] is True
    assert data["more_not_shown"] == 88


def test_object_json_twin(admin_client: TestClient, objects: dict[str, str]) -> None:
    data = admin_client.get(f"/api/object/{objects['plate']}").json()
    assert data["kind"] == "instance" and len(data["children"]) == 97
    assert data["history"][0]["operation"] == "INSERT"
    edge = data["children"][-1]["edge"]
    assert admin_client.get(f"/api/object/{edge}").json()["kind"] == "lineage"
    assert admin_client.get("/api/object/CX-ZZZZZZ9").status_code in (400, 404)


def test_users_admin_page(admin_client: TestClient, seeded_engine: Engine) -> None:
    token = session_csrf(admin_client)
    r = admin_client.post(
        "/users",
        data={"csrf_token": token, "username": "frank", "role": "user", "password": "frank-pass-1"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    with seeded_engine.begin() as conn:
        frank = users.get_user(conn, "frank")
    assert frank.require_password_change
    admin_client.post(f"/users/{frank.euid}/role", data={"csrf_token": token, "role": "admin"})
    admin_client.post(f"/users/{frank.euid}/active", data={"csrf_token": token, "active": "false"})
    with seeded_engine.begin() as conn:
        frank = users.get_user(conn, "frank")
    assert frank.role == "admin" and not frank.is_active
    items = admin_client.get("/api/users").json()["items"]
    assert "password_hash" not in json.dumps(items)


def test_production_refuses_to_start_without_secret_and_hosts() -> None:
    with pytest.raises(ConfigurationError, match="session secret"):
        create_app(AdminSettings(database_url="x", env="prod"))
    with pytest.raises(ConfigurationError, match="allowed-hosts"):
        create_app(AdminSettings(database_url="x", production=True, session_secret="s" * 40))


def test_a_host_app_supplies_its_own_user(seeded_engine: Engine, objects: dict[str, str]) -> None:
    from starlette.requests import Request
    from starlette.routing import Mount

    def host_user(request: Request) -> AdminUser | None:
        role = request.headers.get("x-host-role")
        return AdminUser(username="host-" + role, role=role) if role else None

    inner = create_app(
        AdminSettings(database_url="x"), engine=seeded_engine, user_provider=host_user
    )
    host = Starlette(routes=[Mount("/tapdb", app=inner)])
    with TestClient(host) as client:
        r = client.get("/tapdb/instances", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/tapdb/login")
        r = client.get("/tapdb/instances", headers={"x-host-role": "user"})
        assert r.status_code == 200 and 'href="/tapdb/object/' in r.text
        r = client.post(
            f"/tapdb/api/object/{objects['other']}/status",
            json={"status": "x"},
            headers={"x-host-role": "user"},
        )
        assert r.status_code == 403
        r = client.post(
            f"/tapdb/api/object/{objects['other']}/status",
            json={"status": "x"},
            headers={"x-host-role": "admin"},
        )
        assert r.status_code == 200
