"""``tapdb db data seed|backup|restore``."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from tapdb_core.cli import common
from tapdb_core.cli.parsing import Subparsers, add_env_argument, group, leaf
from tapdb_core.cli.schema import identity_prefixes_of


def configure(db_sub: Subparsers) -> None:
    data = group(db_sub, "data", "seed template packs, back up and restore data")

    p = leaf(data, "seed", "load template packs (validated first; one transaction)", cmd_seed)
    add_env_argument(p)
    p.add_argument(
        "-c",
        "--config-dir",
        dest="config_dirs",
        action="append",
        metavar="DIR",
        help="template pack directory (repeatable; default: the core packs)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--skip-existing",
        dest="mode",
        action="store_const",
        const="skip_existing",
        help="leave templates that already exist as they are",
    )
    mode.add_argument(
        "--overwrite",
        dest="mode",
        action="store_const",
        const="overwrite",
        help="update existing templates that differ from their pack (default)",
    )
    p.set_defaults(mode="overwrite")
    p.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")
    p.add_argument(
        "--strict",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="references to templates in no pack are errors (default) or warnings",
    )

    p = leaf(data, "backup", "write a backup of the tapdb data to a file", cmd_backup)
    add_env_argument(p)
    p.add_argument(
        "-o", "--output", metavar="FILE", help="output file (default: tapdb_ENV_TIMESTAMP.sql)"
    )

    p = leaf(data, "restore", "restore a backup into the database (destructive)", cmd_restore)
    add_env_argument(p)
    p.add_argument("-i", "--input", required=True, metavar="FILE", help="backup file to restore")
    p.add_argument(
        "--clean", action="store_true", help="remove the existing tapdb data before restoring"
    )
    p.add_argument(
        "--drop-dependents",
        action="store_true",
        help="with --clean: also drop application objects (views, foreign keys, functions...) "
        "that depend on tapdb's tables; without it --clean refuses and lists them",
    )
    common.add_guard_options(p)


def cmd_seed(args: argparse.Namespace) -> int:
    from tapdb_core.packs.seed import seed_packs
    from tapdb_core.packs.validate import PackValidationError

    cfg = common.resolve_config(args, args.env)
    target = common.target_of(cfg)
    common.remember(target)
    identity_prefixes_of(cfg)  # a bad configured prefix fails here, before any write
    dirs = [Path(d).expanduser() for d in args.config_dirs] if args.config_dirs else None
    engine = common.open_engine(target)
    try:
        with common.transaction(engine, target) as conn:
            try:
                report = seed_packs(
                    conn,
                    dirs,
                    strict=args.strict,
                    mode=args.mode,
                    dry_run=args.dry_run,
                    progress=common.count_progress("templates"),
                )
            except PackValidationError as exc:
                errors = exc.report.errors
                first = str(errors[0]) if errors else str(exc)
                suggestion = " ".join(
                    ["tapdb db config validate", *(f"-c {d}" for d in args.config_dirs or [])]
                )
                raise common.UsageError(
                    f"template packs have {len(errors)} error(s), nothing was seeded; "
                    f"first: {first}; full report: `{suggestion}`"
                ) from exc
    finally:
        engine.dispose()
    result = common.as_dict(report)
    if not args.dry_run:
        common.oplog(target, "db data seed", f"mode={args.mode}")
    if args.json:
        common.print_json(result)
        return 0
    counts = result.get("counts", {})
    verb = "would be" if args.dry_run else "were"
    common.out(
        f"{result.get('templates', 0)} templates in the packs: "
        f"{counts.get('created', 0)} {verb} created, {counts.get('updated', 0)} updated, "
        f"{counts.get('unchanged', 0)} unchanged, {counts.get('skipped', 0)} skipped"
    )
    warnings = result.get("pack_report", {}).get("warnings", 0)
    if warnings:
        common.warn(f"{warnings} pack warning(s): see `tapdb db config validate --no-strict`")
    return 0


def _summary(info: object) -> dict[str, Any]:
    """The JSON-ready summary of a BackupInfo / RestoreInfo."""
    result: dict[str, Any] = {}
    for name in ("revision", "meridian_domain", "cleaned", "created_at", "format_version"):
        if hasattr(info, name):
            result[name] = getattr(info, name)
    tables = getattr(info, "tables", ())
    result["rows"] = {t.name: t.rows for t in tables}
    result["sequences"] = len(getattr(info, "sequences", ()))
    adjusted = getattr(info, "adjusted_sequences", ())
    if adjusted:
        result["adjusted_sequences"] = list(adjusted)
    return result


def cmd_backup(args: argparse.Namespace) -> int:
    try:
        from tapdb_core.backup import backup
    except ImportError:
        raise common.CliError(
            "backup is not available in this installation (tapdb_core.backup is missing)"
        ) from None
    target = common.resolve_target(args, args.env)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.output or f"tapdb_{target.env}_{stamp}.tapdb.tar.gz").expanduser()
    if out.is_dir():
        raise common.UsageError(f"--output {out} is a directory")
    if not out.parent.is_dir():
        raise common.UsageError(f"--output {out}: directory {out.parent} does not exist")
    engine = common.open_engine(target)  # explain an unreachable server or missing schema
    engine.dispose()
    common.progress(f"backing up {target.database} to {out}")
    info = backup(target.url, out, progress=common.progress)
    common.oplog(target, "db data backup", str(out))
    result = {"database": target.database, "output": str(out), **_summary(info)}
    if args.json:
        common.print_json(result)
    else:
        rows = sum(result["rows"].values())
        common.out(
            f"backup of {target.database!r} (revision {result.get('revision')}, {rows} rows "
            f"in {len(result['rows'])} tables) written to {out}"
        )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    try:
        from tapdb_core.backup import RestoreTargetNotEmptyError, restore
    except ImportError:
        raise common.CliError(
            "restore is not available in this installation (tapdb_core.backup is missing)"
        ) from None
    from tapdb_core import migrate

    target = common.resolve_target(args, args.env)
    source = Path(args.input).expanduser()
    if not source.is_file():
        raise common.UsageError(f"--input {source}: no such file")
    if args.drop_dependents and not args.clean:
        raise common.UsageError("--drop-dependents only goes with --clean")
    engine = common.open_engine(target, need_schema=False)
    engine.dispose()
    action = (
        "drop the tapdb objects and restore" if args.clean else "restore"
    ) + f" the backup {source}"
    common.confirm_destructive(args, target, action)
    common.progress(f"restoring {source} into {target.database}")
    try:
        info = restore(
            target.url,
            source,
            clean=args.clean,
            drop_dependents=args.drop_dependents,
            progress=common.progress,
        )
    except RestoreTargetNotEmptyError:
        raise common.CliError(
            f"database {target.database!r} already holds tapdb objects: restore into an empty "
            f"database (`tapdb db create {target.env}` after `tapdb db delete {target.env}`) "
            "or pass --clean to drop them first (in the same transaction)"
        ) from None
    common.oplog(
        target,
        "db data restore",
        f"{source} clean={args.clean} drop_dependents={args.drop_dependents}",
    )
    result = {"database": target.database, "input": str(source), **_summary(info)}
    if args.json:
        common.print_json(result)
    else:
        rows = sum(result["rows"].values())
        common.out(
            f"restored {source} into {target.database!r}: {rows} rows, "
            f"revision {result.get('revision')}"
        )
        if result.get("revision") != migrate.head_revision():
            common.note(f"next: tapdb db schema migrate {target.env}")
    return 0
