"""Backup and restore on pg_dump / pg_restore: lossless round trips (full and data-only),
EUIDs continue, bad files and wrong targets are refused before anything is touched."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
import re
import stat
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tapdb_core import backup as bk
from tapdb_core import instances, lineage, migrate, pgclient, users
from tapdb_core import restore as restoring
from tapdb_core.db import set_audit_user
from tapdb_core.errors import TapdbError
from tapdb_core.tables import metadata

PLATE96 = "container/plate/fixed-plate-96/1.0/"
DNA = "content/sample/dna/1.0/"
TABLES = [t.name for t in metadata.sorted_tables] + ["alembic_version"]
EUID_TABLES = [t.name for t in metadata.sorted_tables if "euid" in t.c]
WEIRD_NAME = "tab\there\nnewline \\ backslash, 'quote' \"dq\" ünïcødé 🧪 \\N"
_extra = itertools.count()


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def new_db(server_url: URL, admin_engine: Engine) -> Iterator[Callable[[], Engine]]:
    """Makes further brand-new empty databases (dropped afterwards)."""
    made: list[tuple[str, Engine]] = []

    def make() -> Engine:
        name = f"tapdb_test_bk_{os.getpid()}_{next(_extra)}"
        with admin_engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine = create_engine(server_url.set(database=name))
        made.append((name, engine))
        return engine

    yield make
    for name, engine in made:
        engine.dispose()
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _snapshot(engine: Engine) -> dict[str, Any]:
    """Every table's contents (created_xid aside), sequences, revision, domain, functions."""
    with engine.connect() as conn:
        tables = {
            t: conn.execute(
                text(f"SELECT (to_jsonb(t) - 'created_xid')::text FROM \"{t}\" t ORDER BY 1")
            )
            .scalars()
            .all()
            for t in TABLES
        }
        sequences = {}
        for name in conn.execute(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind = 'S' AND n.nspname = current_schema() ORDER BY 1"
            )
        ).scalars():
            row = conn.execute(text(f'SELECT last_value, is_called FROM "{name}"')).one()
            sequences[str(name)] = tuple(row)
        return {
            "tables": tables,
            "sequences": sequences,
            "revision": migrate.current_revision(conn),
            "domain": conn.execute(text("SELECT tapdb_meridian_domain()")).scalar(),
            "functions": sorted(
                conn.execute(
                    text(
                        "SELECT p.oid::regprocedure::text || md5(p.prosrc) || p.prosecdef::text"
                        " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                        " WHERE n.nspname = current_schema()"
                    )
                ).scalars()
            ),
            "triggers": sorted(
                conn.execute(
                    text(
                        "SELECT tgrelid::regclass::text || tgname || tgenabled::text FROM pg_trigger"
                        " WHERE NOT tgisinternal"
                    )
                ).scalars()
            ),
        }


def _relations(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(
            conn.execute(
                text(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n"
                    " ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
                )
            ).scalars()
        )


def _populate(engine: Engine) -> None:
    """Plate tree, samples, links, soft deletes, users, updates, a Meridian domain set midway."""
    with engine.begin() as conn:
        set_audit_user(conn, "alice")
        tree = instances.create_tree(conn, PLATE96, "P1 'ü'")
        samples = [instances.create(conn, DNA, f"S{i}", {"concentration": i}) for i in range(5)]
        users.create_user(conn, "alice", role="admin", email="a@example.org", password="pw-a")
        users.create_user(conn, "bob", password="pw-bob", display_name=WEIRD_NAME)
        instances.create(conn, DNA, WEIRD_NAME, {"note": WEIRD_NAME, "n": 1.5e-7})
    with engine.begin() as conn:
        conn.execute(text("SELECT tapdb_set_meridian_domain('R')"))
    with engine.begin() as conn:
        set_audit_user(conn, "bob")
        wells = tree.instances[1:]
        lineage.link(conn, wells[0], samples[0], "contains")
        lineage.link(conn, wells[1], samples[1], "contains")
        later = [instances.create(conn, DNA, f"D{i}") for i in range(3)]
        lineage.link(conn, samples[0], later[0], "derived_from")
        instances.update_properties(conn, samples[2].euid, {"concentration": 42})
        instances.delete(conn, samples[3].euid)
        lineage.unlink(conn, wells[1], samples[1])
        users.set_role(conn, "bob", "admin")
        users.create_user(conn, "dave")
        users.delete_user(conn, "dave")


def _euids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {
            str(e)
            for t in EUID_TABLES
            for e in conn.execute(text(f'SELECT euid FROM "{t}"')).scalars()
        }


def _new_objects(engine: Engine) -> list[tuple[int, str]]:
    """The same new work in a database: every (uuid, EUID) it produced, audit rows included."""
    with engine.begin() as conn:
        set_audit_user(conn, "eve")
        before = conn.execute(text("SELECT coalesce(max(uuid), 0) FROM audit_log")).scalar_one()
        tree = instances.create_tree(conn, PLATE96, "P2")
        sample = instances.create(conn, DNA, "S-new")
        edge = lineage.link(conn, tree.instances[5], sample, "contains")
        user = users.create_user(conn, "erin", password="pw-erin")
        audit = conn.execute(
            text("SELECT uuid, euid FROM audit_log WHERE uuid > :b ORDER BY uuid"), {"b": before}
        ).all()
    made = [(i.uuid, i.euid) for i in (*tree.instances, sample)]
    made += [(e.uuid, e.euid) for e in (*tree.lineages, edge)] + [(user.uuid, user.euid)]
    return made + [(int(r.uuid), str(r.euid)) for r in audit]


def _assert_same_and_continuing(source: Engine, target: Engine, unused: str = "") -> None:
    before, after = _snapshot(source), _snapshot(target)
    after["sequences"].pop(unused, None)  # a sequence only the target had, left as it was
    for table in TABLES:
        assert after["tables"][table] == before["tables"][table], table
    assert after == before
    restored = _euids(target)
    assert restored == _euids(source)
    made_there, made_here = _new_objects(target), _new_objects(source)
    assert made_there == made_here  # same sequences: the same new EUIDs and uuids
    new = [e for _, e in made_there]
    assert len(set(new)) == len(new) and not set(new) & restored
    assert all(e.startswith("R-") for e in new)


@pytest.fixture
def populated(seeded_engine: Engine, tmp_path: Path) -> tuple[Engine, Path]:
    _populate(seeded_engine)
    out = tmp_path / "db.dump"
    bk.backup(_url(seeded_engine), out)
    return seeded_engine, out


# --------------------------------------------------------------------------- round trips


def test_full_round_trip_is_lossless_and_new_euids_never_collide(
    seeded_engine: Engine, empty_db_url: URL, tmp_path: Path
) -> None:
    _populate(seeded_engine)
    before = _snapshot(seeded_engine)
    rows = before["tables"]
    instance_rows = [json.loads(r) for r in rows["generic_instance"]]
    assert {r["euid_domain"] for r in instance_rows} == {None, "R"}
    assert any(r["is_deleted"] for r in instance_rows)

    out = tmp_path / "nested" / "db.dump"
    out.parent.mkdir()
    said: list[str] = []
    info = bk.backup(_url(seeded_engine), out, progress=said.append)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in out.parent.iterdir()] == [out.name]
    contents = info.contents
    assert contents.revision == migrate.head_revision() and not contents.data_only
    assert contents.row_counts == {t: len(rows[t]) for t in TABLES}
    assert contents.database == seeded_engine.url.database and contents.path == out
    assert "tapdb_euid_seq_cx" in contents.sequences
    assert bk.verify(out) == contents
    assert _snapshot(seeded_engine) == before  # a backup writes nothing

    target = create_engine(empty_db_url)
    try:
        restored = bk.restore(empty_db_url.render_as_string(hide_password=False), out)
        assert not restored.cleaned and restored.contents == contents
        # no audit row was added by the load: triggers come after the data
        with target.connect() as conn:
            audit = conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one()
            assert audit == len(rows["audit_log"])
            xids = conn.execute(
                text(
                    "SELECT count(DISTINCT created_xid), bool_and(created_xid <= pg_current_xact_id()) FROM generic_instance"
                )
            ).one()
            assert tuple(xids) == (1, True)  # all loaded by the one restoring transaction
            for sql in ("TRUNCATE audit_log", "UPDATE audit_log SET changed_by = 'x'"):
                with pytest.raises(DBAPIError, match="refused"):
                    conn.execute(text(sql))
                conn.rollback()
            assert users.verify_password(conn, "alice", "pw-a")
            assert users.get_user(conn, "bob").display_name == WEIRD_NAME
        _assert_same_and_continuing(seeded_engine, target)
    finally:
        target.dispose()


def test_data_only_round_trip_into_a_migrated_database(
    seeded_engine: Engine, engine: Engine, tmp_path: Path
) -> None:
    _populate(seeded_engine)
    with engine.begin() as conn:  # the target's prefix config differs: the backup's wins
        conn.execute(text("SELECT tapdb_set_identity_prefix('tapdb_user', 'PPX')"))
        # the Meridian domain is schema (a function), not data: the target's own setting
        conn.execute(text("SELECT tapdb_set_meridian_domain('R')"))
    out = tmp_path / "data.dump"
    info = bk.backup(_url(seeded_engine), out, data_only=True)
    assert info.contents.data_only and info.contents.revision == migrate.head_revision()
    restored = bk.restore(_url(engine), out)
    assert restored.contents.data_only
    with engine.connect() as conn:
        disabled = conn.execute(
            text("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgenabled = 'D'")
        ).scalar_one()
        assert disabled == 0  # the user triggers are back on
    _assert_same_and_continuing(seeded_engine, engine, unused="tapdb_euid_seq_ppx")


def test_data_only_restore_needs_the_same_revision_and_no_data(
    populated: tuple[Engine, Path], new_db: Callable[[], Engine], tmp_path: Path
) -> None:
    source, _ = populated
    out = tmp_path / "data.dump"
    bk.backup(_url(source), out, data_only=True)
    head = migrate.head_revision()
    empty, older = new_db(), new_db()
    with older.begin() as conn:
        migrate.upgrade(conn, "0003")
    before = _snapshot(source)
    for target, needle in ((empty, "no revision"), (older, "database is at 0003")):
        with pytest.raises(bk.IncompatibleBackupError, match=f"revision {head}.*{needle}"):
            bk.restore(_url(target), out)
    with pytest.raises(bk.RestoreTargetNotEmptyError, match="generic_template"):
        bk.restore(_url(source), out)
    with pytest.raises(bk.IncompatibleBackupError, match="--clean goes with full backups"):
        bk.restore(_url(source), out, clean=True)
    assert _relations(empty) == [] and _snapshot(source) == before


def test_backup_and_restore_as_a_non_superuser_owner_with_a_password(
    populated: tuple[Engine, Path],
    server_url: URL,
    admin_engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The password reaches pg_dump through the environment, never its arguments."""
    source, out = populated
    suffix = f"{os.getpid()}_{next(_extra)}"
    role, database, secret = f"tapdb_bk_{suffix}", f"tapdb_test_bk_owned_{suffix}", "s3cret-pw"
    try:
        with admin_engine.connect() as conn:
            conn.execute(text(f"CREATE ROLE \"{role}\" LOGIN NOSUPERUSER PASSWORD '{secret}'"))
    except DBAPIError:
        pytest.skip("this server does not let the tests create roles")
    argvs: list[list[str]] = []
    real_run, real_popen = subprocess.run, subprocess.Popen

    def run(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        argvs.append(list(argv))
        return real_run(argv, *args, **kwargs)

    def popen(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        argvs.append(list(argv))
        return real_popen(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(subprocess, "Popen", popen)
    try:
        with admin_engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}" OWNER "{role}"'))
        url = server_url.set(database=database, username=role, password=secret)
        target = create_engine(url)
        try:
            bk.restore(url, out)
            again = tmp_path / "again.dump"
            bk.backup(url, again)
            bk.restore(url, again, clean=True)
            assert _snapshot(target) == _snapshot(source)
        finally:
            target.dispose()
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
    assert any(Path(a[0]).name == "pg_dump" and "-Fc" in a for a in argvs)
    assert not [a for a in argvs if any(secret in part for part in a)]


# --------------------------------------------------------------------------- targets


def test_restore_refuses_a_non_empty_database_and_clean_replaces_it(
    populated: tuple[Engine, Path], engine: Engine
) -> None:
    source, out = populated
    expected = _snapshot(source)
    relations_before = _relations(engine)
    for target in (engine, source):
        before = _snapshot(target)
        with pytest.raises(bk.RestoreTargetNotEmptyError, match="clean=True") as caught:
            bk.restore(_url(target), out)
        assert isinstance(caught.value, TapdbError) and "alembic_version" in str(caught.value)
        assert _snapshot(target) == before
    assert _relations(engine) == relations_before

    with engine.begin() as conn:  # different data and an EUID prefix the backup lacks
        conn.execute(
            text(
                "INSERT INTO generic_template (name, category, type, subtype, version,"
                " instance_prefix) VALUES ('t', 'a', 'b', 'c', '1', 'ZZ')"
            )
        )
    info = bk.restore(_url(engine), out, clean=True)
    assert info.cleaned
    assert _snapshot(engine) == expected
    assert "tapdb_euid_seq_zz" not in _relations(engine)
    bk.restore(_url(source), out, clean=True)  # over the very database it came from
    assert _snapshot(source) == expected


def test_clean_works_over_a_half_built_schema_and_unrelated_tables_stay(
    populated: tuple[Engine, Path], new_db: Callable[[], Engine]
) -> None:
    source, out = populated
    half = new_db()
    with half.begin() as conn:
        conn.execute(text("CREATE TABLE someone_elses (id int)"))
        conn.execute(text("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('9999')"))
        conn.execute(text("CREATE SEQUENCE tapdb_euid_seq_qq"))
        conn.execute(text("CREATE FUNCTION tapdb_stray() RETURNS int LANGUAGE sql AS 'SELECT 1'"))
    with pytest.raises(bk.RestoreTargetNotEmptyError):
        bk.restore(_url(half), out)
    bk.restore(_url(half), out, clean=True)
    assert _snapshot(half) == _snapshot(source)
    assert "tapdb_euid_seq_qq" not in _relations(half) and "someone_elses" in _relations(half)


def test_a_failing_restore_changes_nothing_even_with_clean(
    populated: tuple[Engine, Path], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the load rolls everything back, the dropping done by clean included."""
    _, out = populated
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE tapdb_app_table (id int)"))  # clean drops tapdb_*
    before = _snapshot(engine)
    real = restoring._check_counts

    def failing(conn: Any, contents: bk.BackupContents) -> None:
        real(conn, contents)
        raise bk.BackupError("simulated failure after the load")

    monkeypatch.setattr(restoring, "_check_counts", failing)
    with pytest.raises(bk.BackupError, match="simulated"):
        bk.restore(_url(engine), out, clean=True)
    assert _snapshot(engine) == before
    assert "tapdb_app_table" in _relations(engine)


def test_a_backup_at_a_revision_this_code_does_not_know_is_refused(
    engine: Engine, new_db: Callable[[], Engine], tmp_path: Path
) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    out = tmp_path / "future.dump"
    assert bk.backup(_url(engine), out).contents.revision == "9999"
    target = new_db()
    with pytest.raises(bk.IncompatibleBackupError, match=r"revision 9999.*newer"):
        bk.restore(_url(target), out)
    assert _relations(target) == []


def test_a_pg_dump_older_than_the_server_is_refused(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "bin" / "pg_dump"
    old.parent.mkdir()
    old.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    old.chmod(0o755)
    real = bk.tool
    monkeypatch.setattr(bk, "tool", lambda name: str(old) if name == "pg_dump" else real(name))
    out = tmp_path / "x.dump"
    with pytest.raises(bk.BackupError, match=r"version 9\.6\.24, older than the server") as caught:
        bk.backup(_url(engine), out)
    with engine.connect() as conn:
        major = str(conn.execute(text("SHOW server_version_num")).scalar_one())[:2]
    assert f"PostgreSQL {major}." in str(caught.value)
    assert list(tmp_path.iterdir()) == [old.parent]


def test_backup_of_a_database_without_tapdb_leaves_nothing(
    new_db: Callable[[], Engine], tmp_path: Path
) -> None:
    with pytest.raises(bk.BackupError, match="not a tapdb database"):
        bk.backup(_url(new_db()), tmp_path / "x.dump")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- bad files


def _old_format(out: Path, dst: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        manifest = json.dumps({"format": "tapdb-backup", "format_version": 1}).encode()
        member = tarfile.TarInfo("tapdb-backup.json")
        member.size = len(manifest)
        archive.addfile(member, io.BytesIO(manifest))
    dst.write_bytes(gzip.compress(raw.getvalue()))


def _foreign_dump(out: Path, dst: Path, url: URL) -> None:
    """A real pg_dump of a database that is not tapdb's."""
    env = pgclient.libpq_env(url)
    subprocess.run([pgclient.tool("pg_dump"), "-Fc", "-f", str(dst)], env=env, check=True)


def _cut(fraction: float) -> Callable[[Path, Path], None]:
    def cut(out: Path, dst: Path) -> None:
        data = out.read_bytes()
        dst.write_bytes(data[: int(len(data) * fraction)] if fraction < 1 else data[:-1])

    return cut


BAD_FILES: dict[str, tuple[Callable[[Path, Path], object], str]] = {
    "empty": (lambda out, dst: dst.write_bytes(b""), "not a tapdb backup (an empty file)"),
    "plain text": (lambda out, dst: dst.write_text("SELECT 1;\n"), "not a pg_dump custom"),
    "random bytes": (lambda out, dst: dst.write_bytes(os.urandom(4096)), "not a tapdb backup"),
    "gzip": (lambda out, dst: dst.write_bytes(gzip.compress(b"x" * 999)), "not a tapdb backup"),
    "old tapdb archive": (_old_format, "tapdb 0.x COPY archive"),
    "truncated header": (lambda out, dst: dst.write_bytes(out.read_bytes()[:64]), "truncated"),
    "truncated to a third": (_cut(1 / 3), "truncated or corrupt"),
    "truncated by one byte": (_cut(1), "truncated or corrupt"),
}


@pytest.mark.parametrize("case", [*sorted(BAD_FILES), "other database's pg_dump"])
def test_bad_files_are_refused_and_change_nothing(
    case: str,
    populated: tuple[Engine, Path],
    new_db: Callable[[], Engine],
    engine: Engine,
    tmp_path: Path,
) -> None:
    _, out = populated
    bad = tmp_path / "bad.dump"
    empty = new_db()
    if case == "other database's pg_dump":
        with empty.begin() as conn:
            conn.execute(text("CREATE TABLE generic_instance (id int)"))
        _foreign_dump(out, bad, empty.url)
        message = "not a tapdb backup (no data for generic_template"
    else:
        make, message = BAD_FILES[case]
        make(out, bad)
    empty_before, full_before = _relations(empty), _snapshot(engine)
    with pytest.raises(bk.InvalidBackupError, match=re.escape(message)) as caught:
        bk.verify(bad)
    assert str(bad) in str(caught.value) and caught.value.exit_code == 2
    for target, clean in ((empty, False), (engine, True)):
        with pytest.raises(bk.InvalidBackupError, match=re.escape(message)):
            bk.restore(_url(target), bad, clean=clean)
    assert _relations(empty) == empty_before
    assert _snapshot(engine) == full_before


def test_a_missing_file_is_refused(new_db: Callable[[], Engine], tmp_path: Path) -> None:
    target = new_db()
    with pytest.raises(bk.BackupError, match="cannot read"):
        bk.restore(_url(target), tmp_path / "nope.dump")
    with pytest.raises(bk.BackupError, match="cannot read"):
        bk.verify(tmp_path / "nope.dump")
    assert _relations(target) == []
