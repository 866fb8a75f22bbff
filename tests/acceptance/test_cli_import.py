"""``tapdb object import FILE``: CSV and JSON Lines through COPY, all or nothing."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, text

from tests.acceptance.conftest import Cli, assert_one_line_error, server_vars

DNA = "content/sample/dna/1.0/"


def _env(engine: Engine) -> dict[str, str]:
    url = engine.url
    return {**server_vars(url, "dev", str(url.database)), "TAPDB_ENV": "dev"}


def _imported(engine: Engine, like: str) -> list[tuple[str, object, object]]:
    with engine.connect() as conn:
        return [
            (r.name, r.conc, r.comments)
            for r in conn.execute(
                text(
                    "SELECT name, json_addl -> 'properties' -> 'concentration' AS conc,"
                    " json_addl -> 'properties' -> 'comments' AS comments"
                    " FROM generic_instance WHERE name LIKE :like ORDER BY euid_seq"
                ),
                {"like": like},
            )
        ]


def test_csv_import_types_cells_and_audits_every_row(
    cli: Cli, seeded_engine: Engine, tmp_path: Path
) -> None:
    rows = ["name,concentration,comments"]
    rows += [f"C-{i},{i}.5,note {i}" for i in range(30)]
    rows += ['"C-30, quoted",7,"two\nlines"', "C-31,,001"]
    path = tmp_path / "samples.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    done = cli(
        "object",
        "import",
        str(path),
        "--template",
        DNA,
        "--batch-size",
        "7",
        env=_env(seeded_engine),
    )
    assert done.returncode == 0, done.stderr
    assert "imported 32 instances" in done.stdout
    got = _imported(seeded_engine, "C-%")
    assert len(got) == 32
    assert got[0] == ("C-0", 0.5, "note 0")
    assert got[30] == ("C-30, quoted", 7, "two\nlines")
    assert got[31] == ("C-31", 0, "001")  # empty cell: the template's default stays
    with seeded_engine.connect() as conn:
        audited = conn.execute(
            text(
                "SELECT count(*) FROM audit_log a JOIN generic_instance i"
                " ON a.rel_table_uuid_fk = i.uuid AND a.rel_table_name = 'generic_instance'"
                " WHERE a.operation_type = 'INSERT' AND i.name LIKE 'C-%'"
            )
        ).scalar_one()
    assert audited == 32


def test_jsonl_import_with_a_bad_line_imports_nothing_and_names_line_and_field(
    cli: Cli, seeded_engine: Engine, tmp_path: Path
) -> None:
    lines = [json.dumps({"name": f"J-{i}", "properties": {"concentration": i}}) for i in range(20)]
    lines[13] = json.dumps({"name": "J-13", "properties": {"concentration": -1}})
    path = tmp_path / "samples.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = cli(
        "object",
        "import",
        str(path),
        "--template",
        DNA,
        "--batch-size",
        "5",
        env=_env(seeded_engine),
    )
    assert done.returncode == 2
    assert_one_line_error(done, "line 14", "/properties/concentration")
    assert _imported(seeded_engine, "J-%") == []

    lines[13] = json.dumps({"name": "J-13", "properties": {"concentration": 13}})
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = cli("object", "import", str(path), "--template", DNA, "--json", env=_env(seeded_engine))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["imported"] == 20
    assert [g[0] for g in _imported(seeded_engine, "J-%")] == [f"J-{i}" for i in range(20)]


def test_broken_files_are_refused_with_their_line(
    cli: Cli, seeded_engine: Engine, tmp_path: Path
) -> None:
    no_name = tmp_path / "a.csv"
    no_name.write_text("label,concentration\nx,1\n", encoding="utf-8")
    short = tmp_path / "b.csv"
    short.write_text("name,concentration\nx,1\ny\n", encoding="utf-8")
    garbage = tmp_path / "c.jsonl"
    garbage.write_text('{"name": "ok"}\n{not json\n', encoding="utf-8")
    env = _env(seeded_engine)
    for path, needle in ((no_name, "line 1"), (short, "line 3"), (garbage, "line 2")):
        done = cli("object", "import", str(path), "--template", DNA, env=env)
        assert done.returncode == 2, done.stderr
        assert_one_line_error(done, needle)
    assert not {n for n, _, _ in _imported(seeded_engine, "%")} & {"x", "y", "ok"}
