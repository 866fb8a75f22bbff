#!/usr/bin/env python3
"""Benchmarks of the object-model library, each next to its floor measured in the same run.

Prints one table:
  plate        96-well plate from the seed pack, one transaction per plate (library)
               floor: the same 97 instances and 96 edges inserted by one server-side
               statement per plate (same tables, same triggers)
  single       one instance with properties per transaction (library)
               floor: one INSERT statement per transaction with the same values
  bulk         create_many of N instances through COPY (rate, peak Python memory)
               floor: COPY of the same finished rows into a copy of generic_instance with
               no triggers and no generated column (same indexes), rows as the library
               stores them (action definitions by reference); a second floor row shows
               the same COPY with every row carrying its own copy of the actions
  descendants  all descendants of the root of a generated DAG (library, with depths)
               floor: the bare recursive query, run directly
  link         linking random pairs of that DAG's nodes not yet linked, from an earlier
               to a later node (200, fewer in a small DAG; cycle check on)
               floor: the same edges inserted into a trigger-free copy of the table

Usage: python scripts/bench.py [--url URL] [--plates N] [--bulk N] [--dag N]
                               [--versus-daylily [--daylily-cache DIR]]
Without --url a throwaway local cluster is started (tapdb_core.pgruntime).

--versus-daylily adds a second table: the plate and the single instance above,
run interleaved (alternate batches) with daylily-tapdb 0.1.13 on the same
server, in a second database of that server. The original is installed from
the package index into its own virtualenv (reused from --daylily-cache), its
schema comes from its sdist (the wheel ships none) and is applied by its own
CLI (`tapdb db schema apply`), and the same templates as ours (plate, well,
DNA sample and the actions they import, from tapdb_core's seed packs) are
seeded by its CLI (`tapdb db data seed`). scripts/_daylily_side.py runs in that
virtualenv and drives the original's public API.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from sqlalchemy import Engine, create_engine, text

from tapdb_core import action_sets, instances, lineage, migrate
from tapdb_core.packs import seed_packs
from tapdb_core.pgruntime import temporary_cluster
from tapdb_core.resources import seeds_dir
from tapdb_core.templates import get_template

PLATE = "container/plate/fixed-plate-96/1.0/"
SAMPLE = "content/sample/dna/1.0/"


@contextmanager
def database(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with temporary_cluster(fast_unsafe=False, prefix="tapdb-bench-") as cluster:
        yield cluster.url()


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def bench_plates(engine: Engine, n: int) -> tuple[float, float]:
    counter = iter(range(10**9))

    def library() -> None:
        with engine.begin() as conn:
            instances.create(conn, PLATE, f"PLATE-{next(counter)}")

    # The floor: the rows the library wrote for one plate, replayed by one
    # server-side statement (all 97 instances and 96 edges in one round trip).
    with engine.begin() as conn:
        tree = instances.create_tree(conn, PLATE, "template-plate")
    splitter = action_sets.Splitter()
    rows = [
        {
            "name": i.name,
            "discriminator": i.polymorphic_discriminator,
            "category": i.category,
            "type": i.type,
            "subtype": i.subtype,
            "version": i.version,
            "template_uuid": i.template_uuid,
            "prefix": i.euid.split("-")[0],
            # what the library stores: own keys, action definitions by reference
            "json_addl": stored[0],
            "action_set_digest": stored[1],
            "bstatus": i.bstatus,
        }
        for i, stored in zip(
            tree.instances, (splitter.split(i.json_addl) for i in tree.instances), strict=True
        )
    ]
    floor_sql = text(
        """
        WITH r AS (
            SELECT x.*, nextval(tapdb_euid_sequence_name(x.prefix)::regclass) AS seq
              FROM ROWS FROM (jsonb_to_recordset(CAST(:rows AS jsonb))
                   AS (name text, discriminator text, category text, type text, subtype text,
                       version text, template_uuid bigint, prefix text, json_addl jsonb,
                       action_set_digest text, bstatus text)) WITH ORDINALITY
                   AS x(name, discriminator, category, type, subtype, version, template_uuid,
                        prefix, json_addl, action_set_digest, bstatus, ord)),
        ins AS (
            INSERT INTO generic_instance (euid_prefix, euid_seq, name, polymorphic_discriminator,
                                          category, type, subtype, version, template_uuid,
                                          json_addl, action_set_digest, bstatus)
            SELECT prefix, seq, name, discriminator, category, type, subtype, version,
                   template_uuid, json_addl, action_set_digest, bstatus FROM r
            RETURNING uuid, euid_seq, euid_prefix, euid, polymorphic_discriminator)
        INSERT INTO generic_instance_lineage (parent_instance_uuid, child_instance_uuid,
                                              relationship_type, name, parent_type, child_type)
        SELECT p.uuid, c.uuid, 'contains', p.euid || '->' || c.euid,
               p.polymorphic_discriminator, c.polymorphic_discriminator
          FROM r rp JOIN ins p ON p.euid_seq = rp.seq AND p.euid_prefix = rp.prefix
          JOIN r rc ON rc.ord > 1
          JOIN ins c ON c.euid_seq = rc.seq AND c.euid_prefix = rc.prefix
         WHERE rp.ord = 1
        """
    )
    payload = json.dumps(rows)

    def floor() -> None:
        with engine.begin() as conn:
            conn.execute(floor_sql, {"rows": payload})

    for _ in range(5):
        library()
        floor()
    ours, base = [], []
    for _ in range(n):
        ours += timed(library, 1)
        base += timed(floor, 1)
    return statistics.median(ours), statistics.median(base)


def bench_single(engine: Engine, n: int) -> tuple[float, float]:
    counter = iter(range(10**9))
    props = {"concentration": 12.5, "volume_ul": 50, "comments": "bench"}

    def library() -> None:
        with engine.begin() as conn:
            instances.create(conn, SAMPLE, f"S-{next(counter)}", props)

    with engine.begin() as conn:
        made = instances.create(conn, SAMPLE, "template-sample", props)
    floor_sql = text(
        "INSERT INTO generic_instance (euid_prefix, euid_seq, name, polymorphic_discriminator,"
        " category, type, subtype, version, template_uuid, json_addl, action_set_digest,"
        " bstatus)"
        " VALUES ('MX', nextval('tapdb_euid_seq_mx'), :name, :d, :c, :t, :s, :v, :tpl,"
        " CAST(:j AS jsonb), :digest, :b)"
    )
    own, digest = action_sets.Splitter().split(made.json_addl)
    params = {
        "name": "floor",
        "d": made.polymorphic_discriminator,
        "c": made.category,
        "t": made.type,
        "s": made.subtype,
        "v": made.version,
        "tpl": made.template_uuid,
        "j": json.dumps(own),
        "digest": digest,
        "b": made.bstatus,
    }

    def floor() -> None:
        with engine.begin() as conn:
            conn.execute(floor_sql, params)

    for _ in range(20):
        library()
        floor()
    ours, base = [], []
    for _ in range(n):
        ours += timed(library, 1)
        base += timed(floor, 1)
    return statistics.median(ours), statistics.median(base)


_FLOOR_COLUMNS = (
    "euid, euid_prefix, euid_seq, name, polymorphic_discriminator, category, type, subtype,"
    " version, template_uuid, json_addl, action_set_digest, bstatus, is_singleton"
)


def _copy_floor(
    engine: Engine, n: int, addl: dict[str, object], digest: str | None, tag: str
) -> float:
    """COPY of n finished rows (EUID text supplied, json_addl as given) into a copy of
    generic_instance without triggers or generated column (same indexes)."""
    props = addl.get("properties", {})
    assert isinstance(props, dict)
    with engine.begin() as conn:
        template = get_template(conn, SAMPLE)
        conn.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS bench_floor_instance"
            " (LIKE generic_instance INCLUDING ALL EXCLUDING GENERATED)"
        )
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        start = time.perf_counter()
        with cursor.copy(f"COPY bench_floor_instance ({_FLOOR_COLUMNS}) FROM STDIN") as copy:
            for i in range(n):
                row_addl = {**addl, "properties": {**props, "concentration": i % 100}}
                copy.write_row(
                    (
                        f"MX-{tag}{i}",
                        "MX",
                        i,
                        f"F-{i}",
                        "content_instance",
                        "content",
                        "sample",
                        "dna",
                        "1.0",
                        template.uuid,
                        json.dumps(row_addl),
                        digest,
                        "created",
                        False,
                    )
                )
        return time.perf_counter() - start


def bench_bulk(engine: Engine, n: int) -> tuple[float, float, float, float]:
    """(ours, floor, floor of rows carrying their action definitions, peak MiB)."""
    rows = ((f"B-{i}", {"concentration": i % 100}) for i in range(n))
    start = time.perf_counter()
    with engine.begin() as conn:
        instances.create_many(conn, SAMPLE, rows, batch_size=5000)
    ours = time.perf_counter() - start
    # memory in a second run: tracemalloc slows every allocation (the timed run
    # would measure it instead of the library)
    rows = ((f"M-{i}", {"concentration": i % 100}) for i in range(n))
    tracemalloc.start()
    with engine.begin() as conn:
        instances.create_many(conn, SAMPLE, rows, batch_size=5000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    with engine.connect() as conn:
        addl = instances.plan(conn, SAMPLE, "x", create_children=False).root.json_addl
    own, digest = action_sets.Splitter().split(addl)
    base = _copy_floor(engine, n, own, digest, "a")
    # what every row cost before revision 0006: its own ~3.5 KB copy of the actions
    materialised = _copy_floor(engine, n, dict(addl), None, "b")
    return ours, base, materialised, peak / 2**20


def build_dag(engine: Engine, n: int, seed: int = 7) -> list[int]:
    """n samples; node i gets a random earlier node as parent (a random recursive
    tree, depth about ln n), plus n/10 extra edges from earlier to later nodes."""
    rng = random.Random(seed)
    with engine.begin() as conn:
        instances.create_many(conn, SAMPLE, (f"D-{i}" for i in range(n)), batch_size=10000)
        uuids = list(
            conn.execute(
                text("SELECT uuid FROM generic_instance WHERE name LIKE 'D-%' ORDER BY uuid")
            ).scalars()
        )
        parents, children = [], []
        for i in range(1, n):
            parents.append(uuids[rng.randrange(0, i)])
            children.append(uuids[i])
        for _ in range(n // 10):
            i = rng.randrange(2, n)
            j = rng.randrange(0, i - 1)
            parents.append(uuids[j])
            children.append(uuids[i])
        conn.execute(
            text(
                "INSERT INTO generic_instance_lineage (parent_instance_uuid, child_instance_uuid,"
                " relationship_type, name, parent_type, child_type)"
                " SELECT DISTINCT p, c, 'derived_from', 'dag', 'content_instance', 'content_instance'"
                " FROM unnest(CAST(:p AS bigint[]), CAST(:c AS bigint[])) AS x(p, c)"
            ),
            {"p": parents, "c": children},
        )
    return uuids


def bench_descendants(
    engine: Engine, root_uuid: int, root_euid: str, repeat: int
) -> tuple[float, float, int]:
    found = 0

    def library() -> None:
        nonlocal found
        with engine.connect() as conn:
            found = len(lineage.descendants(conn, root_euid))

    direct = text(
        """
        WITH RECURSIVE walk(uuid) AS (
            SELECT CAST(:root AS bigint)
            UNION
            SELECT e.child_instance_uuid FROM walk w
              JOIN generic_instance_lineage e ON e.parent_instance_uuid = w.uuid AND NOT e.is_deleted
        )
        SELECT i.* FROM walk w JOIN generic_instance i ON i.uuid = w.uuid WHERE w.uuid <> :root
        """
    )

    def floor() -> None:
        with engine.connect() as conn:
            conn.execute(direct, {"root": root_uuid}).all()

    library()
    floor()
    return statistics.median(timed(library, repeat)), statistics.median(timed(floor, repeat)), found


def link_pairs(
    uuids: list[int], existing: set[tuple[int, int]], n: int, rng: random.Random
) -> list[tuple[int, int]]:
    """Up to n distinct (parent, child) pairs of the DAG, none an edge already: the
    child from the later half, the parent an earlier node. Every DAG edge runs from
    an earlier node to a later one, so these links close no cycle (the cycle check
    runs in full and passes). Fewer than n when a small DAG has fewer such pairs."""
    lo = len(uuids) // 2
    index = {u: k for k, u in enumerate(uuids)}
    taken = {(p, c) for p, c in existing if index[p] < index[c] and index[c] >= lo}
    space = sum(range(lo, len(uuids)))  # pairs (j, i) with lo <= i and j < i
    want = min(n, space - len(taken))
    if space <= 20 * n:
        # small DAG: drawing at random could take long to find the last free pairs
        free = [(uuids[j], uuids[i]) for i in range(lo, len(uuids)) for j in range(i)]
        return rng.sample([pair for pair in free if pair not in taken], want)
    pairs: list[tuple[int, int]] = []
    while len(pairs) < want:
        i = rng.randrange(lo, len(uuids))
        j = rng.randrange(0, i)
        pair = (uuids[j], uuids[i])
        if pair not in taken:
            taken.add(pair)
            pairs.append(pair)
    return pairs


def bench_link(engine: Engine, uuids: list[int], n: int) -> tuple[float, float, int]:
    """Median time per link of up to n new edges (library, floor) and how many."""
    rng = random.Random(11)
    with engine.begin() as conn:
        euid_of: dict[int, str] = dict(
            conn.execute(
                text("SELECT uuid, euid FROM generic_instance WHERE uuid = ANY(:u)"), {"u": uuids}
            ).all()
        )
        conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS bench_plain_lineage (LIKE generic_instance_lineage"
                " INCLUDING DEFAULTS INCLUDING IDENTITY EXCLUDING GENERATED INCLUDING INDEXES)"
            )
        )
        existing = {
            (p, c)
            for p, c in conn.execute(
                text(
                    "SELECT parent_instance_uuid, child_instance_uuid FROM generic_instance_lineage"
                    " WHERE NOT is_deleted AND parent_instance_uuid = ANY(:u)"
                    " AND child_instance_uuid = ANY(:u)"
                ),
                {"u": uuids},
            )
        }
    pairs = link_pairs(uuids, existing, n, rng)
    if not pairs:
        return float("nan"), float("nan"), 0
    it = iter(pairs)

    def library() -> None:
        p, c = next(it)
        with engine.begin() as conn:
            lineage.link(conn, euid_of[p], euid_of[c], "bench_link")

    it2 = iter(pairs)
    plain = text(
        "INSERT INTO bench_plain_lineage (euid, euid_prefix, euid_seq, parent_instance_uuid,"
        " child_instance_uuid, relationship_type, name, parent_type, child_type)"
        " SELECT 'GN-' || n, 'GN', n, :p, :c, 'bench_link', 'x',"
        " 'content_instance', 'content_instance' FROM (SELECT nextval('tapdb_euid_seq_gn') AS n) s"
    )

    def floor() -> None:
        p, c = next(it2)
        with engine.begin() as conn:
            conn.execute(plain, {"p": p, "c": c})

    ours, base = [], []
    for _ in pairs:
        ours += timed(library, 1)
        base += timed(floor, 1)
    return statistics.median(ours), statistics.median(base), len(pairs)


LINKS = 200
"""Links the link benchmark makes (fewer when the DAG has fewer unlinked pairs)."""

DAYLILY = "daylily-tapdb==0.1.13"
DAYLILY_DB = "tapdb_bench_daylily"
# Identity prefixes its schema apply requires (tapdb_user, audit_log); any valid pair.
DAYLILY_PREFIXES = {"TAPDB_USER_EUID_PREFIX": "TPX", "AUDIT_LOG_EUID_PREFIX": "ADT"}


def daylily_install(cache: Path) -> tuple[Path, Path]:
    """(python of a virtualenv holding daylily-tapdb 0.1.13, its unpacked sdist).

    Reused when present. The sdist is needed for schema/tapdb_schema.sql: the
    wheel ships no schema."""
    venv = cache / "venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", DAYLILY], check=True)
    source = cache / "sdist"
    unpacked = next(source.glob("daylily_tapdb-*/schema/tapdb_schema.sql"), None)
    if unpacked is None:
        pip = [str(python), "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
        subprocess.run([*pip, "-d", str(source), DAYLILY], check=True)
        with tarfile.open(next(source.glob("daylily_tapdb-*.tar.gz"))) as tar:
            tar.extractall(source, filter="data")
        unpacked = next(source.glob("daylily_tapdb-*/schema/tapdb_schema.sql"))
    return python, unpacked.parent.parent


def daylily_packs(into: Path) -> Path:
    """A config directory for the original's seeder holding our plate, well, DNA
    sample and the action templates they import, unchanged.

    Its seeder only reads the directories named after its core categories, so
    they all go into generic/; the original ignores the per-well json_addl of
    our layout (address, row, column), which it does not support."""
    wanted = {PLATE, "container/well/well-96/1.0/", SAMPLE}
    everything: dict[str, dict[str, object]] = {}
    for path in sorted(seeds_dir().glob("*/*.json")):
        for t in json.loads(path.read_text()).get("templates", []):
            code = f"{t['category']}/{t['type']}/{t['subtype']}/{t['version']}/"
            everything[code] = t
    chosen = [everything[c] for c in sorted(wanted)]
    actions: set[str] = set()
    for t in chosen:
        addl = t.get("json_addl", {})
        assert isinstance(addl, dict)
        actions.update(addl.get("action_imports", {}).values())
    chosen += [everything[c if c.endswith("/") else c + "/"] for c in sorted(actions)]
    (into / "generic").mkdir(parents=True, exist_ok=True)
    (into / "generic" / "bench.json").write_text(json.dumps({"templates": chosen}))
    return into


class DaylilySide:
    """The original on a second database of the bench's server, driven through
    scripts/_daylily_side.py in its own virtualenv."""

    def __init__(self, engine: Engine, cache: Path) -> None:
        python, sdist = daylily_install(cache)
        url = engine.url
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {DAYLILY_DB} WITH (FORCE)")
            conn.exec_driver_sql(f"CREATE DATABASE {DAYLILY_DB}")
        env = dict(os.environ, HOME=str(cache / "home"))
        env.pop("TAPDB_CONFIG_PATH", None)
        env.pop("TAPDB_DATABASE_NAME", None)
        fields = {
            "HOST": url.host or "localhost",
            "PORT": str(url.port or 5432),
            "USER": url.username or "postgres",
            "PASSWORD": url.password or "",
            "DATABASE": DAYLILY_DB,
            **DAYLILY_PREFIXES,
        }
        env.update({f"TAPDB_DEV_{k}": str(v) for k, v in fields.items()})
        cli = str(python.parent / "tapdb")
        with tempfile.TemporaryDirectory(prefix="tapdb-bench-daylily-") as tmp:
            packs = daylily_packs(Path(tmp))
            for cmd in (
                ["db", "schema", "apply", "dev"],
                ["db", "data", "seed", "dev", "-c", str(packs)],
            ):
                done = subprocess.run(
                    [cli, *cmd], cwd=sdist, env=env, capture_output=True, text=True
                )
                if done.returncode != 0:
                    raise RuntimeError(f"daylily-tapdb {' '.join(cmd)}: {done.stdout}{done.stderr}")
        # psycopg2 is the original's own driver; SQLAlchemy 2.1 (what its
        # unpinned requirement resolves to today) defaults postgresql:// to psycopg 3.
        side_url = url.set(drivername="postgresql+psycopg2", database=DAYLILY_DB)
        self.proc = subprocess.Popen(
            [
                str(python),
                str(Path(__file__).with_name("_daylily_side.py")),
                f"--url={side_url.render_as_string(hide_password=False)}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.info = json.loads(self._stdout().readline())

    def _stdout(self) -> IO[str]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def run(self, op: str, n: int) -> list[float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, "n": n}) + "\n")
        self.proc.stdin.flush()
        times: list[float] = json.loads(self._stdout().readline())["times"]
        return times

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def bench_versus(
    engine: Engine, side: DaylilySide, plates: int, singles: int, batch: int
) -> dict[str, tuple[float, float]]:
    """Medians (tapdb, daylily) per operation; both sides alternate batches of
    ``batch`` so the machine's load bursts fall on both alike."""
    counter = iter(range(10**9))
    props = {"concentration": 12.5, "volume_ul": 50, "comments": "bench"}

    def plate() -> None:
        with engine.begin() as conn:
            instances.create(conn, PLATE, f"VPLATE-{next(counter)}")

    def single() -> None:
        with engine.begin() as conn:
            instances.create(conn, SAMPLE, f"VS-{next(counter)}", dict(props))

    out = {}
    for op, fn, n in (("plate", plate, plates), ("single", single, singles)):
        timed(fn, 3)
        side.run(op, 3)
        ours: list[float] = []
        theirs: list[float] = []
        while len(ours) < n:
            k = min(batch, n - len(ours))
            ours += timed(fn, k)
            theirs += side.run(op, k)
        out[op] = (statistics.median(ours), statistics.median(theirs))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description="tapdb_core library benchmarks")
    parser.add_argument(
        "--url", help="SQLAlchemy URL of an EMPTY database (default: throwaway cluster)"
    )
    parser.add_argument("--plates", type=int, default=200)
    parser.add_argument("--singles", type=int, default=500)
    parser.add_argument("--bulk", type=int, default=100_000)
    parser.add_argument("--dag", type=int, default=100_000)
    parser.add_argument(
        "--versus-daylily",
        action="store_true",
        help="also run plates and singles interleaved with daylily-tapdb 0.1.13 (same server)",
    )
    parser.add_argument(
        "--daylily-cache",
        type=Path,
        default=Path.home() / ".cache" / "tapdb-bench" / "daylily-0.1.13",
        help="where its virtualenv and sdist live (reused)",
    )
    parser.add_argument("--versus-batch", type=int, default=5)
    args = parser.parse_args()

    with database(args.url) as url:
        engine = create_engine(url, pool_size=2)
        with engine.begin() as conn:
            migrate.upgrade(conn)
            seed_packs(conn)

        plate_ours, plate_floor = bench_plates(engine, args.plates)
        single_ours, single_floor = bench_single(engine, args.singles)
        bulk_ours, bulk_floor, bulk_materialised, bulk_peak = bench_bulk(engine, args.bulk)
        uuids = build_dag(engine, args.dag)
        with engine.connect() as conn:
            root_euid = conn.execute(
                text("SELECT euid FROM generic_instance WHERE uuid = :u"), {"u": uuids[0]}
            ).scalar_one()
        desc_ours, desc_floor, found = bench_descendants(engine, uuids[0], root_euid, 5)
        link_ours, link_floor, links = bench_link(engine, uuids, LINKS)
        versus = None
        if args.versus_daylily:
            side = DaylilySide(engine, args.daylily_cache)
            try:
                versus = bench_versus(engine, side, args.plates, args.singles, args.versus_batch)
            finally:
                side.close()
        engine.dispose()

    def row(name: str, ours: float, floor: float, unit: str, extra: str = "") -> None:
        print(
            f"{name:<34} {ours * 1000:>10.2f} ms {floor * 1000:>10.2f} ms {ours / floor:>7.2f}x  {unit} {extra}"
        )

    print(f"{'benchmark':<34} {'tapdb':>13} {'floor':>13} {'ratio':>8}")
    row("96-well plate (per plate)", plate_ours, plate_floor, f"{1 / plate_ours:,.0f} plates/s")
    row(
        "single instance + properties",
        single_ours,
        single_floor,
        f"{1 / single_ours:,.0f} instances/s",
    )
    row(
        f"bulk {args.bulk:,} instances (total)",
        bulk_ours,
        bulk_floor,
        f"{args.bulk / bulk_ours:,.0f} instances/s",
        f"peak Python memory {bulk_peak:.1f} MiB",
    )
    row(
        "  floor, actions in every row",
        bulk_materialised,
        bulk_floor,
        f"{args.bulk / bulk_materialised:,.0f} instances/s",
        "(the same COPY with each row's own copy of the actions, as before revision 0006;"
        " ratio = that / floor)",
    )
    row(f"descendants in {args.dag:,}-node DAG", desc_ours, desc_floor, f"{found:,} nodes")
    if links:
        row(
            "link with cycle check (per link)",
            link_ours,
            link_floor,
            f"{1 / link_ours:,.0f} links/s",
            ""
            if links == LINKS
            else f"(the DAG has only {links} unlinked pair{'s' if links > 1 else ''})",
        )
    else:
        print(f"{'link with cycle check (per link)':<34} skipped: the DAG has no unlinked pair")
    if versus is not None:
        print()
        print(
            f"{'side by side (interleaved)':<34} {'tapdb':>13} {'daylily 0.1.13':>15}"
            f" {'speed-up':>9}"
        )
        for label, op, goal in (
            ("96-well plate (per plate)", "plate", 15),
            ("single instance + properties", "single", 3),
        ):
            ours, theirs = versus[op]
            print(
                f"{label:<34} {ours * 1000:>10.2f} ms {theirs * 1000:>12.2f} ms"
                f" {theirs / ours:>8.2f}x  goal >= {goal}x"
            )
        print(
            f"(daylily plate: 1 + {side.info['plate_children']} instances, "
            f"{side.info['plate_json_bytes']:,} bytes of json_addl on the plate)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
