#!/usr/bin/env python3
"""Seeding cost: validate a generated pack set, seed it, then seed it again unchanged.

A pack set of N small templates (default 5000) is written across many files
in a temporary directory: each file has its own instance prefix, templates
reference the previous template of their file (``expected_inputs``) and every
tenth carries a small ``json_addl_schema``. The script prints the time of
``validate_packs``, of the first ``seed_packs`` (all created; validation
included) and of an unchanged re-seed, and the ratio of the two seeds.

Usage:
    python scripts/bench_seed.py [--url URL] [--templates N] [--per-file M]

Without --url a throwaway local cluster is started (tapdb_core.pgruntime,
fast_unsafe). With --url the database is migrated to head first (use an empty
one: the generated templates are left in it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from tapdb_core import migrate
from tapdb_core.packs import seed_packs, validate_packs
from tapdb_core.pgruntime import temporary_cluster

LETTERS = "ABCDEFGHJKMNPQRSTVWXYZ"  # valid EUID prefix letters (no I, L, O, U)
SCHEMA = {
    "type": "object",
    "properties": {"properties": {"type": "object", "properties": {"n": {"type": "integer"}}}},
}


@contextmanager
def database(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with temporary_cluster(fast_unsafe=True, prefix="tapdb-bench-seed-") as cluster:
        yield cluster.url()


def prefix_for(index: int) -> str:
    """A distinct three-letter prefix per file (``Q..``/``R..``/...; never a reserved one)."""
    first = "QRSVWXYZ"[index // (len(LETTERS) ** 2) % 8]
    return first + LETTERS[index // len(LETTERS) % len(LETTERS)] + LETTERS[index % len(LETTERS)]


def generate(root: Path, templates: int, per_file: int) -> int:
    """Write the pack set; the number of files."""
    files = 0
    for start in range(0, templates, per_file):
        f = files
        entries: list[dict[str, Any]] = []
        for i in range(min(per_file, templates - start)):
            addl: dict[str, Any] = {"properties": {"n": i, "label": f"item {start + i}"}}
            if i:
                addl["expected_inputs"] = [f"bench/f{f}/t{i - 1}/*"]
            entry: dict[str, Any] = {
                "name": f"bench {f}/{i}",
                "polymorphic_discriminator": "generic_template",
                "category": "bench",
                "type": f"f{f}",
                "subtype": f"t{i}",
                "version": "1.0",
                "instance_prefix": prefix_for(f),
                "json_addl": addl,
            }
            if i % 10 == 0:
                entry["json_addl_schema"] = SCHEMA
            entries.append(entry)
        path = root / "bench" / f"pack_{f:04d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"templates": entries}), encoding="utf-8")
        files += 1
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--url", help="SQLAlchemy URL of an empty database to use (default: throwaway cluster)"
    )
    parser.add_argument("--templates", type=int, default=5000, help="templates (default 5000)")
    parser.add_argument("--per-file", type=int, default=50, help="templates per file (default 50)")
    args = parser.parse_args()
    if args.templates < 1 or args.per_file < 1:
        parser.error("--templates and --per-file must be at least 1")

    with (
        tempfile.TemporaryDirectory(prefix="tapdb-bench-packs-") as packs,
        database(args.url) as url,
    ):
        root = Path(packs)
        files = generate(root, args.templates, args.per_file)
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                migrate.upgrade(conn)

            t0 = time.perf_counter()
            report = validate_packs([root])
            validate_s = time.perf_counter() - t0
            if not report.ok:
                print("\n".join(str(e) for e in report.errors[:20]), file=sys.stderr)
                return 1

            t0 = time.perf_counter()
            with engine.begin() as conn:
                first = seed_packs(conn, [root])
            first_s = time.perf_counter() - t0

            with engine.connect() as conn:
                audit_before = conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one()
            t0 = time.perf_counter()
            with engine.begin() as conn:
                again = seed_packs(conn, [root])
            again_s = time.perf_counter() - t0
            with engine.connect() as conn:
                audit_after = conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one()

            t0 = time.perf_counter()
            with engine.begin() as conn:
                plan = seed_packs(conn, [root], dry_run=True)
            dry_s = time.perf_counter() - t0
        finally:
            engine.dispose()

    n = args.templates
    rows = [
        ("validate_packs", f"{validate_s:7.3f} s"),
        (f"seed, first ({len(first.created)} created)", f"{first_s:7.3f} s  (validation included)"),
        (
            f"seed again ({len(again.unchanged)} unchanged)",
            f"{again_s:7.3f} s  (validation included)",
        ),
        ("re-seed / first seed", f"{again_s / first_s:7.2f}"),
        (f"dry run ({len(plan.unchanged)} unchanged)", f"{dry_s:7.3f} s"),
        ("audit rows written by re-seed", f"{audit_after - audit_before:7d}"),
    ]
    width = max(len(label) for label, _ in rows)
    print(f"{n} templates in {files} pack files ({len(first.new_sequences)} instance prefixes)")
    for label, value in rows:
        print(f"  {label.ljust(width)} : {value}")
    ok = len(first.created) == n and len(again.unchanged) == n and audit_after == audit_before
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
