"""Instances: create (with the whole child tree, set-based), bulk create, find, change.

Creating is planned in Python first (``tapdb_core.planning``: properties,
actions, layouts, names, JSON Schema) and then written in one statement
whatever the size of the tree: share-lock and prove the templates, insert the
action sets, draw every EUID sequence value, insert every instance and every
edge. A tree whose names use ``{parent_euid}`` takes three: the EUIDs are
drawn first, then the names are rendered.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, Final

import attrs
from sqlalchemy import (
    Connection,
    Row,
    TextClause,
    bindparam,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy import delete as sa_delete
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError

from tapdb_core import action_sets, inputcheck, template_cache
from tapdb_core import euid as euids
from tapdb_core.codes import TemplateCode
from tapdb_core.dberrors import translated
from tapdb_core.errors import (
    ConflictError,
    InstanceNotFoundError,
    StaleTemplateError,
    TransientError,
    ValidationError,
    Violation,
)
from tapdb_core.planning import (
    InstancePlan,
    PlannedNode,
    deep_merge,
    is_shared_document,
    plan_instance,
    validate_json_addl,
)
from tapdb_core.tables import generic_instance as gi
from tapdb_core.templates import (
    clear_cache,
    get_template,
    templates_by_uuid,
    write_resolver,
)
from tapdb_core.values import Instance, Lineage, Template

# Draws every sequence value of a tree and, in the same round trip, share-locks
# its templates the way _LOCK_TEMPLATES below does (``fresh``: the ones still live
# at the version planned against).
_DRAW_SEQUENCES = text(
    """
    WITH fresh AS MATERIALIZED (
        SELECT t.uuid
          FROM generic_template t
          JOIN unnest(CAST(:uuids AS bigint[]), CAST(:versions AS bigint[])) AS v(uuid, row_version)
            ON t.uuid = v.uuid AND t.row_version = v.row_version
         WHERE NOT t.is_deleted
           FOR SHARE OF t
    )
    SELECT u.ord, nextval(tapdb_euid_sequence_name(u.prefix)::regclass) AS seq,
           tapdb_meridian_domain() AS domain,
           (SELECT array_agg(f.uuid) FROM fresh f) AS fresh,
           (SELECT g.generation FROM tapdb_template_generation g WHERE g.id = 1) AS generation
      FROM unnest(CAST(:prefixes AS text[])) WITH ORDINALITY AS u(prefix, ord)
     ORDER BY u.ord
    """
)

# Templates a write relies on are share-locked until commit and must still be
# the live rows (same row_version) that planning validated against: a template
# tightened or deleted by anyone after it was read -- another process, psql --
# makes the write fail as stale instead of storing what the new rules forbid.
# Under REPEATABLE READ the lock itself fails (40001) if the row changed since
# the snapshot.
_LOCK_TEMPLATES = text(
    """
    SELECT t.uuid
      FROM generic_template t
      JOIN unnest(CAST(:uuids AS bigint[]), CAST(:versions AS bigint[])) AS v(uuid, row_version)
        ON t.uuid = v.uuid AND t.row_version = v.row_version
     WHERE NOT t.is_deleted
       FOR SHARE OF t
    """
)

_INSERT_INSTANCES = text(
    action_sets.INSERT_SETS_CTE
    + """
    INSERT INTO generic_instance (euid_prefix, euid_seq, euid_domain, name,
                                  polymorphic_discriminator, category, type, subtype, version,
                                  template_uuid, json_addl, action_set_digest, bstatus,
                                  is_singleton)
    SELECT r.euid_prefix, r.euid_seq, r.euid_domain, r.name, r.polymorphic_discriminator,
           r.category, r.type, r.subtype, r.version, r.template_uuid, r.json_addl,
           r.action_set_digest, r.bstatus, r.is_singleton
      FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
               euid_prefix text, euid_seq bigint, euid_domain text, name text,
               polymorphic_discriminator text, category text, type text, subtype text,
               version text, template_uuid bigint, json_addl jsonb, action_set_digest text,
               bstatus text, is_singleton boolean)
    RETURNING uuid, euid, created_dt, modified_dt
    """
)

_INSERT_EDGES = text(
    """
    INSERT INTO generic_instance_lineage (parent_instance_uuid, child_instance_uuid, relationship_type,
                                          name, parent_type, child_type, json_addl)
    SELECT e.parent_uuid, e.child_uuid, e.relationship_type, e.name, e.parent_type, e.child_type,
           coalesce(e.json_addl, '{}'::jsonb)
      FROM jsonb_to_recordset(CAST(:edges AS jsonb)) AS e(
               parent_uuid bigint, child_uuid bigint, relationship_type text, name text,
               parent_type text, child_type text, json_addl jsonb)
    RETURNING *
    """
)


# A whole tree in one statement, for plans whose names need no EUID (the
# common case: a plate's wells are named after the plate's name): the
# templates are share-locked and proven fresh, the action sets inserted, the
# sequence values drawn, the instances and the edges inserted. When a template
# is stale the gate on ``fresh`` lets no row through: nothing is drawn or
# written (an action set may be, which is harmless: immutable, content-keyed).
# (The templates are found by ``uuid = ANY``: an index scan also in the
# statement's generic plan, where a join to unnest() hashes every template.)
_TREE_HEAD: Final = """
    , fresh AS MATERIALIZED (
        SELECT t.uuid
          FROM generic_template t
         WHERE t.uuid = ANY (CAST(:uuids AS bigint[]))
           AND t.row_version = (CAST(:versions AS bigint[]))[
                   array_position(CAST(:uuids AS bigint[]), t.uuid)]
           AND NOT t.is_deleted
           FOR SHARE OF t
    ),
    r AS MATERIALIZED (
        SELECT x.*, nextval(tapdb_euid_sequence_name(x.euid_prefix)::regclass) AS euid_seq
          FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x(
                   ord integer, euid_prefix text, name text, polymorphic_discriminator text,
                   category text, type text, subtype text, version text, template_uuid bigint,
                   json_addl jsonb, action_set_digest text, bstatus text, is_singleton boolean)
         WHERE (SELECT count(*) FROM fresh) = CAST(:template_count AS bigint)
           AND (CAST(:generation AS bigint) IS NULL
                OR CAST(:generation AS bigint) = (SELECT g.generation
                                                    FROM tapdb_template_generation g
                                                   WHERE g.id = 1))
         ORDER BY x.ord
    ),
    ins AS (
        INSERT INTO generic_instance (euid_prefix, euid_seq, name, polymorphic_discriminator,
                                      category, type, subtype, version, template_uuid, json_addl,
                                      action_set_digest, bstatus, is_singleton)
        SELECT euid_prefix, euid_seq, name, polymorphic_discriminator, category, type, subtype,
               version, template_uuid, json_addl, action_set_digest, bstatus, is_singleton
          FROM r
         ORDER BY ord
        RETURNING uuid, euid, euid_prefix, euid_seq, created_dt, modified_dt
    )"""
_TREE_EDGES: Final = """,
    edges AS (
        INSERT INTO generic_instance_lineage (parent_instance_uuid, child_instance_uuid,
                                              relationship_type, name, parent_type, child_type,
                                              json_addl)
        SELECT p.uuid, c.uuid, e.relationship_type, p.euid || '->' || c.euid,
               rp.polymorphic_discriminator, rc.polymorphic_discriminator, '{}'::jsonb
          FROM jsonb_to_recordset(CAST(:edges AS jsonb))
               AS e(parent_ord integer, child_ord integer, relationship_type text)
          JOIN r rp ON rp.ord = e.parent_ord
          JOIN ins p ON p.euid_prefix = rp.euid_prefix AND p.euid_seq = rp.euid_seq
          JOIN r rc ON rc.ord = e.child_ord
          JOIN ins c ON c.euid_prefix = rc.euid_prefix AND c.euid_seq = rc.euid_seq
        RETURNING *
    )"""
# One result for both: instance rows carry their plan position (ord), edge rows
# their columns (e_*), as plain columns (no JSON to encode and decode again).
_TREE_NODES_OUT: Final = """
    SELECT r.ord, ins.uuid, ins.euid, ins.created_dt, ins.modified_dt,
           NULL::bigint AS e_parent, NULL::bigint AS e_child, NULL::text AS e_type,
           NULL::text AS e_name, NULL::text AS e_parent_type, NULL::text AS e_child_type,
           NULL::jsonb AS e_json_addl, NULL::boolean AS e_is_deleted
      FROM ins JOIN r ON r.euid_prefix = ins.euid_prefix AND r.euid_seq = ins.euid_seq"""
_TREE_EDGES_OUT: Final = """
    UNION ALL
    SELECT NULL, e.uuid, e.euid, e.created_dt, NULL, e.parent_instance_uuid, e.child_instance_uuid,
           e.relationship_type, e.name, e.parent_type, e.child_type,
           NULLIF(e.json_addl, '{}'::jsonb), e.is_deleted
      FROM edges e"""

# A whole tree in one statement, for plans whose names need no EUID (the
# common case: a plate's wells are named after the plate's name): the
# templates are share-locked and proven fresh, the action sets inserted, the
# sequence values drawn, the instances and the edges inserted. When a template
# is stale the gate on ``fresh`` lets no row through: nothing is drawn or
# written (an action set may be, which is harmless: immutable, content-keyed).
# Without edges the lineage part is left out: its statement-level triggers
# would run (for no row) all the same.
_WRITE_TREE: Final = text(
    action_sets.INSERT_SETS_CTE + _TREE_HEAD + _TREE_EDGES + _TREE_NODES_OUT + _TREE_EDGES_OUT
)
# A tree of one instance (no edges): the same lock, proof and sets, and one
# plain INSERT of bound values (no recordset to unpack, nothing to join back).
# The template is found by its key, not by joining an array of keys: that
# join's generic plan (a prepared statement's, after five runs) hashes a
# sequential scan of every template, ~0.1 ms more per instance.
_ONE_INSTANCE: Final = """
    fresh AS MATERIALIZED (
        SELECT t.uuid
          FROM generic_template t
         WHERE t.uuid = CAST(:template_uuid AS bigint)
           AND t.row_version = CAST(:row_version AS bigint)
           AND NOT t.is_deleted
           FOR SHARE OF t
    )
    INSERT INTO generic_instance (euid_prefix, euid_seq, name, polymorphic_discriminator,
                                  category, type, subtype, version, template_uuid, json_addl,
                                  action_set_digest, bstatus, is_singleton)
    SELECT :euid_prefix, nextval(CAST(:sequence AS regclass)), :name, :polymorphic_discriminator,
           :category, :type, :subtype, :version, :template_uuid, CAST(:json_addl AS jsonb),
           :action_set_digest, :bstatus, :is_singleton
     WHERE EXISTS (SELECT FROM fresh)
       AND (CAST(:generation AS bigint) IS NULL
            OR CAST(:generation AS bigint) = (SELECT g.generation
                                                FROM tapdb_template_generation g
                                               WHERE g.id = 1))
    RETURNING uuid, euid, created_dt, modified_dt
"""

#: one instance with its action set inserted when missing; the fifth column says
#: whether the set's row was there, committed, before the statement
_WRITE_ONE: Final = text(
    action_sets.INSERT_SET_CTE + ", " + _ONE_INSTANCE + ", " + action_sets.SET_COMMITTED_SQL
)
#: one instance whose action set (if any) a write saw committed: sets are never
#: deleted, so the insert (~0.1 ms even when it inserts nothing) is skipped
_WRITE_ONE_SET_COMMITTED: Final = text("WITH " + _ONE_INSTANCE)

#: the foreign key a write without the set insert relies on
_SET_FOREIGN_KEY: Final = "fk_generic_instance_action_set_digest_tapdb_action_set"

#: the indexed expression of ix_generic_instance_properties, verbatim
_PROPERTIES = gi.c.json_addl.op("->", return_type=JSONB)(literal_column("'properties'"))


class CreatedTree:
    """What :func:`create_tree` wrote: the root, every instance (root first), every edge.

    Immutable. The values of a tree written in one statement are built when
    :attr:`instances` or :attr:`lineages` is first read (from what the write
    kept: the plan's documents, which nothing changes, and the returned keys),
    so :func:`create`, which returns only the root, does not build 96 wells
    with their own copies of their actions to throw them away.
    """

    __slots__ = ("_build", "_instances", "_lineages", "_lock", "root")

    root: Instance
    _instances: tuple[Instance, ...] | None
    _lineages: tuple[Lineage, ...] | None
    _build: Callable[[], tuple[tuple[Instance, ...], tuple[Lineage, ...]]] | None
    _lock: threading.Lock | None

    def __init__(
        self,
        *,
        root: Instance,
        instances: tuple[Instance, ...] | None = None,
        lineages: tuple[Lineage, ...] | None = None,
        build: Callable[[], tuple[tuple[Instance, ...], tuple[Lineage, ...]]] | None = None,
    ) -> None:
        if build is None and (instances is None or lineages is None):
            raise TypeError("CreatedTree needs instances and lineages, or build")
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "_instances", instances)
        object.__setattr__(self, "_lineages", lineages)
        object.__setattr__(self, "_build", build)
        object.__setattr__(self, "_lock", None if build is None else threading.Lock())

    def __setattr__(self, name: str, value: object) -> None:
        raise attrs.exceptions.FrozenInstanceError()

    def _built(self) -> tuple[tuple[Instance, ...], tuple[Lineage, ...]]:
        if self._lock is None:  # given whole
            assert self._instances is not None and self._lineages is not None
            return self._instances, self._lineages
        with self._lock:
            if self._instances is None or self._lineages is None:
                assert self._build is not None
                with action_sets.collector_paused():
                    built = self._build()
                object.__setattr__(self, "_instances", built[0])
                object.__setattr__(self, "_lineages", built[1])
                object.__setattr__(self, "_build", None)  # what it kept can go
            assert self._instances is not None and self._lineages is not None
            return self._instances, self._lineages

    @property
    def instances(self) -> tuple[Instance, ...]:
        """Every instance written, the root first, in plan order."""
        return self._built()[0]

    @property
    def lineages(self) -> tuple[Lineage, ...]:
        """Every edge written, in plan order."""
        return self._built()[1]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CreatedTree):
            return NotImplemented
        return (self.root, self.instances, self.lineages) == (
            other.root,
            other.instances,
            other.lineages,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"CreatedTree(root={self.root!r}, instances=<{len(self.instances)}>, "
            f"lineages=<{len(self.lineages)}>)"
        )


def _resolver(conn: Connection, *, for_write: bool = False) -> Any:
    # the planner looks each code up once per plan
    return write_resolver(conn) if for_write else partial(get_template, conn)


def plan(
    conn: Connection,
    template_code: str,
    name: str,
    properties: Mapping[str, Any] | None = None,
    *,
    create_children: bool = True,
) -> InstancePlan:
    """The plan :func:`create` would write (pure apart from template lookups)."""
    return _plan(conn, template_code, name, properties, create_children=create_children)


def _plan(
    conn: Connection,
    template_code: str,
    name: str,
    properties: Mapping[str, Any] | None,
    *,
    create_children: bool,
    for_write: bool = False,
) -> InstancePlan:
    """``for_write``: cached templates may be used under an assumed generation,
    which :func:`write_plan` proves (create_tree plans again if it moved)."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(
            "instance name must be a non-empty string",
            [Violation(path="/name", message=repr(name))],
        )
    return plan_instance(
        _resolver(conn, for_write=for_write),
        template_code,
        name,
        properties,
        create_children=create_children,
        # the write hands out values with their own copies (action_sets.own_copy)
        share_actions=for_write,
    )


def write_plan(conn: Connection, planned: InstancePlan) -> CreatedTree:
    """Write a plan set-based: one statement whatever its size, or three when a
    name pattern needs an EUID (drawn first, then the names are rendered)."""
    names = [n.name_without_euids() for n in planned.nodes]
    if all(name is not None for name in names):
        return _write_in_one_statement(conn, planned, [n for n in names if n is not None])
    return _write_in_three_statements(conn, planned)


def _driver_sql(conn: Connection, statement: TextClause) -> str:
    """The statement as the driver takes it, compiled once per dialect: executed
    with ``exec_driver_sql``, a hot write skips SQLAlchemy's per-call work on a
    ``text()`` clause (bind processing, the compiled-cache look-up)."""
    key = (id(statement), conn.dialect.name, conn.dialect.driver)
    sql = _driver_sqls.get(key)
    if sql is None:
        sql = _driver_sqls[key] = str(statement.compile(dialect=conn.dialect))
    return sql


_driver_sqls: dict[tuple[int, str, str], str] = {}


def _template_columns(node: PlannedNode) -> str:
    """The columns a row takes from its node's template, as JSON object members."""
    t = node.template
    return json.dumps(
        {
            "euid_prefix": t.instance_prefix,
            "polymorphic_discriminator": node.polymorphic_discriminator,
            "category": t.category,
            "type": t.type,
            "subtype": t.subtype,
            "version": t.version,
            "template_uuid": t.uuid,
            "bstatus": node.bstatus,
            "is_singleton": node.is_singleton,
        }
    )[1:-1]


def _write_one(
    conn: Connection, params: dict[str, Any], digest: str | None, splitter: action_sets.Splitter
) -> list[tuple[Any, ...]]:
    if digest is None or action_sets.is_committed(conn, digest):
        try:
            rows = conn.exec_driver_sql(_driver_sql(conn, _WRITE_ONE_SET_COMMITTED), params)
            return [(0, *r) for r in rows]
        except IntegrityError as exc:
            constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
            if digest is None or constraint != _SET_FOREIGN_KEY:
                raise
            # the set was removed (a schema downgraded below 0006 and back, a restore)
            action_sets.forget_committed(conn)
            raise TransientError(
                f"action set {digest[:12]}... is no longer in the database (schema"
                " downgraded or restored since it was written): run it again"
            ) from exc
    params["action_groups"] = splitter.groups_json(digest)
    result = []
    for uuid, euid_text, created, modified, set_committed in conn.exec_driver_sql(
        _driver_sql(conn, _WRITE_ONE), params
    ):
        if set_committed:
            action_sets.note_committed(conn, digest)
        result.append((0, uuid, euid_text, created, modified))
    return result


def _write_in_one_statement(
    conn: Connection, planned: InstancePlan, names: list[str]
) -> CreatedTree:
    nodes = planned.nodes
    used = {n.template.uuid: n.template for n in nodes}
    splitter = action_sets.Splitter()
    params: dict[str, Any] = {"generation": template_cache.assumed_generation(conn)}
    with translated():
        if planned.edges:
            params["uuids"] = list(used)
            params["versions"] = [t.row_version for t in used.values()]
            params["template_count"] = len(used)
            # The rows as JSON text built from pieces: a layout child's document
            # is shared across plans and serialised once (action_sets._stored),
            # the template's columns once per plan.
            shared = [is_shared_document(n.json_addl) for n in nodes]
            kinds: dict[tuple[int, str, str, bool], str] = {}
            rows: list[str] = []
            for i, n in enumerate(nodes):
                kind = (id(n.template), n.polymorphic_discriminator, n.bstatus, n.is_singleton)
                columns = kinds.get(kind)
                if columns is None:
                    columns = kinds[kind] = _template_columns(n)
                own, digest = splitter.split_json(n.json_addl, shared=shared[i])
                rows.append(
                    f'{{"ord": {i}, "name": {json.dumps(names[i])}, {columns}, '
                    f'"json_addl": {own}, "action_set_digest": {json.dumps(digest)}}}'
                )
            params["rows"] = "[" + ", ".join(rows) + "]"
            params["edges"] = json.dumps(
                [
                    {
                        "parent_ord": e.parent_index,
                        "child_ord": e.child_index,
                        "relationship_type": e.relationship_type,
                    }
                    for e in planned.edges
                ]
            )
            params["sets"] = splitter.sets_json()
            result: Sequence[Any] = conn.exec_driver_sql(
                _driver_sql(conn, _WRITE_TREE), params
            ).all()
        else:  # a plan without edges has one node
            (n,) = nodes
            shared = [False]
            own, digest = splitter.split_json(n.json_addl)
            t = n.template
            params.update(
                euid_prefix=t.instance_prefix,
                sequence=f"tapdb_euid_seq_{t.instance_prefix.lower()}",
                name=names[0],
                polymorphic_discriminator=n.polymorphic_discriminator,
                category=t.category,
                type=t.type,
                subtype=t.subtype,
                version=t.version,
                template_uuid=t.uuid,
                row_version=t.row_version,
                json_addl=own,
                action_set_digest=digest,
                bstatus=n.bstatus,
                is_singleton=n.is_singleton,
            )
            # (no ord column: every column a row returns costs the driver)
            result = _write_one(conn, params, digest, splitter)
    written = {r[0]: r for r in result if r[0] is not None}
    if len(written) != len(nodes):
        # a template is stale, or templates changed since the cached ones were
        # read: nothing was drawn or written; name the stale one if there is one
        template_cache.refute_assumption(conn)
        lock_templates(conn, used.values())
        raise StaleTemplateError("templates changed after they were cached: run it again")
    template_cache.confirm_assumption(conn)

    def value(i: int) -> Instance:
        n, row = nodes[i], written[i]
        t = n.template
        return Instance(
            uuid=row[1],
            euid=row[2],
            name=names[i],
            polymorphic_discriminator=n.polymorphic_discriminator,
            category=t.category,
            type=t.type,
            subtype=t.subtype,
            version=t.version,
            template_uuid=t.uuid,
            json_addl=action_sets.own_copy(n.json_addl, shared=shared[i]),
            bstatus=n.bstatus,
            is_singleton=n.is_singleton,
            is_deleted=False,
            created_dt=row[3],
            modified_dt=row[4],
        )

    root = value(0)
    if not planned.edges:
        return CreatedTree(root=root, instances=(root,), lineages=())

    def build() -> tuple[tuple[Instance, ...], tuple[Lineage, ...]]:
        instances = (root, *(value(i) for i in range(1, len(nodes))))
        # edge rows by position (see _TREE_EDGES_OUT): 1 uuid, 2 euid, 3 created_dt,
        # 5 parent, 6 child, 7 type, 8 name, 9/10 parent/child type, 11 json_addl
        # (the '{}' it inserted comes back as NULL: not decoded per row), 12 is_deleted
        by_ends = {(r[5], r[6], r[7]): r for r in result if r[0] is None}
        lineages = []
        # in plan order, as the three-statement path returns them
        for e in planned.edges:
            r = by_ends[
                (instances[e.parent_index].uuid, instances[e.child_index].uuid, e.relationship_type)
            ]
            lineages.append(
                Lineage(
                    uuid=r[1],
                    euid=r[2],
                    name=r[8],
                    parent_instance_uuid=r[5],
                    child_instance_uuid=r[6],
                    relationship_type=r[7],
                    parent_type=r[9],
                    child_type=r[10],
                    json_addl={} if r[11] is None else r[11],
                    is_deleted=r[12],
                    created_dt=r[3],
                )
            )
        return instances, tuple(lineages)

    return CreatedTree(root=root, build=build)


def _write_in_three_statements(conn: Connection, planned: InstancePlan) -> CreatedTree:
    nodes = planned.nodes
    used = {n.template.uuid: n.template for n in nodes}
    prefixes = [n.template.instance_prefix for n in nodes]
    with translated():
        drawn = conn.execute(
            _DRAW_SEQUENCES,
            {
                "prefixes": prefixes,
                "uuids": list(used),
                "versions": [t.row_version for t in used.values()],
            },
        ).all()
    _refuse_stale(used, set(drawn[0].fresh or ()) if drawn else set())
    assumed = template_cache.assumed_generation(conn)
    if assumed is not None and drawn and drawn[0].generation != assumed:
        template_cache.refute_assumption(conn)
        raise StaleTemplateError("templates changed after they were cached: run it again")
    template_cache.confirm_assumption(conn)
    domain = drawn[0].domain if drawn else None
    seqs = [int(r.seq) for r in drawn]
    node_euids = [euids.encode(p, s, domain=domain) for p, s in zip(prefixes, seqs, strict=True)]
    names: list[str] = []
    for node in nodes:
        if node.parent_index is None:
            names.append(node.render_name(None))
        else:
            parent = node.parent_index
            names.append(node.render_name(node_euids[parent], names[parent]))
    splitter = action_sets.Splitter()
    stored = [splitter.split(n.json_addl) for n in nodes]
    rows: list[dict[str, Any]] = [
        {
            "euid_prefix": n.template.instance_prefix,
            "euid_seq": seqs[i],
            # the domain the EUIDs above were computed with, even if someone
            # changes the database's domain while this statement runs
            "euid_domain": domain,
            "name": names[i],
            "polymorphic_discriminator": n.polymorphic_discriminator,
            "category": n.template.category,
            "type": n.template.type,
            "subtype": n.template.subtype,
            "version": n.template.version,
            "template_uuid": n.template.uuid,
            "json_addl": stored[i][0],
            "action_set_digest": stored[i][1],
            "bstatus": n.bstatus,
            "is_singleton": n.is_singleton,
        }
        for i, n in enumerate(nodes)
    ]
    with translated():
        inserted = conn.execute(
            _INSERT_INSTANCES, {"rows": json.dumps(rows), "sets": splitter.sets_json()}
        ).all()
    # The database returns only what it decided (keys, EUIDs, timestamps);
    # everything else is the plan's own data, so 100+ KB of JSON is not parsed back.
    by_euid = {r.euid: r for r in inserted}
    instances = tuple(
        Instance(
            uuid=by_euid[e].uuid,
            euid=e,
            name=row["name"],
            polymorphic_discriminator=row["polymorphic_discriminator"],
            category=row["category"],
            type=row["type"],
            subtype=row["subtype"],
            version=row["version"],
            template_uuid=row["template_uuid"],
            json_addl=action_sets.own_copy(
                node.json_addl, shared=is_shared_document(node.json_addl)
            ),
            bstatus=row["bstatus"],
            is_singleton=row["is_singleton"],
            is_deleted=False,
            created_dt=by_euid[e].created_dt,
            modified_dt=by_euid[e].modified_dt,
        )
        for e, row, node in zip(node_euids, rows, nodes, strict=True)
    )
    lineages: tuple[Lineage, ...] = ()
    if planned.edges:
        edges = [
            {
                "parent_uuid": instances[e.parent_index].uuid,
                "child_uuid": instances[e.child_index].uuid,
                "relationship_type": e.relationship_type,
                "name": f"{node_euids[e.parent_index]}->{node_euids[e.child_index]}",
                "parent_type": instances[e.parent_index].polymorphic_discriminator,
                "child_type": instances[e.child_index].polymorphic_discriminator,
            }
            for e in planned.edges
        ]
        with translated():
            lineages = tuple(
                Lineage.from_row(r)
                for r in conn.execute(_INSERT_EDGES, {"edges": json.dumps(edges)})
            )
    return CreatedTree(root=instances[0], instances=instances, lineages=lineages)


def create_tree(
    conn: Connection,
    template_code: str,
    name: str,
    properties: Mapping[str, Any] | None = None,
    *,
    create_children: bool = True,
) -> CreatedTree:
    """Create an instance and, from its template's layouts, its whole child tree."""
    # a plate builds thousands of small objects, all alive until returned
    with action_sets.collector_paused():
        planned = _plan(
            conn, template_code, name, properties, create_children=create_children, for_write=True
        )
        try:
            # the template check is write_plan's first statement and fails in
            # Python, not in the database: the transaction stays usable
            return write_plan(conn, planned)
        except StaleTemplateError:
            # A template changed after it was cached: plan again from the live rows
            # (validated against the new rules). A second change in between is
            # left to the caller's retry.
            planned = plan(conn, template_code, name, properties, create_children=create_children)
            return write_plan(conn, planned)


def create(
    conn: Connection,
    template_code: str,
    name: str,
    properties: Mapping[str, Any] | None = None,
    create_children: bool = True,
) -> Instance:
    """Create an instance (and its children); returns the root instance."""
    return create_tree(conn, template_code, name, properties, create_children=create_children).root


def create_many(
    conn: Connection,
    template_code: str,
    rows: Iterable[tuple[str, Mapping[str, Any] | None] | str],
    *,
    batch_size: int = 5000,
) -> int:
    """Create many instances of one template, streamed in batches; returns how many.

    Each row is a name or ``(name, properties)``. Properties merge over the
    template's like :func:`create`, and are validated against its JSON Schema
    before each batch is written. Layout children are not created (use
    :func:`create` per object for trees); memory stays flat for any number of
    rows. Written through ``COPY`` by :func:`tapdb_core.bulk.bulk_create`, which
    share-locks the template and proves it fresh first.
    """
    from tapdb_core.bulk import bulk_create

    return bulk_create(
        conn,
        template_code,
        inputcheck.checked_rows(rows),
        batch_size=batch_size,
        prechecked=True,
    )


# -- reading ---------------------------------------------------------------------------


def get(conn: Connection, euid: str, *, include_deleted: bool = False) -> Instance:
    """The instance with this EUID."""
    euids.parse(euid)
    query = select(*action_sets.instance_columns()).where(gi.c.euid == euid)
    if not include_deleted:
        query = query.where(gi.c.is_deleted.is_(False))
    row = conn.execute(query).one_or_none()
    if row is None:
        raise InstanceNotFoundError(f"instance {euid} not found")
    return action_sets.instance(conn, row)


def find(
    conn: Connection,
    *,
    template_code: str | None = None,
    category: str | None = None,
    type: str | None = None,
    subtype: str | None = None,
    bstatus: str | None = None,
    properties: Mapping[str, Any] | None = None,
    include_deleted: bool = False,
    limit: int | None = 100,
    offset: int = 0,
    after: str | None = None,
) -> list[Instance]:
    """Instances matching every given filter, oldest first.

    ``template_code`` may use ``*`` as version (any version); ``properties`` is
    JSONB containment on ``json_addl -> properties`` (served by the GIN index).
    ``after`` is keyset paging: only instances created after the one with this
    EUID (pass the last EUID of the previous page); its cost does not grow with
    the page number, unlike ``offset``, which reads and drops every skipped row.
    An ``after`` that names no instance gives an empty list.
    """
    inputcheck.check_texts(category=category, type=type, subtype=subtype, bstatus=bstatus)
    inputcheck.check_optional_json("/properties", properties)
    inputcheck.check_non_negative("/limit", limit)
    inputcheck.check_non_negative("/offset", offset, optional=False)
    query = select(*action_sets.instance_columns())
    if after is not None:
        euids.parse(inputcheck.check_text("/after", after))
        # uuid follows creation order; a scalar subquery keeps it one statement
        start = select(gi.c.uuid).where(gi.c.euid == after).scalar_subquery()
        query = query.where(gi.c.uuid > start)
    if template_code is not None:
        code = TemplateCode.parse(template_code)
        query = query.where(
            gi.c.category == code.category, gi.c.type == code.type, gi.c.subtype == code.subtype
        )
        if not code.is_wildcard:
            query = query.where(gi.c.version == code.version)
    for column, value in (
        ("category", category),
        ("type", type),
        ("subtype", subtype),
        ("bstatus", bstatus),
    ):
        if value is not None:
            query = query.where(gi.c[column] == value)
    if properties:
        # The GIN index is on (json_addl -> 'properties'): the filter must be that
        # very expression. SQLAlchemy renders json_addl["properties"] as the
        # subscript json_addl['properties'], which the planner does not match to
        # the index (a scan of the whole table, 220 ms at 50,000 rows).
        query = query.where(
            _PROPERTIES.op("@>")(bindparam("contains", dict(properties), type_=JSONB))
        )
    if not include_deleted:
        query = query.where(gi.c.is_deleted.is_(False))
    query = query.order_by(gi.c.uuid).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return action_sets.instances(conn, conn.execute(query))


def lock_templates(conn: Connection, templates: Iterable[Template]) -> None:
    """Share-lock the templates a write relies on until commit, and prove each is
    still the live row it was read as; raises the retryable StaleTemplateError
    (after forgetting cached templates) when one changed or was deleted."""
    wanted = {t.uuid: t for t in templates}
    if not wanted:
        return
    with translated():
        fresh = set(
            conn.execute(
                _LOCK_TEMPLATES,
                {
                    "uuids": list(wanted),
                    "versions": [t.row_version for t in wanted.values()],
                },
            ).scalars()
        )
    _refuse_stale(wanted, fresh)


def _refuse_stale(wanted: Mapping[int, Template], fresh: set[int]) -> None:
    stale = sorted(t.template_code for uuid, t in wanted.items() if uuid not in fresh)
    if stale:
        clear_cache()
        raise StaleTemplateError(
            f"template {', '.join(stale)} changed or was deleted after it was read: "
            "run the transaction again"
        )


def _template_of(conn: Connection, instance: Instance) -> Template:
    return templates_by_uuid(conn, [instance.template_uuid])[instance.template_uuid]


def _locked(conn: Connection, euid: str) -> Row[Any]:
    row = conn.execute(
        # NO KEY UPDATE: the weakest lock that keeps the row still, and one that
        # does not conflict with the KEY SHARE locks foreign-key checks take
        # (linking to this instance elsewhere must not deadlock against us)
        select(*action_sets.instance_columns())
        .where(gi.c.euid == euid, gi.c.is_deleted.is_(False))
        .with_for_update(key_share=True, of=gi)
    ).one_or_none()
    if row is None:
        raise InstanceNotFoundError(f"instance {euid} not found")
    return row


def update_properties(conn: Connection, euid: str, properties: Mapping[str, Any]) -> Instance:
    """Merge ``properties`` into the instance's properties (validated before writing)."""
    inputcheck.check_text("/euid", euid)
    inputcheck.check_json("/properties", properties)
    if not isinstance(properties, Mapping):
        raise ValidationError(
            "properties must be an object",
            [Violation(path="/properties", message=type(properties).__name__)],
        )
    current = action_sets.instance(conn, _locked(conn, euid))
    new_addl = deep_merge(current.json_addl, {"properties": dict(properties)})
    template = _template_of(conn, current)
    lock_templates(conn, [template])
    validate_json_addl(template, new_addl, where=f"instance {euid}")
    row = conn.execute(
        update(gi)
        .where(gi.c.uuid == current.uuid)
        .values(json_addl=new_addl)
        .returning(*action_sets.instance_columns())
    ).one()
    return action_sets.instance(conn, row)


def set_status(conn: Connection, euid: str, bstatus: str) -> Instance:
    inputcheck.check_text("/euid", euid)
    inputcheck.check_optional_text("/bstatus", bstatus)
    if not isinstance(bstatus, str) or not bstatus.strip():
        raise ValidationError(
            "status must be a non-empty string", [Violation(path="/bstatus", message=repr(bstatus))]
        )
    current = _locked(conn, euid)
    row = conn.execute(
        update(gi)
        .where(gi.c.uuid == current.uuid)
        .values(bstatus=bstatus)
        .returning(*action_sets.instance_columns())
    ).one()
    return action_sets.instance(conn, row)


_CASCADE_TARGETS = text(
    """
    WITH RECURSIVE down(uuid) AS (
        SELECT CAST(:root AS bigint)
        UNION
        SELECT l.child_instance_uuid
          FROM down d
          CROSS JOIN LATERAL (SELECT c.child_instance_uuid FROM generic_instance_lineage c
                               WHERE c.parent_instance_uuid = d.uuid AND NOT c.is_deleted
                                 AND (CAST(:types AS text[]) IS NULL
                                      OR c.relationship_type = ANY (CAST(:types AS text[])))
                              OFFSET 0) l
    )
    SELECT uuid FROM down
    """
)


def delete(
    conn: Connection,
    euid: str,
    *,
    cascade: bool = False,
    relationship_types: Sequence[str] | None = None,
) -> list[str]:
    """Soft-delete an instance (and, with ``cascade``, its descendants along the given
    relationship types, all types when None). Returns the EUIDs deleted."""
    root = _locked(conn, euid)
    uuids = [root.uuid]
    if cascade:
        uuids = list(
            conn.execute(
                _CASCADE_TARGETS,
                {
                    "root": root.uuid,
                    "types": list(relationship_types) if relationship_types else None,
                },
            ).scalars()
        )
    deleted = (
        conn.execute(select(gi.c.euid).where(gi.c.uuid.in_(uuids), gi.c.is_deleted.is_(False)))
        .scalars()
        .all()
    )
    # A real DELETE: the database turns it into a soft delete and audits the
    # whole old record, exactly as for anyone deleting with plain SQL.
    conn.execute(sa_delete(gi).where(gi.c.uuid.in_(uuids), gi.c.is_deleted.is_(False)))
    return sorted(deleted)


def get_or_create_singleton(
    conn: Connection, template_code: str, name: str, properties: Mapping[str, Any] | None = None
) -> Instance:
    """The live instance of a singleton template, created if there is none.

    Safe when callers race: the loser's insert waits on the winner's unique
    index entry inside a SAVEPOINT, then finds the winner's row. Under
    REPEATABLE READ or SERIALIZABLE the winner's row is invisible to the loser's
    snapshot, so the loser gets the retryable
    :class:`~tapdb_core.errors.SerializationError` instead: run the whole
    transaction again (``Database.run_in_transaction`` does) and it finds the row.
    """
    from tapdb_core.errors import SerializationError

    template = get_template(conn, template_code)
    if not template.is_singleton:
        raise ValidationError(
            f"template {template.template_code} is not a singleton",
            [Violation(path="/is_singleton", message="false")],
        )

    def existing() -> Instance | None:
        row = conn.execute(
            select(*action_sets.instance_columns())
            .where(gi.c.template_uuid == template.uuid, gi.c.is_deleted.is_(False))
            .order_by(gi.c.uuid.desc())
            .limit(1)
        ).one_or_none()
        return None if row is None else action_sets.instance(conn, row)

    found = existing()
    if found is not None:
        return found
    try:
        with conn.begin_nested():
            return create(conn, template.template_code, name, properties)
    except ConflictError as exc:
        found = existing()
        if found is not None:
            return found
        isolation = conn.execute(text("SELECT current_setting('transaction_isolation')")).scalar()
        if isolation != "read committed":
            # the winner committed after our snapshot was taken: only a new
            # transaction (a new snapshot) can see it
            raise SerializationError(
                f"another transaction created the singleton of {template.template_code} "
                f"after this {isolation} transaction began: retry the transaction"
            ) from exc
        raise  # pragma: no cover - the winner was deleted or rolled back meanwhile
