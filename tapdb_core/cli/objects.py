"""``tapdb object show|history`` and ``tapdb lineage graph`` (active environment)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tapdb_core import commands
from tapdb_core.cli import common, importer
from tapdb_core.cli.parsing import Subparsers, group, leaf
from tapdb_core.values import AuditEntry, Instance


def configure(sub: Subparsers) -> None:
    obj = group(sub, "object", "instances stored in the database")
    p = leaf(obj, "show", "an instance: properties, parents and children", cmd_show)
    p.add_argument("euid", metavar="EUID")
    p.add_argument(
        "--include-deleted",
        action="store_true",
        help="show a soft-deleted instance, and soft-deleted parents and children, too",
    )
    p = leaf(obj, "history", "the audit trail of an object (any EUID)", cmd_history)
    p.add_argument("euid", metavar="EUID")
    p.add_argument("--limit", type=int, help="at most this many entries")
    importer.configure(obj)

    lin = group(sub, "lineage", "the lineage graph")
    p = leaf(
        lin,
        "graph",
        "the neighbourhood of an instance as DOT, JSON (Cytoscape), SVG or PNG",
        cmd_graph,
        json_flag=False,
    )
    p.add_argument("euid", metavar="EUID")
    p.add_argument("--depth", type=int, default=2, help="steps up and down (default 2)")
    p.add_argument(
        "--format",
        choices=("dot", "json", "svg", "png"),
        default="dot",
        help="output format (default dot); wells in their plate grid, wide fan-outs "
        "wrapped; png needs Graphviz's dot",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")


def instance_dict(i: Instance) -> dict[str, Any]:
    return {
        "euid": i.euid,
        "name": i.name,
        "template": i.template_code,
        "polymorphic_discriminator": i.polymorphic_discriminator,
        "bstatus": i.bstatus,
        "is_singleton": i.is_singleton,
        "is_deleted": i.is_deleted,
        "created_dt": i.created_dt,
        "modified_dt": i.modified_dt,
    }


def _related(items: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            "euid": r.instance.euid,
            "name": r.instance.name,
            "template": r.instance.template_code,
            "relationship_type": r.relationship_type,
            "edge": r.via_euid,
        }
        for r in items
    ]


def cmd_show(args: argparse.Namespace) -> int:
    view = commands.show_object(
        common.resolve_target(args), args.euid, include_deleted=args.include_deleted
    )
    inst, parents, children = view.instance, _related(view.parents), _related(view.children)
    data = {
        **instance_dict(inst),
        "properties": inst.properties,
        "json_addl": inst.json_addl,
        "parents": parents,
        "children": children,
    }
    if args.json:
        common.print_json(data)
        return 0
    for key in ("euid", "name", "template", "polymorphic_discriminator", "bstatus", "created_dt"):
        common.out(f"{key.ljust(26)} {data[key]}")
    if inst.is_deleted:
        common.out(f"{'is_deleted'.ljust(26)} True")
    common.out("properties:")
    for key, value in inst.properties.items():
        common.out(f"  {key}: {json.dumps(value, ensure_ascii=False)}")
    for label, items in (("parents", parents), ("children", children)):
        common.out(f"{label} ({len(items)}):")
        for r in items:
            common.out(f"  {r['euid']:<10} {r['relationship_type']:<10} {r['name']}")
    return 0


def audit_dict(e: AuditEntry) -> dict[str, Any]:
    return {
        "euid": e.euid,
        "table": e.rel_table_name,
        "object": e.rel_table_euid_fk,
        "operation": e.operation_type,
        "column": e.column_name,
        "old_value": e.old_value,
        "new_value": e.new_value,
        "changed_by": e.changed_by,
        "changed_at": e.changed_at,
    }


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cmd_history(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise common.UsageError("--limit must be at least 1")
    entries = commands.object_history(common.resolve_target(args), args.euid, limit=args.limit)
    if args.json:
        common.print_json([audit_dict(e) for e in entries])
        return 0
    if not entries:
        raise common.CliError(f"no audit entries for {args.euid} (no object has this EUID)")
    for e in entries:
        when = e.changed_at.isoformat(timespec="seconds")
        line = f"{when}  {e.changed_by:<12} {e.operation_type:<6}"
        if e.operation_type == "UPDATE":
            line += f" {e.column_name}: {_short(e.old_value)} -> {_short(e.new_value)}"
        common.out(line)
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from tapdb_core import graph_layout

    if args.depth < 1:
        raise common.UsageError("--depth must be at least 1")
    if args.format == "png":
        graph_layout.require_dot()  # before connecting: say what to install first
        if not args.output and sys.stdout.isatty():
            raise common.UsageError("--format png writes binary data: use -o FILE or redirect")
    graph = commands.lineage_graph(common.resolve_target(args), args.euid, depth=args.depth)
    if args.format == "png":
        image = graph.to_png(center=args.euid)
        if args.output:
            Path(args.output).expanduser().write_bytes(image)
            common.note(f"wrote {args.output}")
        else:
            sys.stdout.buffer.write(image)
            sys.stdout.flush()
        return 0
    if args.format == "json":
        payload = json.dumps(graph.to_cytoscape(), indent=2, ensure_ascii=False) + "\n"
    elif args.format == "dot":
        payload = graph.to_dot(center=args.euid)
    else:
        payload = graph.to_svg(center=args.euid)
    if args.output:
        Path(args.output).expanduser().write_text(payload, encoding="utf-8")
        common.note(f"wrote {args.output}")
    else:
        sys.stdout.write(payload)
    return 0
