"""``tapdb pg``: a local PostgreSQL cluster per environment (``init``,
``start-local``, ``stop-local``), and the machine's PostgreSQL service
(``start``, ``stop``, ``restart``; ``status`` and ``logs`` show the environment's
local cluster when there is an environment, the service otherwise or with
``--service``; see :mod:`tapdb_core.pgservice`).

The data directory is ``--data-dir``, else ``$TAPDB_DATA_DIR/<env>``, else the
``data_dir`` recorded in the config file, else ``./postgres_data/<env>`` (as root,
when the server's unprivileged OS user cannot enter that, as in a checkout under root's
0700 home: ``/var/lib/tapdb/<checkout>-<hash>/<env>``). The port is the environment's
resolved port, so the port started is the port the other commands connect to;
``start-local -p PORT`` records a different port in the config file.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from psycopg import conninfo as pg_conninfo
from psycopg import pq

from tapdb_core import config as tconfig
from tapdb_core.cli import common
from tapdb_core.cli.localconfig import check_recorded, record_local_settings
from tapdb_core.cli.parsing import ENV_HELP, Subparsers, add_env_argument, group, leaf
from tapdb_core.errors import CommandError, TapdbError
from tapdb_core.pgruntime import LocalCluster, PgBinaries, find_binaries, unreachable_by_server
from tapdb_core.pgservice import Platform, Service, detect, service_for

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", ""})
SERVER_DATA_HOME = Path("/var/lib/tapdb")


def configure(sub: Subparsers) -> None:
    pg = group(sub, "pg", "local PostgreSQL cluster of an environment (data-dir based)")

    p = leaf(pg, "init", "initialise the data directory (initdb)", cmd_init)
    add_env_argument(p)
    _data_dir_option(p)
    common.add_guard_options(p, prod_name=False)
    p.set_defaults()

    p = leaf(
        pg,
        "start-local",
        "start the local cluster and wait until it accepts connections",
        cmd_start,
    )
    add_env_argument(p)
    _data_dir_option(p)
    p.add_argument(
        "-p",
        "--port",
        type=int,
        help="port to listen on; recorded in the config file so later commands use it",
    )

    p = leaf(pg, "stop-local", "stop the local cluster (fast mode)", cmd_stop)
    add_env_argument(p)
    _data_dir_option(p)

    p = leaf(
        pg,
        "status",
        "local cluster of the environment, whether its server answers, and the machine's "
        "PostgreSQL service",
        cmd_status,
    )
    _optional_env(p)
    _data_dir_option(p)
    p.add_argument("--service", action="store_true", help="only the machine's PostgreSQL service")

    p = leaf(
        pg,
        "logs",
        "the environment's local cluster log (the machine's service log without an "
        "environment or with --service)",
        cmd_logs,
        json_flag=False,
    )
    _optional_env(p)
    _data_dir_option(p)
    p.add_argument("-n", "--lines", type=int, default=50, help="lines to show (default 50)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("--service", action="store_true", help="the machine's service log")

    for action, text in (
        ("start", "start the machine's PostgreSQL service (systemd, pg_ctlcluster, Homebrew)"),
        ("stop", "stop the machine's PostgreSQL service"),
        ("restart", "restart the machine's PostgreSQL service"),
    ):
        p = leaf(pg, action, text, cmd_service, json_flag=False)
        p.set_defaults(service_action=action)


def _optional_env(parser: argparse.ArgumentParser) -> None:
    """ENV of status/logs: left out, the active environment; none at all means
    the machine's service (daylily-tapdb's ``pg status`` and ``pg logs``)."""
    parser.add_argument("env", metavar="ENV", nargs="?", default=None, help=ENV_HELP)
    for action in parser._actions:  # argparse has no public way
        if "--env" in action.option_strings:
            action.help = argparse.SUPPRESS


def _env_or_active(args: argparse.Namespace) -> str | None:
    return args.env or getattr(args, "active_env", None) or os.environ.get("TAPDB_ENV") or None


def _data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data directory (default: $TAPDB_DATA_DIR/ENV, the config's data_dir, "
        "./postgres_data/ENV)",
    )


def data_dir_for(args: argparse.Namespace, cfg: tconfig.DatabaseConfig) -> tuple[Path, str]:
    """The data directory of ``cfg.env`` and where that choice came from."""
    given = getattr(args, "data_dir", None)
    if given:
        return Path(given).expanduser().absolute(), "--data-dir"
    root = os.environ.get("TAPDB_DATA_DIR")
    if root:
        return (Path(root).expanduser() / cfg.env).absolute(), "$TAPDB_DATA_DIR"
    try:
        recorded = common.env_sections(cfg.config_file).get(cfg.env, {}).get("data_dir")
    except TapdbError:
        recorded = None
    if isinstance(recorded, str) and recorded:
        base = cfg.config_file.parent if cfg.config_file else Path.cwd()
        return (base / Path(recorded).expanduser()).absolute(), str(cfg.config_file)
    default = (Path("postgres_data") / cfg.env).absolute()
    if unreachable_by_server(default) is not None:
        # root, with the checkout in a 0700 directory (root's home): the unprivileged
        # server user cannot enter it, so the cluster lives where it can, one per checkout
        digest = hashlib.sha256(str(default.parent).encode()).hexdigest()[:12]
        return SERVER_DATA_HOME / f"{default.parent.parent.name}-{digest}" / cfg.env, "default"
    return default, "default"


def refuse_protected(env: str) -> None:
    if env in common.PROTECTED_ENVS:
        raise common.UsageError(
            f"{env} is never a local cluster: use an external PostgreSQL for it"
        )


def is_local_host(host: str) -> bool:
    return host in LOCAL_HOSTS or host.startswith("/")


def binaries_for(cfg: tconfig.DatabaseConfig) -> PgBinaries | None:
    """The PostgreSQL the cluster was bootstrapped with (``pg_bin`` in the config), so a
    cluster made with the pgserver wheel's binaries is not started by another version.
    None: let :func:`find_binaries` search ($TAPDB_PG_BIN first)."""
    if os.environ.get("TAPDB_PG_BIN"):
        return None
    try:
        recorded = common.env_sections(cfg.config_file).get(cfg.env, {}).get("pg_bin")
    except TapdbError:
        return None
    if isinstance(recorded, str) and recorded and Path(recorded).is_dir():
        return find_binaries(recorded)
    return None


def cluster_for(
    args: argparse.Namespace, cfg: tconfig.DatabaseConfig, port: int | None = None
) -> tuple[LocalCluster, common.Target]:
    target = common.target_of(cfg)
    common.remember(target)
    data_dir, _ = data_dir_for(args, cfg)
    cluster = LocalCluster(data_dir=data_dir, port=port or target.port, binaries=binaries_for(cfg))
    return cluster, target


def superuser_for(cfg: tconfig.DatabaseConfig) -> str:
    """The superuser a new local cluster gets: the configured user, else ``postgres``
    (not the OS user: root or a login name make odd role names)."""
    if cfg.settings["user"].source == "default" and not cfg.url_override:
        return "postgres"
    return cfg.user or "postgres"


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as PostgreSQL does: connections of a stopped server in TIME_WAIT do not count
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def server_answers(target: common.Target) -> bool:
    params: dict[str, Any] = {
        "host": target.host,
        "port": target.port,
        "dbname": "postgres",
        "user": target.user or "postgres",
        "connect_timeout": 3,
    }
    info = pg_conninfo.make_conninfo(**params)
    return bool(pq.PGconn.ping(info.encode()) == pq.Ping.OK)


# --------------------------------------------------------------------------- commands


def cmd_init(args: argparse.Namespace) -> int:
    refuse_protected(args.env)
    cfg = common.resolve_config(args, args.env)
    cluster, target = cluster_for(args, cfg)
    if cluster.is_initialized and args.force:
        common.gate(args, f"delete and re-create the cluster in {cluster.data_dir}")
    elif cluster.is_initialized:
        common.warn(f"{cluster.data_dir} is already initialised (use --force to re-create it)")
        if args.json:
            common.print_json({"data_dir": cluster.data_dir, "created": False})
        return 0
    common.progress(f"initdb {cluster.data_dir}")
    superuser = superuser_for(cfg)
    created = cluster.init(superuser=superuser, password=target.password or None, force=args.force)
    if superuser != target.user:
        record_local_settings(args, cfg, {"user": superuser})
    if args.json:
        common.print_json(
            {"data_dir": cluster.data_dir, "created": created, "superuser": superuser}
        )
    else:
        common.out(f"initialised {cluster.data_dir} (superuser {superuser!r})")
        common.note(f"next: tapdb pg start-local {args.env}")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    refuse_protected(args.env)
    cfg = common.resolve_config(args, args.env)
    cluster, target = cluster_for(args, cfg, args.port)
    if not is_local_host(target.host):
        common.warn(f"environment {args.env} connects to {target.where}, not to this local cluster")
    if not cluster.is_initialized:
        raise common.CliError(
            f"{cluster.data_dir} is not initialised: run `tapdb pg init {args.env}` first "
            f"(or `tapdb bootstrap local`)"
        )
    already = cluster.status().running
    if not already and not port_is_free(cluster.port):
        raise common.CliError(
            f"port {cluster.port} is already in use by another server: choose one with "
            f"`tapdb pg start-local {args.env} -p PORT`"
        )
    common.progress(f"starting PostgreSQL on port {cluster.port}")
    cluster.start()
    recorded = None
    if args.port and args.port != target.port:
        recorded = record_local_settings(args, cfg, {"port": args.port})
        for problem in check_recorded(args, args.env, port=args.port):
            common.warn(problem)
    url = target.url.set(port=cluster.port).render_as_string(hide_password=True)
    if args.json:
        common.print_json(
            {
                "data_dir": cluster.data_dir,
                "port": cluster.port,
                "already_running": already,
                "url": url,
                "recorded_in": recorded,
            }
        )
    else:
        state = "was already running" if already else "started"
        common.out(f"PostgreSQL {state} on 127.0.0.1:{cluster.port} (data dir {cluster.data_dir})")
        common.out(f"url: {url}")
        if recorded:
            common.note(f"port {cluster.port} recorded in {recorded}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    cfg = common.resolve_config(args, args.env)
    cluster, _ = cluster_for(args, cfg)
    status = cluster.status()
    if status.running:
        common.progress(f"stopping PostgreSQL (pid {status.pid})")
        cluster.stop(mode="fast")
    if args.json:
        common.print_json({"data_dir": cluster.data_dir, "was_running": status.running})
    elif status.running:
        common.out(f"stopped PostgreSQL (pid {status.pid}, data dir {cluster.data_dir})")
    else:
        common.out(f"not running (data dir {cluster.data_dir})")
    return 0


# --------------------------------------------------------------------------- the system service

_platform: list[Platform] = []


def platform() -> Platform:
    """This machine, detected once per command (tests replace it: :func:`set_platform`)."""
    if not _platform:
        _platform.append(detect())
    return _platform[0]


def set_platform(found: Platform | None) -> None:
    _platform[:] = [found] if found is not None else []


def _run_all(service: Service, commands: tuple[tuple[str, ...], ...]) -> int:
    worst = 0
    for command in commands:
        common.progress(" ".join(command))
        try:
            code = subprocess.call(list(command))
        except OSError as exc:
            raise CommandError(f"cannot run {command[0]}: {exc.strerror}") from None
        worst = worst or code
    return worst


def cmd_service(args: argparse.Namespace) -> int:
    service = service_for(args.service_action, platform())
    code = _run_all(service, service.commands)
    if code:
        raise CommandError(
            f"{' '.join(service.commands[0])} failed (exit {code}); "
            f"{service.manager} manages {service.unit}: it may need root (sudo)"
        )
    return 0


def service_state(found: Platform) -> dict[str, Any]:
    """The machine's service: its manager and whether it runs (never raises)."""
    try:
        service = service_for("status", found)
    except CommandError as exc:
        return {"manager": None, "unit": None, "running": None, "note": str(exc)}
    codes = []
    for command in service.commands:
        try:
            codes.append(
                subprocess.call(list(command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        except OSError:
            codes.append(127)
    return {
        "manager": service.manager,
        "unit": service.unit,
        "running": all(code == 0 for code in codes),
        "note": None,
    }


def cmd_status(args: argparse.Namespace) -> int:
    env = None if args.service else _env_or_active(args)
    state = service_state(platform())
    if env is None:
        if state["manager"] is None:
            raise CommandError(str(state["note"]))
        if args.json:
            common.print_json({"service": state})
        else:
            running = "running" if state["running"] else "not running"
            common.out(f"system service {state['manager']} {state['unit']}: {running}")
        return 0 if state["running"] else 1
    cfg = common.resolve_config(args, env)
    cluster, target = cluster_for(args, cfg)
    status = cluster.status()
    answers = server_answers(target)
    result = {
        "env": cfg.env,
        "data_dir": status.data_dir,
        "initialized": status.initialized,
        "running": status.running,
        "pid": status.pid,
        "port": status.port,
        "log_file": status.log_file,
        "server": target.where,
        "server_answers": answers,
        "service": state,
    }
    if args.json:
        common.print_json(result)
    else:
        local = (
            f"running (pid {status.pid}, port {status.port})"
            if status.running
            else ("stopped" if status.initialized else "not initialised")
        )
        common.out(f"local cluster  {status.data_dir}: {local}")
        common.out(
            f"server         {target.where}: {'accepts connections' if answers else 'no answer'}"
        )
        if state["manager"] is None:
            common.out("system service none applies on this machine")
        else:
            running = "running" if state["running"] else "not running"
            common.out(f"system service {state['manager']} {state['unit']}: {running}")
    return 0 if answers else 1


def cmd_logs(args: argparse.Namespace) -> int:
    if args.lines < 0:
        raise common.UsageError("--lines must be 0 or more")
    env = None if args.service else _env_or_active(args)
    if env is None:
        service = service_for("logs", platform(), lines=args.lines, follow=args.follow)
        if not service.log_commands:
            raise CommandError(f"{service.manager} names no log file for {service.unit}")
        try:
            return _run_all(service, service.log_commands)
        except KeyboardInterrupt:
            return 0
    cfg = common.resolve_config(args, env)
    cluster, _ = cluster_for(args, cfg)
    log = cluster.log_file
    if not log.exists():
        raise common.CliError(
            f"no server log at {log} (has the cluster been started?); "
            "the machine's PostgreSQL service log: `tapdb pg logs --service`"
        )
    text = cluster.log_tail(args.lines)
    if text:
        sys.stdout.write(text + "\n")
    if not args.follow:
        return 0
    with log.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        try:
            while True:
                chunk = fh.read()
                if chunk:
                    sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                    sys.stdout.flush()
                else:
                    time.sleep(0.5)
        except KeyboardInterrupt:
            return 0
