"""The backup's file in progress: never a planted name, 0600, gone after a failure (item: low)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tapdb_core import backup as bk


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: the file's mode must not depend on it."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_symlink_at_the_old_predictable_name_is_not_followed(
    engine: Engine, tmp_path: Path, open_umask: None
) -> None:
    out = tmp_path / "b.dump"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    victim.chmod(0o644)
    planted = tmp_path / f".{out.name}.{os.getpid()}.partial"  # the name the old code used
    planted.symlink_to(victim)

    bk.backup(_url(engine), out)

    assert victim.read_text() == "precious"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert planted.is_symlink() and os.readlink(planted) == str(victim)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert bk.verify(out).rows
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [out.name, victim.name, planted.name]
    )


def test_a_symlink_as_the_output_is_replaced_not_followed(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "b.dump"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out.symlink_to(victim)
    bk.backup(_url(engine), out)
    assert victim.read_text() == "precious"
    assert not out.is_symlink() and stat.S_IMODE(out.stat().st_mode) == 0o600


@pytest.mark.parametrize("failure", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failure_mid_backup_leaves_no_file(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    out = tmp_path / "b.dump"
    seen: list[list[str]] = []
    real = bk.verify

    def failing(path: Path) -> bk.BackupContents:
        # pg_dump has written the partial file completely when the failure strikes
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        assert path.stat().st_size > 0 and stat.S_IMODE(path.stat().st_mode) == 0o600
        real(path)
        raise failure

    monkeypatch.setattr(bk, "verify", failing)
    with pytest.raises(type(failure)):
        bk.backup(_url(engine), out)
    assert len(seen) == 1
    (partial,) = seen[0]
    assert partial.startswith(f".{out.name}.") and partial.endswith(".partial")
    assert partial != f".{out.name}.{os.getpid()}.partial"  # not predictable
    assert list(tmp_path.iterdir()) == []


def test_an_existing_backup_survives_a_failed_one(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "b.dump"
    bk.backup(_url(engine), out)
    previous = out.read_bytes()

    def failing(path: Path) -> bk.BackupContents:
        raise bk.InvalidBackupError(f"{path}: truncated or corrupt (No space left on device)")

    monkeypatch.setattr(bk, "verify", failing)
    with pytest.raises(bk.BackupError, match="No space left"):
        bk.backup(_url(engine), out)
    assert out.read_bytes() == previous
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
