"""``tapdb db data seed|backup|restore|verify``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tapdb_core.cli import common
from tapdb_core.cli.parsing import Subparsers, add_env_argument, group, leaf
from tapdb_core.cli.schema import identity_prefixes_of

if TYPE_CHECKING:
    from tapdb_core.backup import BackupContents


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

    p = leaf(
        data,
        "backup",
        "write a pg_dump custom-format backup of the database to a file (mode 0600)",
        cmd_backup,
    )
    add_env_argument(p)
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="output file (default: tapdb-DATABASE-UTCTIMESTAMP.dump in the current directory)",
    )
    p.add_argument(
        "--data-only",
        action="store_true",
        help="rows and sequence positions only (restores into a database migrated to the "
        "same revision, without data)",
    )

    p = leaf(data, "restore", "restore a backup into the database (destructive)", cmd_restore)
    add_env_argument(p)
    p.add_argument("-i", "--input", required=True, metavar="FILE", help="backup file to restore")
    p.add_argument(
        "--clean",
        action="store_true",
        help="drop the existing tapdb objects first (in the restore's transaction)",
    )
    p.add_argument(
        "--drop-dependents",
        action="store_true",
        help="with --clean: also drop application objects (views, foreign keys, functions...) "
        "that depend on tapdb's tables; without it --clean refuses and lists them",
    )
    common.add_guard_options(p)

    p = leaf(
        data,
        "verify",
        "read a backup file completely and list what it holds (no server needed)",
        cmd_verify,
    )
    p.add_argument("file", metavar="FILE", help="backup file")


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


def _contents(contents: BackupContents) -> dict[str, Any]:
    return {
        "revision": contents.revision,
        "data_only": contents.data_only,
        "database": contents.database,
        "server_version": contents.server_version,
        "pg_dump_version": contents.pg_dump_version,
        "created_at": contents.created_at,
        "rows": contents.row_counts,
        "sequences": list(contents.sequences),
    }


def _describe(contents: BackupContents) -> str:
    kind = "data-only backup" if contents.data_only else "backup"
    rows = sum(contents.row_counts.values())
    return (
        f"{kind} of {contents.database!r} at revision {contents.revision} "
        f"({rows} rows in {len(contents.rows)} tables, PostgreSQL {contents.server_version})"
    )


def cmd_backup(args: argparse.Namespace) -> int:
    from tapdb_core.backup import backup, default_file_name

    target = common.resolve_target(args, args.env)
    out = Path(args.output or default_file_name(target.database)).expanduser()
    if out.is_dir():
        raise common.UsageError(f"--output {out} is a directory")
    if not out.parent.is_dir():
        raise common.UsageError(f"--output {out}: directory {out.parent} does not exist")
    engine = common.open_engine(target, need_schema=False)  # explain an unreachable server
    engine.dispose()
    common.progress(f"backing up {target.database} to {out}")
    info = backup(target.url, out, data_only=args.data_only, progress=common.progress)
    common.oplog(target, "db data backup", str(out))
    if args.json:
        common.print_json({"output": str(out), **_contents(info.contents)})
    else:
        common.out(f"{_describe(info.contents)} written to {out}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from tapdb_core.backup import verify

    source = Path(args.file).expanduser()
    if not source.is_file():
        raise common.UsageError(f"{source}: no such file")
    contents = verify(source)
    if args.json:
        common.print_json({"file": str(source), **_contents(contents)})
        return 0
    common.out(f"{source}: {_describe(contents)}, made {contents.created_at}")
    for table, rows in contents.rows:
        common.out(f"  {table:<32} {rows:>10} rows")
    common.out(f"  {len(contents.sequences)} sequence positions")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from tapdb_core import migrate
    from tapdb_core.backup import RestoreTargetNotEmptyError, restore

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
    except RestoreTargetNotEmptyError as exc:
        raise common.CliError(
            f"database {target.database!r}: {exc} (or into an empty database made with "
            f"`tapdb db delete {target.env}` and `tapdb db create {target.env}`)"
        ) from None
    common.oplog(
        target,
        "db data restore",
        f"{source} clean={args.clean} drop_dependents={args.drop_dependents}",
    )
    if args.json:
        common.print_json(
            {
                "database": target.database,
                "input": str(source),
                "cleaned": info.cleaned,
                "dropped_dependents": list(info.dropped_dependents),
                **_contents(info.contents),
            }
        )
    else:
        common.out(f"restored {source} into {target.database!r}: {_describe(info.contents)}")
        if info.contents.revision != migrate.head_revision():
            common.note(f"next: tapdb db schema migrate {target.env}")
    return 0
