"""``tapdb bootstrap local``: from nothing to a migrated, seeded database in one command.

Finds PostgreSQL binaries (an installed PostgreSQL or the ``pgserver`` wheel),
initialises and starts a cluster for the environment under its data directory,
creates the database, migrates and seeds it in one transaction, adds an ``admin``
user and creates the application role ``tapdb_app`` (``tapdb db roles``). A new
cluster authenticates every connection, TCP and local socket, with a password
(scram-sha-256; nothing is trusted): the superuser's and the application role's
generated passwords, the port, user and data directory are recorded in the config
file (mode 0600) so that every later command connects to the same server. The CLI
keeps using the superuser (migrations, roles); applications connect as
``tapdb_app``, which cannot alter the schema or forge the audit trail. Running it
again is harmless: every step notices what is already done.
"""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
from pathlib import Path
from typing import Any

from tapdb_core.cli import common
from tapdb_core.cli.aurora import configure_bootstrap
from tapdb_core.cli.localconfig import (
    check_recorded,
    is_recordable,
    record_local_settings,
    record_path,
    recorded_value,
)
from tapdb_core.cli.parsing import Subparsers, group, leaf
from tapdb_core.cli.pg import (
    binaries_for,
    data_dir_for,
    is_local_host,
    port_is_free,
    refuse_protected,
    superuser_for,
)
from tapdb_core.pgruntime import LocalCluster, find_binaries, free_port

DEMO_TEMPLATE = "container/plate/fixed-plate-96/1.0/"
APP_ROLE = "tapdb_app"


def configure(sub: Subparsers) -> None:
    boot = group(sub, "bootstrap", "set everything up in one command")
    p = leaf(
        boot,
        "local",
        "local PostgreSQL + database + schema + core templates + admin user",
        cmd_local,
        description=(
            "From nothing to a migrated, seeded database of the active environment "
            "(--env, $TAPDB_ENV, else dev) on a local PostgreSQL. Safe to run again."
        ),
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="cluster data directory (default: $TAPDB_DATA_DIR/ENV or ./postgres_data/ENV)",
    )
    p.add_argument(
        "-p",
        "--port",
        type=int,
        help="port for the server (default: the configured port, or a free one if it is taken)",
    )
    p.add_argument(
        "--admin-user",
        default="admin",
        metavar="NAME",
        help="name of the admin user to create (default admin; '' for none)",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="then create a 96-well plate and show its EUID, wells and lineage",
    )
    gui = p.add_mutually_exclusive_group()
    gui.add_argument(
        "--ui",
        action="store_true",
        help="then start the admin web UI in the background (`tapdb ui start`)",
    )
    gui.add_argument(
        "--no-gui",
        dest="ui",
        action="store_false",
        help="do not start the admin web UI (the default; the command to start it is printed)",
    )
    configure_bootstrap(boot)


def _choose_port(
    args: argparse.Namespace, cluster_running_port: int | None, target: common.Target, source: str
) -> int:
    if cluster_running_port is not None:
        if args.port and args.port != cluster_running_port:
            raise common.CliError(
                f"the local cluster is already running on port {cluster_running_port}; "
                f"stop it first (`tapdb pg stop-local {target.env}`) to move it to {args.port}"
            )
        return cluster_running_port
    port = args.port or target.port
    if port_is_free(port):
        return port
    if args.port or source != "default":
        origin = "--port" if args.port else source
        raise common.CliError(
            f"port {port} (from {origin}) is in use by another server: "
            "choose a free one with --port"
        )
    chosen = free_port()
    common.note(f"port {port} is in use by another server; using port {chosen}")
    return chosen


def _ensure_admin(engine: Any, target: common.Target, name: str) -> bool:
    from tapdb_core import users
    from tapdb_core.errors import UserNotFoundError

    with common.transaction(engine, target) as conn:
        try:
            users.get_user(conn, name)
            return False
        except UserNotFoundError:
            users.create_user(conn, name, role="admin", require_password_change=True)
            return True


def run_demo(engine: Any, target: common.Target) -> dict[str, Any]:
    from tapdb_core import instances

    name = "demo-plate-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    with common.transaction(engine, target) as conn:
        tree = instances.create_tree(conn, DEMO_TEMPLATE, name)
    root = tree.root
    children = {
        e.child_instance_uuid: e for e in tree.lineages if e.parent_instance_uuid == root.uuid
    }
    wells = [i for i in tree.instances if i.uuid in children]
    return {
        "plate": {"euid": root.euid, "name": root.name, "template": root.template_code},
        "wells": len(wells),
        "first_wells": [
            {
                "euid": w.euid,
                "name": w.name,
                "address": w.properties.get("address"),
                "edge": children[w.uuid].euid,
                "relationship_type": children[w.uuid].relationship_type,
            }
            for w in wells[:4]
        ],
    }


def _plain_url(target: common.Target) -> str:
    """The URL without its password (not even masked)."""
    return target.url._replace(password=None).render_as_string()


def _trusts_connections(data_dir: Path) -> bool:
    """True when the cluster's pg_hba.conf lets some connection in without a password."""
    try:
        lines = (data_dir / "pg_hba.conf").read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    rules = [line.split("#", 1)[0].split() for line in lines]
    return any(rule and rule[-1] == "trust" for rule in rules)


def _ensure_app_role(
    args: argparse.Namespace, cfg: Any, engine: Any, local: common.Target
) -> tuple[common.Target, bool]:
    """Create and grant the application role; its password is kept in the config file.
    Returns the target connecting as it, and whether its password is recorded."""
    from tapdb_core import roles

    password = recorded_value(cfg, "app_password")
    recordable = is_recordable(args, cfg)
    if password is None and recordable:
        password = secrets.token_urlsafe(24)
        # recorded first, so a failure below never leaves a password nobody kept
        record_local_settings(args, cfg, {"app_user": APP_ROLE, "app_password": password})
    with common.transaction(engine, local) as conn:
        roles.grant_roles(conn, app_role=APP_ROLE, app_password=password)
    app = common.Target(
        env=local.env,
        url=local.url.set(username=APP_ROLE, password=password),
        from_database_url=False,
    )
    return app, password is not None


def _demo_as(app: common.Target, admin: common.Target) -> dict[str, Any]:
    """The demo runs as the application role when it can log in, else as the superuser."""
    who = app if app.password else admin
    engine = common.open_engine(who)
    try:
        return run_demo(engine, who)
    finally:
        engine.dispose()


def cmd_local(args: argparse.Namespace) -> int:
    from tapdb_core.cli.db import setup_database
    from tapdb_core.cli.schema import identity_prefixes_of

    env, _ = common.env_name(args)
    refuse_protected(env)
    cfg = common.resolve_config(args)
    target = common.target_of(cfg)
    common.remember(target)
    if target.from_database_url:
        raise common.UsageError(
            "DATABASE_URL is set, but bootstrap local sets up a server on this machine: "
            "unset DATABASE_URL (or use `tapdb db setup ENV` against that server)"
        )
    if not is_local_host(target.host):
        raise common.UsageError(
            f"environment {env} points at host {target.host} (from "
            f"{cfg.settings['host'].source}); bootstrap local only sets up a server on this "
            "machine: use `tapdb db setup` for a remote server"
        )
    if args.port is not None and not 0 < args.port < 65536:
        raise common.UsageError(f"--port {args.port} is not a TCP port")
    prefixes = identity_prefixes_of(cfg)
    import tapdb_core.packs.seed  # noqa: F401  (fail before changing anything if missing)

    common.progress("looking for PostgreSQL binaries")
    binaries = binaries_for(cfg) or find_binaries()
    data_dir, data_dir_source = data_dir_for(args, cfg)
    probe = LocalCluster(data_dir=data_dir, port=target.port, binaries=binaries)
    status = probe.status()
    port = _choose_port(
        args, status.port if status.running else None, target, cfg.settings["port"].source
    )
    cluster = LocalCluster(data_dir=data_dir, port=port, binaries=binaries)
    superuser = superuser_for(cfg)

    password = target.password or None
    generated: dict[str, Any] = {}
    initialised = False
    if not cluster.is_initialized:
        if password is None:
            # recorded before initdb: a password nobody kept would lock everyone out
            if not is_recordable(args, cfg):
                raise common.UsageError(
                    f"bootstrap local sets up password authentication, and the YAML config "
                    f"file {record_path(args, cfg)} is not rewritten: add a `password:` for "
                    f"environment {env} to it (or set TAPDB_{env.upper()}_PASSWORD) first"
                )
            password = secrets.token_urlsafe(24)
            generated["password"] = password
            record_local_settings(args, cfg, {"user": superuser, **generated})
        common.progress(f"initdb {data_dir} (PostgreSQL {binaries.version} from {binaries.source})")
        initialised = cluster.init(superuser=superuser, password=password)
    elif _trusts_connections(data_dir):
        common.warn(
            f"the cluster in {data_dir} trusts local connections without a password (made by "
            f"an older tapdb): re-create it with `tapdb pg init {env} --force` for password "
            "authentication (destructive)"
        )
    started = False
    if not status.running:
        common.progress(f"starting PostgreSQL on 127.0.0.1:{port}")
        cluster.start()
        started = True

    values: dict[str, Any] = {"engine_type": "local", "host": "127.0.0.1", "port": port}
    values["user"] = superuser
    values.update(generated)
    values["database"] = target.database
    values["data_dir"] = str(data_dir)
    values["pg_bin"] = str(binaries.bindir)
    # later commands must resolve to this server: JSON config files (ours) are kept up
    # to date; a YAML file is only reported on when it would lead elsewhere
    needs_record = (
        port != target.port
        or superuser != target.user
        or bool(generated)
        or data_dir_source in ("--data-dir", "$TAPDB_DATA_DIR")
    )
    recorded = None
    if needs_record or record_path(args, cfg).suffix == ".json":
        recorded = record_local_settings(args, cfg, values)
    for problem in check_recorded(args, env, port=port, user=superuser):
        common.warn(problem)

    local = common.Target(
        env=env,
        url=target.url.set(host="127.0.0.1", port=port, username=superuser, password=password),
        from_database_url=False,
    )
    common.remember(local)
    common.progress(f"setting up database {local.database}")
    setup = setup_database(local, identity_prefixes=prefixes)
    engine = common.open_engine(local)
    try:
        admin_created = _ensure_admin(engine, local, args.admin_user) if args.admin_user else False
        app, app_recorded = _ensure_app_role(args, cfg, engine, local)
    finally:
        engine.dispose()
    demo = _demo_as(app, local) if args.demo else None

    result: dict[str, Any] = {
        "env": env,
        "data_dir": str(data_dir),
        "postgres": {"version": binaries.version, "source": binaries.source},
        "initialised": initialised,
        "started": started,
        "port": port,
        "url": _plain_url(local),
        "password_authentication": not _trusts_connections(data_dir),
        "app_role": APP_ROLE,
        "app_url": _plain_url(app),
        "app_password_recorded": app_recorded,
        "config_file": str(recorded) if recorded else None,
        "database_created": setup["created"],
        "revision": setup["revision"],
        "templates": setup["seed"].get("counts", {}),
        "admin_user": args.admin_user or None,
        "admin_created": admin_created,
        "demo": demo,
    }
    if args.json:
        common.print_json(result)
        return _start_ui(args, env) if args.ui else 0
    counts = result["templates"]
    common.out(f"tapdb environment {env} is ready")
    common.out(
        f"  PostgreSQL {binaries.version} in {data_dir} "
        f"({'started' if started else 'already running'} on port {port})"
    )
    common.out(
        f"  database {local.database!r} ({'created' if setup['created'] else 'existing'}), "
        f"schema {setup['revision']}, templates: {counts.get('created', 0)} created, "
        f"{counts.get('updated', 0)} updated, {counts.get('unchanged', 0)} unchanged"
    )
    if args.admin_user:
        state = "created" if admin_created else "exists"
        common.out(f"  admin user {args.admin_user!r} {state}")
    common.out(f"  application role {APP_ROLE!r}: reads and writes, cannot alter the schema")
    if recorded:
        common.out(f"  settings and passwords recorded in {recorded} (mode 0600)")
    common.out(f"  url: {_plain_url(local)}")
    common.out(f"  application url: {_plain_url(app)} (password: app_password in the config)")
    if demo:
        plate = demo["plate"]
        common.out("")
        common.out(
            f"demo: 96-well plate {plate['euid']} {plate['name']!r} with {demo['wells']} wells"
        )
        common.out(f"  {plate['euid']} ({plate['template']})")
        for well in demo["first_wells"]:
            common.out(
                f"  +-[{well['relationship_type']} {well['edge']}]-> {well['euid']} "
                f"{well['name']} (well {well['address']})"
            )
        common.out(f"  ... and {demo['wells'] - len(demo['first_wells'])} more wells")
        common.out(f"  try: tapdb --env {env} object show {plate['euid']}")
        common.out(f"       tapdb --env {env} lineage graph {plate['euid']} --depth 1")
    common.out("")
    common.out("next steps:")
    common.out(f"  tapdb --env {env} info")
    common.out(f"  tapdb db schema status {env}")
    if args.admin_user:
        common.out(f"  tapdb user set-password {env} {args.admin_user}")
    common.out(f"  tapdb pg stop-local {env}      (stop the server)")
    if args.ui:
        return _start_ui(args, env)
    common.out(f"  tapdb --env {env} ui start      (admin web UI)")
    return 0


def _start_ui(args: argparse.Namespace, env: str) -> int:
    """``tapdb ui start`` for the environment just bootstrapped (``--ui``)."""
    from tapdb_core.cli import ui

    ui_args = argparse.Namespace(
        env=env,
        active_env=env,
        config=getattr(args, "config", None),
        database_name=getattr(args, "database_name", None),
        host="127.0.0.1",
        port=ui.DEFAULT_PORT,
        http=False,
        foreground=False,
        wait=20.0,
    )
    return ui.cmd_start(ui_args)
