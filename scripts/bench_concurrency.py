#!/usr/bin/env python3
"""Concurrent writers and readers: throughput, p95, lock waits, nothing lost.

For 1, 2, 4, 8 and 16 writer threads (one connection each, started together
by a barrier), three scenarios, each with two reader threads walking lineage
(children of a parent, ancestors of a well) meanwhile:

  distinct parents  each writer creates 96-well plates and links each under
                    its own parent instance
  shared parent     the same, every plate linked under one shared parent
  existing nodes    each writer links two instances that existed before its
                    transaction (the case the acyclicity guard serialises)

Floor: the same plates created by one writer alone (level 1 of "distinct
parents"). A monitor samples pg_stat_activity every few milliseconds for
writers waiting on a lock (wait_event_type = 'Lock') and reports which lock.
Afterwards every plate, well, edge and INSERT audit row is counted.

Usage: python scripts/bench_concurrency.py [--url URL] [--levels 1,2,4,8,16]
                                           [--plates 4] [--isolation read_committed]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text

from tapdb_core import instances, lineage, migrate
from tapdb_core.packs import seed_packs
from tapdb_core.pgruntime import temporary_cluster

PLATE = "container/plate/fixed-plate-96/1.0/"
SAMPLE = "content/sample/dna/1.0/"
WRITER_APP = "tapdb-bench-writer"


@contextmanager
def database(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with temporary_cluster(fast_unsafe=False, prefix="tapdb-bench-conc-") as cluster:
        yield cluster.url()


class LockMonitor:
    """Samples writers waiting on heavyweight locks until stopped."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.waits: Counter[str] = Counter()
        self.samples = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            while not self.stop.is_set():
                rows = conn.execute(
                    text(
                        "SELECT a.wait_event, coalesce(l.locktype, '?'),"
                        " coalesce(l.relation::regclass::text, '')"
                        " FROM pg_stat_activity a LEFT JOIN pg_locks l"
                        "   ON l.pid = a.pid AND NOT l.granted"
                        " WHERE a.application_name = :app AND a.wait_event_type = 'Lock'"
                    ),
                    {"app": WRITER_APP},
                ).all()
                self.samples += 1
                for event, locktype, relation in rows:
                    self.waits[f"{event}/{locktype} {relation}".strip()] += 1
                time.sleep(0.003)

    def __enter__(self) -> LockMonitor:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def run_level(
    writers: Engine,
    readers: Engine,
    level: int,
    work: Callable[[int, int], None],
    per_writer: int,
    read_targets: tuple[str, str],
) -> tuple[float, list[float], list[float], LockMonitor]:
    barrier = threading.Barrier(level + 2 + 1)
    latencies: list[float] = []
    reads: list[float] = []
    errors: list[BaseException] = []
    done = threading.Event()
    lock = threading.Lock()

    def writer(w: int) -> None:
        try:
            barrier.wait()
            for k in range(per_writer):
                start = time.perf_counter()
                work(w, k)
                with lock:
                    latencies.append(time.perf_counter() - start)
        except BaseException as exc:  # reported after the run
            errors.append(exc)

    def reader(r: int) -> None:
        barrier.wait()
        with readers.connect() as conn:
            while not done.is_set():
                start = time.perf_counter()
                with conn.begin():
                    if r % 2:
                        lineage.children(conn, read_targets[0])
                    else:
                        lineage.ancestors(conn, read_targets[1])
                with lock:
                    reads.append(time.perf_counter() - start)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(level)]
    threads += [threading.Thread(target=reader, args=(r,)) for r in range(2)]
    with LockMonitor(writers) as monitor:
        for t in threads:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        for t in threads[:level]:
            t.join()
        elapsed = time.perf_counter() - start
        done.set()
        for t in threads[level:]:
            t.join()
    if errors:
        raise errors[0]
    return elapsed, latencies, reads, monitor


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="SQLAlchemy URL of an EMPTY database")
    parser.add_argument("--levels", default="1,2,4,8,16")
    parser.add_argument("--plates", type=int, default=4, help="plates per writer per level")
    parser.add_argument(
        "--isolation", default="READ COMMITTED", choices=("READ COMMITTED", "REPEATABLE READ")
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    with database(args.url) as url:
        writers = create_engine(
            url,
            pool_size=max(levels) + 2,
            isolation_level=args.isolation,
            connect_args={"application_name": WRITER_APP},
        )
        readers = create_engine(url, pool_size=4)
        with writers.begin() as conn:
            migrate.upgrade(conn)
            seed_packs(conn)
            own = [instances.create(conn, SAMPLE, f"parent-{w}").euid for w in range(max(levels))]
            shared = instances.create(conn, SAMPLE, "shared parent").euid
            first = instances.create_tree(conn, PLATE, "reader plate")
            # existing nodes for the link scenario: per writer, pairs never linked
            pool = [
                instances.create(conn, SAMPLE, f"node-{i}").euid
                for i in range(2 * max(levels) * args.plates * len(levels))
            ]
            conn.execute(text("SELECT 1"))
        read_targets = (first.root.euid, first.instances[1].euid)
        made: Counter[str] = Counter()
        links: list[tuple[str, str]] = []
        next_pair = iter(range(0, len(pool), 2))
        pair_lock = threading.Lock()

        def plate_under(parent_of: Callable[[int], str], tag: str) -> Callable[[int, int], None]:
            def work(w: int, k: int) -> None:
                with writers.begin() as conn:
                    tree = instances.create_tree(conn, PLATE, f"{tag}-{w}-{k}")
                    lineage.link(conn, parent_of(w), tree.root, "contains")
                with pair_lock:
                    made[tag] += 1

            return work

        def link_existing(w: int, k: int) -> None:
            with pair_lock:
                i = next(next_pair)
            with writers.begin() as conn:
                lineage.link(conn, pool[i], pool[i + 1], "derived_from")
            with pair_lock:
                links.append((pool[i], pool[i + 1]))

        scenarios: dict[str, Callable[[int], Callable[[int, int], None]]] = {
            "distinct parents": lambda lv: plate_under(lambda w: own[w], f"distinct{lv}"),
            "shared parent": lambda lv: plate_under(lambda w: shared, f"shared{lv}"),
            "existing nodes": lambda lv: link_existing,
        }
        print(
            f"{args.isolation}, {args.plates} operations per writer per level, 2 readers walking"
            " lineage meanwhile"
        )
        print(
            f"{'scenario':<17}{'writers':>8}{'ops/s':>9}{'p50 ms':>9}{'p95 ms':>9}"
            f"{'read p95':>10}  lock waits seen (samples)"
        )
        floor: float | None = None
        for name, make in scenarios.items():
            for level in levels:
                elapsed, lat, reads, monitor = run_level(
                    writers, readers, level, make(level), args.plates, read_targets
                )
                rate = len(lat) / elapsed
                if floor is None:
                    floor = rate
                waits = ", ".join(f"{k}: {v}" for k, v in monitor.waits.most_common()) or "none"
                print(
                    f"{name:<17}{level:>8}{rate:>9.1f}{statistics.median(lat) * 1000:>9.1f}"
                    f"{p95(lat):>9.1f}{p95(reads) if reads else 0:>10.1f}  {waits}"
                    f" ({monitor.samples} samples)"
                )
            print()
        print(f"floor: one writer alone, {floor:.1f} plates/s")

        # nothing lost
        with readers.connect() as conn:
            plates = conn.execute(
                text(
                    "SELECT count(*) FROM generic_instance WHERE type = 'plate'"
                    " AND (name LIKE 'distinct%' OR name LIKE 'shared%')"
                )
            ).scalar_one()
            incomplete = conn.execute(
                text(
                    "SELECT count(*) FROM generic_instance p WHERE p.type = 'plate'"
                    " AND (p.name LIKE 'distinct%' OR p.name LIKE 'shared%')"
                    " AND (SELECT count(*) FROM generic_instance_lineage e"
                    "      WHERE e.parent_instance_uuid = p.uuid) <> 96"
                )
            ).scalar_one()
            unaudited = conn.execute(
                text(
                    "SELECT count(*) FROM generic_instance i WHERE NOT EXISTS ("
                    " SELECT 1 FROM audit_log a WHERE a.rel_table_name = 'generic_instance'"
                    " AND a.rel_table_uuid_fk = i.uuid AND a.operation_type = 'INSERT')"
                )
            ).scalar_one()
            unaudited_edges = conn.execute(
                text(
                    "SELECT count(*) FROM generic_instance_lineage e WHERE NOT EXISTS ("
                    " SELECT 1 FROM audit_log a WHERE a.rel_table_name = 'generic_instance_lineage'"
                    " AND a.rel_table_uuid_fk = e.uuid AND a.operation_type = 'INSERT')"
                )
            ).scalar_one()
            linked = conn.execute(
                text(
                    "SELECT count(*) FROM generic_instance_lineage e"
                    " JOIN generic_instance p ON p.uuid = e.parent_instance_uuid"
                    " JOIN generic_instance c ON c.uuid = e.child_instance_uuid"
                    " WHERE (p.euid, c.euid) IN (SELECT * FROM unnest(CAST(:p AS text[]),"
                    " CAST(:c AS text[])))"
                ),
                {"p": [a for a, _ in links], "c": [b for _, b in links]},
            ).scalar_one()
        expected = sum(made.values())
        print(
            f"afterwards: {plates} of {expected} committed plates present, {incomplete} without"
            f" 96 wells, {unaudited} instances and {unaudited_edges} edges without their INSERT"
            f" audit row, {linked} of {len(links)} links present"
        )
        writers.dispose()
        readers.dispose()
        ok = plates == expected and not incomplete and not unaudited and not unaudited_edges
        return 0 if ok and linked == len(links) else 1


if __name__ == "__main__":
    sys.exit(main())
