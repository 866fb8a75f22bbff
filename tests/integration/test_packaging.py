"""The wheel carries the migrations and the template packs; an installed wheel can migrate."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from sqlalchemy.engine import URL

from tapdb_core import migrate

REPO = Path(__file__).resolve().parents[2]


def test_wheel_contents_and_migration_from_installed_wheel(
    tmp_path: Path, empty_db_url: URL
) -> None:
    out = tmp_path / "dist"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    wheel = next(out.glob("tapdb_core-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "tapdb_core/py.typed",
        "tapdb_core/_alembic/env.py",
        "tapdb_core/_alembic/script.py.mako",
        "tapdb_core/_alembic/versions/0001_foundation.py",
        "tapdb_core/_alembic/versions/0001_foundation.upgrade.sql",
        "tapdb_core/_alembic/versions/0001_foundation.downgrade.sql",
        "tapdb_core/_seeds/_metadata.json",
        "tapdb_core/_seeds/container/plate.json",
        "tapdb_core/packs/pack.schema.json",
    }
    assert expected <= names, sorted(expected - names)
    assert any(n.endswith("entry_points.txt") for n in names)

    # Install the wheel alone into a folder and migrate from there, in a
    # directory with no alembic/ nor seeds/ next to it.
    target = tmp_path / "site"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    script = (
        "import tapdb_core, sys\n"
        "from sqlalchemy import create_engine\n"
        "from tapdb_core import migrate, resources\n"
        "assert tapdb_core.__file__.startswith(sys.argv[2]), tapdb_core.__file__\n"
        "assert str(resources.alembic_dir()).startswith(sys.argv[2])\n"
        "assert (resources.seeds_dir() / '_metadata.json').exists()\n"
        "engine = create_engine(sys.argv[1])\n"
        "with engine.begin() as conn:\n"
        "    migrate.upgrade(conn)\n"
        "    print(migrate.current_revision(conn))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            empty_db_url.render_as_string(hide_password=False),
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == migrate.head_revision()
