"""Seeding: write the templates of validated packs into the database.

:func:`seed_packs` validates every pack first and writes nothing when there is
any error; otherwise it upserts the templates keyed by template code (in
chunks) inside the caller's transaction and never commits. Unchanged templates
are not rewritten, so seeding the same packs again writes no audit rows, and
existing EUIDs are kept. ``dry_run`` only reads: it compares the packs with the
database and reports what seeding would do.

Seeding takes the template writers' advisory lock
(:func:`~tapdb_core.templates.lock_templates`) until the transaction ends, so
concurrent seeds of the same packs never fail on each other: at READ COMMITTED
the later one reports the earlier one's templates as unchanged; at REPEATABLE
READ or SERIALIZABLE it raises the retryable
:class:`~tapdb_core.errors.SerializationError` (its snapshot cannot see them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

import attrs
from sqlalchemy import ARRAY, Connection, Text, and_, bindparam, func, select, text

from tapdb_core.codes import TemplateCode
from tapdb_core.packs.load import PackDirs, PackTemplate, as_pack_dirs, core_pack_dirs
from tapdb_core.packs.validate import (
    PackReport,
    PackValidationError,
    ReservedPrefixes,
    default_reserved_prefixes,
    validate_packs,
)
from tapdb_core.tables import generic_template as gt
from tapdb_core.tables import identity_prefix_config
from tapdb_core.templates import (
    TemplateSpec,
    UpsertOutcome,
    UpsertResult,
    changed_fields,
    lock_templates,
    upsert_templates,
)

SeedMode: TypeAlias = Literal["overwrite", "skip_existing"]
#: called after each chunk with (templates done, templates in total)
Progress: TypeAlias = Callable[[int, int], None]

#: templates per upsert statement batch
DEFAULT_CHUNK_SIZE: Final = 500
SEED_MODES: Final = ("overwrite", "skip_existing")
_CODE_FIELDS: Final = ("category", "type", "subtype", "version")
#: pack keys that are not template columns
_IGNORED_KEYS: Final = frozenset({"$comment"})
#: the columns a pack sets besides the code (what upsert_templates compares)
_COMPARED: Final = tuple(f.name for f in attrs.fields(TemplateSpec) if f.name not in _CODE_FIELDS)


@attrs.frozen(kw_only=True)
class SeedReport:
    """What :func:`seed_packs` did (or, with ``dry_run``, would do). Codes in pack order."""

    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    """Existing templates left as they are (``mode="skip_existing"``)."""
    dry_run: bool = False
    mode: SeedMode = "overwrite"
    templates: int = 0
    """Templates in the packs."""
    new_sequences: tuple[str, ...] = ()
    """Instance prefixes whose EUID sequence did not exist before (created unless dry run)."""
    pack_report: PackReport = attrs.field(repr=False)
    """The validation report (no errors; warnings are kept)."""

    @property
    def changed(self) -> bool:
        """True when seeding wrote (or would write) a template."""
        return bool(self.created or self.updated)

    @property
    def warnings(self) -> int:
        return len(self.pack_report.warnings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: counts, the codes per outcome and the validation report."""
        return {
            "dry_run": self.dry_run,
            "mode": self.mode,
            "templates": self.templates,
            "counts": {
                "created": len(self.created),
                "updated": len(self.updated),
                "unchanged": len(self.unchanged),
                "skipped": len(self.skipped),
            },
            "created": list(self.created),
            "updated": list(self.updated),
            "unchanged": list(self.unchanged),
            "skipped": list(self.skipped),
            "new_sequences": list(self.new_sequences),
            "pack_report": self.pack_report.to_dict(),
        }


def template_spec(template: PackTemplate) -> TemplateSpec:
    """The :class:`TemplateSpec` of a (validated) pack template; ``$comment`` is dropped."""
    return TemplateSpec.from_mapping(
        {k: v for k, v in template.data.items() if k not in _IGNORED_KEYS}
    )


def database_reserved_prefixes(conn: Connection) -> dict[str, str]:
    """:func:`default_reserved_prefixes` plus the prefixes this database gives users/audit rows."""
    reserved = default_reserved_prefixes()
    rows = conn.execute(
        select(identity_prefix_config.c.euid_prefix, identity_prefix_config.c.entity)
    ).all()
    for prefix, entity in rows:
        reserved.setdefault(str(prefix), str(entity))
    return reserved


def stored_templates(conn: Connection) -> list[PackTemplate]:
    """The database's live templates as pack entries, so packs may refer to them."""
    rows = conn.execute(select(gt).where(gt.c.is_deleted.is_(False))).mappings().all()
    keys = (
        "name",
        "polymorphic_discriminator",
        "category",
        "type",
        "subtype",
        "version",
        "instance_prefix",
        "instance_polymorphic_identity",
        "json_addl",
        "json_addl_schema",
        "bstatus",
        "is_singleton",
    )
    return [
        PackTemplate(
            code=TemplateCode(
                category=r["category"], type=r["type"], subtype=r["subtype"], version=r["version"]
            ),
            data={k: r[k] for k in keys if r[k] is not None},
            source_file=Path(f"<database: {r['euid']}>"),
            pointer="",
        )
        for r in rows
    ]


def seed_packs(
    conn: Connection,
    dirs: PackDirs | None = None,
    *,
    strict: bool = True,
    mode: SeedMode = "overwrite",
    dry_run: bool = False,
    progress: Progress | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    reserved_prefixes: ReservedPrefixes | None = None,
) -> SeedReport:
    """Validate the packs under ``dirs`` and upsert their templates in ``conn``'s transaction.

    ``dirs``: one pack directory or several (an application's packs on top of
    :func:`core_pack_dirs`); None means the core packs shipped with tapdb_core.

    Any validation error raises :class:`PackValidationError` (a
    :class:`~tapdb_core.errors.ValidationError` carrying the report) before
    anything is written. The function never commits: if an upsert fails the
    exception propagates and the caller's rollback undoes everything.

    ``mode="overwrite"`` updates templates that differ from their pack (only
    the changed columns, EUIDs kept, soft-deleted ones brought back);
    ``"skip_existing"`` leaves every existing template alone. Unchanged
    templates are not rewritten (no audit rows). The EUID sequence of every
    instance prefix is created if missing; sequences are never moved.

    ``dry_run`` writes nothing: the report says what seeding would do.
    ``progress(done, total)`` is called after each chunk of ``chunk_size``.
    ``reserved_prefixes``: default :func:`database_reserved_prefixes`.
    """
    _check_arguments(mode, chunk_size)
    roots = core_pack_dirs() if dirs is None else as_pack_dirs(dirs)
    if reserved_prefixes is None:
        reserved_prefixes = database_reserved_prefixes(conn)
    report = validate_packs(
        roots, strict=strict, reserved_prefixes=reserved_prefixes, known=stored_templates(conn)
    )
    if not report.ok:
        raise PackValidationError(report)

    specs = [template_spec(t) for t in report.templates]
    prefixes = sorted({s.instance_prefix for s in specs})
    if not dry_run:
        # concurrent seeds of the same packs take turns (upsert_templates takes
        # the same lock again, harmlessly); the loser reads the winner's rows
        # (READ COMMITTED) and reports them unchanged
        lock_templates(conn)
    new_sequences = _missing_sequences(conn, prefixes)
    if not dry_run:
        _ensure_sequences(conn, prefixes)

    outcomes = _write_chunks(
        conn,
        specs,
        overwrite=mode == "overwrite",
        dry_run=dry_run,
        progress=progress,
        chunk_size=chunk_size,
    )
    return SeedReport(
        created=tuple(outcomes["created"]),
        updated=tuple(outcomes["updated"]),
        unchanged=tuple(outcomes["unchanged"]),
        skipped=tuple(outcomes["skipped"]),
        dry_run=dry_run,
        mode=mode,
        templates=len(specs),
        new_sequences=tuple(new_sequences),
        pack_report=report,
    )


def _check_arguments(mode: str, chunk_size: int) -> None:
    if mode not in SEED_MODES:
        raise ValueError(f"mode must be one of {', '.join(SEED_MODES)}, not {mode!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")


def _write_chunks(
    conn: Connection,
    specs: Sequence[TemplateSpec],
    *,
    overwrite: bool,
    dry_run: bool,
    progress: Progress | None,
    chunk_size: int,
) -> dict[UpsertOutcome, list[str]]:
    """Upsert (or, dry run, only compare) ``specs`` chunk by chunk: codes by outcome."""
    outcomes: dict[UpsertOutcome, list[str]] = {
        "created": [],
        "updated": [],
        "unchanged": [],
        "skipped": [],
    }
    total = len(specs)
    for start in range(0, total, chunk_size):
        chunk = specs[start : start + chunk_size]
        if dry_run:
            results = _plan(conn, chunk, overwrite=overwrite)
        else:
            results = upsert_templates(conn, chunk, overwrite=overwrite)
        for result in results:
            outcomes[result.outcome].append(result.code)
        if progress is not None:
            progress(start + len(chunk), total)
    return outcomes


def _missing_sequences(conn: Connection, prefixes: Sequence[str]) -> list[str]:
    if not prefixes:
        return []
    return list(
        conn.execute(
            text(
                "SELECT p FROM unnest(CAST(:prefixes AS text[])) AS p"
                " WHERE to_regclass(tapdb_euid_sequence_name(p)) IS NULL ORDER BY p"
            ),
            {"prefixes": list(prefixes)},
        ).scalars()
    )


def _ensure_sequences(conn: Connection, prefixes: Sequence[str]) -> None:
    """Create missing EUID sequences (``tapdb_ensure_euid_sequence``); existing ones are untouched."""
    if prefixes:
        conn.execute(
            text(
                "SELECT tapdb_ensure_euid_sequence(p)::text"
                " FROM unnest(CAST(:prefixes AS text[])) AS p"
            ),
            {"prefixes": list(prefixes)},
        ).all()


def _plan(
    conn: Connection, specs: Sequence[TemplateSpec], *, overwrite: bool
) -> list[UpsertResult]:
    """What :func:`upsert_templates` would do with ``specs``, found by reading only."""
    keys = [(s.category, s.type, s.subtype, s.version) for s in specs]
    wanted = (
        func.unnest(*(bindparam(None, [k[i] for k in keys], type_=ARRAY(Text)) for i in range(4)))
        .table_valued(*_CODE_FIELDS)
        .render_derived(name="wanted")
    )
    code_cols = [gt.c[name] for name in _CODE_FIELDS]
    rows = conn.execute(
        select(
            *code_cols, gt.c.euid, gt.c.is_deleted, *(gt.c[name] for name in _COMPARED)
        ).join_from(gt, wanted, and_(*(col == wanted.c[col.name] for col in code_cols)))
    ).all()
    existing: Mapping[tuple[str, str, str, str], Any] = {
        (r.category, r.type, r.subtype, r.version): r for r in rows
    }
    results: list[UpsertResult] = []
    for spec, key in zip(specs, keys, strict=True):
        row = existing.get(key)
        outcome: UpsertOutcome
        if row is None:
            outcome = "created"
        elif not overwrite:
            outcome = "skipped"
        elif row.is_deleted or changed_fields(row, spec):
            outcome = "updated"
        else:
            outcome = "unchanged"
        euid = "" if row is None else str(row.euid)
        results.append(UpsertResult(code=str(spec.code), outcome=outcome, euid=euid))
    return results


__all__: Sequence[str] = (
    "DEFAULT_CHUNK_SIZE",
    "SEED_MODES",
    "Progress",
    "SeedMode",
    "SeedReport",
    "database_reserved_prefixes",
    "seed_packs",
    "template_spec",
)
