"""Frozen value objects for rows. One class per table; polymorphism is data.

``polymorphic_discriminator`` says what kind of object a row is (container,
content, action, ...); there is no class per kind. Values come from rows with
``from_row`` and change through ``attrs.evolve``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs

from tapdb_core.codes import TemplateCode
from tapdb_core.convert import structure_row
from tapdb_core.errors import TapdbError

JSON = dict[str, Any]


@attrs.frozen(kw_only=True)
class Template:
    """A blueprint row of ``generic_template``."""

    uuid: int
    euid: str
    name: str
    polymorphic_discriminator: str
    category: str
    type: str
    subtype: str
    version: str
    instance_prefix: str
    instance_polymorphic_identity: str | None = None
    json_addl: JSON = attrs.field(factory=dict)
    json_addl_schema: JSON | None = None
    bstatus: str = "active"
    is_singleton: bool = False
    is_deleted: bool = False
    created_dt: dt.datetime | None = None
    modified_dt: dt.datetime | None = None
    row_version: int = 1
    """Bumped by the database on every update: tells a cached copy from the live row."""

    @property
    def code(self) -> TemplateCode:
        return TemplateCode(
            category=self.category, type=self.type, subtype=self.subtype, version=self.version
        )

    @property
    def template_code(self) -> str:
        """Canonical code ``category/type/subtype/version/``."""
        return str(self.code)

    @property
    def instance_discriminator(self) -> str:
        """Discriminator its instances get (the original's rule)."""
        if self.instance_polymorphic_identity:
            return self.instance_polymorphic_identity
        return self.polymorphic_discriminator.replace("_template", "_instance")

    @classmethod
    def from_row(cls, row: Any) -> Template:
        return structure_row(cls, row)


@attrs.frozen(kw_only=True)
class Instance:
    """An object row of ``generic_instance``."""

    uuid: int
    euid: str
    name: str
    polymorphic_discriminator: str
    category: str
    type: str
    subtype: str
    version: str
    template_uuid: int
    json_addl: JSON = attrs.field(factory=dict)
    bstatus: str = "created"
    is_singleton: bool = False
    is_deleted: bool = False
    created_dt: dt.datetime | None = None
    modified_dt: dt.datetime | None = None

    @property
    def properties(self) -> JSON:
        props = self.json_addl.get("properties", {})
        return props if isinstance(props, dict) else {}

    @property
    def template_code(self) -> str:
        return f"{self.category}/{self.type}/{self.subtype}/{self.version}/"

    @classmethod
    def from_row(cls, row: Any) -> Instance:
        """The instance of a row that holds its own ``action_groups``; rows that
        reference an action set go through :func:`tapdb_core.action_sets.instances`."""
        mapping = getattr(row, "_mapping", row)
        if mapping.get("action_set_digest") is not None:
            raise TapdbError(
                "internal error: an instance row was read without its action set"
                " (read instances with tapdb_core.action_sets.instances)"
            )
        return structure_row(cls, row)


@attrs.frozen(kw_only=True)
class Lineage:
    """A directed edge parent -> child of ``generic_instance_lineage``."""

    uuid: int
    euid: str
    name: str
    parent_instance_uuid: int
    child_instance_uuid: int
    relationship_type: str
    parent_type: str | None = None
    child_type: str | None = None
    json_addl: JSON = attrs.field(factory=dict)
    is_deleted: bool = False
    created_dt: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> Lineage:
        return structure_row(cls, row)


@attrs.frozen(kw_only=True)
class AuditEntry:
    """One row of ``audit_log``: who changed what, when."""

    uuid: int
    euid: str
    rel_table_name: str
    rel_table_uuid_fk: int
    rel_table_euid_fk: str | None
    column_name: str | None
    operation_type: str
    old_value: Any
    new_value: Any
    changed_by: str
    changed_at: dt.datetime

    @classmethod
    def from_row(cls, row: Any) -> AuditEntry:
        return structure_row(cls, row)


@attrs.frozen(kw_only=True)
class User:
    """A ``tapdb_user`` account (the password hash never leaves the users module)."""

    uuid: int
    euid: str
    username: str
    email: str | None = None
    display_name: str | None = None
    role: str = "user"
    is_active: bool = True
    require_password_change: bool = False
    created_dt: dt.datetime | None = None
    modified_dt: dt.datetime | None = None
    last_login_dt: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> User:
        return structure_row(cls, row)
