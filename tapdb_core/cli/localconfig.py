"""Recording where a local cluster listens, so later commands connect to it.

``bootstrap local`` and ``pg start-local -p`` write the port, user and data
directory of an environment into the config file that
:func:`tapdb_core.config.load_config` reads: the file in use if it is JSON,
else ``~/.config/tapdb/tapdb-config[-NAME].json`` (or ``$TAPDB_CONFIG_PATH``).
A YAML file is never rewritten (its comments would be lost): the user is told
what to add. Files are written atomically with mode 0600.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tapdb_core import config as tconfig
from tapdb_core.cli import common
from tapdb_core.errors import TapdbError

_YAML_SUFFIXES = (".yaml", ".yml")


def record_path(args: argparse.Namespace, cfg: tconfig.DatabaseConfig) -> Path:
    """The config file local settings of ``cfg.env`` are written to."""
    if getattr(args, "config", None):
        return Path(args.config).expanduser()
    if cfg.config_file is not None:
        return cfg.config_file
    explicit = os.environ.get("TAPDB_CONFIG_PATH")
    if explicit:
        return Path(explicit).expanduser()
    name = getattr(args, "database_name", None) or os.environ.get("TAPDB_DATABASE_NAME")
    file_name = f"tapdb-config-{name}.json" if name else "tapdb-config.json"
    return Path("~/.config/tapdb").expanduser() / file_name


#: keys whose values are never printed (a YAML snippet shows a placeholder)
SECRET_KEYS = frozenset({"password", "app_password"})


def _snippet(env: str, values: Mapping[str, Any]) -> str:
    lines = ["environments:", f"  {env}:"]
    lines += [
        f"    {key}: " + ("<the password>" if key in SECRET_KEYS else json.dumps(value))
        for key, value in values.items()
    ]
    return "\n".join(lines)


def is_recordable(args: argparse.Namespace, cfg: tconfig.DatabaseConfig) -> bool:
    """True when settings (passwords included) can be written to the config file."""
    return record_path(args, cfg).suffix not in _YAML_SUFFIXES


def recorded_value(cfg: tconfig.DatabaseConfig, key: str) -> str | None:
    """A value this module recorded in the environment's section (e.g. ``app_password``)."""
    try:
        value = common.env_sections(cfg.config_file).get(cfg.env, {}).get(key)
    except TapdbError:
        return None
    return value if isinstance(value, str) and value else None


def record_local_settings(
    args: argparse.Namespace, cfg: tconfig.DatabaseConfig, values: Mapping[str, Any]
) -> Path | None:
    """Merge ``values`` into the environment's section; None when it could not be written
    (a warning says what to add by hand)."""
    path = record_path(args, cfg)
    if path.suffix in _YAML_SUFFIXES:
        common.warn(
            f"not rewriting the YAML config file {path} (comments would be lost); "
            f"add this to it so later commands find the local server: "
            + _snippet(cfg.env, values).replace("\n", " / ")
        )
        return None
    data: dict[str, Any] = tconfig.read_config_file(path) if path.exists() else {}
    envs = data.get("environments")
    if isinstance(envs, dict):
        section = envs.setdefault(cfg.env, {})
    elif data and "environments" not in data and all(isinstance(v, dict) for v in data.values()):
        section = data.setdefault(cfg.env, {})  # env keys at the root
    else:
        data.setdefault("environments", {})
        section = data["environments"].setdefault(cfg.env, {})
    if not isinstance(section, dict):
        raise common.CliError(
            f"config file {path}: environment {cfg.env!r} is not a mapping; fix it by hand"
        )
    if all(section.get(k) == v for k, v in values.items()):
        return path
    section.update(values)
    write_private_file(path, json.dumps(data, indent=2) + "\n")
    return path


def write_private_file(path: Path, content: str) -> None:
    """Write ``content`` atomically to a file created with mode 0600 from the start."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_recorded(
    args: argparse.Namespace, env: str, *, port: int, user: str | None = None
) -> list[str]:
    """Problems that would make later commands miss the local server (re-resolved)."""
    cfg = common.resolve_config(args, env)
    target = common.target_of(cfg)
    problems: list[str] = []
    if target.from_database_url:
        problems.append("DATABASE_URL is set and overrides the local settings")
        return problems
    if target.port != port:
        problems.append(
            f"later commands would connect to port {target.port} "
            f"(from {cfg.settings['port'].source}), not {port}"
        )
    if user is not None and target.user != user:
        problems.append(
            f"later commands would log in as {target.user!r} "
            f"(from {cfg.settings['user'].source}), not {user!r}"
        )
    return problems
