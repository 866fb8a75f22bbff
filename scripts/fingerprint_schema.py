#!/usr/bin/env python3
"""Write tapdb_core/schema_fingerprint.json from a freshly migrated database.

Every new Alembic revision must regenerate the fingerprint (a test compares it
with a fresh migration): ``tapdb db schema status`` reports anything that
differs from it as tampered.

Usage:
    python scripts/fingerprint_schema.py [--url URL] [--check] [--output FILE]

``--url`` names an EMPTY database to migrate (it is migrated to head, and left
so); without it a throwaway local cluster is started (tapdb_core.pgruntime).
``--check`` compares instead of writing and exits 1 on a difference.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine

from tapdb_core import migrate, tamper


@contextmanager
def _database(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from tapdb_core.pgruntime import temporary_cluster

    with temporary_cluster(prefix="tapdb-fingerprint-") as cluster:
        yield cluster.url()


def render(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an empty database to migrate and fingerprint")
    parser.add_argument("--output", type=Path, default=tamper.FINGERPRINT_FILE)
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    with _database(args.url) as url:
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                if migrate.current_revision(conn) is not None:
                    parser.error("--url must name an empty database (it has a tapdb schema)")
                migrate.upgrade(conn)
            with engine.connect() as conn:
                content = render(tamper.fingerprint(conn))
        finally:
            engine.dispose()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != content:
            print(
                f"{args.output} is out of date: run scripts/fingerprint_schema.py", file=sys.stderr
            )
            return 1
        print(f"{args.output} matches a fresh migration")
        return 0
    args.output.write_text(content, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
