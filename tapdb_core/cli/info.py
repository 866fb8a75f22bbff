"""``tapdb version`` and ``tapdb info``: what tapdb would connect to, and why."""

from __future__ import annotations

import argparse
import os
from typing import Any

from tapdb_core import commands
from tapdb_core._version import __version__
from tapdb_core.cli import common
from tapdb_core.cli.parsing import Subparsers, leaf
from tapdb_core.config import chosen_config_file, config_candidates


def configure(sub: Subparsers) -> None:
    leaf(sub, "version", "print the version", cmd_version)
    parser = leaf(
        sub,
        "info",
        "show the resolved settings of the active environment and where each came from",
        cmd_info,
    )
    parser.add_argument(
        "--offline", action="store_true", help="do not try to connect to the server"
    )


def cmd_version(args: argparse.Namespace) -> int:
    if args.json:
        common.print_json({"version": __version__})
    else:
        common.out(f"tapdb {__version__}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from tapdb_core.cli.pg import data_dir_for

    name, chosen_by = common.env_name(args)
    cfg = common.resolve_config(args)
    target = common.target_of(cfg)
    common.remember(target)
    settings = cfg.masked()
    if target.from_database_url:
        for field, value in (
            ("host", target.host),
            ("port", str(target.port)),
            ("user", target.user),
            ("password", "****" if target.password else ""),
            ("database", target.database),
        ):
            settings[field] = {
                "value": value,
                "source": "$DATABASE_URL",
                "overridden": settings[field]["value"],
            }
    data_dir, data_dir_source = data_dir_for(args, cfg)
    audit_user, audit_source = common.actor_and_source(target)
    database_name = getattr(args, "database_name", None)
    chosen = chosen_config_file(getattr(args, "config", None), database_name)
    if getattr(args, "config", None):
        searched = [str(args.config)]
    else:
        searched = [str(c.path) for c in config_candidates(database_name)]
    result: dict[str, Any] = {
        "version": __version__,
        "env": name,
        "env_source": chosen_by,
        "config_file": str(cfg.config_file) if cfg.config_file else None,
        "config_file_reason": chosen.reason if chosen else None,
        "config_search_path": searched,
        "database_url_set": target.from_database_url,
        "url": target.masked_url(),
        "settings": settings,
        "local_data_dir": {"path": str(data_dir), "source": data_dir_source},
        "audit_user": {"value": audit_user, "source": audit_source},
    }
    status = None if args.offline else commands.server_status(target)
    if status is not None:
        result["status"] = {
            k: v
            for k, v in common.as_dict(status).items()
            if v is not None or k in ("server", "reachable", "head")
        }
    if args.json:
        common.print_json(result)
        return 0
    common.out(f"tapdb {__version__}")
    common.out(f"environment   {name} (from {chosen_by})")
    if cfg.config_file:
        why = f" ({chosen.reason})" if chosen else ""
        common.out(f"config file   {cfg.config_file}{why}")
    else:
        common.out("config file   none found; searched:")
        for path in result["config_search_path"]:
            common.out(f"                {path}")
    if target.from_database_url:
        common.out("DATABASE_URL  set: it overrides host, port, user, password and database")
    common.out(f"url           {target.masked_url()}")
    common.out("settings:")
    width = max(len(k) for k in settings)
    for field, entry in settings.items():
        value = entry["value"] if entry["value"] != "" else '""'
        common.out(f"  {field.ljust(width)}  {value}  ({entry['source']})")
    common.out(f"local data dir  {data_dir} ({data_dir_source})")
    common.out(f"audit user    {audit_user} (from {audit_source})")
    if status is not None:
        if not status.reachable:
            common.out(f"server        {status.server}: unreachable")
        elif not status.database_exists:
            common.out(f"server        {status.server}: up; database missing")
        else:
            revision = status.revision or "none (no tapdb schema)"
            common.out(f"server        {status.server}: up (PostgreSQL {status.server_version})")
            common.out(f"schema        revision {revision}, code head {status.head}")
        if status.problem:
            common.note(f"note: {status.problem}")
    if os.environ.get("PGPASSWORD") and not target.from_database_url:
        common.note("note: PGPASSWORD is set and is used as the password")
    return 0
