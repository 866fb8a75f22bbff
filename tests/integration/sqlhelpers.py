"""Small plain-SQL helpers for the schema tests (deliberately not the library)."""

from __future__ import annotations

from sqlalchemy import Connection, text


def add_template(
    conn: Connection,
    subtype: str,
    prefix: str = "CX",
    *,
    category: str = "container",
    type_: str = "plate",
    singleton: bool = False,
) -> int:
    return int(
        conn.execute(
            text(
                "INSERT INTO generic_template (name, polymorphic_discriminator, category, type, subtype,"
                " version, instance_prefix, is_singleton)"
                " VALUES (:subtype, 'container_template', :category, :type, :subtype, '1.0', :prefix,"
                " :singleton) RETURNING uuid"
            ),
            {
                "subtype": subtype,
                "prefix": prefix,
                "category": category,
                "type": type_,
                "singleton": singleton,
            },
        ).scalar_one()
    )


def add_instance(conn: Connection, template_uuid: int, name: str = "obj") -> tuple[int, str]:
    row = conn.execute(
        text(
            "INSERT INTO generic_instance (name, template_uuid) VALUES (:name, :tpl)"
            " RETURNING uuid, euid"
        ),
        {"name": name, "tpl": template_uuid},
    ).one()
    return int(row.uuid), str(row.euid)


def link(conn: Connection, parent: int, child: int, relationship: str = "contains") -> str:
    return str(
        conn.execute(
            text(
                "INSERT INTO generic_instance_lineage"
                " (parent_instance_uuid, child_instance_uuid, relationship_type)"
                " VALUES (:p, :c, :r) RETURNING euid"
            ),
            {"p": parent, "c": child, "r": relationship},
        ).scalar_one()
    )


def set_audit_user(conn: Connection, user: str) -> None:
    conn.execute(text("SELECT tapdb_set_audit_user(:u)"), {"u": user})


def explaining(conn: Connection) -> list[str]:
    """The plan of every nested statement this session runs from now on
    (auto_explain at NOTICE level, collected from the driver's notices)."""
    conn.execute(text("LOAD 'auto_explain'"))
    for setting, value in (
        ("auto_explain.log_min_duration", "0"),
        ("auto_explain.log_nested_statements", "on"),
        ("auto_explain.log_level", "notice"),
        ("client_min_messages", "notice"),
    ):
        conn.execute(text("SELECT set_config(:s, :v, false)"), {"s": setting, "v": value})
    plans: list[str] = []
    conn.connection.driver_connection.add_notice_handler(  # type: ignore[union-attr]
        lambda diag: plans.append(diag.message_primary or "")
    )
    return plans
