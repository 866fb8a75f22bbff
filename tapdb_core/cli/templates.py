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
    for line in template_summary(t):
        common.out(line)
    common.out("(the full template, json_addl and schema included: add --json)")
    return 0


def _short(value: object, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def template_summary(t: Template) -> list[str]:
    """A template in a screenful: identity, then what its json_addl does
    (properties, actions, children, schema), not the raw JSON."""
    addl = t.json_addl if isinstance(t.json_addl, dict) else {}
    lines = [
        f"{t.euid}  {t.template_code}  {t.name!r}",
        f"  kind        {t.polymorphic_discriminator}"
        + (
            f" -> instances {t.instance_polymorphic_identity}"
            if t.instance_polymorphic_identity
            else ""
        ),
        f"  instances   prefix {t.instance_prefix}"
        + (", singleton" if t.is_singleton else "")
        + f", status {addl.get('default_status') or 'created'}",
        f"  template    bstatus {t.bstatus}" + (", DELETED" if t.is_deleted else ""),
    ]
    props = addl.get("properties")
    if isinstance(props, dict) and props:
        lines.append(f"  properties  {len(props)}:")
        lines.extend(f"    {k} = {_short(v)}" for k, v in list(props.items())[:12])
        if len(props) > 12:
            lines.append(f"    ... and {len(props) - 12} more")
    actions = addl.get("action_imports")
    if isinstance(actions, dict) and actions:
        lines.append(f"  actions     {', '.join(sorted(str(k) for k in actions))}")
    layouts = addl.get("instantiation_layouts")
    if isinstance(layouts, list) and layouts:
        lines.append(f"  children    {len(layouts)} layout(s):")
        for layout in layouts[:5]:
            if not isinstance(layout, dict):
                continue
            children = layout.get("child_templates") or []
            count = sum(int(c.get("count", 1)) if isinstance(c, dict) else 1 for c in children)
            codes = sorted(
                {str(c.get("template_code") if isinstance(c, dict) else c) for c in children}
            )
            relation = layout.get("relationship_type", "contains")
            lines.append(f"    {relation}: {count} x {', '.join(codes)}")
    for key in ("expected_inputs", "expected_outputs"):
        value = addl.get(key)
        if isinstance(value, list) and value:
            lines.append(
                f"  {key.removeprefix('expected_'):<11} {', '.join(str(v) for v in value)}"
            )
    schema = t.json_addl_schema
    if isinstance(schema, dict) and schema:
        required = schema.get("required") or []
        lines.append(
            "  schema      json_addl is validated"
            + (f" (requires {', '.join(str(r) for r in required)})" if required else "")
        )
    else:
        lines.append("  schema      none")
    return lines
