"""``tapdb db data seed|backup|restore|verify``."""

from __future__ import annotations

import argparse
from typing import Any

from tapdb_core import commands
from tapdb_core import migrate as migrations
from tapdb_core.backup import BackupContents
from tapdb_core.cli import common
from tapdb_core.cli.parsing import Subparsers, add_env_argument, group, leaf
from tapdb_core.commands.schema import identity_prefixes_of


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
        help="template pack directory (repeatable; default: the core packs, and ./config/ "
        "when it holds packs)",
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
    cfg = common.resolve_config(args, args.env)
    target = common.target_of(cfg)
    common.remember(target)
    identity_prefixes_of(cfg)  # a bad configured prefix fails here, before any write
    report = commands.seed(
        target,
        pack_dirs=common.pack_dirs(args)[0],  # -c, else core (+ ./config/ when it has packs)
        strict=args.strict,
        mode=args.mode,
        dry_run=args.dry_run,
        seed_progress=common.count_progress("templates"),
    )
    if args.json:
        common.print_json(common.as_dict(report))
        return 0
    verb = "would be" if args.dry_run else "were"
    common.out(
        f"{report.templates} templates in the packs: "
        f"{len(report.created)} {verb} created, {len(report.updated)} updated, "
        f"{len(report.unchanged)} unchanged, {len(report.skipped)} skipped"
    )
    if report.warnings:
        common.warn(
            f"{report.warnings} pack warning(s): see `tapdb db config validate --no-strict`"
        )
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
    target = common.resolve_target(args, args.env)
    info = commands.backup(target, args.output, data_only=args.data_only, progress=common.progress)
    if args.json:
        common.print_json({"output": str(info.path), **_contents(info.contents)})
    else:
        common.out(f"{_describe(info.contents)} written to {info.path}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    contents = commands.verify_backup(args.file)
    if args.json:
        common.print_json({"file": str(contents.path), **_contents(contents)})
        return 0
    common.out(f"{contents.path}: {_describe(contents)}, made {contents.created_at}")
    for table, rows in contents.rows:
        common.out(f"  {table:<32} {rows:>10} rows")
    common.out(f"  {len(contents.sequences)} sequence positions")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    target = common.resolve_target(args, args.env)
    info = commands.restore(
        target,
        args.input,
        clean=args.clean,
        drop_dependents=args.drop_dependents,
        confirm=common.confirmer(args, target),
        progress=common.progress,
    )
    if args.json:
        common.print_json(
            {
                "database": target.database,
                "input": str(info.path),
                "cleaned": info.cleaned,
                "dropped_dependents": list(info.dropped_dependents),
                **_contents(info.contents),
            }
        )
    else:
        common.out(f"restored {info.path} into {target.database!r}: {_describe(info.contents)}")
        if info.contents.revision != migrations.head_revision():
            common.note(f"next: tapdb db schema migrate {target.env}")
    return 0
