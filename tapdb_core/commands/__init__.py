"""One typed function per ``tapdb`` command, callable without the CLI.

Each takes a :class:`Target` (where the database is and who acts), does its
work in :func:`session` (which opens, schema-checks and disposes the engine),
and returns a frozen attrs value; the CLI only parses arguments and renders
these. Destructive commands take ``confirm(action)``, called before anything
is dropped (it raises to stop); warnings are :class:`~tapdb_core.errors.TapdbWarning`.

    from tapdb_core import commands

    target = commands.target_for("dev")  # or commands.Target.from_url("postgresql://...")
    status = commands.schema_status(target)
    print(status.revision, status.ok)
"""

from __future__ import annotations

from tapdb_core.commands._actor import actor, actor_and_source
from tapdb_core.commands._environments import target_for
from tapdb_core.commands._session import Session, admin_session, session
from tapdb_core.commands._target import Target, target_of
from tapdb_core.commands.data import backup, restore, seed, validate_packs, verify_backup
from tapdb_core.commands.db import (
    DatabaseCreated,
    DatabaseDeleted,
    SetupResult,
    create_database,
    delete_database,
    setup_database,
)
from tapdb_core.commands.info import ServerStatus, server_status
from tapdb_core.commands.objects import ObjectView, lineage_graph, object_history, show_object
from tapdb_core.commands.roles import grant_roles
from tapdb_core.commands.schema import (
    MigrateResult,
    PendingMigrations,
    ResetResult,
    SchemaStatus,
    apply_schema,
    migrate,
    migration_sql,
    pending_migrations,
    reset_schema,
    schema_status,
)
from tapdb_core.commands.templates import list_templates, show_template
from tapdb_core.commands.users import (
    activate_user,
    create_user,
    deactivate_user,
    delete_user,
    get_user,
    list_users,
    set_user_password,
    set_user_role,
)

__all__ = [
    "DatabaseCreated",
    "DatabaseDeleted",
    "MigrateResult",
    "ObjectView",
    "PendingMigrations",
    "ResetResult",
    "SchemaStatus",
    "ServerStatus",
    "Session",
    "SetupResult",
    "Target",
    "activate_user",
    "actor",
    "actor_and_source",
    "admin_session",
    "apply_schema",
    "backup",
    "create_database",
    "create_user",
    "deactivate_user",
    "delete_database",
    "delete_user",
    "get_user",
    "grant_roles",
    "lineage_graph",
    "list_templates",
    "list_users",
    "migrate",
    "migration_sql",
    "object_history",
    "pending_migrations",
    "reset_schema",
    "restore",
    "schema_status",
    "seed",
    "server_status",
    "session",
    "set_user_password",
    "set_user_role",
    "setup_database",
    "show_object",
    "show_template",
    "target_for",
    "target_of",
    "validate_packs",
    "verify_backup",
]
