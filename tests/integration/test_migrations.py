"""Alembic owns the schema: one head, clean round trips, no drift from tables.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL

from tapdb_core import migrate
from tapdb_core.tables import metadata

REPO = Path(__file__).resolve().parents[2]

CATALOG_SNAPSHOT = """
SELECT 'rel:' || c.relkind::text || ':' || c.relname FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public'
UNION ALL
SELECT 'fn:' || p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'public'
UNION ALL
SELECT 'trg:' || t.tgname::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND NOT t.tgisinternal
UNION ALL
SELECT 'type:' || t.typname::text FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE n.nspname = 'public'
ORDER BY 1
"""


def _snapshot(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text(CATALOG_SNAPSHOT)).scalars())


def test_single_head() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert len(script.get_heads()) == 1
    assert migrate.head_revision() == script.get_current_head()


# Deliberately left by a downgrade: the memory of issued EUIDs (revision 0002).
HIGH_WATER = {
    "rel:r:tapdb_euid_high_water",
    "rel:i:pk_tapdb_euid_high_water",
    "type:tapdb_euid_high_water",
    "type:_tapdb_euid_high_water",
}


def test_upgrade_downgrade_upgrade_leaves_only_the_euid_memory_behind(empty_db_url: URL) -> None:
    engine = create_engine(empty_db_url)
    try:
        empty = _snapshot(engine)
        with engine.begin() as conn:
            migrate.upgrade(conn)
            # dynamic objects too: a template with a new prefix creates a sequence
            conn.execute(
                text(
                    "INSERT INTO generic_template (name, category, type, subtype, version,"
                    " instance_prefix) VALUES ('t', 'a', 'b', 'c', '1', 'QX')"
                )
            )
            conn.execute(text("SELECT tapdb_set_meridian_domain('R')"))
        migrated = _snapshot(engine)
        assert "rel:S:tapdb_euid_seq_qx" in migrated
        assert "fn:tapdb_euid_format" in migrated
        with engine.begin() as conn:
            migrate.downgrade(conn, "base", allow_data_loss=True)
        after_down = [s for s in _snapshot(engine) if "alembic_version" not in s]
        assert sorted(set(after_down) - HIGH_WATER) == empty
        assert HIGH_WATER <= set(after_down)
        with engine.begin() as conn:
            migrate.upgrade(conn)
            assert migrate.current_revision(conn) == migrate.head_revision()
        remigrated = _snapshot(engine)
        assert remigrated == [s for s in migrated if s != "rel:S:tapdb_euid_seq_qx"]
    finally:
        engine.dispose()


def test_tables_module_matches_migrated_schema(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": False}
        )
        diff = compare_metadata(context, metadata)
    diff = [d for d in diff if not (isinstance(d, tuple) and "alembic_version" in str(d))]
    # Alembic cannot compare expression indexes: it reports them as removed and
    # added under the same name. Those are checked against pg_indexes below.
    removed = {d[1].name for d in diff if d[0] == "remove_index"}
    added = {d[1].name for d in diff if d[0] == "add_index"}
    expression_indexes = removed & added
    diff = [
        d
        for d in diff
        if not (d[0] in ("remove_index", "add_index") and d[1].name in expression_indexes)
    ]
    assert diff == []
    # (the exact catalog, expression indexes included, is compared below)
    with engine.connect() as conn:
        definition = conn.execute(
            text(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_generic_instance_properties'"
            )
        ).scalar_one()
    assert "gin (((json_addl -> 'properties'::text)) jsonb_path_ops)" in definition


def test_alembic_cli_from_repo_root_uses_x_url_then_database_url(empty_db_url: URL) -> None:
    url = empty_db_url.render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    alembic = [sys.executable, "-m", "alembic"]
    done = subprocess.run(
        [*alembic, "-x", f"url={url}", "upgrade", "head"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [*alembic, "current"],
        cwd=REPO,
        env={**env, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert migrate.head_revision() in done.stdout
    done = subprocess.run(
        [*alembic, "downgrade", "base"],
        cwd=REPO,
        env={**env, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    engine = create_engine(empty_db_url)
    try:
        with engine.connect() as conn:
            assert migrate.current_revision(conn) is None
    finally:
        engine.dispose()


# Everything about a table a definition can state, as PostgreSQL itself prints
# it, for the tables of one schema (names and definitions, not oids).
TABLE_CATALOG = """
SELECT 'col:' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
       || CASE WHEN a.attgenerated = 's' THEN ' stored' ELSE '' END
       || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relnamespace = CAST(:schema AS regnamespace) AND c.relkind = 'r'
   AND a.attnum > 0 AND NOT a.attisdropped AND c.relname <> 'alembic_version'
UNION ALL
SELECT 'con:' || c.relname || '.' || k.conname || ' ' || pg_get_constraintdef(k.oid)
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
 WHERE c.relnamespace = CAST(:schema AS regnamespace) AND c.relname <> 'alembic_version'
UNION ALL
SELECT 'idx:' || i.tablename || '.' || i.indexname || ' '
       || regexp_replace(i.indexdef, ' ON \\S+ ', ' ON ')
  FROM pg_indexes i WHERE i.schemaname = CAST(:schema AS text) AND i.tablename <> 'alembic_version'
ORDER BY 1
"""


def _table_catalog(conn: Connection, schema: str) -> list[str]:
    rows = conn.execute(text(TABLE_CATALOG), {"schema": schema}).scalars()
    # sequences and functions live in public for both: names print unqualified
    return [r.replace(f"{schema}.", "") for r in rows]


def test_tables_module_states_the_migrated_catalog_exactly(engine: Engine) -> None:
    """tables.py, created by SQLAlchemy into an empty schema, gives the same
    columns, types, defaults, constraints (names and definitions) and indexes
    as the migrations do."""
    from sqlalchemy.schema import CreateTable

    for table in metadata.sorted_tables:  # every name fits PostgreSQL's limit
        CreateTable(table).compile(dialect=engine.dialect)
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA code_says"))
        conn.execute(text("SET LOCAL search_path = code_says, public"))
        metadata.create_all(conn, checkfirst=False)
        conn.execute(text("SET LOCAL search_path = public"))
        migrated = _table_catalog(conn, "public")
        conn.execute(text("SET LOCAL search_path = code_says, public"))
        stated = _table_catalog(conn, "code_says")
        conn.rollback()
    assert stated == migrated
