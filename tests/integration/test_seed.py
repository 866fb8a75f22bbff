"""Seeding template packs into a real PostgreSQL (issue "Template packs" §4 and §5)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from tapdb_core.errors import TapdbError, ValidationError
from tapdb_core.packs import (
    PackValidationError,
    SeedReport,
    seed_packs,
    validate_core_packs,
)
from tapdb_core.packs import seed as seed_module
from tapdb_core.resources import seeds_dir
from tapdb_core.templates import TemplateSpec, UpsertResult, delete_template, upsert_templates

CORE_TUBE = "container/tube/generic/1.0/"

# -- helpers ---------------------------------------------------------------------------------


def core_codes() -> list[str]:
    return [t.code_str for t in validate_core_packs().templates]


def template_count(conn: Connection) -> int:
    return int(conn.execute(text("SELECT count(*) FROM generic_template")).scalar_one())


def audit_count(conn: Connection) -> int:
    return int(conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one())


def sequences(conn: Connection) -> dict[str, int | None]:
    """Every EUID sequence and its last value (None: never used)."""
    rows = conn.execute(
        text(
            "SELECT sequencename, last_value FROM pg_sequences"
            " WHERE sequencename LIKE 'tapdb_euid_seq_%'"
        )
    ).all()
    return {str(r.sequencename): r.last_value for r in rows}


def snapshot(engine: Engine) -> tuple[int, int, dict[str, int | None]]:
    with engine.connect() as conn:
        return template_count(conn), audit_count(conn), sequences(conn)


def after_rollback(engine: Engine) -> tuple[int, int, set[str]]:
    """Counts and sequence names: nextval is not transactional, so sequence values may move."""
    templates, audits, seqs = snapshot(engine)
    return templates, audits, set(seqs)


def euids(conn: Connection) -> dict[str, str]:
    rows = conn.execute(
        text("SELECT category, type, subtype, version, euid FROM generic_template")
    ).all()
    return {f"{r.category}/{r.type}/{r.subtype}/{r.version}/": str(r.euid) for r in rows}


def seed(engine: Engine, dirs: Sequence[Path] | None = None, **kwargs: Any) -> SeedReport:
    with engine.begin() as conn:
        return seed_packs(conn, dirs, **kwargs)


def tpl(subtype: str, prefix: str = "QA", *, type_: str = "widget", **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": f"App {subtype}",
        "polymorphic_discriminator": "generic_template",
        "category": "app",
        "type": type_,
        "subtype": subtype,
        "version": "1.0",
        "instance_prefix": prefix,
        "json_addl": {"properties": {"label": subtype}},
    }
    data.update(extra)
    return data


def write_pack(root: Path, relative: str, templates: list[dict[str, Any]]) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"templates": templates}, indent=2), encoding="utf-8")
    return path


def core_copy(tmp_path: Path) -> Path:
    """A private copy of the core packs, for editing."""
    return Path(shutil.copytree(seeds_dir(), tmp_path / "core"))


def edit_template(root: Path, code: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``change`` to the template ``code`` in the pack copy under ``root``."""
    for path in sorted(root.rglob("*.json")):
        if path.name.startswith("_"):
            continue
        document = json.loads(path.read_text(encoding="utf-8"))
        for entry in document["templates"]:
            if "/".join(entry[k] for k in ("category", "type", "subtype", "version")) + "/" == code:
                change(entry)
                path.write_text(json.dumps(document, indent=2), encoding="utf-8")
                return
    raise AssertionError(f"{code} not found under {root}")


def generate_packs(root: Path, files: int, per_file: int) -> int:
    """``files`` pack files of ``per_file`` small templates each, with a few references."""
    letters = "ABCDEFGHJKMNPQRSTVWXYZ"
    for f in range(files):
        prefix = "Q" + letters[f // len(letters)] + letters[f % len(letters)]
        templates = []
        for i in range(per_file):
            extra: dict[str, Any] = {"json_addl": {"properties": {"n": i, "file": f}}}
            if i:
                extra["json_addl"]["expected_inputs"] = [f"gen/f{f}/t{i - 1}/*"]
            if i % 10 == 0:
                extra["json_addl_schema"] = {
                    "type": "object",
                    "properties": {"properties": {"type": "object"}},
                }
            templates.append(
                tpl(f"t{i}", prefix, type_=f"f{f}", category="gen", name=f"gen {f}/{i}", **extra)
            )
        write_pack(root, f"gen/pack_{f:03d}.json", templates)
    return files * per_file


# -- seeding the core packs ------------------------------------------------------------------


def test_core_packs_seed_into_an_empty_database(engine: Engine) -> None:
    codes = core_codes()
    report = seed(engine)
    assert report.created == tuple(codes)
    assert (report.updated, report.unchanged, report.skipped) == ((), (), ())
    assert report.templates == len(codes) and not report.dry_run
    assert report.pack_report.ok and report.pack_report.template_count == len(codes)
    with engine.connect() as conn:
        assert template_count(conn) == len(codes)
        assert set(euids(conn)) == set(codes)
        prefixes = {
            str(p)
            for p in conn.execute(text("SELECT instance_prefix FROM generic_template")).scalars()
        }
        assert {f"tapdb_euid_seq_{p.lower()}" for p in prefixes} <= set(sequences(conn))
    assert set(report.new_sequences) == prefixes


def test_reseed_is_unchanged_writes_no_audit_rows_and_keeps_euids(engine: Engine) -> None:
    seed(engine)
    with engine.connect() as conn:
        before_euids = euids(conn)
        before_audit = audit_count(conn)
        before_modified = conn.execute(
            text("SELECT max(modified_dt) FROM generic_template")
        ).scalar()
        before_seqs = sequences(conn)
    report = seed(engine)
    assert report.unchanged == tuple(core_codes())
    assert (report.created, report.updated, report.skipped) == ((), (), ())
    assert not report.changed and report.new_sequences == ()
    with engine.connect() as conn:
        assert audit_count(conn) == before_audit
        assert euids(conn) == before_euids
        assert conn.execute(text("SELECT max(modified_dt) FROM generic_template")).scalar() == (
            before_modified
        )
        assert sequences(conn) == before_seqs


def test_changed_template_is_updated_and_only_changed_columns_are_audited(
    engine: Engine, tmp_path: Path
) -> None:
    root = core_copy(tmp_path)
    seed(engine, [root])
    with engine.connect() as conn:
        before = euids(conn)
        last_audit = conn.execute(text("SELECT coalesce(max(uuid), 0) FROM audit_log")).scalar_one()

    def change(entry: dict[str, Any]) -> None:
        entry["name"] = "Renamed tube"
        entry["json_addl"]["properties"]["seed_test"] = "yes"

    edit_template(root, CORE_TUBE, change)
    report = seed(engine, [root])
    assert report.updated == (CORE_TUBE,)
    assert report.created == () and len(report.unchanged) == len(before) - 1
    with engine.connect() as conn:
        assert euids(conn) == before
        rows = conn.execute(
            text(
                "SELECT rel_table_name, rel_table_euid_fk, operation_type, column_name, new_value"
                " FROM audit_log WHERE uuid > :last ORDER BY column_name"
            ),
            {"last": last_audit},
        ).all()
    assert [(r.rel_table_name, r.rel_table_euid_fk, r.operation_type) for r in rows] == [
        ("generic_template", before[CORE_TUBE], "UPDATE")
    ] * 2
    assert [r.column_name for r in rows] == ["json_addl", "name"]
    assert rows[1].new_value == "Renamed tube"
    assert rows[0].new_value["properties"]["seed_test"] == "yes"


def test_skip_existing_leaves_existing_templates_alone(engine: Engine, tmp_path: Path) -> None:
    root = core_copy(tmp_path)
    seed(engine, [root])
    with engine.connect() as conn:
        before_audit = audit_count(conn)
    edit_template(root, CORE_TUBE, lambda e: e.update(name="Renamed tube"))
    app = tmp_path / "app"
    write_pack(app, "app/widgets.json", [tpl("new-one")])
    report = seed(engine, [root, app], mode="skip_existing")
    assert report.mode == "skip_existing"
    assert report.created == ("app/widget/new-one/1.0/",)
    assert report.skipped == tuple(core_codes())
    assert report.updated == () and report.unchanged == ()
    with engine.connect() as conn:
        name = conn.execute(
            text("SELECT name FROM generic_template WHERE subtype = 'generic' AND type = 'tube'")
        ).scalar_one()
        assert name != "Renamed tube"
        assert audit_count(conn) == before_audit + 1  # the INSERT of the new template only


def test_soft_deleted_template_is_brought_back(engine: Engine) -> None:
    seed(engine)
    with engine.begin() as conn:
        euid = euids(conn)[CORE_TUBE]
        delete_template(conn, CORE_TUBE)
    assert seed(engine, dry_run=True).updated == (CORE_TUBE,)
    report = seed(engine)
    assert report.updated == (CORE_TUBE,)
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT euid, is_deleted FROM generic_template WHERE euid = :e"), {"e": euid}
        ).one()
    assert row.is_deleted is False


# -- dry run ---------------------------------------------------------------------------------


def test_dry_run_on_an_empty_database_writes_nothing(engine: Engine) -> None:
    before = snapshot(engine)
    report = seed(engine, dry_run=True)
    assert report.dry_run
    assert report.created == tuple(core_codes())
    assert report.new_sequences  # sequences it would create
    assert snapshot(engine) == before


def test_dry_run_predicts_what_seeding_does(engine: Engine, tmp_path: Path) -> None:
    root = core_copy(tmp_path)
    seed(engine, [root])
    edit_template(root, CORE_TUBE, lambda e: e.update(is_singleton=True))
    edit_template(root, "action/core/create-note/1.0/", lambda e: e.update(bstatus="retired"))
    app = tmp_path / "app"
    write_pack(app, "app/widgets.json", [tpl("a", "QZ"), tpl("b", "QZ")])
    for mode in ("overwrite", "skip_existing"):
        before = snapshot(engine)
        plan = seed(engine, [root, app], dry_run=True, mode=mode)
        assert snapshot(engine) == before
        assert plan.created == ("app/widget/a/1.0/", "app/widget/b/1.0/")
        assert plan.new_sequences == ("QZ",)
    plan = seed(engine, [root, app], dry_run=True)
    assert set(plan.updated) == {CORE_TUBE, "action/core/create-note/1.0/"}
    done = seed(engine, [root, app])
    assert {**plan.to_dict(), "dry_run": False} == done.to_dict()


# -- nothing is written when the packs have errors ------------------------------------------

DEFECTS: dict[str, tuple[dict[str, Any], str]] = {
    "bad prefix": ({"instance_prefix": "IL"}, "invalid instance_prefix"),
    "lowercase prefix": ({"instance_prefix": "qa"}, "invalid instance_prefix"),
    "reserved prefix": ({"instance_prefix": "GT"}, "reserved"),
    "prefix of audit rows": ({"instance_prefix": "ADT"}, "reserved"),
    "unknown key": ({"is_singelton": True}, "unknown key 'is_singelton'"),
    "unresolved reference": (
        {"json_addl": {"expected_inputs": ["nope/none/none/1.0"]}},
        "unknown template nope/none/none/1.0",
    ),
    "invalid json_addl_schema": (
        {"json_addl_schema": {"type": "nonsense"}},
        "not a valid JSON Schema",
    ),
    "defaults violate own schema": (
        {"json_addl_schema": {"properties": {"properties": {"required": ["missing"]}}}},
        "violate the template's own json_addl_schema",
    ),
}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_pack_errors_raise_and_write_nothing(engine: Engine, tmp_path: Path, defect: str) -> None:
    change, message = DEFECTS[defect]
    app = tmp_path / "app"
    write_pack(app, "app/widgets.json", [tpl("fine", "QA"), tpl("broken", "QB", **change)])
    before = snapshot(engine)
    for dry_run in (False, True):
        with pytest.raises(PackValidationError) as info, engine.begin() as conn:
            seed_packs(conn, [seeds_dir(), app], dry_run=dry_run)
        assert isinstance(info.value, ValidationError)
        errors = info.value.report.errors
        assert errors and any(message in e.message for e in errors), errors
        assert any(e.template_code == "app/widget/broken/1.0/" for e in errors)
        assert snapshot(engine) == before


def test_invalid_json_file_raises_and_writes_nothing(engine: Engine, tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "app").mkdir(parents=True)
    (app / "app" / "broken.json").write_text('{"templates": [', encoding="utf-8")
    before = snapshot(engine)
    with pytest.raises(PackValidationError, match="invalid JSON"), engine.begin() as conn:
        seed_packs(conn, [seeds_dir(), app])
    assert snapshot(engine) == before


def test_unresolved_reference_is_a_warning_when_not_strict(engine: Engine, tmp_path: Path) -> None:
    app = tmp_path / "app"
    write_pack(
        app, "app/widgets.json", [tpl("loose", json_addl={"expected_inputs": ["nope/x/y/1.0"]})]
    )
    report = seed(engine, [seeds_dir(), app], strict=False)
    assert report.created[-1] == "app/widget/loose/1.0/"
    assert [w.template_code for w in report.pack_report.warnings] == ["app/widget/loose/1.0/"]
    assert report.to_dict()["pack_report"]["warnings"] == 1


def test_same_code_in_two_dirs_names_both_files(engine: Engine, tmp_path: Path) -> None:
    first = write_pack(tmp_path / "one", "app/a.json", [tpl("dup")])
    second = write_pack(tmp_path / "two", "app/b.json", [tpl("dup", "QB")])
    before = snapshot(engine)
    with pytest.raises(PackValidationError) as info, engine.begin() as conn:
        seed_packs(conn, [tmp_path / "one", tmp_path / "two"])
    messages = [e.message for e in info.value.report.errors]
    assert any(str(first) in m and str(second) in m and "duplicate" in m for m in messages)
    assert str(first) in str(info.value) and str(second) in str(info.value)
    assert snapshot(engine) == before


def test_core_template_redefined_in_an_app_pack_is_an_error(engine: Engine, tmp_path: Path) -> None:
    app = tmp_path / "app"
    clash = {k: v for k, v in tpl("generic", "QA").items() if k not in ("category", "type")}
    write_pack(app, "app/clash.json", [{**clash, "category": "container", "type": "tube"}])
    with pytest.raises(PackValidationError, match="duplicate template code"), engine.begin() as c:
        seed_packs(c, [seeds_dir(), app])
    assert snapshot(engine)[0] == 0


# -- app packs, prefixes and instances -------------------------------------------------------


def test_app_pack_on_top_of_the_core_packs(engine: Engine, tmp_path: Path) -> None:
    app = tmp_path / "app"
    write_pack(
        app,
        "app/widgets.json",
        [
            tpl(
                "rack",
                "QR",
                json_addl={
                    "instantiation_layouts": [
                        {
                            "child_templates": [
                                {"template_code": "container/tube/generic/*", "count": 2}
                            ]
                        }
                    ]
                },
            ),
            tpl("gadget", "QR", json_addl={"expected_inputs": ["app/widget/rack/1.0"]}),
        ],
    )
    report = seed(engine, [seeds_dir(), app])
    assert report.created == (*core_codes(), "app/widget/rack/1.0/", "app/widget/gadget/1.0/")
    assert "QR" in report.new_sequences
    with engine.connect() as conn:
        assert template_count(conn) == len(core_codes()) + 2
    # the core packs alone afterwards: the app templates are simply not mentioned
    again = seed(engine)
    assert again.unchanged == tuple(core_codes())


def test_instances_can_be_created_from_seeded_prefixes_right_away(
    engine: Engine, tmp_path: Path
) -> None:
    app = tmp_path / "app"
    write_pack(app, "app/widgets.json", [tpl("fresh", "ZZQ")])
    with engine.begin() as conn:
        seed_packs(conn, [seeds_dir(), app])
        rows = conn.execute(
            text(
                "SELECT DISTINCT ON (instance_prefix) uuid, instance_prefix FROM generic_template"
                " ORDER BY instance_prefix, uuid"
            )
        ).all()
        assert "ZZQ" in {r.instance_prefix for r in rows}
        for row in rows:
            euid = conn.execute(
                text(
                    "INSERT INTO generic_instance (name, template_uuid) VALUES (:n, :t) RETURNING euid"
                ),
                {"n": f"first {row.instance_prefix}", "t": row.uuid},
            ).scalar_one()
            assert str(euid).startswith(f"{row.instance_prefix}-"), euid


def test_sequences_are_ensured_and_never_moved_backwards(engine: Engine, tmp_path: Path) -> None:
    root = core_copy(tmp_path)
    seed(engine, [root])
    with engine.begin() as conn:
        tube = conn.execute(
            text("SELECT uuid FROM generic_template WHERE type = 'tube' AND subtype = 'generic'")
        ).scalar_one()
        for i in range(5):
            conn.execute(
                text("INSERT INTO generic_instance (name, template_uuid) VALUES (:n, :t)"),
                {"n": f"tube {i}", "t": tube},
            )
        # a sequence that went missing is created again (the prefix's templates stay unchanged)
        conn.execute(text("DROP SEQUENCE tapdb_euid_seq_hev"))
    with engine.connect() as conn:
        before = sequences(conn)
    edit_template(root, CORE_TUBE, lambda e: e.update(name="Renamed tube"))
    report = seed(engine, [root])
    assert report.updated == (CORE_TUBE,) and report.new_sequences == ("HEV",)
    with engine.connect() as conn:
        after = sequences(conn)
    # the audit sequence moves on (the update is audited); no other sequence moves at all
    assert (after.pop("tapdb_euid_seq_adt") or 0) > (before.pop("tapdb_euid_seq_adt") or 0)
    assert after == {**before, "tapdb_euid_seq_hev": None}
    assert (before["tapdb_euid_seq_cx"] or 0) >= 5


# -- all or nothing --------------------------------------------------------------------------


def test_failure_after_the_first_chunk_leaves_nothing(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = upsert_templates
    calls: list[int] = []

    def failing(
        conn: Connection, specs: Sequence[TemplateSpec], *, overwrite: bool = True
    ) -> list[UpsertResult]:
        calls.append(len(specs))
        if len(calls) == 2:
            raise RuntimeError("planted failure")
        return real(conn, specs, overwrite=overwrite)

    monkeypatch.setattr(seed_module, "upsert_templates", failing)
    before = after_rollback(engine)
    seen: list[tuple[int, int]] = []
    with pytest.raises(RuntimeError, match="planted"), engine.begin() as conn:
        seed_packs(conn, chunk_size=10, progress=lambda d, t: seen.append((d, t)))
    assert calls == [10, 10] and seen == [(10, len(core_codes()))]
    assert after_rollback(engine) == before


def test_database_refusal_in_a_later_chunk_leaves_nothing(engine: Engine, tmp_path: Path) -> None:
    app = tmp_path / "app"
    # 'TDA' is the users' prefix in the database; with no reserved prefixes given the
    # validator lets it through and the database trigger refuses it in the second chunk
    write_pack(app, "app/widgets.json", [tpl("a", "QA"), tpl("b", "QB"), tpl("c", "TDA")])
    before = after_rollback(engine)
    with pytest.raises((DBAPIError, TapdbError), match="reserved"), engine.begin() as conn:
        seed_packs(conn, [app], chunk_size=2, reserved_prefixes=())
    assert after_rollback(engine) == before


def test_reserved_prefixes_default_to_the_database_configuration(
    engine: Engine, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        conn.execute(text("SELECT tapdb_set_identity_prefix('tapdb_user', 'PSN')"))
    app = tmp_path / "app"
    write_pack(app, "app/widgets.json", [tpl("a", "PSN")])
    with pytest.raises(PackValidationError, match="reserved for tapdb_user"), engine.begin() as c:
        seed_packs(c, [app])


# -- report, options, progress -------------------------------------------------------------


def test_report_to_dict_and_progress(engine: Engine) -> None:
    seen: list[tuple[int, int]] = []
    report = seed(engine, chunk_size=20, progress=lambda d, t: seen.append((d, t)))
    total = len(core_codes())
    assert seen == [(min(n, total), total) for n in range(20, total + 20, 20)]
    data = json.loads(json.dumps(report.to_dict()))
    assert data["counts"] == {"created": total, "updated": 0, "unchanged": 0, "skipped": 0}
    assert data["templates"] == total and data["dry_run"] is False
    assert data["pack_report"]["errors"] == 0
    with pytest.raises(AttributeError):
        report.templates = 0  # type: ignore[misc]


def test_bad_options_are_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="mode"):
            seed_packs(conn, mode="replace")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="chunk_size"):
            seed_packs(conn, chunk_size=0)
        assert template_count(conn) == 0


# -- scale -----------------------------------------------------------------------------------


def test_thousands_of_templates_seed_and_reseed(engine: Engine, tmp_path: Path) -> None:
    total = generate_packs(tmp_path / "gen", files=60, per_file=50)
    seen: list[tuple[int, int]] = []
    report = seed(engine, [tmp_path / "gen"], progress=lambda d, t: seen.append((d, t)))
    assert total == 3000 and report.templates == total and len(report.created) == total
    assert seen[-1] == (total, total) and len(seen) == 6
    with engine.connect() as conn:
        assert template_count(conn) == total
        before_audit = audit_count(conn)
        before_euids = euids(conn)
    again = seed(engine, [tmp_path / "gen"])
    assert len(again.unchanged) == total and not again.changed
    with engine.connect() as conn:
        assert audit_count(conn) == before_audit
        assert euids(conn) == before_euids


def test_own_packs_may_build_on_templates_already_in_the_database(
    engine: Engine, tmp_path: Path
) -> None:
    """The original's habit: seed the core packs once, later seed only your own
    packs that refer to core templates. Strict validation resolves references
    against the templates already stored."""
    seed(engine)
    app = tmp_path / "app"
    rack = tpl(
        "rack",
        "QR",
        json_addl={
            "properties": {"label": "rack"},
            "action_imports": {},
            "instantiation_layouts": [
                {
                    "relationship_type": "contains",
                    "child_templates": [{"template_code": CORE_TUBE, "count": 2}],
                }
            ],
        },
    )
    write_pack(app, "app/racks.json", [rack])
    report = seed(engine, [app])
    assert list(report.created) == ["app/widget/rack/1.0/"]
    # a code that is neither in the packs nor in the database is still an error
    write_pack(
        app,
        "app/racks.json",
        [tpl("bad", "QS", json_addl={"expected_inputs": ["nope/x/y/1.0"]})],
    )
    with pytest.raises(PackValidationError, match=re.escape("unknown template nope/x/y/1.0")):
        seed(engine, [app])
