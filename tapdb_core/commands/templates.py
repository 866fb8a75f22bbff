"""Templates stored in the database."""

from __future__ import annotations

from tapdb_core import templates
from tapdb_core.commands._session import session
from tapdb_core.commands._target import Target
from tapdb_core.values import Template


def list_templates(
    target: Target,
    *,
    category: str | None = None,
    type: str | None = None,
    include_deleted: bool = False,
) -> list[Template]:
    with session(target) as s, s.begin() as conn:
        return templates.list_templates(
            conn, category=category, type=type, include_deleted=include_deleted
        )


def show_template(target: Target, code_or_euid: str) -> Template:
    """A template by code (``category/type/subtype/version``) or EUID."""
    with session(target) as s, s.begin() as conn:
        return templates.resolve_template(conn, code_or_euid)
