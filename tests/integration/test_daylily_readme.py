"""The Python examples of daylily-tapdb 0.1.13's README, run verbatim against tapdb_core.

Each block below is copied unchanged from the original README. The test changes
only their import lines (``daylily_tapdb`` -> ``tapdb_core``) and runs them in
README order in one namespace, as a reader would, against a fresh seeded
database that the original's own config loader (``get_db_config_for_env``)
finds through the ``TAPDB_DEV_*`` variables it reads. Where the README uses a
name it never defines ("plate/sample assumed already loaded",
``action_definition``) one line of glue, in ``GLUE``, supplies it; glue lines
also give ``session.add`` a change to write, so that the test can tell it did.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tapdb_core import instances, lineage
from tapdb_core.audit import history
from tapdb_core.facade import InstanceFactory, TAPDBConnection
from tapdb_core.packs import core_pack_dirs, seed_packs, validate_packs

# Quick Start, "2. Connect and create objects"
QUICK_START = """\
import os
from daylily_tapdb import TAPDBConnection, TemplateManager, InstanceFactory
from daylily_tapdb.cli.db_config import get_db_config_for_env

# Connect to database using canonical config loader (recommended)
env = os.environ.get("TAPDB_ENV", "dev")
cfg = get_db_config_for_env(env)
db = TAPDBConnection(
    db_hostname=f"{cfg['host']}:{cfg['port']}",
    db_user=cfg["user"],
    db_pass=cfg["password"],
    db_name=cfg["database"],
)

# Initialize managers
templates = TemplateManager()
factory = InstanceFactory(templates)

# Create an instance from a template
with db.session_scope(commit=True) as session:
    plate = factory.create_instance(
        session=session,
        template_code='container/plate/fixed-plate-96/1.0/',
        name='PLATE-001'
    )
    print(f"Created: {plate.euid}")  # e.g., CX1234
"""

# Core Concepts, "Templates"
TEMPLATES = """\
# Template code format: {category}/{type}/{subtype}/{version} (optional trailing `/`)
with db.session_scope(commit=False) as session:
    template = templates.get_template(session, 'container/plate/fixed-plate-96/1.0/')
    # Or by EUID
    template = templates.get_template_by_euid(session, 'GT123')
"""

# Core Concepts, "Instances"
INSTANCES = """\
with db.session_scope(commit=True) as session:
    # Create with default properties
    instance = factory.create_instance(
        session=session,
        template_code='container/plate/fixed-plate-96/1.0/',
        name='My Plate'
    )

    # Create with custom properties
    instance = factory.create_instance(
        session=session,
        template_code='content/sample/dna/1.0/',
        name='Sample-001',
        properties={
            'concentration': 25.5,
            'volume_ul': 100
        }
    )
"""

# Core Concepts, "Lineages (Relationships)"
LINEAGES = """\
with db.session_scope(commit=True) as session:
    # Link two existing instances (plate/sample assumed already loaded)
    lineage = factory.link_instances(
        session=session,
        parent=plate,
        child=sample,
        relationship_type='contains'
    )

    # Traverse relationships (read-only)
    for lineage in plate.parent_of_lineages:
        child = lineage.child_instance
        print(f"{plate.euid} -> {child.euid}")
"""

# Core Concepts, "Actions"
ACTIONS = '''\
from daylily_tapdb import ActionDispatcher

class MyActionHandler(ActionDispatcher):
    def do_action_set_status(self, instance, action_ds, captured_data):
        """Handler for 'set_status' action."""
        new_status = captured_data.get('status')
        instance.bstatus = new_status
        return {'status': 'success', 'message': f'Status set to {new_status}'}

    def do_action_transfer(self, instance, action_ds, captured_data):
        """Handler for 'transfer' action."""
        # Implementation here
        return {'status': 'success', 'message': 'Transfer complete'}

# Execute an action
handler = MyActionHandler()
with db.session_scope(commit=True) as session:
    result = handler.execute_action(
        session=session,
        instance=plate,
        action_group='core_actions',
        action_key='set_status',
        action_ds=action_definition,
        captured_data={'status': 'in_progress'},
        user='john.doe'
    )
'''

# Connection Management, "Manual transaction control"
MANUAL_TRANSACTION = """\
session = db.get_session()
try:
    # Your operations
    session.add(instance)
    session.commit()  # You control when to commit
except Exception:
    session.rollback()
    raise
finally:
    session.close()
"""

# Connection Management, "Scoped sessions (auto-commit)"
SCOPED_SESSION = """\
with db.session_scope(commit=True) as session:
    session.add(instance)
"""

# "Connection parameters"
CONNECTION_PARAMETERS = """\
db = TAPDBConnection(
    db_url='postgresql://user:pass@host:5432/dbname',  # Full URL (overrides others)
    # OR component-based:
    db_url_prefix='postgresql://',
    db_hostname='localhost:5432',
    db_user='myuser',
    db_pass='mypass',
    db_name='tapdb',
    # Connection pool settings:
    pool_size=5,
    max_overflow=10,
    pool_timeout=30,
    pool_recycle=1800,
    # Debugging:
    echo_sql=False,
    app_username='my_app'  # For audit logging
)
"""


# "instantiation_layouts schema", Example
LAYOUT_EXAMPLE = """\
{
  "json_addl": {
    "instantiation_layouts": [
      {
        "relationship_type": "contains",
        "child_templates": [
          "content/sample/dna/1.0/",
          {"template_code": "content/sample/dna/1.0/", "count": 2, "name_pattern": "Sample-{i}"}
        ]
      }
    ]
  }
}
"""
#: what the README leaves to the reader, one line each, run before the named block
GLUE = {
    "LINEAGES": "sample = instance  # the README: 'plate/sample assumed already loaded'\n",
    "ACTIONS": (
        "action_definition = plate.json_addl['action_groups']['core_actions']['set_status']\n"
    ),
    "MANUAL_TRANSACTION": "instance.properties['volume_ul'] = 80\n",
    "SCOPED_SESSION": "instance.bstatus = 'stored'\n",
    "CONNECTION_PARAMETERS": "db.close()  # the quick start's connection, replaced next\n",
}

#: the blocks in README order
BLOCKS = (
    ("QUICK_START", QUICK_START),
    ("TEMPLATES", TEMPLATES),
    ("INSTANCES", INSTANCES),
    ("LINEAGES", LINEAGES),
    ("ACTIONS", ACTIONS),
    ("MANUAL_TRANSACTION", MANUAL_TRANSACTION),
    ("SCOPED_SESSION", SCOPED_SESSION),
    ("CONNECTION_PARAMETERS", CONNECTION_PARAMETERS),
)


def ported(block: str) -> str:
    """The block with its imports pointed at tapdb_core, and nothing else changed."""
    lines = block.splitlines(keepends=True)
    out = [
        line.replace("daylily_tapdb", "tapdb_core", 1)
        if line.startswith(("from daylily_tapdb", "import daylily_tapdb"))
        else line
        for line in lines
    ]
    assert "daylily_tapdb" not in "".join(out)
    changed = [a for a, b in zip(lines, out, strict=True) if a != b]
    assert all(line.startswith("from ") for line in changed)
    return "".join(out)


@pytest.fixture
def readers_environment(
    seeded_engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Engine]:
    """The environment a reader of the original README would have: TAPDB_DEV_* set
    (the original's own variables), no config file, no DATABASE_URL."""
    for name in (
        "DATABASE_URL",
        "TAPDB_ENV",
        "TAPDB_DATABASE_NAME",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TAPDB_CONFIG_PATH", str(tmp_path / "no-such-tapdb-config.yaml"))
    url = seeded_engine.url
    monkeypatch.setenv("TAPDB_DEV_HOST", str(url.host))
    monkeypatch.setenv("TAPDB_DEV_PORT", str(url.port))
    monkeypatch.setenv("TAPDB_DEV_USER", str(url.username))
    monkeypatch.setenv("TAPDB_DEV_DATABASE", str(url.database))
    if url.password:
        monkeypatch.setenv("TAPDB_DEV_PASSWORD", url.password)
    monkeypatch.setenv("USER", "readme-reader")
    yield seeded_engine


def run_readme(namespace: dict[str, Any]) -> dict[str, str]:
    """Run every block (after its glue) in ``namespace``; what each printed."""
    printed = {}
    for name, block in BLOCKS:
        if name in GLUE:
            exec(compile(GLUE[name], f"glue before {name}", "exec"), namespace)  # noqa: S102
        out = io.StringIO()
        with redirect_stdout(out):
            exec(compile(ported(block), f"README {name}", "exec"), namespace)  # noqa: S102
        printed[name] = out.getvalue()
    return printed


def test_readme_python_examples_run_verbatim(readers_environment: Engine) -> None:
    namespace: dict[str, Any] = {"__name__": "readme"}
    try:
        printed = run_readme(namespace)
    finally:
        db = namespace.get("db")
        if db is not None:
            db.close()

    # Quick start: a plate with its 96 wells, committed
    created = printed["QUICK_START"].strip()
    assert created.startswith("Created: CX-")
    plate_euid = created.removeprefix("Created: ")
    # Templates: found by code; 'GT123' names no template (None, as in the original)
    assert namespace["template"] is None
    assert namespace["cfg"]["database"] == readers_environment.url.database
    # Lineages: the sample linked under the plate, then every child printed
    sample_euid = namespace["sample"].euid
    shown = printed["LINEAGES"].splitlines()
    assert len(shown) == 97
    assert f"{plate_euid} -> {sample_euid}" in shown
    assert all(line.startswith(f"{plate_euid} -> ") for line in shown)
    # Actions: the handler's `instance.bstatus = new_status` took effect
    result = namespace["result"]
    assert result["status"] == "success", result
    assert result["message"] == "Status set to in_progress"
    assert namespace["plate"].bstatus == "in_progress"  # the caller's object too
    # Connection parameters: db_url wins over the components, nothing connected
    params_db = namespace["db"]
    assert (params_db.url.host, params_db.url.database) == ("host", "dbname")
    assert params_db.app_username == "my_app"

    with readers_environment.connect() as conn:
        plate = instances.get(conn, plate_euid)
        assert plate.name == "PLATE-001"
        assert plate.bstatus == "in_progress"
        contained = lineage.children(conn, plate_euid, "contains")
        assert len(contained) == 97
        sample = instances.get(conn, sample_euid)
        assert sample.name == "Sample-001"
        # created with custom properties, then changed through session.add (glue)
        assert sample.properties["concentration"] == 25.5
        assert sample.properties["volume_ul"] == 80
        assert sample.bstatus == "stored"
        status_changes = [e for e in history(conn, plate_euid) if e.column_name == "bstatus"]
        assert [(e.new_value, e.changed_by) for e in status_changes] == [
            ("in_progress", "john.doe")
        ]
        record = instances.get(conn, result["action_record_euid"])
        assert record.template_code == "action/core/set-status/1.0/"
        assert record.properties["executed_by"] == "john.doe"
        creators = {e.changed_by for e in history(conn, sample_euid)}
        assert creators == {"readme-reader"}  # $USER: the original's default audit user


def test_readme_layout_example_with_its_i_placeholder(
    readers_environment: Engine, tmp_path: Path
) -> None:
    """The README's instantiation_layouts example ("Sample-{i}") validates, seeds and creates."""
    example = json.loads(LAYOUT_EXAMPLE)
    rack = {
        "name": "DNA rack",
        "polymorphic_discriminator": "container_template",
        "category": "container",
        "type": "rack",
        "subtype": "dna-rack",
        "version": "1.0",
        "instance_prefix": "CX",
        **example,
    }
    pack = tmp_path / "packs" / "container"
    pack.mkdir(parents=True)
    (pack / "rack.json").write_text(json.dumps({"templates": [rack]}), encoding="utf-8")
    dirs = [*core_pack_dirs(), tmp_path / "packs"]
    report = validate_packs(dirs)
    assert report.ok, report.to_dict()

    with readers_environment.begin() as conn:
        seed_packs(conn, dirs)
    with TAPDBConnection(db_url=readers_environment.url.render_as_string(False)) as db:
        with db.session_scope(commit=True) as session:
            made = InstanceFactory().create_instance(
                session, "container/rack/dna-rack/1.0/", "RACK-1"
            )
            names = [edge.child_instance.name for edge in made.parent_of_lineages]
    # the string entry gets the default pattern; {i} counts the copies of its entry
    assert names == ["RACK-1_dna_1", "Sample-1", "Sample-2"]


def test_unknown_placeholders_are_still_refused(tmp_path: Path) -> None:
    bad = json.loads(LAYOUT_EXAMPLE.replace("Sample-{i}", "Sample-{j}"))
    rack = {
        "name": "DNA rack",
        "polymorphic_discriminator": "container_template",
        "category": "container",
        "type": "rack",
        "subtype": "dna-rack",
        "version": "1.0",
        "instance_prefix": "CX",
        **bad,
    }
    pack = tmp_path / "packs" / "container"
    pack.mkdir(parents=True)
    (pack / "rack.json").write_text(json.dumps({"templates": [rack]}), encoding="utf-8")
    report = validate_packs([*core_pack_dirs(), tmp_path / "packs"])
    messages = [i.message for i in report.errors]
    assert any("{j}" in m and "{i}" in m for m in messages), messages
