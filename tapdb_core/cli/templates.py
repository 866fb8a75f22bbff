"""``tapdb template list|show`` (active environment: --env / $TAPDB_ENV)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tapdb_core import commands
from tapdb_core.cli import common
from tapdb_core.cli.parsing import Subparsers, group, leaf
from tapdb_core.values import Template


def configure(sub: Subparsers) -> None:
    tpl = group(sub, "template", "templates stored in the database")
    p = leaf(tpl, "list", "list live templates", cmd_list)
    p.add_argument("--category", help="only this category")
    p.add_argument("--type", dest="type_", metavar="TYPE", help="only this type")
    p.add_argument("--include-deleted", action="store_true", help="also soft-deleted ones")
    p = leaf(tpl, "show", "show one template", cmd_show)
    p.add_argument(
        "template", metavar="CODE_OR_EUID", help="category/type/subtype/version or GT-..."
    )


def template_dict(t: Template, *, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "euid": t.euid,
        "code": t.template_code,
        "name": t.name,
        "polymorphic_discriminator": t.polymorphic_discriminator,
        "instance_prefix": t.instance_prefix,
        "is_singleton": t.is_singleton,
        "bstatus": t.bstatus,
        "is_deleted": t.is_deleted,
    }
    if full:
        data.update(
            instance_polymorphic_identity=t.instance_polymorphic_identity,
            json_addl=t.json_addl,
            json_addl_schema=t.json_addl_schema,
            created_dt=t.created_dt,
            modified_dt=t.modified_dt,
        )
    return data


def cmd_list(args: argparse.Namespace) -> int:
    found = commands.list_templates(
        common.resolve_target(args),
        category=args.category,
        type=args.type_,
        include_deleted=args.include_deleted,
    )
    if args.json:
        common.print_json([template_dict(t) for t in found])
        return 0
    if not found:
        common.note("no templates (seed them with `tapdb db data seed ENV`)")
        return 0
    width = max(len(t.template_code) for t in found)
    for t in found:
        deleted = "  (deleted)" if t.is_deleted else ""
        common.out(
            f"{t.euid:<8} {t.template_code.ljust(width)}  {t.instance_prefix:<4} {t.name}{deleted}"
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    t = commands.show_template(common.resolve_target(args), args.template)
    data = template_dict(t, full=True)
    if args.json:
        common.print_json(data)
        return 0
    for key in (
        "euid",
        "code",
        "name",
        "polymorphic_discriminator",
        "instance_prefix",
        "is_singleton",
        "bstatus",
    ):
        common.out(f"{key.ljust(26)} {data[key]}")
    common.out("json_addl:")
    common.out(json.dumps(t.json_addl, indent=2, ensure_ascii=False))
    if t.json_addl_schema:
        common.out("json_addl_schema:")
        common.out(json.dumps(t.json_addl_schema, indent=2, ensure_ascii=False))
    return 0
