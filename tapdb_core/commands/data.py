"""Template packs and data: seed, validate, backup, restore, verify."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tapdb_core import backup as backups
from tapdb_core.commands._oplog import oplog
from tapdb_core.commands._session import session
from tapdb_core.commands._target import Target
from tapdb_core.commands.schema import Confirm, Progress
from tapdb_core.errors import CommandError, UsageError
from tapdb_core.packs.seed import SeedMode, SeedReport
from tapdb_core.packs.validate import PackReport, PackValidationError


def _dirs(pack_dirs: Sequence[str | Path] | None) -> list[Path] | None:
    return [Path(d).expanduser() for d in pack_dirs] if pack_dirs else None


def seed(
    target: Target,
    *,
    pack_dirs: Sequence[str | Path] | None = None,
    strict: bool = True,
    mode: SeedMode = "overwrite",
    dry_run: bool = False,
    seed_progress: Callable[[int, int], None] | None = None,
) -> SeedReport:
    """Validate the template packs and upsert their templates in one transaction.
    Pack errors raise :class:`UsageError` (nothing is seeded) naming the first."""
    from tapdb_core.packs.seed import seed_packs

    kwargs: dict[str, Any] = {"progress": seed_progress} if seed_progress else {}
    with session(target) as s, s.begin() as conn:
        try:
            report = seed_packs(
                conn, _dirs(pack_dirs), strict=strict, mode=mode, dry_run=dry_run, **kwargs
            )
        except PackValidationError as exc:
            errors = exc.report.errors
            first = str(errors[0]) if errors else str(exc)
            suggestion = " ".join(
                ["tapdb db config validate", *(f"-c {d}" for d in pack_dirs or [])]
            )
            raise UsageError(
                f"template packs have {len(errors)} error(s), nothing was seeded; "
                f"first: {first}; full report: `{suggestion}`"
            ) from exc
    if not dry_run:
        oplog(target, "db data seed", f"mode={mode}")
    return report


def validate_packs(
    pack_dirs: Sequence[str | Path] | None = None, *, strict: bool = True
) -> PackReport:
    """Check template packs (no database); the core packs when ``pack_dirs`` is empty."""
    from tapdb_core.packs import core_pack_dirs
    from tapdb_core.packs import validate_packs as validate

    return validate(_dirs(pack_dirs) or core_pack_dirs(), strict=strict)


def backup(
    target: Target,
    out: str | Path | None = None,
    *,
    data_only: bool = False,
    progress: Progress | None = None,
) -> backups.BackupInfo:
    """A pg_dump backup of the target's database to ``out`` (default
    ``tapdb-DATABASE-UTCTIMESTAMP.dump`` in the current directory)."""
    path = Path(out or backups.default_file_name(target.database)).expanduser()
    if path.is_dir():
        raise UsageError(f"--output {path} is a directory")
    if not path.parent.is_dir():
        raise UsageError(f"--output {path}: directory {path.parent} does not exist")
    with session(target, need_schema=False):
        pass  # an unreachable server is explained before pg_dump runs
    if progress:
        progress(f"backing up {target.database} to {path}")
    info = backups.backup(target.url, path, data_only=data_only, progress=progress)
    oplog(target, "db data backup", str(path))
    return info


def verify_backup(path: str | Path) -> backups.BackupContents:
    """Read a backup file completely and say what it holds (no server)."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise UsageError(f"{source}: no such file")
    return backups.verify(source)


def restore(
    target: Target,
    source: str | Path,
    *,
    clean: bool = False,
    drop_dependents: bool = False,
    confirm: Confirm | None = None,
    progress: Progress | None = None,
) -> backups.RestoreInfo:
    """Restore a backup into the target's database in one transaction;
    ``confirm(action)`` is called first (it raises to stop)."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise UsageError(f"--input {path}: no such file")
    if drop_dependents and not clean:
        raise UsageError("--drop-dependents only goes with --clean")
    with session(target, need_schema=False):
        pass  # never ask about a server that is not there
    if confirm is not None:
        action = "drop the tapdb objects and restore" if clean else "restore"
        confirm(f"{action} the backup {path}")
    if progress:
        progress(f"restoring {path} into {target.database}")
    try:
        info = backups.restore(
            target.url, path, clean=clean, drop_dependents=drop_dependents, progress=progress
        )
    except backups.RestoreTargetNotEmptyError as exc:
        raise CommandError(
            f"database {target.database!r}: {exc} (or into an empty database made with "
            f"`tapdb db delete {target.env}` and `tapdb db create {target.env}`)"
        ) from None
    oplog(target, "db data restore", f"{path} clean={clean} drop_dependents={drop_dependents}")
    return info
