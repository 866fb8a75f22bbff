"""Tamper check: is the live schema still the one the migrations created?

The guarantees (audit trail, soft deletes, acyclic lineage, EUIDs) live in
triggers and ``tapdb_`` functions. Anyone who owns the schema can disable a
trigger or replace a function, and the data would still look fine.
:func:`check_integrity` compares the catalog with the fingerprint of a freshly
migrated database, shipped as ``tapdb_core/schema_fingerprint.json``: every
expected trigger exists, is enabled (``tgenabled = 'O'``) and has its migrated
definition; every ``tapdb_`` function has its migrated body (md5 of its source),
SECURITY DEFINER flag, settings (``proconfig``) and PUBLIC EXECUTE right; no
unexpected ``tapdb_`` function or trigger exists, nor any extra trigger on
``audit_log``; and only the owner may write to ``audit_log``.

``scripts/fingerprint_schema.py`` regenerates the file; a test fails until every
new revision has done so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs
from sqlalchemy import Connection, text

FINGERPRINT_FILE: Final = Path(__file__).resolve().parent / "schema_fingerprint.json"
#: functions whose body changes legitimately, and the bodies they may have:
#: tapdb_set_meridian_domain() rewrites tapdb_meridian_domain() with the domain
VARIABLE_BODIES: Final[Mapping[str, re.Pattern[str]]] = {
    "tapdb_meridian_domain()": re.compile(r" SELECT (NULL|'[0-9A-HJ-KMNP-TV-Z]{1,4}')::text "),
}
#: tables whose triggers carry the guarantees
_AUDIT_TABLE: Final = "audit_log"
_AUDIT_WRITES: Final = ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "TRIGGER")
_SCHEMA_PLACEHOLDER: Final = "$schema"

_FUNCTIONS_SQL: Final = text(
    """
    SELECT p.proname || '(' || coalesce((SELECT string_agg(format_type(a.t, NULL), ', ' ORDER BY a.n)
                                           FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, n)),
                                          '') || ')' AS signature,
           coalesce(nullif(p.prosrc, ''), pg_get_function_sqlbody(p.oid)) AS body,
           p.prosecdef AS security_definer,
           coalesce(p.proconfig, '{}') AS config,
           (p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a
                                         WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'))
               AS public_execute
      FROM pg_proc p
      JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = current_schema() AND p.proname LIKE 'tapdb\\_%'
    """
)
_TRIGGERS_SQL: Final = text(
    """
    SELECT c.relname AS table_name, t.tgname AS trigger_name, t.tgenabled AS enabled,
           pg_get_triggerdef(t.oid) AS definition
      FROM pg_trigger t
      JOIN pg_class c ON c.oid = t.tgrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE NOT t.tgisinternal AND n.nspname = current_schema()
    """
)
_AUDIT_GRANTS_SQL: Final = text(
    """
    SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END AS grantee,
           a.privilege_type
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
     CROSS JOIN LATERAL aclexplode(c.relacl) a
     WHERE n.nspname = current_schema() AND c.relname = :table
       AND a.grantee <> c.relowner AND a.privilege_type = ANY (CAST(:writes AS text[]))
     ORDER BY 1, 2
    """
)


@attrs.frozen(kw_only=True)
class IntegrityReport:
    """What :func:`check_integrity` found. ``problems`` name each difference."""

    revision: str | None
    expected_revision: str
    compared: bool
    """False when the database is not at the fingerprint's revision (nothing compared)."""
    functions_checked: int
    triggers_checked: int
    triggers_expected: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.compared and not self.problems

    @property
    def tampered(self) -> bool:
        return bool(self.problems)


# --------------------------------------------------------------------------- fingerprint


def _normalise_config(entries: list[str], schema: str, quoted_schema: str) -> list[str]:
    """Settings with the schema's name replaced, so databases in other schemas compare."""
    out: list[str] = []
    for entry in entries:
        name, _, value = entry.partition("=")
        if name == "search_path":
            parts = [p.strip() for p in value.split(",")]
            value = ", ".join(
                _SCHEMA_PLACEHOLDER if p in (schema, quoted_schema) else p for p in parts
            )
        out.append(f"{name}={value}")
    return sorted(out)


def _normalise_trigger(definition: str, quoted_schema: str) -> str:
    return definition.replace(f" ON {quoted_schema}.", " ON ")


def _body_md5(body: str | None) -> str:
    import hashlib

    return hashlib.md5((body or "").encode("utf-8"), usedforsecurity=False).hexdigest()


def _live(conn: Connection) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Functions (with bodies) and triggers of the current schema, normalised."""
    schema, quoted = conn.execute(
        text("SELECT current_schema()::text, quote_ident(current_schema())::text")
    ).one()
    functions: dict[str, Any] = {}
    for row in conn.execute(_FUNCTIONS_SQL):
        functions[str(row.signature)] = {
            "body": row.body,
            "body_md5": _body_md5(row.body),
            "security_definer": bool(row.security_definer),
            "config": _normalise_config(list(row.config), schema, quoted),
            "public_execute": bool(row.public_execute),
        }
    triggers: dict[str, dict[str, Any]] = {}
    for row in conn.execute(_TRIGGERS_SQL):
        triggers.setdefault(str(row.table_name), {})[str(row.trigger_name)] = {
            "enabled": str(row.enabled),
            "definition": _normalise_trigger(str(row.definition), quoted),
        }
    return functions, triggers


def fingerprint(conn: Connection) -> dict[str, Any]:
    """The fingerprint of the schema ``conn`` sees (``scripts/fingerprint_schema.py``
    writes it for a freshly migrated database)."""
    from tapdb_core import migrate

    functions, triggers = _live(conn)
    return {
        "revision": migrate.current_revision(conn),
        "functions": {
            name: {k: v for k, v in fn.items() if k != "body"}
            for name, fn in sorted(functions.items())
        },
        "triggers": {
            table: {
                name: tr["definition"]
                for name, tr in sorted(found.items())
                if name.startswith("tapdb_")
            }
            for table, found in sorted(triggers.items())
            if any(name.startswith("tapdb_") for name in found)
        },
    }


def load_expected(path: Path = FINGERPRINT_FILE) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def expected_triggers(expected: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
    """The guarantee triggers per table, from the fingerprint."""
    data = expected if expected is not None else load_expected()
    return {table: sorted(found) for table, found in data["triggers"].items()}


# --------------------------------------------------------------------------- check


def _function_problems(expected: Mapping[str, Any], live: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    for name, want in expected.items():
        have = live.get(name)
        if have is None:
            problems.append(f"function {name} is missing")
            continue
        pattern = VARIABLE_BODIES.get(name)
        if pattern is not None:
            if not pattern.fullmatch(have["body"] or ""):
                problems.append(f"function {name} has been replaced (unexpected body)")
        elif have["body_md5"] != want["body_md5"]:
            problems.append(f"function {name} has been replaced (body differs)")
        if have["security_definer"] != want["security_definer"]:
            flag = "SECURITY DEFINER" if want["security_definer"] else "SECURITY INVOKER"
            problems.append(f"function {name} is no longer {flag}")
        if have["config"] != want["config"]:
            problems.append(
                f"function {name} settings changed ({', '.join(have['config']) or 'none'}; "
                f"expected {', '.join(want['config']) or 'none'})"
            )
        if have["public_execute"] and not want["public_execute"]:
            problems.append(f"function {name} is executable by PUBLIC again")
    for name in sorted(set(live) - set(expected)):
        problems.append(f"unexpected function {name}")
    return problems


def _trigger_problems(
    expected: Mapping[str, Mapping[str, str]], live: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    problems: list[str] = []
    for table, wanted in expected.items():
        found = live.get(table, {})
        for name, definition in wanted.items():
            have = found.get(name)
            if have is None:
                problems.append(f"trigger {name} on {table} is missing")
                continue
            if have["enabled"] != "O":
                state = {"D": "disabled", "R": "replica-only", "A": "set to ALWAYS"}.get(
                    have["enabled"], f"in state {have['enabled']!r}"
                )
                problems.append(f"trigger {name} on {table} is {state}")
            if have["definition"] != definition:
                problems.append(f"trigger {name} on {table} has been redefined")
        for name in sorted(set(found) - set(wanted)):
            # other triggers are the application's business, except ones posing as
            # ours and any on the audit log
            if name.startswith("tapdb_") or table == _AUDIT_TABLE:
                problems.append(f"unexpected trigger {name} on {table}")
    return problems


def check_integrity(conn: Connection, expected: Mapping[str, Any] | None = None) -> IntegrityReport:
    """Compare the live schema of ``conn`` with the migrated fingerprint (read-only)."""
    from tapdb_core import migrate

    want = expected if expected is not None else load_expected()
    revision = migrate.current_revision(conn)
    triggers_expected = sum(len(v) for v in want["triggers"].values())
    if revision != want["revision"]:
        return IntegrityReport(
            revision=revision,
            expected_revision=str(want["revision"]),
            compared=False,
            functions_checked=0,
            triggers_checked=0,
            triggers_expected=triggers_expected,
            problems=(),
        )
    functions, triggers = _live(conn)
    problems = _function_problems(want["functions"], functions)
    problems += _trigger_problems(want["triggers"], triggers)
    for row in conn.execute(
        _AUDIT_GRANTS_SQL, {"table": _AUDIT_TABLE, "writes": list(_AUDIT_WRITES)}
    ):
        problems.append(f"{row.grantee} may {row.privilege_type} on {_AUDIT_TABLE}")
    return IntegrityReport(
        revision=revision,
        expected_revision=str(want["revision"]),
        compared=True,
        functions_checked=len(want["functions"]),
        triggers_checked=triggers_expected,
        triggers_expected=triggers_expected,
        problems=tuple(problems),
    )
