"""``tapdb db config validate``: check template packs without a database."""

from __future__ import annotations

import argparse

from tapdb_core import commands
from tapdb_core.cli import common
from tapdb_core.cli.parsing import Subparsers, group, leaf


def configure(db_sub: Subparsers) -> None:
    cfg = group(db_sub, "config", "template pack files")
    p = leaf(
        cfg,
        "validate",
        "validate template packs (no database needed); exit 1 on errors",
        cmd_validate,
    )
    p.add_argument(
        "-c",
        "--config-dir",
        dest="config_dirs",
        action="append",
        metavar="DIR",
        help="template pack directory (repeatable; default: the core packs, and ./config/ "
        "when it holds packs)",
    )
    p.add_argument(
        "--strict",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="references to templates in no pack are errors (default) or warnings",
    )


def cmd_validate(args: argparse.Namespace) -> int:
    dirs, _ = common.pack_dirs(args)  # -c, else core packs (+ ./config/ when it has packs)
    report = commands.validate_packs(dirs, strict=args.strict)
    if args.json:
        common.print_json(report.to_dict())
        return 0 if report.ok else 1
    for issue in report.issues:
        common.out(str(issue))
    where = ", ".join(str(d) for d in dirs)
    verdict = "ok" if report.ok else "FAILED"
    common.out(
        f"{verdict}: {report.template_count} templates in {len(report.files)} file(s) under "
        f"{where}; {len(report.errors)} error(s), {len(report.warnings)} warning(s)"
        f"{'' if args.strict else ' (not strict)'}"
    )
    return 0 if report.ok else 1
