"""Database roles: an application role that cannot forge the audit trail, and a
read-only role.

The schema owner (whoever ran the migrations) keeps every object. Revision 0003
makes the functions that write ``audit_log`` or create EUID sequences SECURITY
DEFINER, owned by the schema owner, so the application role needs no privilege on
``audit_log`` beyond SELECT, and none of ownership, TRUNCATE, TRIGGER or CREATE.
:func:`grant_roles` creates the roles when they are missing and sets their
privileges to exactly the set documented in ``docs/roles.md``: privileges the
roles held on tapdb objects before are revoked first, so running it again
repairs a role someone widened by hand.

Every identifier is quoted by psycopg; a password is hashed on the client (SCRAM,
by libpq) and only its verifier is sent, so the clear text never appears in a
statement, a server log or ``pg_stat_activity``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import attrs
import psycopg
from psycopg import sql
from sqlalchemy import Connection

from tapdb_core.errors import TapdbError


class RolesError(TapdbError):
    """Roles cannot be granted as asked (bad name, unsafe existing role, no schema)."""

    exit_code = 1


class RoleNameError(RolesError, ValueError):
    """A role name that is empty, too long, reserved or used twice."""

    exit_code = 2


#: tables the application writes through the library (DELETE soft-deletes via
#: triggers the application cannot disable; users are deleted, and audited)
WRITE_TABLES: Final = (
    "generic_template",
    "generic_instance",
    "generic_instance_lineage",
    "tapdb_user",
    # rows are immutable: UPDATE and DELETE are refused by its trigger
    "tapdb_action_set",
)
#: tables the application only reads
READ_TABLES: Final = (
    "audit_log",
    "tapdb_identity_prefix_config",
    "alembic_version",
    "tapdb_template_generation",
)
#: SECURITY DEFINER functions the library calls directly (EXECUTE is revoked from PUBLIC)
APP_DEFINER_FUNCTIONS: Final = ("tapdb_ensure_euid_sequence(text)",)
#: invoker functions the library calls (PUBLIC may execute them; granted explicitly
#: so that a later REVOKE ... FROM PUBLIC does not break the application)
APP_FUNCTIONS: Final = (
    "tapdb_euid_sequence_name(text)",
    "tapdb_meridian_domain()",
    "tapdb_euid_format(text, bigint, text)",
    "tapdb_euid_is_valid(text)",
    "tapdb_instance_json_addl(jsonb, text)",
    "tapdb_audit_user()",
    "tapdb_set_audit_user(text)",
)
_SEQUENCE_PATTERN: Final = r"tapdb\_euid\_seq\_%"
_MAX_IDENTIFIER_BYTES: Final = 63


@attrs.frozen(kw_only=True)
class RoleOutcome:
    """What happened to one role."""

    name: str
    kind: str
    """``app`` or ``readonly``."""
    created: bool
    password_set: bool


@attrs.frozen(kw_only=True)
class RolesResult:
    """The outcome of :func:`grant_roles`."""

    database: str
    schema: str
    owner: str
    roles: tuple[RoleOutcome, ...]
    sequences: int
    """EUID sequences granted on (later ones are covered by default privileges)."""
    revoked_public_create: bool
    """True when PUBLIC could create objects in the schema and no longer can."""


# --------------------------------------------------------------------------- helpers


def _driver(conn: Connection) -> psycopg.Connection[Any]:
    driver = conn.connection.driver_connection
    if not isinstance(driver, psycopg.Connection):
        raise RolesError("grant_roles needs a psycopg (postgresql+psycopg) connection")
    return driver


def _run(conn: Connection, statement: sql.Composed | sql.SQL) -> None:
    _driver(conn).execute(statement)


def _scalar(conn: Connection, query: str, params: Sequence[Any] = ()) -> Any:
    row = _driver(conn).execute(query, params).fetchone()
    return None if row is None else row[0]


def check_role_name(name: str, what: str) -> str:
    """A usable role name, or :class:`RoleNameError` saying why not."""
    if not name or not name.strip():
        raise RoleNameError(f"{what}: empty role name")
    if name != name.strip():
        raise RoleNameError(f"{what} {name!r}: leading or trailing spaces")
    if "\x00" in name:
        raise RoleNameError(f"{what}: role name contains a NUL character")
    if len(name.encode("utf-8")) > _MAX_IDENTIFIER_BYTES:
        raise RoleNameError(
            f"{what} {name!r}: longer than {_MAX_IDENTIFIER_BYTES} bytes "
            "(PostgreSQL would truncate it)"
        )
    if name.lower().startswith("pg_") or name.lower() == "public":
        raise RoleNameError(f"{what} {name!r}: reserved name")
    return name


def _role_row(conn: Connection, name: str) -> tuple[bool, bool, bool] | None:
    """(superuser, createrole or bypassrls or replication, exists) of a role, or None."""
    row = (
        _driver(conn)
        .execute(
            "SELECT rolsuper, rolcreaterole OR rolbypassrls OR rolreplication OR rolcreatedb"
            "  FROM pg_roles WHERE rolname = %s",
            (name,),
        )
        .fetchone()
    )
    if row is None:
        return None
    return bool(row[0]), bool(row[1]), True


def _refuse_unsafe_existing(conn: Connection, name: str, owner: str, what: str) -> None:
    """An existing role that owns the schema, is a superuser or can become the owner
    would make the grants meaningless: refuse rather than quietly demote it."""
    if name == owner:
        raise RolesError(
            f"{what} {name!r} owns the tapdb schema: the application must connect as "
            "another role (the owner can disable triggers and rewrite the audit log)"
        )
    row = _role_row(conn, name)
    if row is None:
        return
    superuser, _, _ = row
    if superuser:
        raise RolesError(
            f"{what} {name!r} is a superuser: a superuser bypasses every grant; choose another name"
        )
    if _scalar(conn, "SELECT pg_has_role(%s, %s, 'MEMBER')", (name, owner)):
        raise RolesError(
            f"{what} {name!r} is a member of the schema owner {owner!r} and could act as it "
            f"(SET ROLE): revoke that membership first (REVOKE {owner} FROM {name})"
        )
    session_user = _scalar(conn, "SELECT session_user::text")
    if name == session_user or name == _scalar(conn, "SELECT current_user::text"):
        raise RolesError(f"{what} {name!r} is the role running this command")


def _password_verifier(conn: Connection, role: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier of ``password``, computed by libpq on this side."""
    if not password:
        raise RoleNameError(f"empty password for role {role!r}")
    if "\x00" in password:
        raise RoleNameError(f"password for role {role!r} contains a NUL character")
    pgconn = _driver(conn).pgconn
    verifier = pgconn.encrypt_password(
        password.encode("utf-8"), role.encode("utf-8"), b"scram-sha-256"
    )
    return verifier.decode("ascii")


_ROLE_OPTIONS: Final = sql.SQL(
    "LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
)


def _ensure_role(conn: Connection, name: str, password: str | None) -> tuple[bool, bool]:
    """Create the role if missing, pin its attributes, set its password; (created, password_set)."""
    created = _role_row(conn, name) is None
    verb = sql.SQL("CREATE ROLE") if created else sql.SQL("ALTER ROLE")
    statement = sql.SQL("{} {} WITH {}").format(verb, sql.Identifier(name), _ROLE_OPTIONS)
    if password is not None:
        verifier = _password_verifier(conn, name, password)
        statement = sql.SQL("{} PASSWORD {}").format(statement, sql.Literal(verifier))
    _run(conn, statement)
    return created, password is not None


def _schema_facts(conn: Connection) -> tuple[str, str, str, str]:
    """(database, schema, table owner, owner of the SECURITY DEFINER functions)."""
    row = (
        _driver(conn)
        .execute(
            "SELECT current_database()::text, current_schema()::text,"
            "       (SELECT pg_get_userbyid(c.relowner)::text FROM pg_class c"
            "         WHERE c.oid = to_regclass('generic_instance')),"
            "       (SELECT pg_get_userbyid(p.proowner)::text FROM pg_proc p"
            "         WHERE p.oid = to_regprocedure('tapdb_ensure_euid_sequence(text)')"
            "           AND p.prosecdef)"
        )
        .fetchone()
    )
    assert row is not None
    database, schema, owner, definer = row
    if owner is None:
        raise RolesError(
            f"database {database!r} has no tapdb schema (in {schema!r}): "
            "migrate it first (`tapdb db schema apply ENV`)"
        )
    if definer is None:
        raise RolesError(
            f"database {database!r}: the audit functions are not SECURITY DEFINER yet "
            "(schema older than revision 0003): migrate first (`tapdb db schema migrate ENV`)"
        )
    return str(database), str(schema), str(owner), str(definer)


def _euid_sequences(conn: Connection) -> list[str]:
    rows = (
        _driver(conn)
        .execute(
            "SELECT c.relname::text FROM pg_class c"
            "  JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'S' AND n.nspname = current_schema()"
            "   AND c.relname LIKE %s ORDER BY 1",
            (_SEQUENCE_PATTERN,),
        )
        .fetchall()
    )
    return [str(r[0]) for r in rows]


def _schema_tables(conn: Connection) -> list[str]:
    """The tapdb tables present (later revisions' tables included: they start tapdb_)."""
    rows = (
        _driver(conn)
        .execute(
            "SELECT c.relname::text FROM pg_class c"
            "  JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema()"
            "   AND (c.relname = ANY (%s) OR c.relname LIKE 'tapdb\\_%%') ORDER BY 1",
            (list(WRITE_TABLES + READ_TABLES),),
        )
        .fetchall()
    )
    return [str(r[0]) for r in rows]


def _tapdb_functions(conn: Connection) -> list[str]:
    rows = (
        _driver(conn)
        .execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p"
            "  JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = current_schema() AND p.proname LIKE 'tapdb\\_%' ORDER BY 1"
        )
        .fetchall()
    )
    return [str(r[0]) for r in rows]


def _public_can_create(conn: Connection) -> bool:
    return bool(
        _scalar(
            conn,
            "SELECT EXISTS (SELECT 1 FROM pg_namespace n, aclexplode(n.nspacl) a"
            "  WHERE n.nspname = current_schema() AND a.grantee = 0"
            "    AND a.privilege_type = 'CREATE')",
        )
    )


def _reset_privileges(
    conn: Connection,
    role: sql.Identifier,
    schema: sql.Identifier,
    tables: list[str],
    sequences: list[str],
) -> None:
    """Revoke whatever the role held on tapdb objects, so the grants below are exact."""
    table_list = sql.SQL(", ").join(sql.Identifier(t) for t in tables)
    _run(conn, sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(table_list, role))
    if sequences:
        seq_list = sql.SQL(", ").join(sql.Identifier(s) for s in sequences)
        _run(conn, sql.SQL("REVOKE ALL ON SEQUENCE {} FROM {}").format(seq_list, role))
    _run(conn, sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(schema, role))
    for signature in _tapdb_functions(conn):
        # regprocedure text from the catalog: already quoted as needed
        _run(conn, sql.SQL("REVOKE ALL ON FUNCTION {} FROM {}").format(sql.SQL(signature), role))


def _grant_app(
    conn: Connection,
    role: sql.Identifier,
    tables: list[str],
    sequences: list[str],
) -> None:
    writable = [t for t in tables if t in WRITE_TABLES]
    readable = [t for t in tables if t not in WRITE_TABLES]
    _run(
        conn,
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE {} TO {}").format(
            sql.SQL(", ").join(sql.Identifier(t) for t in writable), role
        ),
    )
    if readable:
        _run(
            conn,
            sql.SQL("GRANT SELECT ON TABLE {} TO {}").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in readable), role
            ),
        )
    if sequences:
        _run(
            conn,
            sql.SQL("GRANT USAGE, SELECT, UPDATE ON SEQUENCE {} TO {}").format(
                sql.SQL(", ").join(sql.Identifier(s) for s in sequences), role
            ),
        )
    functions = [*APP_DEFINER_FUNCTIONS, *APP_FUNCTIONS]
    present = [
        f for f in functions if _scalar(conn, "SELECT to_regprocedure(%s) IS NOT NULL", (f,))
    ]
    for signature in present:
        # the signature is one of ours (constants above), checked by to_regprocedure
        _run(conn, sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(sql.SQL(signature), role))


def _grant_readonly(
    conn: Connection, role: sql.Identifier, tables: list[str], sequences: list[str]
) -> None:
    _run(
        conn,
        sql.SQL("GRANT SELECT ON TABLE {} TO {}").format(
            sql.SQL(", ").join(sql.Identifier(t) for t in tables), role
        ),
    )
    if sequences:
        _run(
            conn,
            sql.SQL("GRANT SELECT ON SEQUENCE {} TO {}").format(
                sql.SQL(", ").join(sql.Identifier(s) for s in sequences), role
            ),
        )


def _default_privileges(
    conn: Connection, definer: str, schema: sql.Identifier, role: sql.Identifier, kind: str
) -> None:
    """EUID sequences created later (by the SECURITY DEFINER function, so owned by
    ``definer``) are usable by the roles without re-running this."""
    privileges = sql.SQL("USAGE, SELECT, UPDATE" if kind == "app" else "SELECT")
    base = sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {}").format(
        sql.Identifier(definer), schema
    )
    _run(conn, sql.SQL("{} REVOKE ALL ON SEQUENCES FROM {}").format(base, role))
    _run(conn, sql.SQL("{} GRANT {} ON SEQUENCES TO {}").format(base, privileges, role))


# --------------------------------------------------------------------------- entry point


def grant_roles(
    conn: Connection,
    *,
    app_role: str,
    readonly_role: str | None = None,
    app_password: str | None = None,
    readonly_password: str | None = None,
) -> RolesResult:
    """Create (if missing) and grant the application role and, optionally, a read-only
    role on the tapdb schema of ``conn``'s database, inside the caller's transaction.

    Run it as the schema owner or a superuser (it needs CREATEROLE to create roles).
    Idempotent: running it again resets both roles' privileges to exactly these.
    """
    check_role_name(app_role, "app role")
    if readonly_role is not None:
        check_role_name(readonly_role, "read-only role")
        if readonly_role == app_role:
            raise RoleNameError("the app role and the read-only role must differ")
    # two concurrent runs would both see a role missing and both CREATE it
    _driver(conn).execute("SELECT pg_advisory_xact_lock(hashtext('tapdb_grant_roles'))")
    database, schema_name, owner, definer = _schema_facts(conn)
    wanted: list[tuple[str, str, str | None]] = [("app", app_role, app_password)]
    if readonly_role is not None:
        wanted.append(("readonly", readonly_role, readonly_password))
    for kind, name, _ in wanted:
        what = "app role" if kind == "app" else "read-only role"
        _refuse_unsafe_existing(conn, name, owner, what)
        if definer != owner:
            _refuse_unsafe_existing(conn, name, definer, what)

    schema = sql.Identifier(schema_name)
    tables = _schema_tables(conn)
    sequences = _euid_sequences(conn)
    revoked_public_create = _public_can_create(conn)
    if revoked_public_create:
        # anyone able to CREATE in the schema could add overloads of tapdb functions
        _run(conn, sql.SQL("REVOKE CREATE ON SCHEMA {} FROM PUBLIC").format(schema))

    outcomes: list[RoleOutcome] = []
    for kind, name, password in wanted:
        created, password_set = _ensure_role(conn, name, password)
        role = sql.Identifier(name)
        _run(
            conn,
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), role),
        )
        _run(conn, sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, role))
        _reset_privileges(conn, role, schema, tables, sequences)
        if kind == "app":
            _grant_app(conn, role, tables, sequences)
        else:
            _grant_readonly(conn, role, tables, sequences)
        _default_privileges(conn, definer, schema, role, kind)
        outcomes.append(
            RoleOutcome(name=name, kind=kind, created=created, password_set=password_set)
        )
    return RolesResult(
        database=database,
        schema=schema_name,
        owner=owner,
        roles=tuple(outcomes),
        sequences=len(sequences),
        revoked_public_create=revoked_public_create,
    )
