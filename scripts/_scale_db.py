"""The realistic databases of scripts/bench_scale.py and scripts/bench_ui.py.

Built with the real tables and every trigger on (so audit rows are the real
ones), in this shape:

* plates of 96 wells with a sample in each well (plate -contains-> well
  -contains-> sample), each plate with a unique barcode property;
* derivation chains of 200 samples (5% of the instances);
* one subtree of 1,092 samples below a root (fan-out 3, depth 6);
* audit history: every insert, a status change on 10% of the samples;
* 2% of the instances soft-deleted.

json_addl is the planned one of each template, stored as the library stores
it (own keys, action definitions by reference to their shared set); the build writes set-based SQL, not through the library (no Python
schema validation), so a million rows build in minutes.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, text

from tapdb_core import action_sets, instances, migrate
from tapdb_core.packs import seed_packs
from tapdb_core.pgruntime import temporary_cluster

PLATE = "container/plate/fixed-plate-96/1.0/"
SAMPLE = "content/sample/dna/1.0/"
UNIT = 193  # plate + 96 wells + 96 samples
CHAIN = 200
FANOUT, SUBTREE_DEPTH = 3, 6

_COLUMNS = (
    "uuid, euid_prefix, euid_seq, name, polymorphic_discriminator, category, type, subtype,"
    " version, template_uuid, json_addl, action_set_digest, bstatus"
)


@contextmanager
def cluster_url(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with temporary_cluster(fast_unsafe=False, prefix="tapdb-bench-scale-") as cluster:
        yield cluster.url()


# -- building ----------------------------------------------------------------------------


def _kinds(conn: Connection) -> dict[str, dict[str, Any]]:
    """Template columns and planned json_addl of plate, well and sample."""
    plate_plan = instances.plan(conn, PLATE, "p")
    well = plate_plan.nodes[1].template
    # stored as the library stores them: own keys, action definitions by reference
    splitter = action_sets.Splitter()
    out = {}
    for key, tpl, addl in (
        ("plate", plate_plan.root.template, plate_plan.root.json_addl),
        ("well", well, plate_plan.nodes[1].json_addl),
        ("sample", *_sample(conn)),
    ):
        out[key] = {
            "tpl": tpl.uuid,
            "prefix": tpl.instance_prefix,
            "seq": f"tapdb_euid_seq_{tpl.instance_prefix.lower()}",
            "disc": tpl.instance_discriminator,
            "c": tpl.category,
            "t": tpl.type,
            "s": tpl.subtype,
            "v": tpl.version,
            "addl": json.dumps(splitter.split(addl)[0]),
            "digest": splitter.split(addl)[1],
        }
    conn.execute(text(action_sets.INSERT_SETS_CTE + " SELECT 1"), {"sets": splitter.sets_json()})
    return out


def _sample(conn: Connection) -> tuple[Any, Any]:
    node = instances.plan(conn, SAMPLE, "s", create_children=False).root
    return node.template, node.json_addl


def _insert(conn: Connection, kind: dict[str, Any], uuids: str, name: str, props: str) -> None:
    """INSERT ... SELECT over ``generate_series`` g: uuid, name, properties expressions of g."""
    conn.execute(
        text(
            f"INSERT INTO generic_instance ({_COLUMNS})"
            f" SELECT {uuids}, :prefix, nextval(CAST(:seq AS regclass)), {name}, :disc, :c, :t,"
            " :s, :v, :tpl, jsonb_set(CAST(:addl AS jsonb), '{properties}',"
            f" (CAST(:addl AS jsonb) -> 'properties') || {props}), :digest, 'created'"
            " FROM generate_series(0, :n - 1) g ORDER BY g"
        ),
        {**kind, "n": kind["n"]},
    )


def _edges(conn: Connection, parents: str, children: str, rel: str, n: int, b: int) -> None:
    conn.execute(
        text(
            "INSERT INTO generic_instance_lineage (parent_instance_uuid, child_instance_uuid,"
            " relationship_type, name, parent_type, child_type)"
            f" SELECT {parents}, {children}, :rel, 'bench', 'x', 'y'"
            " FROM generate_series(0, :n - 1) g"
        ),
        {"rel": rel, "n": n, "b": b},
    )


def build(engine: Engine, total: int, *, soft_delete: str = "delete") -> dict[str, Any]:
    """Fill the database; returns what the queries need (uuids of interesting nodes).

    ``soft_delete`` is how the 2% are deleted: ``delete`` (a DELETE, which the
    soft-delete trigger turns into one UPDATE and one audit row per row, as a
    user's deletes are) or ``update`` (one set-based UPDATE of is_deleted,
    audited by the statement trigger: the same rows end deleted, without the
    per-row DELETE audit rows, and much faster at a million rows)."""
    if soft_delete not in ("delete", "update"):
        raise ValueError(f"soft_delete must be delete or update, not {soft_delete!r}")
    with engine.begin() as conn:
        migrate.upgrade(conn)
        seed_packs(conn)
        kinds = _kinds(conn)
        b = int(
            conn.execute(
                text("SELECT coalesce(max(uuid), 0) + 1000 FROM generic_instance")
            ).scalar_one()
        )
    subtree = sum(FANOUT**d for d in range(SUBTREE_DEPTH + 1))
    chains = max(1, total * 5 // 100 // CHAIN)
    units = max(1, (total - subtree - chains * CHAIN) // UNIT)
    info: dict[str, Any] = {"base": b, "units": units, "chains": chains}
    start = time.perf_counter()
    per = 50  # plates per transaction
    for first in range(0, units, per):
        count = min(per, units - first)
        ub = b + first * UNIT
        with engine.begin() as conn:
            plate = {**kinds["plate"], "n": count, "b": ub}
            _insert(
                conn,
                plate,
                f"{ub} + g * {UNIT}",
                f"'PLATE-' || ({first} + g)",
                f"jsonb_build_object('barcode', 'BC-' || ({first} + g))",
            )
            well = {**kinds["well"], "n": count * 96}
            _insert(
                conn,
                well,
                f"{ub} + (g / 96) * {UNIT} + 1 + g % 96",
                f"'W-' || ({first} + g / 96) || '-' || (1 + g % 96)",
                "jsonb_build_object('address', 1 + g % 96)",
            )
            sample = {**kinds["sample"], "n": count * 96}
            _insert(
                conn,
                sample,
                f"{ub} + (g / 96) * {UNIT} + 97 + g % 96",
                f"'S-' || ({first} + g / 96) || '-' || (1 + g % 96)",
                "jsonb_build_object('concentration', g % 100)",
            )
            _edges(
                conn,
                f"{ub} + (g / 96) * {UNIT}",
                f"{ub} + (g / 96) * {UNIT} + 1 + g % 96",
                "contains",
                count * 96,
                ub,
            )
            _edges(
                conn,
                f"{ub} + (g / 96) * {UNIT} + 1 + g % 96",
                f"{ub} + (g / 96) * {UNIT} + 97 + g % 96",
                "contains",
                count * 96,
                ub,
            )
        done = (first + count) * UNIT
        print(
            f"\r  built {done:,} instances ({done / (time.perf_counter() - start):,.0f}/s)",
            end="",
            file=sys.stderr,
            flush=True,
        )
    cb = b + units * UNIT
    with engine.begin() as conn:
        sample = {**kinds["sample"], "n": chains * CHAIN}
        _insert(
            conn,
            sample,
            f"{cb} + g",
            "'CHAIN-' || (g / 200) || '-' || (g % 200)",
            "jsonb_build_object('concentration', g % 100)",
        )
        conn.execute(
            text(
                "INSERT INTO generic_instance_lineage (parent_instance_uuid, child_instance_uuid,"
                " relationship_type, name, parent_type, child_type)"
                " SELECT :cb + g - 1, :cb + g, 'derived_from', 'bench', 'x', 'y'"
                " FROM generate_series(1, :n - 1) g WHERE g % 200 <> 0"
            ),
            {"cb": cb, "n": chains * CHAIN},
        )
    sb = cb + chains * CHAIN
    with engine.begin() as conn:
        sample = {**kinds["sample"], "n": subtree}
        _insert(conn, sample, f"{sb} + g", "'TREE-' || g", "'{}'::jsonb")
        conn.execute(
            text(
                "INSERT INTO generic_instance_lineage (parent_instance_uuid, child_instance_uuid,"
                " relationship_type, name, parent_type, child_type)"
                " SELECT :sb + (g - 1) / 3, :sb + g, 'derived_from', 'bench', 'x', 'y'"
                " FROM generate_series(1, :n - 1) g"
            ),
            {"sb": sb, "n": subtree},
        )
    with engine.begin() as conn:
        conn.execute(
            text(
                "SELECT setval(pg_get_serial_sequence('generic_instance', 'uuid'),"
                " (SELECT max(uuid) FROM generic_instance))"
            )
        )
        # audit history beyond the inserts, and 2% soft-deleted (plates, wells and
        # samples; never the chains or the subtree the walks start from)
        conn.execute(
            text(
                "UPDATE generic_instance SET bstatus = 'active'"
                " WHERE type = 'sample' AND uuid % 10 = 3 AND uuid < :sb"
            ),
            {"sb": sb},
        )
        if soft_delete == "delete":
            conn.execute(
                text("DELETE FROM generic_instance WHERE uuid % 50 = 7 AND uuid < :cb"), {"cb": cb}
            )
        else:
            conn.execute(
                text(
                    "UPDATE generic_instance SET is_deleted = TRUE"
                    " WHERE uuid % 50 = 7 AND uuid < :cb AND NOT is_deleted"
                ),
                {"cb": cb},
            )
    print(file=sys.stderr)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    info.update(chain_base=cb, subtree_root=sb, built_s=time.perf_counter() - start)
    return info
