"""Where tapdb finds its database: environments, config files, environment variables.

Resolution (highest first) for a field of environment ``ENV``:
``TAPDB_<ENV>_<FIELD>``, then the ``PG*`` variable, then the first config file
found, then the default. ``DATABASE_URL`` overrides everything when set.
Config file search (first existing wins, never merged): ``TAPDB_CONFIG_PATH``
alone if set; else with a database name N (``--database-name`` or
``TAPDB_DATABASE_NAME``) the scoped files first, user-level then repo-level,
``~/.config/tapdb/tapdb-config-N.yaml``, ``./config/tapdb-config-N.yaml``, then
the unscoped ones, ``~/.config/tapdb/tapdb-config.yaml``,
``./config/tapdb-config.yaml`` (daylily-tapdb's documented resolution order);
without N only the unscoped two. Each ``.yaml`` has a ``.json`` twin, tried
right after it; YAML needs PyYAML.
"""

from __future__ import annotations

import getpass
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import attrs
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from tapdb_core.errors import ConfigurationError

FIELDS: Final = (
    "engine_type",
    "host",
    "port",
    "user",
    "password",
    "database",
    "tapdb_user_euid_prefix",
    "audit_log_euid_prefix",
    "cognito_user_pool_id",
    "audit_user",
)
_PG_VARS: Final = {
    "host": "PGHOST",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "database": "PGDATABASE",
}
_SECRET_FIELDS: Final = frozenset({"password"})
_ENV_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9_]*$")
DEFAULT_PORTS: Final = {"dev": 5432, "test": 5433, "prod": 5432}


def _default_user() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser() or "postgres"
    except (KeyError, OSError):
        return "postgres"


@attrs.frozen(kw_only=True)
class Setting:
    """One resolved value and where it came from (for ``tapdb info``)."""

    value: str
    source: str


@attrs.frozen(kw_only=True)
class DatabaseConfig:
    """Connection settings of one environment."""

    env: str
    settings: Mapping[str, Setting]
    config_file: Path | None = None
    url_override: str | None = None

    def get(self, field: str) -> str:
        if self.url_override and field in ("host", "port", "user", "password", "database"):
            from_url = _url_field(self.url_override, field)
            if from_url is not None:
                return from_url
        return self.settings[field].value

    @property
    def host(self) -> str:
        return self.get("host")

    @property
    def port(self) -> int:
        raw = self.get("port")
        try:
            return int(raw)
        except ValueError:
            source = self.settings["port"].source
            raise ConfigurationError(f"port {raw!r} from {source} is not a number") from None

    @property
    def database(self) -> str:
        return self.get("database")

    @property
    def user(self) -> str:
        return self.get("user")

    @property
    def password(self) -> str:
        return self.get("password")

    def url(self, database: str | None = None, driver: str = "postgresql+psycopg") -> str:
        """SQLAlchemy URL; ``DATABASE_URL`` wins when set (``database`` still picks
        another database on the same server)."""
        if self.url_override:
            url = make_url(normalise_url(self.url_override, driver))
            if database is not None:
                url = url.set(database=database)
            return url.render_as_string(hide_password=False)
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        host = self.host
        if host.startswith("/"):
            # unix socket directory: libpq takes it as the host query parameter
            return f"{driver}://{auth}@/{quote(database or self.database, safe='')}?host={quote(host)}&port={self.port}"
        return f"{driver}://{auth}@{host}:{self.port}/{quote(database or self.database, safe='')}"

    def masked(self) -> dict[str, dict[str, str]]:
        """Settings for display, secrets masked."""
        out: dict[str, dict[str, str]] = {}
        for name, setting in self.settings.items():
            shown = "****" if name in _SECRET_FIELDS and setting.value else setting.value
            out[name] = {"value": shown, "source": setting.source}
        return out


def _url_field(url: str, field: str) -> str | None:
    parsed = make_url(normalise_url(url))
    value = {
        "host": parsed.host or parsed.query.get("host"),
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "database": parsed.database,
    }[field]
    if isinstance(value, tuple):
        value = value[0] if value else None
    return None if value is None else str(value)


_UNENCODED_AT: Final = (
    "the database URL has more than one '@' before the host: a password holding '@' "
    "(or ':', '/', '?', '#', '%', space) must be percent-encoded, e.g. '@' as %40 "
    "(urllib.parse.quote(password, safe='')); the URL is not shown because it holds a password"
)


def check_url_authority(url: str) -> None:
    """Refuse a URL whose password was not percent-encoded, before anything shows a
    piece of that password as the host (``postgresql://u:p@ss@host/db``)."""
    rest = url.split("://", 1)[1] if "://" in url else url
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    if rest[:cut].count("@") > 1:
        raise ConfigurationError(_UNENCODED_AT)
    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018 - an unencoded password can leave text in the port
    except (ValueError, ArgumentError):
        # the parser's message would quote part of the URL, password included
        raise ConfigurationError(
            "the database URL cannot be parsed (expected postgresql://USER:PASSWORD@HOST:PORT/"
            "DATABASE, special characters percent-encoded); the URL is not shown because it "
            "may hold a password"
        ) from None
    if "@" in (parsed.host or ""):
        raise ConfigurationError(_UNENCODED_AT)


def normalise_url(url: str, driver: str = "postgresql+psycopg") -> str:
    """Accept ``postgres://`` and ``postgresql://`` URLs; use the psycopg 3 driver."""
    for scheme in (
        "postgresql+psycopg://",
        "postgresql+psycopg2://",
        "postgresql://",
        "postgres://",
    ):
        if url.startswith(scheme):
            normalised = driver + "://" + url[len(scheme) :]
            check_url_authority(normalised)
            return normalised
    raise ConfigurationError(
        f"DATABASE_URL must start with postgresql:// (or postgres://), got {url.split(':', 1)[0]!r}"
    )


def active_env(env: str | None = None) -> str:
    name = env or os.environ.get("TAPDB_ENV") or "dev"
    if not _ENV_NAME_RE.match(name):
        raise ConfigurationError(
            f"invalid environment name {name!r}: use lowercase letters, digits and _ (e.g. dev, test, prod)"
        )
    return name


@attrs.frozen(kw_only=True)
class Candidate:
    """A place a config file may be, and why it is searched."""

    path: Path
    reason: str


def config_candidates(database_name: str | None = None) -> list[Candidate]:
    """The config files searched, in order, each with why it is on the list."""
    explicit = os.environ.get("TAPDB_CONFIG_PATH")
    if explicit:
        return [Candidate(path=Path(explicit).expanduser(), reason="$TAPDB_CONFIG_PATH")]
    env_name = os.environ.get("TAPDB_DATABASE_NAME") or None
    name = database_name or env_name
    name_source = "--database-name" if database_name else "$TAPDB_DATABASE_NAME"
    levels = (("user-level", Path("~/.config/tapdb").expanduser()), ("repo-level", Path("config")))
    found: list[Candidate] = []
    if name:
        for level, directory in levels:
            why = f"{level} file scoped to database name {name!r} (from {name_source})"
            found.append(Candidate(path=directory / f"tapdb-config-{name}.yaml", reason=why))
    for level, directory in levels:
        why = f"{level} default file" + (f" (no scoped file for {name!r})" if name else "")
        found.append(Candidate(path=directory / "tapdb-config.yaml", reason=why))
    return [
        Candidate(path=p, reason=c.reason)
        for c in found
        for p in (c.path, c.path.with_suffix(".json"))
    ]


def config_search_path(database_name: str | None = None) -> list[Path]:
    """The config files searched, in order (the first that exists is used)."""
    return [c.path for c in config_candidates(database_name)]


def chosen_config_file(
    config_file: str | Path | None = None, database_name: str | None = None
) -> Candidate | None:
    """The config file in use and why: ``config_file`` (``--config``), else the first
    existing candidate, else None."""
    if config_file is not None:
        return Candidate(path=Path(config_file).expanduser(), reason="--config")
    return next((c for c in config_candidates(database_name) if c.path.exists()), None)


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read config file {path}: {exc.strerror}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigurationError(
                f"config file {path} is YAML but PyYAML is not installed: "
                'pip install "tapdb-core[yaml]" (or use a .json config file)'
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"config file {path} is not valid YAML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"config file {path} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigurationError(f"config file {path} must hold a mapping of environments")
    return data


def _env_section(data: Mapping[str, Any], env: str, path: Path) -> dict[str, Any]:
    envs = data.get("environments", data)
    if not isinstance(envs, Mapping):
        raise ConfigurationError(f"config file {path}: 'environments' must be a mapping")
    section = envs.get(env, {})
    if not isinstance(section, Mapping):
        raise ConfigurationError(f"config file {path}: environment {env!r} must be a mapping")
    return {str(k): v for k, v in section.items()}


def load_config(
    env: str | None = None,
    *,
    database_name: str | None = None,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> DatabaseConfig:
    """Resolve the settings of one environment."""
    environ = os.environ if environ is None else environ
    env = active_env(env)
    path: Path | None = None
    if config_file is not None:
        path = Path(config_file).expanduser()
        if not path.exists():
            raise ConfigurationError(f"config file {path} does not exist")
    else:
        path = next((p for p in config_search_path(database_name) if p.exists()), None)
    section = _env_section(read_config_file(path), env, path) if path else {}

    defaults = {
        "engine_type": "local",
        "host": "localhost",
        "port": str(DEFAULT_PORTS.get(env, 5432)),
        "user": _default_user(),
        "password": "",
        "database": f"tapdb_{env}",
        "tapdb_user_euid_prefix": "",
        "audit_log_euid_prefix": "",
        "cognito_user_pool_id": "",
        # empty: the CLI records $USER (see tapdb_core.cli.common.actor)
        "audit_user": "",
    }
    settings: dict[str, Setting] = {}
    for field in FIELDS:
        specific = f"TAPDB_{env.upper()}_{field.upper()}"
        pg_var = _PG_VARS.get(field)
        if environ.get(specific):
            settings[field] = Setting(value=environ[specific], source=f"${specific}")
        elif pg_var and environ.get(pg_var):
            settings[field] = Setting(value=environ[pg_var], source=f"${pg_var}")
        elif field in section and section[field] is not None:
            settings[field] = Setting(value=str(section[field]), source=str(path))
        else:
            settings[field] = Setting(value=defaults[field], source="default")
    url_override = environ.get("DATABASE_URL") or None
    return DatabaseConfig(env=env, settings=settings, config_file=path, url_override=url_override)


def resolve_database_url(env: str | None = None, **kwargs: Any) -> str:
    """The SQLAlchemy URL of the active (or given) environment."""
    return load_config(env, **kwargs).url()
