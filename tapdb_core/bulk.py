"""Bulk creation of instances of one template through ``COPY``.

Per batch: one statement draws the batch's EUID sequence values, then one
``COPY`` streams the finished rows straight into ``generic_instance``, each
row checked in Python (name, properties, the template's JSON Schema) just
before it is sent. PostgreSQL inserts the rows while Python prepares the next
ones, so the two costs overlap instead of adding up. The template's action
definitions are stored once and referenced (:mod:`tapdb_core.action_sets`);
every row carries only its own properties. The statement-level audit trigger
writes the batch's audit rows in one ``INSERT ... SELECT`` from the ``COPY``'s
transition table. Memory stays bounded by the batch size, whatever the number
of rows.

Each batch runs inside a SAVEPOINT. A row that breaks a rule raises
:class:`BulkRowError` naming its line and field; the ``COPY`` is abandoned and
the SAVEPOINT rolled back, so nothing of that batch is written and the
caller's transaction stays usable. Earlier batches were written in the
caller's transaction; roll it back (as ``tapdb object import`` does) for
all-or-nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from typing import Any, Final

import attrs
import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from tapdb_core import action_sets, inputcheck
from tapdb_core.dberrors import translate, translated
from tapdb_core.errors import StaleTemplateError, TapdbError, ValidationError, Violation
from tapdb_core.planning import plan_instance, validate_json_addl
from tapdb_core.templates import get_template
from tapdb_core.values import Template

__all__ = ["DEFAULT_BATCH_SIZE", "BulkRow", "BulkRowError", "bulk_create"]

#: rows per COPY + INSERT (memory grows with it, not with the total)
DEFAULT_BATCH_SIZE: Final = 5000
#: distinct property sets remembered as valid (repeated sets are checked once)
_MEMO_LIMIT: Final = 100_000

# The batch's sequence values (in order) and the domain the rows are stamped with.
_DRAW: Final = text(
    "SELECT array_agg(nextval(CAST(:sequence AS regclass)) ORDER BY g) AS seqs,"
    " tapdb_meridian_domain() AS domain FROM generate_series(1, CAST(:n AS integer)) g"
)
# The template's action set, once per call (it usually exists: nothing is written).
_ENSURE_SETS: Final = text(action_sets.INSERT_SETS_CTE + " SELECT 1")
_COPY_ROWS: Final = (
    "COPY generic_instance (euid_prefix, euid_seq, euid_domain, name,"
    " polymorphic_discriminator, category, type, subtype, version, template_uuid,"
    " json_addl, action_set_digest, bstatus, is_singleton) FROM STDIN"
)


@attrs.frozen
class BulkRow:
    """One instance to create: its name, its own properties, and where it came from."""

    name: str
    properties: Mapping[str, Any] | None = None
    line: int | None = None
    """Line of the input file (for messages); the row's 1-based position when None."""


class BulkRowError(ValidationError):
    """A bulk row breaks a rule; nothing of its batch was written."""

    def __init__(self, line: int, field: str, message: str, violations: list[Violation]) -> None:
        self.line = line
        self.field = field
        super().__init__(message, violations)


def _rows(
    rows: Iterable[BulkRow | tuple[str, Mapping[str, Any] | None] | str],
) -> Iterator[tuple[int, BulkRow]]:
    for index, row in enumerate(rows):
        if isinstance(row, BulkRow):
            yield index, row if row.line is not None else attrs.evolve(row, line=index + 1)
        elif isinstance(row, str):
            yield index, BulkRow(row, None, index + 1)
        elif isinstance(row, tuple | list) and len(row) == 2:
            yield index, BulkRow(row[0], row[1], index + 1)
        else:
            raise BulkRowError(
                index + 1,
                "",
                f"bulk row {index} (line {index + 1}) must be a name or a (name, properties) pair",
                [Violation(path="", message=type(row).__name__)],
            )


def _refused(index: int, row: BulkRow, exc: ValidationError) -> BulkRowError:
    line = row.line if row.line is not None else index + 1
    violations = list(exc.violations) or [Violation(path="", message=str(exc))]
    return BulkRowError(
        line,
        violations[0].path,
        f"line {line} (bulk row {index}, {row.name!r}) refused, nothing of its batch was written",
        violations,
    )


class _Checker:
    """Validates rows of one template and renders each one's ``json_addl``;
    remembers property sets already found valid."""

    def __init__(
        self,
        template: Template,
        base_addl: Mapping[str, Any],
        stored: Mapping[str, Any],
        *,
        prechecked: bool,
    ) -> None:
        self.template = template
        #: names and properties already passed inputcheck.checked_rows
        self.prechecked = prechecked
        self.base_addl = base_addl
        self.base_props = base_addl.get("properties", {})
        #: what each row stores: the template's json_addl without its action definitions
        self.stored = dict(stored)
        self.stored_base = json.dumps(self.stored)
        self.valid: set[str] = set()

    def check(self, index: int, row: BulkRow) -> str:
        """The row's stored ``json_addl`` as JSON text, or BulkRowError."""
        props = row.properties
        if not self.prechecked:
            self._check_plain(index, row)
        if self.template.json_addl_schema:
            # insertion order is kept: equal sets written in another key order are
            # merely validated again
            key = json.dumps(props) if props else ""
            if key not in self.valid:
                merged = {**self.base_addl, "properties": {**self.base_props, **(props or {})}}
                try:
                    validate_json_addl(self.template, merged, where=f"line {row.line}")
                except ValidationError as exc:
                    raise _refused(index, row, exc) from None
                if len(self.valid) < _MEMO_LIMIT:
                    self.valid.add(key)
        if not props:
            return self.stored_base
        return json.dumps({**self.stored, "properties": {**self.base_props, **props}})

    def _check_plain(self, index: int, row: BulkRow) -> None:
        props = row.properties
        try:
            name = row.name
            if not (type(name) is str and inputcheck.is_plain_text(name) and name.strip()):
                inputcheck.check_text("/name", name)
            if props is not None and not (type(props) is dict and inputcheck.is_plain_json(props)):
                inputcheck.check_object("/properties", props)
        except ValidationError as exc:
            raise _refused(index, row, exc) from None


def _locked_template(conn: Connection, template_code: str) -> Template:
    # late import: instances builds on this module (create_many)
    from tapdb_core.instances import lock_templates

    template = get_template(conn, template_code)
    try:
        lock_templates(conn, [template])
    except StaleTemplateError:
        # the cached template was outdated (lock_templates forgot it): read the
        # live row once more; nothing has been written yet
        template = get_template(conn, template_code)
        lock_templates(conn, [template])
    return template


def _raw(conn: Connection) -> psycopg.Connection[Any]:
    raw = conn.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise TapdbError("bulk_create needs a psycopg (postgresql+psycopg) connection")
    return raw


def _copy_batch(
    conn: Connection,
    batch: list[tuple[int, BulkRow]],
    checker: _Checker,
    fixed: tuple[Any, ...],
) -> None:
    """Draw the batch's sequence values, then COPY its rows (each checked as it goes)."""
    (
        prefix,
        discriminator,
        category,
        type_,
        subtype,
        version,
        template_uuid,
        digest,
        bstatus,
        singleton,
    ) = fixed
    with translated():
        drawn = conn.execute(
            _DRAW, {"sequence": f"tapdb_euid_seq_{prefix.lower()}", "n": len(batch)}
        ).one()
    savepoint = conn.begin_nested()
    try:
        try:
            with _raw(conn).cursor() as cur, cur.copy(_COPY_ROWS) as copy:
                write = copy.write_row
                for (index, row), seq in zip(batch, drawn.seqs, strict=True):
                    addl = checker.check(index, row)  # a bad row abandons the COPY
                    write(
                        (
                            prefix,
                            seq,
                            drawn.domain,
                            row.name,
                            discriminator,
                            category,
                            type_,
                            subtype,
                            version,
                            template_uuid,
                            addl,
                            digest,
                            bstatus,
                            singleton,
                        )
                    )
        except psycopg.Error as exc:
            wrapped = DBAPIError.instance(_COPY_ROWS, None, exc, psycopg.Error)
            ours = translate(wrapped) if isinstance(wrapped, DBAPIError) else None
            raise (ours or wrapped) from exc
        savepoint.commit()
    except BaseException:
        if savepoint.is_active:
            savepoint.rollback()
        raise


def bulk_create(
    conn: Connection,
    template_code: str,
    rows: Iterable[BulkRow | tuple[str, Mapping[str, Any] | None] | str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
    prechecked: bool = False,
) -> int:
    """Create one instance of ``template_code`` per row (a name, ``(name, properties)``
    or :class:`BulkRow`), streamed in batches; returns how many were created.

    The template is share-locked until commit and proven to be the live row
    the rows are validated against. Layout children are not created.
    ``on_batch`` is called with the running total after each written batch.
    ``prechecked``: the rows come from :func:`tapdb_core.inputcheck.checked_rows`
    (names and properties are plain text and JSON already).
    """
    inputcheck.check_text("/template_code", template_code)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValidationError(
            "batch_size must be a positive integer",
            [Violation(path="/batch_size", message=repr(batch_size))],
        )
    template = _locked_template(conn, template_code)
    base = plan_instance(
        lambda code: get_template(conn, code),
        template.template_code,
        "bulk",
        create_children=False,
        share_actions=True,  # only read here
    ).root
    # every row shares the template's action set: stored once, referenced by each
    splitter = action_sets.Splitter()
    stored, digest = splitter.split(base.json_addl)
    checker = _Checker(template, base.json_addl, stored, prechecked=prechecked)
    if digest is not None:
        with translated():
            conn.execute(_ENSURE_SETS, {"sets": splitter.sets_json()})
    fixed = (
        template.instance_prefix,
        template.instance_discriminator,
        template.category,
        template.type,
        template.subtype,
        template.version,
        template.uuid,
        digest,
        base.bstatus,
        template.is_singleton,
    )
    total = 0
    stream = _rows(rows)
    while batch := list(islice(stream, batch_size)):
        _copy_batch(conn, batch, checker, fixed)
        total += len(batch)
        if on_batch is not None:
            on_batch(total)
    return total
