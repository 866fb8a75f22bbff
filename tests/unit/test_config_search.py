"""Config file search: scoped before unscoped, user-level before repo-level."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tapdb_core import config as tconfig


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    home = tmp_path / "home"
    repo = tmp_path / "repo"
    (home / ".config" / "tapdb").mkdir(parents=True)
    (repo / "config").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(repo)
    for var in ("TAPDB_CONFIG_PATH", "TAPDB_DATABASE_NAME"):
        monkeypatch.delenv(var, raising=False)
    return home / ".config" / "tapdb", repo / "config"


def write(path: Path, host: str) -> None:
    path.write_text(json.dumps({"dev": {"host": host}}))


def test_search_order_scoped_first_user_then_repo(places: tuple[Path, Path]) -> None:
    del places
    order = [p.name for p in tconfig.config_search_path("atlas")]
    assert order == [
        "tapdb-config-atlas.yaml",
        "tapdb-config-atlas.json",
        "tapdb-config-atlas.yaml",
        "tapdb-config-atlas.json",
        "tapdb-config.yaml",
        "tapdb-config.json",
        "tapdb-config.yaml",
        "tapdb-config.json",
    ]
    parents = [p.parent.name for p in tconfig.config_search_path("atlas")]
    assert parents == ["tapdb", "tapdb", "config", "config", "tapdb", "tapdb", "config", "config"]
    assert [p.name for p in tconfig.config_search_path()] == [
        "tapdb-config.yaml",
        "tapdb-config.json",
        "tapdb-config.yaml",
        "tapdb-config.json",
    ]


def test_repo_scoped_file_beats_user_default(places: tuple[Path, Path]) -> None:
    user, repo = places
    write(user / "tapdb-config.json", "user-default")
    write(repo / "tapdb-config-atlas.json", "repo-scoped")
    cfg = tconfig.load_config("dev", database_name="atlas")
    assert cfg.host == "repo-scoped"
    chosen = tconfig.chosen_config_file(None, "atlas")
    assert chosen is not None
    assert chosen.path == Path("config/tapdb-config-atlas.json")
    assert "repo-level file scoped to database name 'atlas' (from --database-name)" == chosen.reason

    write(user / "tapdb-config-atlas.json", "user-scoped")
    assert tconfig.load_config("dev", database_name="atlas").host == "user-scoped"
    # without a name the scoped files are never read
    assert tconfig.load_config("dev").host == "user-default"
    unscoped = tconfig.chosen_config_file(None, None)
    assert unscoped is not None and unscoped.reason == "user-level default file"


def test_database_name_from_environment_and_explicit_path(
    places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _user, repo = places
    write(repo / "tapdb-config-atlas.json", "repo-scoped")
    write(repo / "tapdb-config.json", "repo-default")
    monkeypatch.setenv("TAPDB_DATABASE_NAME", "atlas")
    chosen = tconfig.chosen_config_file()
    assert chosen is not None and "from $TAPDB_DATABASE_NAME" in chosen.reason
    assert tconfig.load_config("dev").host == "repo-scoped"

    explicit = tmp_path / "elsewhere.json"
    write(explicit, "explicit")
    monkeypatch.setenv("TAPDB_CONFIG_PATH", str(explicit))
    assert tconfig.load_config("dev").host == "explicit"
    chosen = tconfig.chosen_config_file()
    assert chosen is not None and chosen.reason == "$TAPDB_CONFIG_PATH"
    flag = tconfig.chosen_config_file(explicit, None)
    assert flag is not None and flag.reason == "--config"
