"""The README tells the truth: every ```bash, ```sh and ```python block runs as
written, in README order, from the quick-start state (the core templates seeded,
the demo plate CX-19 with its 96 wells, environment ``dev``).

The quick-start state lives in a fresh database of the test server, which the
``dev`` environment points at (``TAPDB_DEV_*``); the one substitution made in the
text is the quick-start URL (``postgres@127.0.0.1:5432/tapdb_dev``), which becomes
that database's URL. The working directory looks like a checkout: ``.venv`` and
``seeds`` link to the real ones, ``my_lab_packs`` holds one pack of your own.

A block that needs what tests cannot have (package installs, AWS, the admin UI
server) is skipped only by an explicit marker in the README,
``<!-- readme-test: skip (reason) -->`` on the line before it, and the list of
skipped blocks is asserted here, so nothing is skipped silently.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from tapdb_core import instances
from tapdb_core.db import Database
from tests.acceptance.conftest import Cli, server_vars

README = Path(__file__).resolve().parents[2] / "README.md"
RUNNABLE = ("bash", "sh", "python")
SKIP_RE = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<reason>[^)]*)\)\s*-->")
QUICK_START_URL = re.compile(r"postgres@127\.0\.0\.1:5432/tapdb_dev")

EXPECTED_SKIPS = {
    "bash scripts/quickstart.sh": "creates a venv and installs packages",
    "python3 -m venv .venv && . .venv/bin/activate": "installs packages",
    "bash scripts/test.sh": "runs the whole test suite",
    "alembic -x url=postgresql+psycopg://postgres@127.0.0.1:5432/tapdb_dev upgrade head": (
        "runs from the repository root"
    ),
    "tapdb user set-password dev admin": "needs the admin UI server",
    "tapdb aurora template prod --cluster lims --readers 1 > stack.json": "needs AWS",
}
"""First line of each skipped block -> the start of its reason."""


@attrs.frozen
class Block:
    lang: str
    line: int
    text: str
    skip: str | None

    @property
    def first(self) -> str:
        return self.text.strip().splitlines()[0].split("#")[0].strip()


def readme_blocks(path: Path = README) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = re.match(r"^```(\w*)\s*$", lines[i])
        if not opening:
            i += 1
            continue
        lang = opening.group(1)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if lang in RUNNABLE:
            previous = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            marker = SKIP_RE.search(previous)
            blocks.append(
                Block(
                    lang=lang,
                    line=i + 1,
                    text="\n".join(lines[i + 1 : end]) + "\n",
                    skip=marker.group("reason") if marker else None,
                )
            )
        i = end + 1
    return blocks


def test_skipped_blocks_are_exactly_the_listed_ones() -> None:
    skipped = {b.first: b.skip for b in readme_blocks() if b.skip is not None}
    assert set(skipped) == set(EXPECTED_SKIPS), skipped
    for first, reason in skipped.items():
        assert reason is not None and reason.startswith(EXPECTED_SKIPS[first]), (first, reason)
    # a marker that precedes no runnable block would hide nothing, but is a mistake
    markers = len(SKIP_RE.findall(README.read_text(encoding="utf-8")))
    assert markers == len(skipped)


LAB_PACK = {
    "templates": [
        {
            "name": "Lab tube",
            "polymorphic_discriminator": "container_template",
            "category": "container",
            "type": "tube",
            "subtype": "lab-tube",
            "version": "1.0",
            "instance_prefix": "CX",
            "json_addl": {
                "properties": {"volume_ul": 0},
                "action_imports": {"create_note": "action/core/create-note/1.0"},
            },
        }
    ]
}


@pytest.fixture
def quick_start(
    cli: Cli, seeded_engine: Engine, server_url: URL
) -> Iterator[tuple[Cli, dict[str, str]]]:
    """The state `bash scripts/quickstart.sh` leaves: seeded dev database with the
    demo plate CX-19 (the first instance), a checkout-like working directory (one
    the unprivileged PostgreSQL user can enter when the tests run as root:
    pytest's tmp_path is under a 0700 directory)."""
    work = Path(tempfile.mkdtemp(prefix="tapdb-readme-"))
    work.chmod(0o755)
    cli = Cli(cli.env, work)
    db = Database(engine=seeded_engine)
    with db.begin(user="quickstart") as conn:
        plate = instances.create_tree(conn, "container/plate/fixed-plate-96/1.0/", "DEMO-PLATE")
    assert plate.root.euid == "CX-19"
    repo = README.parent
    (cli.cwd / ".venv").symlink_to(Path(sys.prefix))
    (cli.cwd / "seeds").symlink_to(repo / "seeds")
    (cli.cwd / "my_lab_packs" / "container").mkdir(parents=True)
    (cli.cwd / "my_lab_packs" / "container" / "tubes.json").write_text(json.dumps(LAB_PACK))
    env = {
        **server_vars(server_url, "dev", str(seeded_engine.url.database)),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    yield cli, env
    shutil.rmtree(work, ignore_errors=True)


def _run(block: Block, cli: Cli, env: dict[str, str], url: str) -> subprocess.CompletedProcess[str]:
    text = QUICK_START_URL.sub(url, block.text)
    if block.lang == "python":
        argv = [sys.executable, "-c", text]
    else:
        argv = ["bash", "-euo", "pipefail", "-c", text]
    return subprocess.run(
        argv,
        env={**cli.env, **env},
        cwd=cli.cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_readme_blocks_run_from_the_quick_start_state(
    quick_start: tuple[Cli, dict[str, str]], seeded_engine: Engine
) -> None:
    cli, env = quick_start
    database = seeded_engine.url
    url = (
        f"{database.username or 'postgres'}"
        + (f":{database.password}" if database.password else "")
        + f"@{database.host}:{database.port}/{database.database}"
    )
    ran = 0
    for block in readme_blocks():
        if block.skip is not None:
            continue
        done = _run(block, cli, env, url)
        assert done.returncode == 0, (
            f"README.md line {block.line} ({block.lang}) failed with exit {done.returncode}:\n"
            f"{block.text}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
        )
        assert "Traceback" not in done.stderr, done.stderr
        ran += 1
    assert ran >= 10
    assert (cli.cwd / "plate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_identity_prefix_examples_are_valid() -> None:
    """The README's prefix examples (not runnable SQL blocks) obey the rule it states."""
    from tapdb_core import euid

    text = README.read_text(encoding="utf-8")
    examples = re.findall(r"tapdb_set_identity_prefix\('[a-z_]+', '([A-Z]+)'\)", text)
    assert examples
    for prefix in examples:
        assert euid.check_prefix(prefix) == prefix
