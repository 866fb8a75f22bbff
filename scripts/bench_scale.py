#!/usr/bin/env python3
"""Query latency at 10,000 and 1,000,000 instances (10,000,000 with --with-10m).

Each size gets its own database in one throwaway cluster, built with the real
tables and every trigger on (so audit rows are the real ones), in this shape:

* plates of 96 wells with a sample in each well (plate -contains-> well
  -contains-> sample), each plate with a unique barcode property;
* derivation chains of 200 samples (5% of the instances);
* one subtree of 1,092 samples below a root (fan-out 3, depth 6);
* audit history: every insert, a status change on 10% of the samples;
* 2% of the instances soft-deleted (through DELETE, as users do).

json_addl is the planned one of each template, stored as the library stores
it (own keys, action definitions by reference to their shared set); the build
writes set-based SQL, not through the library (no Python schema validation),
so a million rows build in minutes.

Then, per size, p50/p95 of each query through the library API (random live
targets, one connection), beside the floor of one round trip (SELECT 1) in
the same run, and EXPLAIN (ANALYZE, BUFFERS) of every statement of one call of
each query (summary printed; full plans with --explain-dir).

Usage: python scripts/bench_scale.py [--sizes 10000,1000000] [--with-10m]
                                     [--repeat 200] [--explain-dir DIR] [--url URL]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# the builder, shared with bench_ui.py (scripts/ is on sys.path when run as a script)
from _scale_db import CHAIN, PLATE, SAMPLE, UNIT, build, cluster_url
from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import make_url

from tapdb_core import audit, instances, lineage, templates

PAGE = 50
DEEP_PAGE = 10_000


# -- measuring -----------------------------------------------------------------------------


def _euids(conn: Connection, where: str, n: int, rng: random.Random, **params: Any) -> list[str]:
    rows = (
        conn.execute(
            text(f"SELECT euid FROM generic_instance WHERE NOT is_deleted AND {where}"), params
        )
        .scalars()
        .all()
    )
    return [rng.choice(rows) for _ in range(n)]


def queries(
    conn: Connection, info: dict[str, Any], repeat: int
) -> dict[str, Callable[[int], object]]:
    rng = random.Random(5)
    b, units = info["base"], info["units"]
    some_uuids = [b + rng.randrange(units) * UNIT + rng.randrange(UNIT) for _ in range(repeat * 3)]
    any_live = _euids(conn, "uuid = ANY(:u)", repeat, rng, u=some_uuids)
    plates = _euids(
        conn,
        "uuid = ANY(:u)",
        repeat,
        rng,
        u=[b + rng.randrange(units) * UNIT for _ in range(repeat * 3)],
    )
    samples = _euids(
        conn,
        "uuid = ANY(:u)",
        repeat,
        rng,
        u=[b + rng.randrange(units) * UNIT + 97 + rng.randrange(96) for _ in range(repeat * 3)],
    )
    barcodes = [f"BC-{rng.randrange(units)}" for _ in range(repeat)]
    root = _euids(conn, "uuid = :u", 1, rng, u=info["subtree_root"])[0]
    chain_pairs = []
    for _ in range(repeat):
        c = rng.randrange(info["chains"])
        i = rng.randrange(0, CHAIN - 30)
        chain_pairs.append(
            (info["chain_base"] + c * CHAIN + i, info["chain_base"] + c * CHAIN + i + 20)
        )
    pair_rows: dict[int, str] = dict(
        conn.execute(
            text("SELECT uuid, euid FROM generic_instance WHERE uuid = ANY(:u)"),
            {"u": [u for p in chain_pairs for u in p]},
        ).all()
    )
    paths = [
        (pair_rows[a], pair_rows[z]) for a, z in chain_pairs if a in pair_rows and z in pair_rows
    ]
    live = conn.execute(
        text("SELECT count(*) FROM generic_instance WHERE NOT is_deleted")
    ).scalar_one()
    deep_row = min(DEEP_PAGE * PAGE, live // 2)
    deep_after = conn.execute(
        text(
            "SELECT euid FROM generic_instance WHERE NOT is_deleted ORDER BY uuid OFFSET :o LIMIT 1"
        ),
        {"o": deep_row - 1},
    ).scalar_one()
    info["deep_row"] = deep_row

    def template_lookup(i: int) -> object:
        templates.clear_cache()
        return templates.get_template(conn, SAMPLE if i % 2 else PLATE)

    return {
        "round trip floor (SELECT 1)": lambda i: conn.execute(text("SELECT 1")).scalar(),
        "get by EUID": lambda i: instances.get(conn, any_live[i]),
        "find by template code (first 100)": lambda i: instances.find(conn, template_code=SAMPLE),
        "find by property (barcode)": lambda i: instances.find(
            conn, properties={"barcode": barcodes[i]}
        ),
        "children of a plate (96)": lambda i: lineage.children(conn, plates[i]),
        "parents of a sample": lambda i: lineage.parents(conn, samples[i]),
        "descendants depth 3 (1,092 subtree)": lambda i: lineage.descendants(
            conn, root, max_depth=3
        ),
        "descendants full (1,092 subtree)": lambda i: lineage.descendants(conn, root),
        "path, 20 steps along a chain": lambda i: lineage.path(conn, *paths[i % len(paths)]),
        "audit history of one object": lambda i: audit.history(conn, samples[i]),
        f"list page 1 ({PAGE}, by creation)": lambda i: instances.find(conn, limit=PAGE),
        f"list deep page (keyset, {PAGE})": lambda i: instances.find(
            conn, limit=PAGE, after=deep_after
        ),
        "template lookup (cache cleared)": template_lookup,
    }


def measure(conn: Connection, fn: Callable[[int], object], repeat: int) -> tuple[float, float]:
    for i in range(min(5, repeat)):
        fn(i)
    times = []
    for i in range(repeat):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.95) - 1] * 1000


def explain(conn: Connection, fn: Callable[[int], object]) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of each statement one call of ``fn`` runs."""
    seen: list[tuple[str, Any]] = []

    def grab(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(conn, "before_cursor_execute", grab)
    try:
        fn(0)
    finally:
        event.remove(conn, "before_cursor_execute", grab)
    plans = []
    raw = conn.connection.driver_connection
    for statement, parameters in seen:
        if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
            continue
        with raw.cursor() as cur:  # type: ignore[union-attr]
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters or None)
            plans.append("\n".join(r[0] for r in cur.fetchall()))
    return plans


def summary(plan: str) -> str:
    lines = plan.splitlines()
    top = lines[0].split("  (cost")[0].strip()
    scans = sorted(
        {
            ln.strip().lstrip("-> ").split("  (")[0]
            for ln in lines
            if (" Scan" in ln and "->" in ln)
            or ln.strip().startswith(("Index", "Seq Scan", "Bitmap"))
        }
    )
    buffers = next((ln.strip() for ln in lines if ln.strip().startswith("Buffers:")), "")
    exec_time = next((ln.strip() for ln in lines if ln.startswith("Execution Time")), "")
    return f"{top} | {'; '.join(scans)[:300]} | {buffers} | {exec_time}"


def run_size(
    url: str, size: int, repeat: int, explain_dir: Path | None
) -> dict[str, tuple[float, float]]:
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"tapdb_scale_{size}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    engine = create_engine(make_url(url).set(database=name))
    print(f"== {size:,} instances", file=sys.stderr)
    info = build(engine, size)
    results: dict[str, tuple[float, float]] = {}
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
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
            f" {counts[3]:,} audit rows, {counts[4]}, built in {info['built_s']:.0f} s"
        )
        qs = queries(conn, info, repeat)
        for label, fn in qs.items():
            results[label] = measure(conn, fn, repeat)
        for label, fn in qs.items():
            plans = explain(conn, fn)
            if explain_dir:
                explain_dir.mkdir(parents=True, exist_ok=True)
                slug = "".join(ch if ch.isalnum() else "_" for ch in label)[:60]
                (explain_dir / f"{size}_{slug}.txt").write_text("\n\n".join(plans) + "\n")
            for plan in plans:
                print(f"   EXPLAIN {label}: {summary(plan)}")
        print(f"   deep page: keyset after row {info['deep_row']:,}")
    engine.dispose()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--url", help="SQLAlchemy URL of a server database with CREATE DATABASE rights"
    )
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--with-10m", action="store_true", help="also 10,000,000 (disk: ~40 GB)")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--explain-dir", type=Path)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.with_10m:
        sizes.append(10_000_000)
    table: dict[int, dict[str, tuple[float, float]]] = {}
    with cluster_url(args.url) as url:
        for size in sizes:
            table[size] = run_size(url, size, args.repeat, args.explain_dir)
    small, large = sizes[0], sizes[-1]
    print()
    header = f"{'query':<38}" + "".join(f"{f'{s:,} p50':>13}{'p95':>9}" for s in sizes)
    print(header + f"{'p95 ratio':>11}")
    for label in table[small]:
        cells = "".join(
            f"{table[s][label][0]:>10.2f} ms{table[s][label][1]:>6.2f} ms" for s in sizes
        )
        ratio = table[large][label][1] / table[small][label][1]
        print(f"{label:<38}{cells}{ratio:>10.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
