"""template, object and lineage commands on a seeded database."""

from __future__ import annotations

import json

from sqlalchemy import Engine

from tapdb_core import euid, instances
from tests.acceptance.conftest import Cli, assert_one_line_error, server_vars

PLATE = "container/plate/fixed-plate-96/1.0/"


def test_templates_objects_lineage(cli: Cli, seeded_engine: Engine) -> None:
    url = seeded_engine.url
    env = {**server_vars(url, "dev", str(url.database)), "TAPDB_ENV": "dev"}
    with seeded_engine.begin() as conn:
        tree = instances.create_tree(conn, PLATE, "plate o'brien")
        plate = tree.root.euid
    with seeded_engine.begin() as conn:
        instances.update_properties(conn, plate, {"barcode": "BC-1"})

    template_list, template_show, show_json, history_run, dot_run, missing, invalid = cli.many(
        ["template", "list", "--json"],
        ["template", "show", PLATE],
        ["object", "show", plate, "--json"],
        ["object", "history", plate, "--json"],
        ["lineage", "graph", plate, "--depth", "1"],
        ["object", "show", euid.encode("CX", 999_999)],
        ["object", "show", "not-an-euid"],
        env=env,
    )
    assert template_list.returncode == 0, template_list.stderr
    assert PLATE in {t["code"] for t in json.loads(template_list.stdout)}
    assert template_show.returncode == 0
    assert "fixed-plate-96" in template_show.stdout

    assert show_json.returncode == 0, show_json.stderr
    shown = json.loads(show_json.stdout)
    assert shown["name"] == "plate o'brien"
    assert shown["properties"]["barcode"] == "BC-1"
    assert len(shown["children"]) == 96 and shown["parents"] == []
    well = shown["children"][0]["euid"]

    history = json.loads(history_run.stdout)
    assert history[0]["operation"] == "INSERT"
    assert any(h["operation"] == "UPDATE" and h["column"] == "json_addl" for h in history)

    assert dot_run.returncode == 0
    assert dot_run.stdout.startswith("digraph lineage {")
    assert dot_run.stdout.count("->") == 96

    # not found (1) vs bad input (2)
    assert missing.returncode == 1
    assert_one_line_error(missing, "not found")
    assert invalid.returncode == 2
    assert_one_line_error(invalid, "invalid EUID")

    well_text, well_graph = cli.many(
        ["--env", "dev", "object", "show", well],
        ["lineage", "graph", well, "--format", "json"],
        env=env,
    )
    assert well_text.returncode == 0
    assert plate in well_text.stdout and "parents (1)" in well_text.stdout
    graph = json.loads(well_graph.stdout)
    assert {n["data"]["id"] for n in graph["nodes"]} >= {plate, well}
