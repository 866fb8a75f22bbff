"""SQLAlchemy Core ``Table`` objects mirroring the schema the migrations build.

Alembic owns the schema; this module only describes it so queries can be
composed. ``tests/integration/test_schema_drift.py`` compares it with a
database migrated to head, so the two cannot drift apart.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import UserDefinedType


class Xid8(UserDefinedType[int]):
    """PostgreSQL ``xid8`` (64-bit transaction id)."""

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "XID8"


NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

_NOW = text("now()")
_EMPTY = text("'{}'::jsonb")


def _pk() -> Column[int]:
    return Column("uuid", BigInteger, Identity(always=False), primary_key=True)


def _euid_columns(default_prefix: str | None = None) -> list[Column[object]]:
    prefix_default = text(f"'{default_prefix}'") if default_prefix else None
    return [
        Column("euid", Text, nullable=False),
        Column("euid_prefix", Text, nullable=False, server_default=prefix_default),
        Column("euid_seq", BigInteger, nullable=False),
    ]


def _timestamps() -> list[Column[object]]:
    return [
        Column("created_dt", DateTime(timezone=True), nullable=False, server_default=_NOW),
        Column("modified_dt", DateTime(timezone=True), nullable=False, server_default=_NOW),
    ]


identity_prefix_config = Table(
    "tapdb_identity_prefix_config",
    metadata,
    _pk(),
    Column("entity", Text, nullable=False),
    Column("euid_prefix", Text, nullable=False),
    *_timestamps(),
    UniqueConstraint("entity", name="uq_tapdb_identity_prefix_config_entity"),
)

meridian_domain = Table(
    "tapdb_meridian_domain",
    metadata,
    _pk(),
    Column("domain_code", Text, nullable=False),
    Column("only_row", Boolean, nullable=False, server_default=text("true")),
    Column("created_dt", DateTime(timezone=True), nullable=False, server_default=_NOW),
    UniqueConstraint("only_row", name="uq_tapdb_meridian_domain_only_row"),
)

generic_template = Table(
    "generic_template",
    metadata,
    _pk(),
    *_euid_columns("GT"),
    Column("name", Text, nullable=False),
    Column(
        "polymorphic_discriminator",
        Text,
        nullable=False,
        server_default=text("'generic_template'"),
    ),
    Column("category", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("subtype", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("instance_prefix", Text, nullable=False),
    Column("instance_polymorphic_identity", Text),
    Column("json_addl", JSONB, nullable=False, server_default=_EMPTY),
    Column("json_addl_schema", JSONB),
    Column("bstatus", Text, nullable=False, server_default=text("'active'")),
    Column("is_singleton", Boolean, nullable=False, server_default=text("false")),
    Column("is_deleted", Boolean, nullable=False, server_default=text("false")),
    *_timestamps(),
    UniqueConstraint("euid", name="uq_generic_template_euid"),
    UniqueConstraint("category", "type", "subtype", "version", name="uq_generic_template_code"),
)

generic_instance = Table(
    "generic_instance",
    metadata,
    _pk(),
    *_euid_columns(),
    Column("name", Text, nullable=False),
    Column("polymorphic_discriminator", Text, nullable=False),
    Column("category", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("subtype", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column(
        "template_uuid",
        BigInteger,
        ForeignKey(
            "generic_template.uuid",
            name="fk_generic_instance_template_uuid_generic_template",
        ),
        nullable=False,
    ),
    Column("json_addl", JSONB, nullable=False, server_default=_EMPTY),
    Column("bstatus", Text, nullable=False, server_default=text("'created'")),
    Column("is_singleton", Boolean, nullable=False, server_default=text("false")),
    Column("is_deleted", Boolean, nullable=False, server_default=text("false")),
    *_timestamps(),
    Column("created_xid", Xid8, nullable=False, server_default=text("pg_current_xact_id()")),
    UniqueConstraint("euid", name="uq_generic_instance_euid"),
    Index("ix_generic_instance_template_uuid", "template_uuid"),
    Index("ix_generic_instance_code", "category", "type", "subtype", "version"),
    Index(
        "ix_generic_instance_json_addl",
        "json_addl",
        postgresql_using="gin",
        postgresql_ops={"json_addl": "jsonb_path_ops"},
    ),
    Index(
        "uq_generic_instance_live_singleton",
        "template_uuid",
        unique=True,
        postgresql_where=text("is_singleton AND NOT is_deleted"),
    ),
)

generic_instance_lineage = Table(
    "generic_instance_lineage",
    metadata,
    _pk(),
    *_euid_columns("GN"),
    Column("name", Text, nullable=False, server_default=text("''")),
    Column(
        "polymorphic_discriminator",
        Text,
        nullable=False,
        server_default=text("'generic_instance_lineage'"),
    ),
    Column("category", Text, nullable=False, server_default=text("'lineage'")),
    Column("type", Text, nullable=False, server_default=text("'lineage'")),
    Column("subtype", Text, nullable=False, server_default=text("'generic'")),
    Column("version", Text, nullable=False, server_default=text("'1.0'")),
    Column(
        "parent_instance_uuid",
        BigInteger,
        ForeignKey(
            "generic_instance.uuid",
            name="fk_generic_instance_lineage_parent_instance_uuid_generic_instance",
        ),
        nullable=False,
    ),
    Column(
        "child_instance_uuid",
        BigInteger,
        ForeignKey(
            "generic_instance.uuid",
            name="fk_generic_instance_lineage_child_instance_uuid_generic_instance",
        ),
        nullable=False,
    ),
    Column("parent_type", Text),
    Column("child_type", Text),
    Column("relationship_type", Text, nullable=False, server_default=text("'generic'")),
    Column("json_addl", JSONB, nullable=False, server_default=_EMPTY),
    Column("bstatus", Text, nullable=False, server_default=text("'active'")),
    Column("is_singleton", Boolean, nullable=False, server_default=text("false")),
    Column("is_deleted", Boolean, nullable=False, server_default=text("false")),
    *_timestamps(),
    UniqueConstraint("euid", name="uq_generic_instance_lineage_euid"),
    CheckConstraint(
        "parent_instance_uuid <> child_instance_uuid",
        name="ck_generic_instance_lineage_no_self_loop",
    ),
    Index(
        "uq_generic_instance_lineage_live_edge",
        "parent_instance_uuid",
        "child_instance_uuid",
        "relationship_type",
        unique=True,
        postgresql_where=text("NOT is_deleted"),
    ),
    Index(
        "ix_generic_instance_lineage_child_live",
        "child_instance_uuid",
        "parent_instance_uuid",
        postgresql_where=text("NOT is_deleted"),
    ),
    Index("ix_generic_instance_lineage_parent", "parent_instance_uuid"),
    Index("ix_generic_instance_lineage_child", "child_instance_uuid"),
)

tapdb_user = Table(
    "tapdb_user",
    metadata,
    _pk(),
    *_euid_columns(),
    Column("username", Text, nullable=False),
    Column("email", Text),
    Column("display_name", Text),
    Column("role", Text, nullable=False, server_default=text("'user'")),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Column("require_password_change", Boolean, nullable=False, server_default=text("false")),
    Column("password_hash", Text),
    Column("json_addl", JSONB, nullable=False, server_default=_EMPTY),
    *_timestamps(),
    Column("last_login_dt", DateTime(timezone=True)),
    UniqueConstraint("euid", name="uq_tapdb_user_euid"),
    UniqueConstraint("username", name="uq_tapdb_user_username"),
    UniqueConstraint("email", name="uq_tapdb_user_email"),
)

audit_log = Table(
    "audit_log",
    metadata,
    _pk(),
    *_euid_columns(),
    Column("rel_table_name", Text, nullable=False),
    Column("rel_table_uuid_fk", BigInteger, nullable=False),
    Column("rel_table_euid_fk", Text),
    Column("column_name", Text),
    Column("operation_type", Text, nullable=False),
    Column("old_value", JSONB),
    Column("new_value", JSONB),
    Column("changed_by", Text, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    Column("xact_id", Xid8, nullable=False, server_default=text("pg_current_xact_id()")),
    Index("ix_audit_log_rel_table_euid_fk", "rel_table_euid_fk"),
)

#: tables whose DELETE is a soft delete
SOFT_DELETE_TABLES = (generic_template, generic_instance, generic_instance_lineage)
