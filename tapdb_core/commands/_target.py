"""The target of a command: where an environment's database really is."""

from __future__ import annotations

from typing import Final

import attrs
from sqlalchemy.engine import URL, make_url

from tapdb_core import config as tconfig
from tapdb_core.errors import UsageError

PROTECTED_ENVS: Final = frozenset({"prod", "production"})


@attrs.frozen(kw_only=True)
class Target:
    """Where an environment's database really is (``DATABASE_URL`` applied)."""

    env: str
    url: URL
    from_database_url: bool
    audit_user: str = ""
    """``audit_user`` of the environment's config (or ``TAPDB_<ENV>_AUDIT_USER``)."""
    audit_as: str | None = None
    """Who this command acts as, given explicitly (the CLI's ``--as``); wins over all."""

    @classmethod
    def from_url(cls, url: str | URL, *, env: str = "dev", audit_as: str | None = None) -> Target:
        """A target for a database URL (``postgresql://...``)."""
        parsed = url if isinstance(url, URL) else make_url(tconfig.normalise_url(url))
        return cls(env=env, url=parsed, from_database_url=True, audit_as=audit_as)

    @property
    def host(self) -> str:
        socket_dir = self.url.query.get("host")
        if self.url.host:
            return self.url.host
        if isinstance(socket_dir, str):
            return socket_dir
        return "localhost"

    @property
    def port(self) -> int:
        if self.url.port:
            return self.url.port
        raw = self.url.query.get("port")  # unix-socket form: ?host=/dir&port=N
        return int(raw) if isinstance(raw, str) and raw.isdigit() else 5432

    @property
    def user(self) -> str:
        return self.url.username or ""

    @property
    def password(self) -> str:
        return self.url.password or ""

    @property
    def database(self) -> str:
        if not self.url.database:
            raise UsageError("DATABASE_URL names no database (postgresql://user@host:port/NAME)")
        return self.url.database

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def protected(self) -> bool:
        return self.env in PROTECTED_ENVS

    def masked_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def with_database(self, database: str) -> URL:
        return self.url.set(database=database)


def target_of(cfg: tconfig.DatabaseConfig, *, audit_as: str | None = None) -> Target:
    return Target(
        env=cfg.env,
        url=make_url(cfg.url()),
        from_database_url=bool(cfg.url_override),
        audit_user=cfg.get("audit_user"),
        audit_as=audit_as,
    )
