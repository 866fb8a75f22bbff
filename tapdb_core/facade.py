"""The original daylily-tapdb class API, as a thin layer over the typed functions.

Code written against daylily-tapdb 0.1.13 reads almost the same::

    db = TAPDBConnection(db_hostname="localhost:5432", db_user="me", db_name="tapdb_dev")
    templates = TemplateManager()
    factory = InstanceFactory(templates)
    with db.session_scope(commit=True) as session:
        plate = factory.create_instance(session, "container/plate/fixed-plate-96/1.0/", "P1")

A "session" here is a SQLAlchemy :class:`~sqlalchemy.Connection` inside a
transaction (there is no ORM): pass it to any ``tapdb_core`` function. Values
returned (:class:`~tapdb_core.values.Instance`, ...) are frozen; change objects
through functions (``tapdb_core.instances.set_status(session, euid, ...)``),
not by assigning attributes.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL, make_url

from tapdb_core import instances, lineage, templates
from tapdb_core.actions import ActionDispatcher
from tapdb_core.config import load_config, normalise_url
from tapdb_core.db import Database, set_audit_user
from tapdb_core.dberrors import translated
from tapdb_core.errors import ConfigurationError, TemplateNotFoundError
from tapdb_core.values import Instance, Lineage, Template

__all__ = ["ActionDispatcher", "InstanceFactory", "TAPDBConnection", "TemplateManager"]

_TRUE_STRINGS = frozenset({"true", "1", "yes"})
_DRIVER = "postgresql+psycopg"


def _env_user() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser() or "tapdb"
    except (KeyError, OSError):
        return "tapdb"


def _split_hostname(hostname: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6addr]:port`` or a socket directory -> (host, port)."""
    value = hostname.strip()
    if not value:
        raise ConfigurationError("db_hostname must not be empty")
    if value.startswith("/"):
        return value, None
    host, port = value, ""
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            raise ConfigurationError(f"db_hostname {hostname!r}: unclosed '['")
        host, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigurationError(f"db_hostname {hostname!r}: expected ':port' after ']'")
            port = rest[1:]
    elif value.count(":") == 1:
        host, port = value.split(":")
    if not port:
        return host, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"db_hostname {hostname!r}: port {port!r} is not a port number")
    return host, int(port)


def _build_url(
    db_url: str | None,
    db_hostname: str | None,
    db_user: str | None,
    db_pass: str | None,
    db_name: str | None,
) -> URL:
    if db_url:
        return make_url(normalise_url(db_url))
    if db_hostname is None and db_user is None and db_pass is None and db_name is None:
        # Nothing given: the active environment's config (which honours DATABASE_URL).
        return make_url(load_config().url())
    # Components given: missing ones come from the active environment's config.
    cfg = load_config() if None in (db_hostname, db_user, db_pass, db_name) else None

    def setting(given: str | None, field: str) -> str | None:
        if given is not None:
            return given
        return cfg.get(field) if cfg is not None else None

    if db_hostname is not None:
        host, port = _split_hostname(db_hostname)
    else:
        config = cfg if cfg is not None else load_config()
        host, port = config.host, config.port
    query: dict[str, str] = {}
    host_arg: str | None = host
    port_arg: int | None = port
    if host.startswith("/"):  # unix socket directory: libpq takes it as a parameter
        query["host"] = host
        if port is not None:
            query["port"] = str(port)
        host_arg = port_arg = None
    return URL.create(
        _DRIVER,
        username=setting(db_user, "user"),
        password=setting(db_pass, "password") or None,
        host=host_arg,
        port=port_arg,
        database=setting(db_name, "database"),
        query=query,
    )


class TAPDBConnection:
    """An engine (pooled, pre-ping) plus the two transaction patterns of the original.

    ``db_url`` wins over the components; components not given (``db_hostname``
    as ``host:port``, ``db_user``, ``db_pass``, ``db_name``) come from the active
    environment's config (``tapdb_core.config.load_config``); with no argument at
    all the whole URL does. ``echo_sql`` defaults to ``$ECHO_SQL``
    (true/1/yes), ``app_username`` (the audit user) to ``$USER``. Everything
    after ``db_url`` is keyword-only: the original's positional order differs
    (``db_pass`` before ``db_user``), so positional calls could swap them silently.
    """

    def __init__(
        self,
        db_url: str | None = None,
        *,
        db_hostname: str | None = None,
        db_user: str | None = None,
        db_pass: str | None = None,
        db_name: str | None = None,
        pool_size: int = 5,
        max_overflow: int = 10,
        pool_timeout: float = 30,
        pool_recycle: int = 1800,
        echo_sql: bool | None = None,
        app_username: str | None = None,
    ) -> None:
        if echo_sql is None:
            echo_sql = os.environ.get("ECHO_SQL", "").strip().lower() in _TRUE_STRINGS
        self.app_username: str = app_username or _env_user()
        self.url: URL = _build_url(db_url, db_hostname, db_user, db_pass, db_name)
        engine = create_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_recycle=pool_recycle,
            pool_pre_ping=True,
            echo=echo_sql,
        )
        self.database = Database(engine=engine, app_username=self.app_username)

    @property
    def engine(self) -> Engine:
        return self.database.engine

    def __repr__(self) -> str:
        return f"TAPDBConnection({self.url.render_as_string(hide_password=True)!r})"

    def get_session(self) -> Connection:
        """A connection with a transaction begun and the audit user set for it.

        The caller commits or rolls back and closes it. After ``commit()`` the
        next statement begins a new transaction *without* the audit user (it is
        transaction-local): call :meth:`set_audit_user` again, or prefer
        :meth:`session_scope`.
        """
        self.database.ensure_schema()
        with translated():
            conn = self.engine.connect()
            try:
                conn.begin()
                set_audit_user(conn, self.app_username)
            except BaseException:
                conn.close()
                raise
        return conn

    def set_audit_user(self, session: Connection, user: str | None = None) -> None:
        """(Re)name the audit user of the session's current transaction."""
        set_audit_user(session, user or self.app_username)

    @contextmanager
    def session_scope(self, commit: bool = False) -> Iterator[Connection]:
        """A transaction with the audit user set: committed on success only when
        ``commit`` is true, rolled back otherwise (and on any error); always closed.
        Driver errors we understand surface as tapdb errors."""
        session = self.get_session()
        try:
            with translated():
                yield session
                if commit:
                    session.commit()
                else:
                    session.rollback()
        except BaseException:
            try:
                session.rollback()
            except Exception:  # noqa: S110 - the original error matters more
                pass
            raise
        finally:
            session.close()

    def close(self) -> None:
        """Dispose of the engine's pooled connections."""
        self.database.dispose()

    def __enter__(self) -> TAPDBConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class TemplateManager:
    """Template lookups by code or EUID (soft-deleted templates excluded), cached.

    Unlike ``tapdb_core.templates.get_template``, lookups return None for an
    unknown template, as the original did; a malformed code still raises
    :class:`~tapdb_core.errors.TemplateCodeError`.
    """

    def get_template(self, session: Connection, template_code: str) -> Template | None:
        try:
            return templates.get_template(session, template_code)
        except TemplateNotFoundError:
            return None

    def get_template_by_euid(self, session: Connection, euid: str) -> Template | None:
        try:
            return templates.get_template_by_euid(session, euid)
        except TemplateNotFoundError:
            return None

    def list_templates(
        self,
        session: Connection,
        category: str | None = None,
        type_: str | None = None,
        include_deleted: bool = False,
        *,
        subtype: str | None = None,
    ) -> list[Template]:
        return templates.list_templates(
            session,
            category=category,
            type=type_,
            subtype=subtype,
            include_deleted=include_deleted,
        )

    @staticmethod
    def template_code_from_template(template: Template) -> str:
        """``category/type/subtype/version/``."""
        return template.template_code

    def clear_cache(self) -> None:
        """Forget cached templates (the cache is shared by every manager)."""
        templates.clear_cache()


class InstanceFactory:
    """Create and link instances (errors are ``ValueError`` subclasses, as in the original)."""

    def __init__(self, template_manager: TemplateManager | None = None) -> None:
        self.template_manager = template_manager or TemplateManager()

    def create_instance(
        self,
        session: Connection,
        template_code: str,
        name: str,
        properties: Mapping[str, Any] | None = None,
        create_children: bool = True,
    ) -> Instance:
        """Create an instance and, from its template's layouts, its children."""
        return instances.create(
            session, template_code, name, properties, create_children=create_children
        )

    def link_instances(
        self,
        session: Connection,
        parent: Instance | str,
        child: Instance | str,
        relationship_type: str = "generic",
    ) -> Lineage:
        """Add the edge parent -> child (named ``<parent euid>-><child euid>``)."""
        return lineage.link(session, parent, child, relationship_type=relationship_type)

    def get_or_create_singleton_instance(
        self,
        session: Connection,
        template_code: str,
        name: str,
        properties: Mapping[str, Any] | None = None,
    ) -> Instance:
        """The live instance of a singleton template, created when there is none."""
        return instances.get_or_create_singleton(session, template_code, name, properties)
