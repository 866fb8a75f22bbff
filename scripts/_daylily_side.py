"""The daylily-tapdb side of ``scripts/bench.py --versus-daylily``.

Runs with the python of a separate virtualenv holding daylily-tapdb 0.1.13;
it imports only daylily_tapdb and its dependencies, never tapdb_core.  The
database (schema applied and templates seeded by the original's own CLI) is
given by --url.  It answers one JSON line per request read from stdin:

    {"op": "plate", "n": 5}   ->  {"times": [seconds, ...]}
    {"op": "single", "n": 5}  ->  {"times": [seconds, ...]}

Each timed call is one transaction through the original's public API:
``TAPDBConnection.session_scope(commit=True)`` around
``InstanceFactory.create_instance`` (the README's example).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time

from daylily_tapdb import InstanceFactory, TAPDBConnection, TemplateManager
from sqlalchemy import text

PLATE = "container/plate/fixed-plate-96/1.0/"
SAMPLE = "content/sample/dna/1.0/"
PROPS = {"concentration": 12.5, "volume_ul": 50, "comments": "bench"}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="postgresql:// URL (psycopg2)")
    args = parser.parse_args()

    db = TAPDBConnection(db_url=args.url)
    factory = InstanceFactory(TemplateManager())
    counter = itertools.count()

    def plate() -> None:
        with db.session_scope(commit=True) as session:
            factory.create_instance(session, PLATE, f"DPLATE-{next(counter)}")

    def single() -> None:
        with db.session_scope(commit=True) as session:
            factory.create_instance(session, SAMPLE, f"DS-{next(counter)}", dict(PROPS))

    # Say what one plate is in this model before anything is timed.
    with db.session_scope(commit=True) as session:
        made = factory.create_instance(session, PLATE, "DPLATE-check")
        children = session.execute(
            text(
                "SELECT count(*) FROM generic_instance_lineage"
                " WHERE parent_instance_uuid = :u AND relationship_type = 'contains'"
            ),
            {"u": made.uuid},
        ).scalar_one()
        size = len(json.dumps(made.json_addl))
    print(json.dumps({"ready": True, "plate_children": children, "plate_json_bytes": size}))
    sys.stdout.flush()

    ops = {"plate": plate, "single": single}
    for line in sys.stdin:
        request = json.loads(line)
        fn = ops[request["op"]]
        times = []
        for _ in range(int(request["n"])):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        print(json.dumps({"times": times}))
        sys.stdout.flush()
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
