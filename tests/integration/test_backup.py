"""Backup and restore: lossless round trips, sequences continue, bad input changes nothing."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tapdb_core import backup as bk
from tapdb_core import instances, lineage, migrate, users
from tapdb_core.db import set_audit_user
from tapdb_core.errors import TapdbError
from tapdb_core.tables import metadata

PLATE96 = "container/plate/fixed-plate-96/1.0/"
DNA = "content/sample/dna/1.0/"
TABLES = [t.name for t in metadata.sorted_tables]
EUID_TABLES = [t.name for t in metadata.sorted_tables if "euid" in t.c]
WEIRD_NAME = "tab\there\nnewline \\ backslash, 'quote' \"dq\" ünïcødé 🧪 \\N"
_extra = itertools.count()


# --------------------------------------------------------------------------- helpers


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


def _sequences(conn: Any) -> dict[str, tuple[int, bool]]:
    names = conn.execute(
        text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'S' AND n.nspname = current_schema() ORDER BY 1"
        )
    ).scalars()
    out = {}
    for name in list(names):
        row = conn.execute(text(f'SELECT last_value, is_called FROM "{name}"')).one()
        out[str(name)] = (int(row.last_value), bool(row.is_called))
    return out


def _snapshot(engine: Engine) -> dict[str, Any]:
    """Every table's full contents (all columns but created_xid), sequences, revision, domain."""
    with engine.connect() as conn:
        tables = {
            t: conn.execute(
                # the row text includes any key (not every table has a uuid column)
                text(f"SELECT (to_jsonb(t) - 'created_xid')::text FROM \"{t}\" t ORDER BY 1")
            )
            .scalars()
            .all()
            for t in TABLES
        }
        return {
            "tables": tables,
            "sequences": _sequences(conn),
            "revision": migrate.current_revision(conn),
            "domain": conn.execute(text("SELECT tapdb_meridian_domain()")).scalar(),
            "functions": sorted(
                conn.execute(
                    text(
                        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n"
                        " ON n.oid = p.pronamespace WHERE n.nspname = current_schema()"
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


def _populate(engine: Engine) -> dict[str, Any]:
    """Plate tree, samples, links, soft deletes, users, updates, a domain set midway."""
    with engine.begin() as conn:
        set_audit_user(conn, "alice")
        tree = instances.create_tree(conn, PLATE96, "P1")
        samples = [instances.create(conn, DNA, f"S{i}", {"concentration": i}) for i in range(5)]
        users.create_user(
            conn, "alice", role="admin", email="alice@example.org", password="pw-alice"
        )
        users.create_user(conn, "bob", password="pw-bob", display_name=WEIRD_NAME)
        weird = instances.create(conn, DNA, WEIRD_NAME, {"note": WEIRD_NAME, "n": 1.5e-7})
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
        instances.set_status(conn, later[1].euid, "in_progress")
        instances.delete(conn, samples[3].euid)
        lineage.unlink(conn, wells[1], samples[1])
        users.set_role(conn, "bob", "admin")
        users.create_user(conn, "carol", password="pw-carol")
        users.create_user(conn, "dave")
        users.delete_user(conn, "dave")
    return {"tree": tree, "samples": samples, "later": later, "weird": weird}


def _restored_euids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {
            str(e)
            for t in TABLES
            if t in EUID_TABLES
            for e in conn.execute(text(f'SELECT euid FROM "{t}"')).scalars()
        }


def _new_objects(engine: Engine) -> dict[str, Any]:
    """The same new work in a database: returns every EUID and uuid it produced."""
    with engine.begin() as conn:
        set_audit_user(conn, "eve")
        before = int(
            conn.execute(text("SELECT coalesce(max(uuid), 0) FROM audit_log")).scalar_one()
        )
        tree = instances.create_tree(conn, PLATE96, "P2")
        sample = instances.create(conn, DNA, "S-new")
        edge = lineage.link(conn, tree.instances[5], sample, "contains")
        user = users.create_user(conn, "erin", password="pw-erin")
        instances.update_properties(conn, sample.euid, {"concentration": 7})
        audit = conn.execute(
            text("SELECT uuid, euid FROM audit_log WHERE uuid > :b ORDER BY uuid"), {"b": before}
        ).all()
        tpl = conn.execute(
            text(
                "INSERT INTO generic_template (name, category, type, subtype, version,"
                " instance_prefix) VALUES ('t', 'a', 'b', 'c', '9', 'QX') RETURNING uuid, euid"
            )
        ).one()
    return {
        "instances": [(i.uuid, i.euid) for i in tree.instances] + [(sample.uuid, sample.euid)],
        "edges": [(e.uuid, e.euid) for e in tree.lineages] + [(edge.uuid, edge.euid)],
        "user": (user.uuid, user.euid),
        "audit": [(int(r.uuid), str(r.euid)) for r in audit],
        "template": (int(tpl.uuid), str(tpl.euid)),
    }


def _all_euids(made: dict[str, Any]) -> list[str]:
    pairs = made["instances"] + made["edges"] + made["audit"] + [made["user"], made["template"]]
    return [e for _, e in pairs]


def _rewrite(src: Path, dst: Path, change: Callable[[str, bytes], bytes | None]) -> None:
    """Copy a backup archive, passing each member through ``change`` (None drops it)."""
    with tarfile.open(src, "r:gz") as tin, tarfile.open(dst, "w:gz") as tout:
        for member in tin.getmembers():
            handle = tin.extractfile(member)
            assert handle is not None
            data = change(member.name, handle.read())
            if data is None:
                continue
            member.size = len(data)
            tout.addfile(member, io.BytesIO(data))


def _with_manifest(src: Path, dst: Path, **changes: Any) -> None:
    def change(name: str, data: bytes) -> bytes:
        if name != bk.MANIFEST_MEMBER:
            return data
        manifest = json.loads(data)
        manifest.update(changes)
        return json.dumps(manifest).encode()

    _rewrite(src, dst, change)


@pytest.fixture
def populated(seeded_engine: Engine, tmp_path: Path) -> tuple[Engine, Path]:
    _populate(seeded_engine)
    out = tmp_path / "db.tapdb.tar.gz"
    bk.backup(_url(seeded_engine), out)
    return seeded_engine, out


# --------------------------------------------------------------------------- round trip


def test_round_trip_is_lossless_and_new_euids_never_collide(
    seeded_engine: Engine, empty_db_url: URL, tmp_path: Path
) -> None:
    _populate(seeded_engine)
    before = _snapshot(seeded_engine)
    # the fixture really has both EUID forms, every audit operation, a soft delete
    rows = before["tables"]
    instance_rows = [json.loads(r) for r in rows["generic_instance"]]
    assert {r["euid_domain"] for r in instance_rows} == {None, "R"}
    assert any(r["is_deleted"] for r in instance_rows)
    assert {json.loads(r)["operation_type"] for r in rows["audit_log"]} == {
        "INSERT",
        "UPDATE",
        "DELETE",
    }
    assert any(json.loads(r)["is_deleted"] for r in rows["generic_instance_lineage"])

    out = tmp_path / "nested" / "db.tapdb.tar.gz"
    out.parent.mkdir()
    messages: list[str] = []
    info = bk.backup(_url(seeded_engine), out, progress=messages.append)
    assert out.is_file() and stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no spool or partial left
    assert info.revision == migrate.head_revision() and info.meridian_domain == "R"
    assert info.row_counts == {t: len(rows[t]) for t in TABLES}
    assert dict(info.identity_prefixes) == {"audit_log": "ADT", "tapdb_user": "TDA"}
    assert all(any(m.startswith(f"{t}:") for m in messages) for t in TABLES)
    assert _snapshot(seeded_engine) == before  # a backup writes nothing
    assert bk.read_manifest(out) == info

    target = create_engine(empty_db_url)
    try:
        messages.clear()
        restored = bk.restore(
            empty_db_url.render_as_string(hide_password=False), out, progress=messages.append
        )
        assert restored.row_counts == info.row_counts and not restored.cleaned
        assert restored.adjusted_sequences == ()
        assert all(any(m.startswith(f"{t}:") for m in messages) for t in TABLES)
        after = _snapshot(target)
        for table in TABLES:
            assert after["tables"][table] == before["tables"][table], table
        assert after["sequences"] == before["sequences"]
        assert {s.name for s in info.sequences} == set(before["sequences"])
        assert after["revision"] == before["revision"] == migrate.head_revision()
        assert after["domain"] == before["domain"] == "R"
        assert after["functions"] == before["functions"]

        # triggers are back on: soft delete, append-only audit, refused TRUNCATE
        with target.connect() as conn:
            for sql in ("TRUNCATE audit_log", "UPDATE audit_log SET changed_by = 'x'"):
                with pytest.raises(Exception, match="refused"):
                    conn.execute(text(sql))
                conn.rollback()
            assert users.verify_password(conn, "alice", "pw-alice")
            assert users.get_user(conn, "bob").display_name == WEIRD_NAME
            weird = conn.execute(
                text("SELECT name FROM generic_instance WHERE name LIKE 'tab%'")
            ).scalar_one()
            assert weird == WEIRD_NAME

        restored_euids = _restored_euids(target)
        assert restored_euids == _restored_euids(seeded_engine)
        made_there = _new_objects(target)
        made_here = _new_objects(seeded_engine)
        assert made_there == made_here  # same sequences, same new EUIDs and uuids
        new = _all_euids(made_there)
        assert len(set(new)) == len(new) and not set(new) & restored_euids
        assert all(e.startswith("R-") for e in new)
        assert len(made_there["audit"]) > 0
    finally:
        target.dispose()


def test_backup_of_a_database_without_a_domain_and_larger_tables(
    engine: Engine, new_db: Callable[[], Engine], tmp_path: Path
) -> None:
    """More rows than one COPY chunk; no Meridian domain; the identity prefix config moved."""
    from tapdb_core.packs import load_packs
    from tapdb_core.resources import seeds_dir
    from tapdb_core.templates import TemplateSpec, upsert_templates

    specs = [TemplateSpec.from_mapping(p.data) for p in load_packs([seeds_dir()])]
    with engine.begin() as conn:
        conn.execute(text("SELECT tapdb_set_identity_prefix('tapdb_user', 'PPX')"))
        upsert_templates(conn, specs)
        instances.create_many(
            conn, DNA, ((f"bulk-{i}", {"concentration": i % 97}) for i in range(12_000))
        )
        users.create_user(conn, "u1")
    before = _snapshot(engine)
    out = tmp_path / "big.tapdb.tar.gz"
    info = bk.backup(_url(engine), out)
    assert info.meridian_domain is None and info.identity_prefixes["tapdb_user"] == "PPX"
    assert info.row_counts["generic_instance"] == 12_000
    with tarfile.open(out, "r:gz") as archive:  # several COPY chunks each way
        (member,) = [m for m in archive.getnames() if m.endswith("-generic_instance.copy")]
        assert archive.getmember(member).size > 4 * (1 << 20)
    target = new_db()
    bk.restore(_url(target), out)
    after = _snapshot(target)
    assert after == before
    with target.begin() as conn:
        assert users.create_user(conn, "u2").euid.startswith("PPX-")


def test_backup_reads_one_read_only_snapshot(
    populated: tuple[Engine, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source, _ = populated
    seen: list[tuple[str, str]] = []
    original = bk._apply_copy_settings

    def spy(conn: Connection) -> None:
        original(conn)
        seen.append(
            (
                str(conn.execute(text("SHOW transaction_isolation")).scalar_one()),
                str(conn.execute(text("SHOW transaction_read_only")).scalar_one()),
            )
        )

    monkeypatch.setattr(bk, "_apply_copy_settings", spy)
    bk.backup(_url(source), tmp_path / "again.tapdb.tar.gz")
    assert seen == [("repeatable read", "on")]


def test_restore_and_backup_need_no_superuser(
    populated: tuple[Engine, Path], server_url: URL, admin_engine: Engine, tmp_path: Path
) -> None:
    """Triggers are disabled per table (owner's right), not with session_replication_role."""
    source, out = populated
    suffix = f"{os.getpid()}_{next(_extra)}"
    role, database = f"tapdb_bk_role_{suffix}", f"tapdb_test_bk_owned_{suffix}"
    try:
        with admin_engine.connect() as conn:
            conn.execute(text(f"CREATE ROLE \"{role}\" LOGIN NOSUPERUSER PASSWORD 'pw-role'"))
    except DBAPIError:
        pytest.skip("this server does not let the tests create roles")
    try:
        with admin_engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}" OWNER "{role}"'))
        url = server_url.set(database=database, username=role, password="pw-role")
        target = create_engine(url)
        try:
            with target.connect() as conn:
                assert (
                    conn.execute(
                        text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                    ).scalar_one()
                    is False
                )
            bk.restore(url.render_as_string(hide_password=False), out)
            assert _snapshot(target) == _snapshot(source)
            again = tmp_path / "again.tapdb.tar.gz"
            bk.backup(url.render_as_string(hide_password=False), again)
            bk.restore(url.render_as_string(hide_password=False), again, clean=True)
            assert _snapshot(target) == _snapshot(source)
        finally:
            target.dispose()
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))


# --------------------------------------------------------------------------- refusing targets


def test_restore_refuses_a_non_empty_database_and_clean_replaces_it(
    populated: tuple[Engine, Path], engine: Engine
) -> None:
    source, out = populated
    expected = _snapshot(source)
    # a migrated database without data, and the source itself, are both "not empty"
    relations_before = _relations(engine)
    for target in (engine, source):
        before = _snapshot(target)
        with pytest.raises(bk.RestoreTargetNotEmptyError, match="clean=True") as caught:
            bk.restore(_url(target), out)
        assert isinstance(caught.value, TapdbError)
        assert "alembic_version" in str(caught.value)
        assert _snapshot(target) == before
    assert _relations(engine) == relations_before

    # clean=True: over a migrated database holding different data and a new EUID prefix
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO generic_template (name, category, type, subtype, version,"
                " instance_prefix) VALUES ('t', 'a', 'b', 'c', '1', 'ZZ')"
            )
        )
        conn.execute(text("SELECT tapdb_set_meridian_domain('Q9')"))
    info = bk.restore(_url(engine), out, clean=True)
    assert info.cleaned
    assert _snapshot(engine) == expected
    assert "tapdb_euid_seq_zz" not in _relations(engine)  # old objects really went

    # clean=True over the very database the backup came from: still identical
    bk.restore(_url(source), out, clean=True)
    assert _snapshot(source) == expected


def test_clean_works_over_a_half_built_or_unknown_schema(
    populated: tuple[Engine, Path], new_db: Callable[[], Engine]
) -> None:
    source, out = populated
    expected = _snapshot(source)
    half = new_db()
    with half.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('9999')"))
        conn.execute(text("CREATE SEQUENCE tapdb_euid_seq_qq"))
        conn.execute(text("CREATE FUNCTION tapdb_stray() RETURNS int LANGUAGE sql AS 'SELECT 1'"))
    with pytest.raises(bk.RestoreTargetNotEmptyError):
        bk.restore(_url(half), out)
    bk.restore(_url(half), out, clean=True)
    assert _snapshot(half) == expected
    assert "tapdb_euid_seq_qq" not in _relations(half)


def test_empty_database_with_unrelated_tables_is_fine(
    populated: tuple[Engine, Path], new_db: Callable[[], Engine]
) -> None:
    source, out = populated
    target = new_db()
    with target.begin() as conn:
        conn.execute(text("CREATE TABLE someone_elses (id int)"))
    bk.restore(_url(target), out)
    assert _snapshot(target) == _snapshot(source)
    assert "someone_elses" in _relations(target)


# --------------------------------------------------------------------------- bad input


def _assert_untouched(engine: Engine, before: dict[str, Any] | list[str]) -> None:
    if isinstance(before, list):
        assert _relations(engine) == before
    else:
        assert _snapshot(engine) == before


@pytest.fixture
def targets(
    populated: tuple[Engine, Path], new_db: Callable[[], Engine], engine: Engine
) -> Iterator[tuple[Engine, Engine]]:
    """An empty database and a non-empty one (to try clean=True against)."""
    with engine.begin() as conn:
        conn.execute(text("SELECT tapdb_set_meridian_domain('Z')"))
    yield new_db(), engine


def _truncated(out: Path, dst: Path) -> None:
    data = out.read_bytes()
    dst.write_bytes(data[: len(data) * 2 // 3])


def _flipped(out: Path, dst: Path) -> None:
    data = bytearray(out.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 64):
        data[offset] ^= 0x5A
    dst.write_bytes(bytes(data))


def _cut_before_trailer(out: Path, dst: Path) -> None:
    _rewrite(out, dst, lambda name, data: None if name == bk.CHECKSUMS_MEMBER else data)


def _tampered_data(out: Path, dst: Path) -> None:
    def change(name: str, data: bytes) -> bytes:
        # still loadable COPY text, but not what the checksum recorded
        if not name.endswith("-generic_instance.copy"):
            return data
        changed = data.replace(b"\tcreated\t", b"\tCreated\t")
        assert changed != data
        return changed

    _rewrite(out, dst, change)


def _row_count_lie(out: Path, dst: Path) -> None:
    def change(name: str, data: bytes) -> bytes:
        if name != bk.MANIFEST_MEMBER:
            return data
        manifest = json.loads(data)
        manifest["tables"][-1]["rows"] += 1
        return json.dumps(manifest).encode()

    _rewrite(out, dst, change)


def _extra_member(out: Path, dst: Path) -> None:
    _rewrite(out, dst, lambda name, data: data)
    with tarfile.open(dst, "r:gz") as tin:
        members = [(m, tin.extractfile(m)) for m in tin.getmembers()]
        contents = [(m, h.read() if h else b"") for m, h in members]
    with tarfile.open(dst, "w:gz") as tout:
        for member, data in contents:
            tout.addfile(member, io.BytesIO(data))
        extra = tarfile.TarInfo("surprise.txt")
        extra.size = 3
        tout.addfile(extra, io.BytesIO(b"hi\n"))


BAD_FILES: dict[str, tuple[Callable[[Path, Path], object], type[Exception], str]] = {
    "plain text": (
        lambda out, dst: dst.write_text("SELECT 1;\n"),
        bk.InvalidBackupError,
        "not a tapdb backup",
    ),
    "empty file": (lambda out, dst: dst.write_bytes(b""), bk.InvalidBackupError, "not a tapdb"),
    "gzip, not tar": (
        lambda out, dst: dst.write_bytes(gzip.compress(b"hello " * 1000)),
        bk.InvalidBackupError,
        "not a tapdb backup",
    ),
    "other tar.gz": (
        lambda out, dst: _rewrite(out, dst, lambda n, d: None if n == bk.MANIFEST_MEMBER else d),
        bk.InvalidBackupError,
        "not a tapdb backup",
    ),
    "foreign manifest": (
        lambda out, dst: _with_manifest(out, dst, format="something-else"),
        bk.InvalidBackupError,
        "not a tapdb backup",
    ),
    "truncated": (_truncated, bk.InvalidBackupError, "truncated or corrupt"),
    "flipped bytes": (_flipped, bk.InvalidBackupError, "corrupt"),
    "no trailer": (_cut_before_trailer, bk.InvalidBackupError, "truncated or corrupt"),
    "tampered data": (_tampered_data, bk.InvalidBackupError, "checksum"),
    "row count lie": (_row_count_lie, bk.InvalidBackupError, "rows"),
    "extra member": (_extra_member, bk.InvalidBackupError, "surprise.txt"),
    "bad manifest field": (
        lambda out, dst: _with_manifest(out, dst, sequences=[{"kind": "euid"}]),
        bk.InvalidBackupError,
        "invalid manifest",
    ),
    "newer revision": (
        lambda out, dst: _with_manifest(out, dst, alembic_revision="9999"),
        bk.IncompatibleBackupError,
        "newer tapdb_core",
    ),
    "newer format": (
        lambda out, dst: _with_manifest(out, dst, format_version=bk.FORMAT_VERSION + 1),
        bk.IncompatibleBackupError,
        "format version",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_are_refused_and_change_nothing(
    case: str, populated: tuple[Engine, Path], targets: tuple[Engine, Engine], tmp_path: Path
) -> None:
    _, out = populated
    make, error, message = BAD_FILES[case]
    bad = tmp_path / f"bad-{case.replace(' ', '-')}.tar.gz"
    make(out, bad)
    empty, full = targets
    empty_before = _relations(empty)
    full_before = _snapshot(full)
    for target, clean in ((empty, False), (full, True)):
        with pytest.raises(error, match=message) as caught:
            bk.restore(_url(target), bad, clean=clean)
        assert isinstance(caught.value, TapdbError)
        assert str(bad) in str(caught.value)
    _assert_untouched(empty, empty_before)
    _assert_untouched(full, full_before)


def test_missing_file_and_non_tapdb_source(new_db: Callable[[], Engine], tmp_path: Path) -> None:
    target = new_db()
    with pytest.raises(bk.BackupError, match="cannot read"):
        bk.restore(_url(target), tmp_path / "nope.tar.gz")
    assert _relations(target) == []
    out = tmp_path / "x.tar.gz"
    with pytest.raises(bk.BackupError, match="not a tapdb database"):
        bk.backup(_url(target), out)
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_backup_replaces_an_existing_file_only_when_complete(
    populated: tuple[Engine, Path], new_db: Callable[[], Engine]
) -> None:
    source, out = populated
    previous = out.read_bytes()
    with pytest.raises(bk.BackupError):
        bk.backup(_url(new_db()), out)
    assert out.read_bytes() == previous
    bk.backup(_url(source), out)
    assert bk.read_manifest(out).revision == migrate.head_revision()
