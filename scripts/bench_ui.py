#!/usr/bin/env python3
"""Admin UI server time at 10,000 and 1,000,000 instances.

Each size gets its own database, built by the builder bench_scale.py uses
(scripts/_scale_db.py: plates of 96 wells with a sample each, derivation
chains, a subtree, audit history, 2% soft-deleted; here by one set-based
UPDATE unless --soft-delete delete), plus what the pages need on top: an admin user and
ten "hub" objects with 100 children and 30 status changes each, made through
the library (so their audit rows are the triggers' own).

The app is tapdb_core.admin.create_app over one engine, driven in-process by
Starlette's TestClient with a logged-in session. Per page:

* server: from the request's arrival at the app (outside every middleware) to
  its last body message, timed by an ASGI wrapper; the TestClient's own
  overhead is not in it;
* db in request: the time the page's statements spent in the driver
  (round trip and result transfer included) during that request;
* raw floor: the same statements, with the same parameters, replayed on a bare
  psycopg connection in one transaction: what PostgreSQL alone costs.

Then EXPLAIN (ANALYZE, BUFFERS) of every SELECT of one request of each page,
flagging sequential scans of the big tables and count() over them.

Goal (issue 12, section 6): every page under 100 ms p95, and the largest size
within 2x of the smallest.

Usage: python scripts/bench_ui.py [--sizes 10000,1000000] [--repeat 200]
                                  [--explain-dir DIR] [--json FILE] [--url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# sibling modules: scripts/ is on sys.path when this file runs as a script
from _scale_db import PLATE, SAMPLE, UNIT, build, cluster_url
from bench_scale import summary
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from tapdb_core import instances, lineage, users
from tapdb_core.db import Database

try:
    from starlette.testclient import TestClient

    from tapdb_core.admin import AdminSettings, create_app
except ImportError:  # pragma: no cover - depends on the extra
    sys.exit("bench_ui.py needs the admin extra: pip install -e '.[admin,dev]'")

PAGE = 50  # the app's default page size
DEEP_PAGE = 10_000
HUBS, HUB_CHILDREN, HUB_CHANGES = 10, 100, 30
GRAPH_DEPTH = 3
GOAL_MS = 100.0
GOAL_RATIO = 2.0
BIG_TABLES = ("generic_instance", "generic_instance_lineage", "audit_log")
USERNAME, PASSWORD = "bench-admin", "bench-admin-password-1"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


# -- the database ---------------------------------------------------------------------


def fresh_database(url: str, name: str) -> Engine:
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return create_engine(make_url(url).set(database=name))


def add_hubs(engine: Engine) -> list[str]:
    """Objects with 100 live children each and a history of status changes."""
    db = Database(engine)
    with db.begin() as conn:
        users.create_user(conn, USERNAME, role="admin", password=PASSWORD)
    hubs = []
    for k in range(HUBS):
        with db.begin("bench") as conn:
            hub = instances.create(conn, SAMPLE, f"HUB-{k}", create_children=False)
            for j in range(HUB_CHILDREN):
                child = instances.create(conn, SAMPLE, f"HUB-{k}-{j}", create_children=False)
                lineage.link(conn, hub, child, "derived_from")
            for c in range(HUB_CHANGES):
                instances.set_status(conn, hub.euid, ("active", "in_progress", "complete")[c % 3])
            hubs.append(hub.euid)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    return hubs


def _scalars(conn: Connection, sql: str, **params: Any) -> list[Any]:
    return list(conn.execute(text(sql), params).scalars())


def targets(engine: Engine, info: dict[str, Any], hubs: list[str]) -> dict[str, list[str]]:
    """Each page's request paths (one per repetition, cycled)."""
    rng = random.Random(12)
    b, units = info["base"], info["units"]
    plate_uuids = [b + rng.randrange(units) * UNIT for _ in range(600)]
    code = PLATE.strip("/").split("/")
    plate_where = "category = :c AND type = :t AND subtype = :s AND version = :v"
    codep = dict(zip(("c", "t", "s", "v"), code, strict=True))
    with engine.connect() as conn:
        plates = _scalars(
            conn,
            "SELECT euid FROM generic_instance WHERE NOT is_deleted AND uuid = ANY(:u)",
            u=plate_uuids,
        )
        live = _scalars(conn, "SELECT count(*) FROM generic_instance WHERE NOT is_deleted")[0]
        # the 10,000th page (or the middle one of a smaller table), newest first:
        # its cursor is the last row of the page before, as that page's "next"
        # link carries it
        deep_page = min(DEEP_PAGE, live // 2 // PAGE)
        deep_row = (deep_page - 1) * PAGE
        deep_after = _scalars(
            conn,
            "SELECT uuid FROM generic_instance WHERE NOT is_deleted"
            " ORDER BY uuid DESC OFFSET :o LIMIT 1",
            o=deep_row - 1,
        )[0]
        live_plates = _scalars(
            conn,
            f"SELECT count(*) FROM generic_instance WHERE NOT is_deleted AND {plate_where}",
            **codep,
        )[0]
        plate_deep_row = live_plates // 2
        plate_after = _scalars(
            conn,
            f"SELECT uuid FROM generic_instance WHERE NOT is_deleted AND {plate_where}"
            " ORDER BY uuid DESC OFFSET :o LIMIT 1",
            o=plate_deep_row,
            **codep,
        )[0]
    info.update(
        deep_page=deep_page,
        deep_row=deep_row,
        plate_deep_row=plate_deep_row,
        live_plates=live_plates,
    )
    barcodes = [f"BC-{rng.randrange(units)}" for _ in range(200)]
    return {
        "dashboard": ["/"],
        "templates list": ["/templates"],
        "instances page 1": ["/instances"],
        "instances deep page (keyset)": [f"/instances?after={deep_after}"],
        "instances by template (plates) page 1": [f"/instances?template={PLATE}"],
        "instances by template (plates) deep page": [
            f"/instances?template={PLATE}&after={plate_after}"
        ],
        "instances by property (barcode)": [f"/instances?property=barcode%3D{c}" for c in barcodes],
        f"object page ({HUB_CHILDREN} children, history)": [f"/object/{h}" for h in hubs],
        f"graph API depth {GRAPH_DEPTH} (plate, 193 nodes)": [
            f"/api/graph?start={p}&depth={GRAPH_DEPTH}" for p in plates
        ],
    }


# -- the app and its clocks ----------------------------------------------------------


class ServerClock:
    """ASGI wrapper: seconds from a request's arrival to its last body message."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed(message: Any) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last = time.perf_counter() - start
            await send(message)

        await self.app(scope, receive, timed)


class StatementLog:
    """The statements (with parameters) and driver time of the current request."""

    def __init__(self, engine: Engine) -> None:
        self.statements: list[tuple[str, Any]] = []
        self.seconds = 0.0
        self._started = 0.0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, _c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        self.statements.append((statement, parameters))
        self._started = time.perf_counter()

    def _after(self, *_: Any) -> None:
        self.seconds += time.perf_counter() - self._started

    def reset(self) -> None:
        self.statements, self.seconds = [], 0.0


def login(client: TestClient) -> None:
    page = client.get("/login")
    m = _CSRF.search(page.text)
    assert m, "no CSRF token on the login page"
    r = client.post(
        "/login",
        data={"username": USERNAME, "password": PASSWORD, "csrf_token": m.group(1)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def walk_to_deep_page(client: TestClient, page: int, deep_path: str) -> None:
    """Check the deep cursor is the one following "next" from page 1 reaches."""
    after: int | None = None
    for _ in range(page - 1):
        data = client.get("/api/instances" + (f"?after={after}" if after else "")).json()
        after = data["next_after"]
    assert deep_path == f"/instances?after={after}", (deep_path, after)
    print(f"   deep cursor checked: {page - 1} keyset steps from page 1 reach it")


def replay(raw: Any, statements: list[tuple[str, Any]]) -> float:
    """The statements on a bare psycopg connection, in one transaction. The
    results arrive whole (libpq) but are not turned into Python objects."""
    start = time.perf_counter()
    with raw.cursor() as cur:
        for statement, parameters in statements:
            cur.execute(statement, parameters or None)
    raw.commit()
    return time.perf_counter() - start


def _p(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    return statistics.median(times) * 1000, times[max(0, int(len(times) * 0.95) - 1)] * 1000


# -- one size ------------------------------------------------------------------------


def run_size(
    url: str, size: int, repeat: int, explain_dir: Path | None, soft_delete: str
) -> dict[str, dict[str, Any]]:
    engine = fresh_database(url, f"tapdb_ui_{size}")
    print(f"== {size:,} instances", file=sys.stderr)
    info = build(engine, size, soft_delete=soft_delete)
    hubs = add_hubs(engine)
    pages = targets(engine, info, hubs)
    with engine.connect() as conn:
        counts = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM generic_instance),"
                " (SELECT count(*) FROM generic_instance WHERE is_deleted),"
                " (SELECT count(*) FROM generic_instance_lineage), (SELECT count(*) FROM audit_log),"
                " pg_size_pretty(pg_database_size(current_database()))"
            )
        ).one()
    print(
        f"{size:,}: {counts[0]:,} instances ({counts[1]:,} deleted), {counts[2]:,} edges,"
        f" {counts[3]:,} audit rows, {counts[4]}, built in {info['built_s']:.0f} s;"
        f" deep page {info['deep_page']:,} (rows from {info['deep_row']:,}), plate deep page"
        " after plate"
        f" {info['plate_deep_row']:,} of {info['live_plates']:,}"
    )
    clock = ServerClock(
        create_app(AdminSettings(database_url="postgresql://unused", env="bench"), engine=engine)
    )
    log = StatementLog(engine)
    results: dict[str, dict[str, Any]] = {}
    raw_conn = engine.raw_connection()
    raw = raw_conn.driver_connection
    with TestClient(clock) as client:
        login(client)
        if info["deep_page"] <= 300:
            walk_to_deep_page(client, info["deep_page"], pages["instances deep page (keyset)"][0])
        samples: dict[str, dict[str, list[Any]]] = {
            label: {"server": [], "db": [], "client": [], "captured": []} for label in pages
        }
        load = os.getloadavg()[0]
        # round robin over the pages, so a burst of load from the machine's other
        # users falls on all of them alike
        for i in range(5 + repeat):
            for label, paths in pages.items():
                log.reset()
                start = time.perf_counter()
                response = client.get(paths[i % len(paths)], follow_redirects=False)
                elapsed = time.perf_counter() - start
                if response.status_code != 200:
                    raise SystemExit(f"{label}: {paths[i % len(paths)]} -> {response.status_code}")
                if i >= 5:  # warm-up done
                    got = samples[label]
                    got["server"].append(clock.last)
                    got["db"].append(log.seconds)
                    got["client"].append(elapsed)
                    got["captured"].append(log.statements)
        for got in samples.values():
            for statements in got["captured"][:5]:  # warm-up
                replay(raw, statements)
        floors: dict[str, list[float]] = {label: [] for label in pages}
        for i in range(repeat):
            for label, got in samples.items():
                floors[label].append(replay(raw, got["captured"][i]))
        load = max(load, os.getloadavg()[0])
        for label, got in samples.items():
            results[label] = {
                "server": _p(got["server"]),
                "db": _p(got["db"]),
                "client": _p(got["client"]),
                "floor": _p(floors[label]),
                "statements": len(got["captured"][0]),
                "sample": got["captured"][0],
            }
            print(
                f"   {label}: server p50 {results[label]['server'][0]:.1f} ms"
                f" p95 {results[label]['server'][1]:.1f} ms",
                file=sys.stderr,
            )
    print(f"   load average (1 min, {os.cpu_count()} cores) up to {load:.1f} during the run")
    for label, r in results.items():
        r["plans"] = explain(raw, r.pop("sample"))
        r["seq_scans"] = sorted(
            {t for plan in r["plans"] for t in BIG_TABLES if f"Seq Scan on {t} " in plan}
        )
        if explain_dir:
            explain_dir.mkdir(parents=True, exist_ok=True)
            slug = "".join(ch if ch.isalnum() else "_" for ch in label.strip(" .")).strip("_")
            (explain_dir / f"ui_{size}_{slug[:60]}.txt").write_text("\n\n".join(r["plans"]) + "\n")
        for plan in r["plans"]:
            print(f"   EXPLAIN {label}: {summary(plan)}")
    raw_conn.close()
    engine.dispose()
    return results


def explain(raw: Any, statements: list[tuple[str, Any]]) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of each SELECT of one request, rolled back."""
    plans = []
    with raw.cursor() as cur:
        for statement, parameters in statements:
            if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters or None)
            plans.append(
                "-- "
                + " ".join(statement.split())[:400]
                + "\n"
                + "\n".join(r[0] for r in cur.fetchall())
            )
    raw.rollback()
    return plans


# -- the table -----------------------------------------------------------------------


def verdict(table: dict[int, dict[str, dict[str, Any]]], label: str) -> str:
    sizes = sorted(table)
    misses = []
    for s in sizes:
        if table[s][label]["server"][1] >= GOAL_MS:
            misses.append(f"p95 >= {GOAL_MS:.0f} ms at {s:,}")
    if len(sizes) > 1:
        ratio = table[sizes[-1]][label]["server"][1] / table[sizes[0]][label]["server"][1]
        if ratio > GOAL_RATIO:
            misses.append(f"{ratio:.1f}x")
    scans = table[sizes[-1]][label]["seq_scans"]
    if scans:
        misses.append("seq scan of " + ", ".join(scans))
    return "met" if not misses else "MISSED: " + "; ".join(misses)


def print_table(table: dict[int, dict[str, dict[str, Any]]], labels: list[str]) -> None:
    sizes = sorted(table)
    print()
    print("server = app time per request; db = its statements' driver time; floor = the same")
    print("statements replayed on a bare psycopg connection; p50/p95 in ms")
    head = f"{'page':<44}"
    for s in sizes:
        head += f"{f'{s:,}: server p50':>20}{'p95':>7}{'db p50':>8}{'floor p50':>10}{'p95':>7}"
    print(head + f"{'p95 ratio':>10}  goal")
    for label in labels:
        line = f"{label:<44}"
        for s in sizes:
            r = table[s][label]
            line += (
                f"{r['server'][0]:>20.1f}{r['server'][1]:>7.1f}{r['db'][0]:>8.1f}"
                f"{r['floor'][0]:>10.1f}{r['floor'][1]:>7.1f}"
            )
        ratio = table[sizes[-1]][label]["server"][1] / table[sizes[0]][label]["server"][1]
        print(line + f"{ratio:>9.2f}x  {verdict(table, label)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--url", help="SQLAlchemy URL of a server database with CREATE DATABASE rights"
    )
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--explain-dir", type=Path)
    parser.add_argument("--json", type=Path, help="write the figures and plans here")
    parser.add_argument(
        "--soft-delete",
        choices=("update", "delete"),
        default="update",
        help="how the builder deletes its 2%% (see _scale_db.build); bench_scale.py's DELETE"
        " ran at 3-6 rows/s at a million rows here, over 25 minutes for 8,400 rows",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    table: dict[int, dict[str, dict[str, Any]]] = {}
    labels: list[str] = []
    with cluster_url(args.url) as url:
        for size in sizes:
            table[size] = run_size(url, size, args.repeat, args.explain_dir, args.soft_delete)
            labels = list(table[size])
    print_table(table, labels)
    if args.json:
        args.json.write_text(json.dumps({str(s): table[s] for s in sizes}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
