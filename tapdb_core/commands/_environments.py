"""Environment names and their settings: which environments exist (config file
and ``TAPDB_<ENV>_<FIELD>`` variables), resolved as ``tapdb`` resolves them."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from tapdb_core import config as tconfig
from tapdb_core.commands._messages import warn
from tapdb_core.commands._target import Target, target_of
from tapdb_core.errors import TapdbError, UsageError

KNOWN_ENVS: Final = ("dev", "test", "prod")
_ENV_VAR_RE: Final = re.compile(
    r"^TAPDB_([A-Z][A-Z0-9_]*?)_(" + "|".join(f.upper() for f in tconfig.FIELDS) + r")$"
)


def env_sections(path: Path | None) -> dict[str, dict[str, Any]]:
    """Environment sections of a config file (either file shape)."""
    if path is None:
        return {}
    data = tconfig.read_config_file(path)
    envs = data.get("environments", data)
    if not isinstance(envs, Mapping):
        return {}
    return {str(k): dict(v) for k, v in envs.items() if isinstance(v, Mapping)}


def config_file(config: str | Path | None, database_name: str | None) -> Path | None:
    """The config file in use: ``config`` (must exist), else the first found."""
    if config:
        path = Path(config).expanduser()
        if not path.exists():
            raise UsageError(f"config file {path} (from --config) does not exist")
        return path
    return next((p for p in tconfig.config_search_path(database_name) if p.exists()), None)


def configured_envs(path: Path | None) -> set[str]:
    """Environment names defined in the config file or by TAPDB_<ENV>_<FIELD> variables."""
    names = set(env_sections(path))
    for key, value in os.environ.items():
        match = _ENV_VAR_RE.match(key)
        if match and value and not match.group(1).startswith("PG"):
            names.add(match.group(1).lower())
    return names


def resolve_config(
    env: str,
    *,
    source: str = "argument",
    config: str | Path | None = None,
    database_name: str | None = None,
) -> tconfig.DatabaseConfig:
    """Validate the environment name (a known one or one the configuration
    defines) and resolve its settings."""
    try:
        tconfig.active_env(env)
    except TapdbError as exc:
        raise UsageError(str(exc)) from None
    path = config_file(config, database_name)
    known = configured_envs(path)
    if env not in KNOWN_ENVS and env not in known:
        others = sorted(set(KNOWN_ENVS) | known)
        where = f" or define it in {path}" if path else " or define it in a config file"
        raise UsageError(
            f"unknown environment {env!r} (from {source}): use one of {', '.join(others)}{where}"
        )
    cfg = tconfig.load_config(env, database_name=database_name, config_file=config)
    _warn_if_readable(cfg.config_file)
    return cfg


def target_for(
    env: str = "dev",
    *,
    config: str | Path | None = None,
    database_name: str | None = None,
    audit_as: str | None = None,
) -> Target:
    """The target of environment ``env`` (resolved as ``tapdb`` resolves it)."""
    cfg = resolve_config(env, config=config, database_name=database_name)
    return target_of(cfg, audit_as=audit_as)


_warned: set[Path] = set()


def _warn_if_readable(path: Path | None) -> None:
    """A config file may hold passwords: say so when others can read it (once)."""
    if path is None or path in _warned:
        return
    _warned.add(path)
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return
    if mode & 0o077:
        warn(
            f"config file {path} is readable by other users (mode {mode:04o}); "
            f"it may hold passwords: chmod 600 {path}"
        )
