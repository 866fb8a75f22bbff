"""Walks neither return nor pass through soft-deleted instances unless asked to."""

from __future__ import annotations

from sqlalchemy import Engine

from tapdb_core import instances, lineage

DNA = "content/sample/dna/1.0/"


def _euids(related: list[lineage.Related]) -> list[tuple[str, int]]:
    return [(r.instance.euid, r.depth) for r in related]


def test_deleted_nodes_are_skipped_by_every_walk(seeded_engine: Engine) -> None:
    #   a -> b -> c -> f        b is deleted: c is reached only through e,
    #   a -> d                  f only through c; g only through b
    #   a -> e -> c             (edges stay live: only the node is deleted)
    #        b -> g
    with seeded_engine.begin() as conn:
        a, b, c, d, e, f, g = (instances.create(conn, DNA, n) for n in "abcdefg")
        for parent, child in ((a, b), (b, c), (c, f), (a, d), (a, e), (e, c), (b, g)):
            lineage.link(conn, parent, child)
        instances.delete(conn, b.euid)

        down = lineage.descendants(conn, a)
        assert _euids(down) == [(d.euid, 1), (e.euid, 1), (c.euid, 2), (f.euid, 3)]
        via = {r.instance.euid: r.via_euid for r in down}
        assert lineage.get_lineage(conn, via[c.euid]).parent_instance_uuid == e.uuid
        everything = lineage.descendants(conn, a, include_deleted=True)
        assert _euids(everything) == [
            (b.euid, 1),
            (d.euid, 1),
            (e.euid, 1),
            (c.euid, 2),
            (g.euid, 2),
            (f.euid, 3),
        ]
        assert lineage.descendants(conn, a, max_depth=1) == [r for r in down if r.depth == 1]

        assert _euids(lineage.ancestors(conn, g)) == []
        assert _euids(lineage.ancestors(conn, g, include_deleted=True)) == [
            (b.euid, 1),
            (a.euid, 2),
        ]
        assert _euids(lineage.ancestors(conn, c)) == [(e.euid, 1), (a.euid, 2)]

        assert [r.instance.euid for r in lineage.children(conn, a)] == [d.euid, e.euid]
        assert [r.instance.euid for r in lineage.children(conn, a, include_deleted=True)] == [
            b.euid,
            d.euid,
            e.euid,
        ]
        assert [r.instance.euid for r in lineage.parents(conn, c)] == [e.euid]
        assert {r.instance.euid for r in lineage.parents(conn, c, include_deleted=True)} == {
            b.euid,
            e.euid,
        }

        assert [i.euid for i in lineage.path(conn, a, g)] == []
        assert [i.euid for i in lineage.path(conn, a, g, include_deleted=True)] == [
            a.euid,
            b.euid,
            g.euid,
        ]
        assert [i.euid for i in lineage.path(conn, a, f)] == [a.euid, e.euid, c.euid, f.euid]
        assert lineage.path(conn, a, b) == []
        assert lineage.path(conn, b, b) == []  # a deleted Instance object is not a path
        assert [i.euid for i in lineage.path(conn, b.euid, c.euid, include_deleted=True)] == [
            b.euid,
            c.euid,
        ]

        shown = lineage.graph(conn, a, depth=2)
        assert {n.euid for n in shown.nodes} == {a.euid, d.euid, e.euid, c.euid}
        assert all(
            b.uuid not in (x.parent_instance_uuid, x.child_instance_uuid) for x in shown.edges
        )
        full = lineage.graph(conn, a, depth=2, include_deleted=True)
        assert {n.euid for n in full.nodes} == {a.euid, b.euid, d.euid, e.euid, c.euid, g.euid}
        assert lineage.graph(conn, b.euid, depth=1, include_deleted=True).nodes
