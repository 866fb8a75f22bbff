"""Test harness: a real PostgreSQL for the whole session, a fresh database per test.

Without ``TAPDB_TEST_DSN`` a throwaway cluster is started with
``tapdb_core.pgruntime`` (the same runtime ``tapdb pg`` uses). With it, the
DSN names a server (and a database to connect to for administration) where we
may create and drop databases. A template database is migrated once with
``alembic upgrade head``; each test that touches the database gets its own
``CREATE DATABASE ... TEMPLATE`` clone.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest
from hypothesis import settings
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url

from tapdb_core import migrate
from tapdb_core.config import normalise_url
from tapdb_core.pgruntime import temporary_cluster

# Locally, property tests draw new examples on every run (and so keep finding
# bugs); under CI they replay a fixed set, so CI never fails on a new draw.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

TEMPLATE_DB = "tapdb_test_template"
SEEDED_DB = "tapdb_test_seeded"
_counter = itertools.count()


@pytest.fixture(scope="session")
def server_url() -> Iterator[URL]:
    """URL of a maintenance database on a server we may create databases on."""
    dsn = os.environ.get("TAPDB_TEST_DSN")
    if dsn:
        yield make_url(normalise_url(dsn))
        return
    with temporary_cluster(fast_unsafe=True, prefix="tapdb-test-") as cluster:
        yield make_url(cluster.url())


@pytest.fixture(scope="session")
def admin_engine(server_url: URL) -> Iterator[Engine]:
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT", pool_size=1)
    yield engine
    engine.dispose()


def _drop_database(admin: Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def template_url(server_url: URL, admin_engine: Engine) -> Iterator[URL]:
    """A database migrated to head, cloned by every database test."""
    _drop_database(admin_engine, TEMPLATE_DB)
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{TEMPLATE_DB}"'))
    url = server_url.set(database=TEMPLATE_DB)
    engine = create_engine(url)
    with engine.begin() as conn:
        migrate.upgrade(conn)
    engine.dispose()
    yield url
    _drop_database(admin_engine, TEMPLATE_DB)


@pytest.fixture(scope="session")
def seeded_template_url(template_url: URL, server_url: URL, admin_engine: Engine) -> Iterator[URL]:
    """The migrated template database plus the core template packs."""
    from tapdb_core.packs import seed_packs

    _drop_database(admin_engine, SEEDED_DB)
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{SEEDED_DB}" TEMPLATE "{TEMPLATE_DB}"'))
    url = server_url.set(database=SEEDED_DB)
    engine = create_engine(url)
    with engine.begin() as conn:
        seed_packs(conn)
    engine.dispose()
    yield url
    _drop_database(admin_engine, SEEDED_DB)


@pytest.fixture
def seeded_engine(
    seeded_template_url: URL, server_url: URL, admin_engine: Engine
) -> Iterator[Engine]:
    """A fresh database with the schema and the core template packs, for one test."""
    name = f"tapdb_test_{os.getpid()}_{next(_counter)}"
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{SEEDED_DB}"'))
    engine = create_engine(server_url.set(database=name))
    yield engine
    engine.dispose()
    _drop_database(admin_engine, name)


@pytest.fixture
def empty_db_url(server_url: URL, admin_engine: Engine) -> Iterator[URL]:
    """A brand-new empty database (no schema), dropped afterwards."""
    name = f"tapdb_test_{os.getpid()}_{next(_counter)}"
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield server_url.set(database=name)
    _drop_database(admin_engine, name)


@pytest.fixture
def db_url(template_url: URL, server_url: URL, admin_engine: Engine) -> Iterator[URL]:
    """A fresh migrated database for one test, cloned from the template."""
    name = f"tapdb_test_{os.getpid()}_{next(_counter)}"
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"'))
    yield server_url.set(database=name)
    _drop_database(admin_engine, name)


@pytest.fixture
def engine(db_url: URL) -> Iterator[Engine]:
    engine = create_engine(db_url)
    yield engine
    engine.dispose()
