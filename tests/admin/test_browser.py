"""The admin UI in a real browser: Playwright driving Debian's Chromium
(``chromium-headless-shell``) against the app served by uvicorn on 127.0.0.1.

Without a Chromium these tests skip and say what to install; under ``CI=true``
a missing browser is a failure (CI installs it, see ``.ci/run``).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tapdb_core import instances, lineage, templates, users
from tapdb_core.admin import AdminSettings, create_app

from .conftest import ADMIN_PASSWORD, USER_PASSWORD

#: where the screenshots go: docs/images when regenerating them
#: (TAPDB_SCREENSHOT_DIR=docs/images), else a scratch folder (tests leave the tree clean)
SCREENSHOT_DIR = os.environ.get("TAPDB_SCREENSHOT_DIR")
CANDIDATES = (
    "/usr/lib/chromium/chromium-headless-shell",
    "/usr/bin/chromium-headless-shell",
    "/usr/bin/chromium",
)
INSTALL = "apt-get install -y --no-install-recommends chromium-headless-shell"


def _chromium() -> str | None:
    explicit = os.environ.get("TAPDB_CHROMIUM")
    if explicit:
        return explicit
    for path in CANDIDATES:
        if Path(path).exists():
            return path
    return shutil.which("chromium-headless-shell") or shutil.which("chromium")


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run; {INSTALL})")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install playwright; no browser download needed)")
    path = _chromium()
    if path is None:
        _missing(f"no Chromium found: {INSTALL} (or set TAPDB_CHROMIUM)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=path,
            headless=True,
            args=[
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


@pytest.fixture
def server(seeded_engine: Engine) -> Iterator[tuple[str, dict[str, str]]]:
    import uvicorn

    with seeded_engine.begin() as conn:
        users.create_user(conn, "alice", role="admin", password=ADMIN_PASSWORD)
        users.create_user(conn, "bob", role="user", password=USER_PASSWORD)
        kit = instances.create(
            conn, "container/kit/blood-collection/1.0/", "kit-1", create_children=False
        )
        t1 = instances.create(conn, "container/tube/generic/1.0/", "tube-A")
        t2 = instances.create(conn, "container/tube/generic/1.0/", "tube-B")
        lineage.link(conn, kit.euid, t1.euid, "contains")
        lineage.link(conn, kit.euid, t2.euid, "contains")
        plate_t = templates.get_template(conn, "container/plate/fixed-plate-96/1.0/")
    with seeded_engine.begin() as conn:
        conn.execute(text("ANALYZE"))  # the dashboard's estimates come from the statistics
    app = create_app(AdminSettings(database_url="x", env="dev"), engine=seeded_engine)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    started = threading.Event()
    for _ in range(200):
        if srv.started:
            started.set()
            break
        started.wait(0.05)
    assert srv.started, "uvicorn did not start"
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield (
        f"http://127.0.0.1:{port}",
        {"kit": kit.euid, "t1": t1.euid, "t2": t2.euid, "plate_template": plate_t.euid},
    )
    srv.should_exit = True
    thread.join(timeout=10)


def _login(page: Any, base: str, username: str, password: str) -> None:
    page.goto(base + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def _click_node(page: Any, euid: str) -> None:
    box = page.locator("#cy").bounding_box()
    pos = page.evaluate(
        "id => { const p = window.tapdbGraph.getElementById(id).renderedPosition(); return [p.x, p.y]; }",
        euid,
    )
    page.mouse.click(box["x"] + pos[0], box["y"] + pos[1])


def _load_graph(page: Any, base: str, start: str, depth: int, nodes: int) -> None:
    page.goto(f"{base}/graph?start={start}&depth={depth}")
    page.wait_for_selector(f'#cy[data-nodes="{nodes}"]', timeout=30_000)


def test_admin_in_a_real_browser(
    browser: Any, server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    base, o = server
    images = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("dialog", lambda dialog: dialog.accept())

    _login(page, base, "alice", ADMIN_PASSWORD)
    images.mkdir(parents=True, exist_ok=True)

    # search an EUID: straight to its page
    page.fill("#dashboard-search", o["t1"].lower())
    page.press("#dashboard-search", "Enter")
    page.wait_for_url(f"{base}/object/{o['t1']}")
    assert page.text_content("#object-name") == "tube-A"

    # create a 96-well plate from its template form
    page.goto(f"{base}/templates/{o['plate_template']}")
    page.fill("#create-form input[name=name]", "browser-plate")
    page.fill("#create-form input[name=prop_barcode]", "BP-0001")
    assert page.is_checked("#create-form input[name=create_children]")
    page.click("#create-submit")
    page.wait_for_url(f"{base}/object/**")
    plate = page.text_content("#object-euid")
    assert page.locator("#children li").count() == 96
    page.screenshot(path=str(images / "admin-object.png"))

    # its graph: 97 nodes drawn, the wells in their 8 x 12 grid
    page.click("#open-graph")
    page.wait_for_selector('#cy[data-nodes="97"]', timeout=30_000)
    page.wait_for_selector('#cy[data-layout="dagre"]')
    assert page.locator("#cy canvas").count() >= 1
    grid = page.evaluate(
        """() => {
            const wells = window.tapdbGraph.nodes().filter(n => n.data('row') !== null);
            const xs = new Set(), ys = new Set();
            wells.forEach(n => { xs.add(Math.round(n.position('x'))); ys.add(Math.round(n.position('y'))); });
            return [wells.length, xs.size, ys.size];
        }"""
    )
    assert grid == [96, 12, 8]
    page.screenshot(path=str(images / "admin-graph.png"))

    # link two objects by gesture: tube-A (child) then tube-B (parent)
    _load_graph(page, base, o["kit"], 1, 3)
    page.click("#g-link-mode")
    _click_node(page, o["t1"])
    page.wait_for_function(
        "() => document.getElementById('g-status').textContent.includes('now click the parent')"
    )
    _click_node(page, o["t2"])
    page.wait_for_selector("#g-link-dialog[open]")
    page.select_option("#g-link-type", "derived_from")
    page.click("#g-link-ok")
    page.wait_for_function(
        "() => document.getElementById('g-status').textContent.startsWith('Linked')"
    )
    parents = page.evaluate(
        "url => fetch(url).then(r => r.json()).then(d => d.parents.map(p => [p.euid, p.relationship]))",
        f"/api/object/{o['t1']}",
    )
    assert [o["t2"], "derived_from"] in parents

    # soft-delete tube-B from the graph
    _click_node(page, o["t2"])
    page.click("#g-delete")
    page.wait_for_function(
        "() => document.getElementById('g-status').textContent.startsWith('Soft-deleted')"
    )
    page.goto(f"{base}/object/{o['t2']}")
    assert page.is_visible("#deleted-badge")
    timeline = page.text_content("#timeline") or ""
    assert "alice" in timeline and "INSERT" in timeline and "is_deleted" in timeline

    # dashboard screenshot (recent changes filled in by now)
    page.goto(base + "/")
    page.screenshot(path=str(images / "admin-dashboard.png"))
    for name in ("admin-dashboard.png", "admin-object.png", "admin-graph.png"):
        assert (images / name).stat().st_size > 10_000

    # log out: the session is gone
    page.click("#logout")
    page.wait_for_url(f"{base}/login")
    page.goto(f"{base}/object/{plate}")
    assert page.url.startswith(f"{base}/login")
    assert errors == []
    context.close()


def test_user_sees_no_admin_controls_and_the_api_refuses(
    browser: Any, server: tuple[str, dict[str, str]]
) -> None:
    base, o = server
    context = browser.new_context()
    page = context.new_page()
    _login(page, base, "bob", USER_PASSWORD)
    page.goto(f"{base}/object/{o['t1']}")
    assert page.locator("#admin-controls").count() == 0
    page.goto(f"{base}/templates/{o['plate_template']}")
    assert page.locator("#create-form").count() == 0
    _load_graph(page, base, o["kit"], 1, 3)
    assert page.locator("#g-link-mode").count() == 0
    assert page.locator("#g-delete").count() == 0
    statuses = page.evaluate(
        """async (o) => {
            const csrf = document.getElementById('cy').dataset.csrf;
            const h = {'Content-Type': 'application/json', 'X-CSRF-Token': csrf};
            const calls = [
              ['POST', '/api/lineage', {parent_euid: o.t2, child_euid: o.t1}],
              ['DELETE', '/api/object/' + o.t1, null],
              ['POST', '/api/object/' + o.t1 + '/status', {status: 'x'}],
              ['POST', '/api/templates/' + o.plate_template + '/instances', {name: 'x'}],
            ];
            const out = [];
            for (const [m, u, b] of calls) {
              const r = await fetch(u, {method: m, headers: h, body: b ? JSON.stringify(b) : undefined});
              out.push(r.status);
            }
            return out;
        }""",
        o,
    )
    assert statuses == [403, 403, 403, 403]
    context.close()
