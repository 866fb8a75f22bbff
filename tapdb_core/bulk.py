"""Bulk creation of instances of one template through ``COPY``.

Each batch is checked in Python first (names, properties, the template's JSON
Schema), then streamed with ``COPY`` into a temporary staging table holding
only what differs per row (name and properties), then written by one
set-based ``INSERT ... SELECT`` that merges the template's shared
``json_addl`` in SQL (its action definitions by reference to one
``tapdb_action_set`` row, :mod:`tapdb_core.action_sets`) and draws the EUID sequence values in row order. The
statement-level audit trigger therefore writes the batch's audit rows in one
``INSERT ... SELECT`` as well. Memory stays bounded by the batch size on both
sides, whatever the number of rows.

A row that breaks a rule raises :class:`BulkRowError` naming its line and
field before anything of its batch is sent: nothing of that batch is written.
Earlier batches were written in the caller's transaction; roll it back (as
``tapdb object import`` does) for all-or-nothing.
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

# ON COMMIT DROP: the table lives only as long as the caller's transaction;
# a second bulk_create in the same transaction reuses it (emptied per batch).
_CREATE_STAGE = text(
    "CREATE TEMP TABLE IF NOT EXISTS tapdb_bulk_stage"
    " (ord integer NOT NULL, name text NOT NULL, props jsonb) ON COMMIT DROP"
)
_COPY_STAGE: Final = "COPY tapdb_bulk_stage (ord, name, props) FROM STDIN"
_EMPTY_STAGE = text("TRUNCATE tapdb_bulk_stage")

# nextval in the select list is evaluated after the sort, so EUIDs follow row
# order; the template's shared json_addl is sent once per batch and merged
# shallowly over properties, as create() does.
_INSERT_FROM_STAGE = text(
    action_sets.INSERT_SETS_CTE
    + """
    INSERT INTO generic_instance (euid_prefix, euid_seq, name, polymorphic_discriminator, category,
                                  type, subtype, version, template_uuid, json_addl,
                                  action_set_digest, bstatus, is_singleton)
    SELECT :prefix, nextval(CAST(:sequence AS regclass)), s.name, :discriminator, :category, :type,
           :subtype, :version, :template_uuid,
           CASE WHEN s.props IS NULL THEN CAST(:base AS jsonb)
                ELSE jsonb_set(CAST(:base AS jsonb), '{properties}',
                               (CAST(:base AS jsonb) -> 'properties') || s.props) END,
           :action_set_digest, :bstatus, :is_singleton
      FROM tapdb_bulk_stage s
     ORDER BY s.ord
    """
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
    """Validates rows of one template; remembers property sets already found valid."""

    def __init__(self, template: Template, base_addl: Mapping[str, Any]) -> None:
        self.template = template
        self.base_addl = base_addl
        self.base_props = base_addl.get("properties", {})
        self.valid: set[str] = set()

    def check(self, index: int, row: BulkRow) -> str | None:
        """The row's properties as JSON text (None when it has none), or BulkRowError."""
        props = row.properties
        try:
            inputcheck.check_text("/name", row.name)
            inputcheck.check_object("/properties", props)
        except ValidationError as exc:
            raise _refused(index, row, exc) from None
        key = json.dumps(props, sort_keys=True) if props else ""
        if self.template.json_addl_schema and key not in self.valid:
            merged = {**self.base_addl, "properties": {**self.base_props, **(props or {})}}
            try:
                validate_json_addl(self.template, merged, where=f"line {row.line}")
            except ValidationError as exc:
                raise _refused(index, row, exc) from None
            if len(self.valid) < _MEMO_LIMIT:
                self.valid.add(key)
        return json.dumps(props) if props else None


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


def _copy(conn: Connection, batch: list[tuple[int, str, str | None]]) -> None:
    raw = conn.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise TapdbError("bulk_create needs a psycopg (postgresql+psycopg) connection")
    try:
        with raw.cursor() as cur, cur.copy(_COPY_STAGE) as copy:
            for record in batch:
                copy.write_row(record)
    except psycopg.Error as exc:
        wrapped = DBAPIError.instance(_COPY_STAGE, None, exc, psycopg.Error)
        ours = translate(wrapped) if isinstance(wrapped, DBAPIError) else None
        raise (ours or wrapped) from exc


def bulk_create(
    conn: Connection,
    template_code: str,
    rows: Iterable[BulkRow | tuple[str, Mapping[str, Any] | None] | str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Create one instance of ``template_code`` per row (a name, ``(name, properties)``
    or :class:`BulkRow`), streamed in batches; returns how many were created.

    The template is share-locked until commit and proven to be the live row
    the rows are validated against. Layout children are not created.
    ``on_batch`` is called with the running total after each written batch.
    """
    inputcheck.check_text("/template_code", template_code)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValidationError(
            "batch_size must be a positive integer",
            [Violation(path="/batch_size", message=repr(batch_size))],
        )
    template = _locked_template(conn, template_code)
    base = plan_instance(
        lambda code: get_template(conn, code), template.template_code, "bulk", create_children=False
    ).root
    checker = _Checker(template, base.json_addl)
    # every row shares the template's action set: stored once, referenced by each
    splitter = action_sets.Splitter()
    base_stored, base_digest = splitter.split(base.json_addl)
    params = {
        "prefix": template.instance_prefix,
        "sequence": f"tapdb_euid_seq_{template.instance_prefix.lower()}",
        "discriminator": template.instance_discriminator,
        "category": template.category,
        "type": template.type,
        "subtype": template.subtype,
        "version": template.version,
        "template_uuid": template.uuid,
        "base": json.dumps(base_stored),
        "action_set_digest": base_digest,
        "sets": splitter.sets_json(),
        "bstatus": base.bstatus,
        "is_singleton": template.is_singleton,
    }
    total = 0
    staged = False
    stream = _rows(rows)
    while batch := list(islice(stream, batch_size)):
        # every row is checked before anything of the batch is sent
        records = [(i, row.name, checker.check(index, row)) for i, (index, row) in enumerate(batch)]
        with translated():
            if not staged:
                conn.execute(_CREATE_STAGE)
                staged = True
            # emptied every time: an earlier call in this transaction may have
            # stopped between its COPY and its INSERT
            conn.execute(_EMPTY_STAGE)
        _copy(conn, records)
        with translated():
            conn.execute(_INSERT_FROM_STAGE, params)
        total += len(batch)
        if on_batch is not None:
            on_batch(total)
    if staged:
        with translated():
            conn.execute(_EMPTY_STAGE)
    return total
