"""What a target's server says about itself (for ``tapdb info``)."""

from __future__ import annotations

import attrs
from sqlalchemy import text

from tapdb_core import migrate
from tapdb_core.commands._messages import one_line
from tapdb_core.commands._session import session
from tapdb_core.commands._target import Target
from tapdb_core.errors import DatabaseMissingError, TapdbError


@attrs.frozen(kw_only=True)
class ServerStatus:
    server: str
    reachable: bool
    database_exists: bool | None = None
    """None: the server could not be asked."""
    server_version: str | None = None
    revision: str | None = None
    head: str
    problem: str | None = None


def server_status(target: Target) -> ServerStatus:
    """Reachability, database existence and schema revision (never raises for a
    server that cannot be reached: ``problem`` says why)."""
    head = migrate.head_revision()
    try:
        with session(target, need_schema=False) as s, s.connect() as conn:
            version = conn.execute(text("SHOW server_version")).scalar()
            revision = migrate.current_revision(conn)
    except DatabaseMissingError as exc:
        return ServerStatus(
            server=target.where, reachable=True, database_exists=False, head=head, problem=str(exc)
        )
    except TapdbError as exc:
        return ServerStatus(server=target.where, reachable=False, head=head, problem=str(exc))
    except Exception as exc:  # info reports, it never fails on the server
        return ServerStatus(
            server=target.where, reachable=False, head=head, problem=one_line(str(exc))
        )
    return ServerStatus(
        server=target.where,
        reachable=True,
        database_exists=True,
        server_version=str(version),
        revision=revision,
        head=head,
    )
