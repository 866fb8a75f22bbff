"""The CLI without a database: usage, environments, config, pack validation, errors."""

from __future__ import annotations

import json
from pathlib import Path

from tapdb_core import __version__
from tapdb_core.pgruntime import free_port
from tests.acceptance.conftest import Cli, assert_one_line_error


def test_version_usage_and_environments(cli: Cli) -> None:
    version, version_json, bare, bad_command, no_env, unknown, invalid, prod_local = cli.many(
        ["version"],
        ["version", "--json"],
        [],
        ["db", "frobnicate"],
        ["db", "delete"],
        ["db", "schema", "status", "staging"],
        ["--env", "Bad;Name", "info", "--offline"],
        ["--env", "prod", "bootstrap", "local"],
    )
    assert version.returncode == 0
    assert version.stdout.strip() == f"tapdb {__version__}"
    assert json.loads(version_json.stdout) == {"version": __version__}

    assert bare.returncode == 2
    assert "usage: tapdb" in bare.stdout
    assert bad_command.returncode == 2
    assert "invalid choice" in bad_command.stderr
    assert no_env.returncode == 2
    assert "ENV" in no_env.stderr

    # an unknown environment is bad input (2), never a silent default
    assert unknown.returncode == 2
    assert_one_line_error(unknown, "unknown environment 'staging'", "dev, prod, test")
    assert invalid.returncode == 2
    assert_one_line_error(invalid, "invalid environment name")
    assert prod_local.returncode == 2
    assert_one_line_error(prod_local, "prod is never a local cluster")


def test_info_sources_masking_and_configured_env(cli: Cli, home: Path) -> None:
    config = home / ".config" / "tapdb" / "tapdb-config.json"
    config.parent.mkdir(parents=True)
    config.write_text(
        json.dumps({"environments": {"staging": {"host": "db.example.org", "port": 6543}}})
    )
    config.chmod(0o600)

    done = cli(
        "--env",
        "staging",
        "info",
        "--offline",
        "--json",
        env={"TAPDB_STAGING_PASSWORD": "hunter2", "TAPDB_STAGING_USER": "o'brien"},
    )
    assert done.returncode == 0, done.stderr
    assert "hunter2" not in done.stdout
    info = json.loads(done.stdout)
    assert info["env"] == "staging"
    assert info["config_file"] == str(config)
    settings = info["settings"]
    assert settings["host"] == {"value": "db.example.org", "source": str(config)}
    assert settings["port"] == {"value": "6543", "source": str(config)}
    assert settings["password"] == {"value": "****", "source": "$TAPDB_STAGING_PASSWORD"}
    assert settings["user"]["value"] == "o'brien"
    assert settings["database"] == {"value": "tapdb_staging", "source": "default"}

    # the text form names the sources too
    done = cli("info", "--offline", "--env", "staging")
    assert done.returncode == 0
    assert "db.example.org" in done.stdout and str(config) in done.stdout


def test_database_url_really_overrides(cli: Cli) -> None:
    done = cli(
        "--env",
        "test",
        "info",
        "--offline",
        "--json",
        env={
            "DATABASE_URL": "postgresql://alice:pw@db.internal:6000/special",
            "TAPDB_TEST_HOST": "elsewhere",
        },
    )
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["database_url_set"] is True
    assert info["settings"]["host"]["value"] == "db.internal"
    assert info["settings"]["host"]["source"] == "$DATABASE_URL"
    assert info["settings"]["database"]["value"] == "special"
    assert "pw" not in info["url"]
    assert info["url"].endswith("@db.internal:6000/special")


def test_yaml_config_without_pyyaml_is_one_clear_line(cli: Cli, home: Path, tmp_path: Path) -> None:
    shim = tmp_path / "no_yaml"
    shim.mkdir()
    (shim / "yaml.py").write_text('raise ImportError("PyYAML is not installed (simulated)")\n')
    config = home / ".config" / "tapdb" / "tapdb-config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("environments:\n  dev:\n    port: 5999\n")

    done = cli("--env", "dev", "info", "--offline", env={"PYTHONPATH": str(shim)})
    assert done.returncode == 2
    line = assert_one_line_error(done, str(config), "PyYAML")
    assert "tapdb-core[yaml]" in line


def test_unreachable_server_message(cli: Cli) -> None:
    port = free_port()  # nobody listens there
    env = {"TAPDB_DEV_HOST": "127.0.0.1", "TAPDB_DEV_PORT": str(port)}
    status, template_list, debug = cli.many(
        ["db", "schema", "status", "dev"],
        ["template", "list"],
        ["--debug", "user", "list", "dev"],
        env=env,
    )
    for done in (status, template_list):
        assert done.returncode == 1
        line = assert_one_line_error(done, f"server at 127.0.0.1:{port} is unreachable")
        assert "does not exist" not in line
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr


def test_config_validate_core_packs(cli: Cli) -> None:
    text_run, json_run = cli.many(
        ["db", "config", "validate"], ["db", "config", "validate", "--json"]
    )
    assert text_run.returncode == 0, text_run.stdout + text_run.stderr
    assert text_run.stdout.startswith("ok:")
    report = json.loads(json_run.stdout)
    assert report["errors"] == 0
    assert report["templates"] > 50


def _write_broken_pack(root: Path) -> Path:
    pack = root / "container" / "broken.json"
    pack.parent.mkdir(parents=True)
    pack.write_text(
        json.dumps(
            {
                "templates": [
                    {
                        "name": "Broken tube",
                        "polymorphic_discriminator": "container_template",
                        "category": "container",
                        "type": "tube",
                        "subtype": "broken",
                        "version": "1.0",
                        "instance_prefix": "lowercase",
                        "json_addl": {"action_imports": {"x": "not/a/code"}},
                    }
                ]
            }
        )
    )
    return pack


def test_config_validate_broken_pack(cli: Cli, tmp_path: Path) -> None:
    pack = _write_broken_pack(tmp_path / "packs")
    missing = tmp_path / "nowhere"
    text_run, json_run, missing_run = cli.many(
        ["db", "config", "validate", "-c", str(tmp_path / "packs")],
        ["db", "config", "validate", "-c", str(tmp_path / "packs"), "--json"],
        ["db", "config", "validate", "-c", str(missing)],
    )
    assert text_run.returncode == 1
    assert "Traceback" not in text_run.stderr
    assert f"{pack}#/templates/0" in text_run.stdout
    assert "FAILED" in text_run.stdout

    assert json_run.returncode == 1
    report = json.loads(json_run.stdout)
    assert report["errors"] >= 1
    issue = next(i for i in report["issues"] if i["level"] == "error")
    assert issue["source_file"] == str(pack)
    assert issue["pointer"].startswith("/templates/0")

    assert missing_run.returncode == 1
    assert str(missing) in missing_run.stdout


def test_png_without_graphviz_says_what_to_install(cli: Cli, tmp_path: Path) -> None:
    # svg is drawn in Python; png needs Graphviz and says so before connecting
    empty = tmp_path / "empty-path"
    empty.mkdir()
    done = cli("lineage", "graph", "CX-19", "--format", "png", env={"PATH": str(empty)})
    assert done.returncode == 1
    assert_one_line_error(done, "Graphviz")
