"""Template packs: the core library, the pack schema, loading and validation."""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tapdb_core.packs import (
    MAX_LAYOUT_DEPTH,
    CodeIndex,
    PackIssue,
    PackReport,
    PackValidationError,
    core_pack_dirs,
    deep_merge,
    discover_pack_files,
    json_addl_validator,
    load_packs,
    pack_schema,
    resolve_reference,
    validate_packs,
)
from tapdb_core.resources import seeds_dir

REPO = Path(__file__).resolve().parents[2]
SEEDS = REPO / "seeds"
FAMILIES = {
    "generic",
    "action",
    "workflow",
    "workflow_step",
    "container",
    "content",
    "equipment",
    "data",
    "test_requisition",
    "actor",
    "health_event",
    "file",
    "subject",
}


# -- helpers ----------------------------------------------------------------------------


@pytest.fixture
def packs(tmp_path: Path) -> Path:
    """A writable copy of the core packs."""
    target = tmp_path / "packs"
    shutil.copytree(SEEDS, target)
    return target


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


def edit(path: Path, change: Callable[[Any], None]) -> Path:
    document = read(path)
    change(document)
    return write(path, document)


def find(
    report: PackReport,
    *,
    level: str | None = "error",
    file: Path | None = None,
    pointer: str | None = None,
    code: str | None = None,
    text: str | None = None,
) -> list[PackIssue]:
    return [
        i
        for i in report.issues
        if (level is None or i.level == level)
        and (file is None or i.source_file == str(file))
        and (pointer is None or i.pointer == pointer)
        and (code is None or i.template_code == code)
        and (text is None or text in i.message)
    ]


def template(
    subtype: str,
    *,
    category: str = "test",
    type_: str = "node",
    version: str = "1.0",
    prefix: str = "TQX",
    json_addl: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    t: dict[str, Any] = {
        "name": f"Test {subtype}",
        "polymorphic_discriminator": f"{category}_template",
        "category": category,
        "type": type_,
        "subtype": subtype,
        "version": version,
        "instance_prefix": prefix,
    }
    if json_addl is not None:
        t["json_addl"] = json_addl
    t.update(extra)
    return t


def children(*codes: str) -> dict[str, Any]:
    return {"instantiation_layouts": [{"child_templates": list(codes)}]}


def load_generator() -> ModuleType:
    path = REPO / "scripts" / "generate_plate_packs.py"
    spec = importlib.util.spec_from_file_location("generate_plate_packs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


# -- the core library --------------------------------------------------------------------


def test_core_packs_validate_strictly_without_errors_or_warnings() -> None:
    report = validate_packs(SEEDS, strict=True)
    assert [str(i) for i in report.issues] == []
    assert report.ok
    assert report.template_count == len(report.templates) >= 60
    assert {t.code.category for t in report.templates} == FAMILIES
    data = report.to_dict()
    assert data == {
        "config_dir": str(SEEDS),
        "strict": True,
        "templates": report.template_count,
        "errors": 0,
        "warnings": 0,
        "issues": [],
    }


def test_core_pack_dirs_is_the_seeds_folder() -> None:
    assert seeds_dir().resolve() == SEEDS.resolve()
    assert [p.resolve() for p in core_pack_dirs()] == [SEEDS.resolve()]
    assert (SEEDS / "_metadata.json").is_file()
    assert all("_metadata" not in p.name for p in discover_pack_files(SEEDS))


def test_every_core_template_matches_conventions() -> None:
    templates = load_packs(core_pack_dirs())
    by_code = {t.code_str: t for t in templates}
    for t in templates:
        assert t.polymorphic_discriminator == f"{t.code.category}_template", t.code_str
        if t.is_action:
            definition = t.json_addl["action_definition"]
            key = t.code.subtype.replace("-", "_")
            assert definition["method_name"] == f"do_action_{key}"
            assert set(definition["required_fields"]) <= set(definition["captured_data"])
            assert definition["max_executions"] >= -1
        schema = t.json_addl_schema
        if schema is not None:
            # the convention: the schema validates a whole instance json_addl
            instance = {
                "properties": t.default_properties,
                "action_groups": {},
                "audit_log": [],
            }
            assert list(json_addl_validator(schema).iter_errors(instance)) == []
        for key, code in t.json_addl.get("action_imports", {}).items():
            target = by_code[resolve_reference(code, by_code) or ""]
            assert target.json_addl["action_definition"]["method_name"] == f"do_action_{key}"
    prefixes = {t.code.category: t.instance_prefix for t in templates if t.code.type != "well"}
    assert prefixes == {
        "generic": "GX",
        "action": "XX",
        "workflow": "WX",
        "workflow_step": "WSX",
        "container": "CX",
        "content": "MX",
        "equipment": "EX",
        "data": "DX",
        "test_requisition": "TRX",
        "actor": "AY",
        "health_event": "HEV",
        "file": "FX",
        "subject": "SX",
    }
    metadata = read(SEEDS / "_metadata.json")
    documented = metadata["euid_prefixes"]["core_packs"]
    assert {t.instance_prefix for t in templates} == set(documented)


def test_generated_plate_pack_is_up_to_date() -> None:
    generator = load_generator()
    assert (SEEDS / "container" / "plate.json").read_text(encoding="utf-8") == generator.render()
    assert generator.render() == generator.render()


@pytest.mark.parametrize(
    ("subtype", "well", "rows", "columns"),
    [
        ("fixed-plate-96", "well-96", "ABCDEFGH", 12),
        ("fixed-plate-384", "well-384", "ABCDEFGHIJKLMNOP", 24),
    ],
)
def test_plate_layouts_have_one_child_per_well(
    subtype: str, well: str, rows: str, columns: int
) -> None:
    by_code = {t.code_str: t for t in load_packs(SEEDS)}
    plate = by_code[f"container/plate/{subtype}/1.0/"]
    (layout,) = plate.json_addl["instantiation_layouts"]
    entries = layout["child_templates"]
    assert len(entries) == len(rows) * columns
    expected = [f"{r}{c}" for r in rows for c in range(1, columns + 1)]
    assert [e["json_addl"]["properties"]["address"] for e in entries] == expected
    for entry in entries:
        props = entry["json_addl"]["properties"]
        assert entry["template_code"] == f"container/well/{well}/1.0/"
        assert entry["count"] == 1
        assert entry["name_pattern"] == "{parent_name}_" + props["address"]
        assert props["row_name"] == rows[props["row_idx"]]
        assert props["col_name"] == str(props["col_idx"] + 1)
    # the well schema: position optional, but a position must belong to the format
    validator = json_addl_validator(by_code[f"container/well/{well}/1.0/"].json_addl_schema or {})
    assert validator.is_valid({"properties": {}})
    last = f"{rows[-1]}{columns}"
    good = {"address": last, "row_name": rows[-1], "col_name": str(columns)}
    assert validator.is_valid(
        {"properties": {**good, "row_idx": len(rows) - 1, "col_idx": columns - 1}}
    )
    assert not validator.is_valid({"properties": {**good, "row_idx": len(rows), "col_idx": 0}})
    assert not validator.is_valid(
        {"properties": {**good, "address": f"{rows[-1]}{columns + 1}", "row_idx": 0, "col_idx": 0}}
    )
    assert not validator.is_valid({"properties": {"address": "A1"}})  # row/col missing


def test_pack_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = pack_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema is not pack_schema()  # callers get copies


def test_load_packs_keeps_source_file_and_pointer() -> None:
    templates = load_packs([SEEDS])
    assert len(templates) == len({t.code_str for t in templates})
    for t in templates:
        document = read(t.source_file)
        index = int(t.pointer.removeprefix("/templates/"))
        assert document["templates"][index] == t.data
    dna = next(t for t in templates if t.code_str == "content/sample/dna/1.0/")
    assert dna.source_file == SEEDS / "content" / "sample.json"
    assert dna.default_properties["concentration"] == 0


# -- references ---------------------------------------------------------------------------


def test_resolve_reference_exact_and_wildcard() -> None:
    known = [
        "content/sample/dna/1.0",
        "content/sample/dna/1.9/",
        "content/sample/dna/1.10",
        "x/y/z/2",
    ]
    assert resolve_reference("content/sample/dna/1.9", known) == "content/sample/dna/1.9/"
    assert resolve_reference("/content/sample/dna/1.0/", known) == "content/sample/dna/1.0/"
    assert resolve_reference("content/sample/dna/*", known) == "content/sample/dna/1.10/"
    assert (
        resolve_reference("content/sample/dna/*/", CodeIndex(known)) == "content/sample/dna/1.10/"
    )
    assert resolve_reference("content/sample/rna/*", known) is None
    assert resolve_reference("content/sample/dna/2.0", known) is None
    assert resolve_reference("not-a-code", known) is None
    index = CodeIndex(known)
    assert "x/y/z/2/" in index and "x/y/z/3" not in index and len(index) == 4


def test_deep_merge_merges_nested_objects() -> None:
    base: dict[str, Any] = {"properties": {"a": 1, "nested": {"x": 1, "y": 2}}, "keep": [1]}
    merged = deep_merge(base, {"properties": {"nested": {"y": 3}, "b": 2}})
    assert merged == {"properties": {"a": 1, "nested": {"x": 1, "y": 3}, "b": 2}, "keep": [1]}
    assert base["properties"]["nested"] == {"x": 1, "y": 2}


# -- structural defects ----------------------------------------------------------------------


def test_misspelled_template_key(packs: Path) -> None:
    path = packs / "subject" / "subject.json"
    edit(path, lambda d: d["templates"][0].update({"is_singelton": True}))
    report = validate_packs(packs)
    (issue,) = report.errors
    assert issue.source_file == str(path)
    assert issue.pointer == "/templates/0/is_singelton"
    assert issue.template_code == "subject/person/patient/1.0/"
    assert "unknown key 'is_singelton'" in issue.message
    assert "did you mean 'is_singleton'" in issue.message


def test_invalid_instance_prefix(packs: Path) -> None:
    path = packs / "content" / "sample.json"
    edit(path, lambda d: d["templates"][1].update({"instance_prefix": "TUS"}))
    report = validate_packs(packs)
    (issue,) = report.errors
    assert (issue.source_file, issue.pointer, issue.template_code) == (
        str(path),
        "/templates/1/instance_prefix",
        "content/sample/rna/1.0/",
    )
    assert "'TUS'" in issue.message and "without I, L, O or U" in issue.message


@pytest.mark.parametrize(
    ("change", "pointer", "text"),
    [
        (lambda t: t.pop("name"), "/templates/0", "missing required key 'name'"),
        (lambda t: t.update(category=""), "/templates/0/category", ""),
        (lambda t: t.update(version="1/0"), "/templates/0/version", "must not contain '/'"),
        (lambda t: t.update(version="*"), "/templates/0/version", "must not contain"),
        (lambda t: t.update(is_singleton="yes"), "/templates/0/is_singleton", "must be boolean"),
        (lambda t: t.update(json_addl=[]), "/templates/0/json_addl", "must be object"),
        (lambda t: t.update(json_addl_schema=5), "/templates/0/json_addl_schema", "object or null"),
        (
            lambda t: t["json_addl"].update(action_imports=["x"]),
            "/templates/0/json_addl/action_imports",
            "must be object",
        ),
        (
            lambda t: t["json_addl"]["action_imports"].update(
                {"bad-key": "action/core/set-status/1.0"}
            ),
            "/templates/0/json_addl/action_imports/bad-key",
            "invalid action key",
        ),
        (
            lambda t: t["json_addl"].update(expected_inputs="content/sample/dna/1.0"),
            "/templates/0/json_addl/expected_inputs",
            "must be array",
        ),
        (
            lambda t: t["json_addl"].update(expected_outputs=["content/sample"]),
            "/templates/0/json_addl/expected_outputs/0",
            "invalid template code 'content/sample'",
        ),
    ],
)
def test_template_shape_errors(
    packs: Path, change: Callable[[dict[str, Any]], None], pointer: str, text: str
) -> None:
    path = packs / "content" / "specimen.json"
    edit(path, lambda d: change(d["templates"][0]))
    report = validate_packs(packs)
    assert find(report, file=path, pointer=pointer, text=text), [str(i) for i in report.issues]


@pytest.mark.parametrize(
    ("change", "pointer", "text"),
    [
        (lambda c: c.update(count=0), "/child_templates/0/count", "minimum of 1"),
        (lambda c: c.update(count="2"), "/child_templates/0/count", "must be integer"),
        (lambda c: c.update(cnt=2), "/child_templates/0/cnt", "unknown key 'cnt'"),
        (
            lambda c: c.pop("template_code"),
            "/child_templates/0",
            "missing required key 'template_code'",
        ),
        (lambda c: c.update(json_addl="x"), "/child_templates/0/json_addl", "must be object"),
    ],
)
def test_layout_child_shape_errors(
    packs: Path, change: Callable[[dict[str, Any]], None], pointer: str, text: str
) -> None:
    path = packs / "container" / "kit.json"
    edit(
        path,
        lambda d: change(
            d["templates"][0]["json_addl"]["instantiation_layouts"][0]["child_templates"][0]
        ),
    )
    report = validate_packs(packs)
    base = "/templates/0/json_addl/instantiation_layouts/0"
    assert find(
        report,
        file=path,
        pointer=base + pointer,
        text=text,
        code="container/kit/blood-collection/1.0/",
    ), [str(i) for i in report.issues]


@pytest.mark.parametrize(
    ("layout", "pointer", "text"),
    [
        (
            {"relationship_type": "  ", "child_templates": ["container/tube/generic/1.0"]},
            "/relationship_type",
            "non-blank",
        ),
        ({"child_templates": []}, "/child_templates", "layout has no child_templates"),
        ({"relationship_type": "contains"}, "", "missing required key 'child_templates'"),
        ({"child_templates": [7]}, "/child_templates/0", "must be string or object"),
        ({"child_templates": ["container/tube"]}, "/child_templates/0", "invalid template code"),
        (
            {
                # ({i} is the original README's alias of {child_index}: accepted)
                "name_pattern": "{parent_name}-{n}",
                "child_templates": ["container/tube/generic/1.0"],
            },
            "/name_pattern",
            "unknown placeholder {n}",
        ),
    ],
)
def test_layout_shape_errors(packs: Path, layout: dict[str, Any], pointer: str, text: str) -> None:
    path = packs / "container" / "kit.json"
    edit(path, lambda d: d["templates"][1]["json_addl"].update(instantiation_layouts=[layout]))
    report = validate_packs(packs)
    full = "/templates/1/json_addl/instantiation_layouts/0" + pointer
    assert find(report, file=path, pointer=full, text=text), [str(i) for i in report.issues]


def test_malformed_json_reports_line_and_the_other_files_still_count(packs: Path) -> None:
    broken = packs / "actor" / "actor.json"
    lines = broken.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2] + " oops,"
    broken.write_text("\n".join(lines), encoding="utf-8")
    edit(
        packs / "subject" / "subject.json", lambda d: d["templates"][0].update(instance_prefix="GT")
    )
    report = validate_packs(packs)
    (parse_error,) = find(report, file=broken)
    assert "invalid JSON" in parse_error.message and "line 3" in parse_error.message
    assert parse_error.pointer is None
    assert find(report, text="reserved for templates")
    # the broken file's templates are gone: references to them no longer resolve
    assert find(report, text="unknown template") == []  # nothing refers to actors


def test_duplicate_json_key_is_an_error(packs: Path) -> None:
    path = packs / "generic" / "generic.json"
    text = path.read_text(encoding="utf-8").replace(
        '"name": "Generic Object",', '"name": "Generic Object", "name": "Other",', 1
    )
    path.write_text(text, encoding="utf-8")
    assert find(validate_packs(packs), file=path, text="duplicate key 'name'")


def test_empty_and_missing_packs(tmp_path: Path) -> None:
    empty = write(tmp_path / "a" / "x" / "empty.json", {"templates": []})
    report = validate_packs(tmp_path / "a")
    assert find(report, file=empty, pointer="/templates", text="pack has no templates")
    assert find(report, text="no templates found")
    assert report.template_count == 0 and not report.ok

    (tmp_path / "b" / "_drafts").mkdir(parents=True)
    write(tmp_path / "b" / "_drafts" / "ignored.json", {"templates": [template("a")]})
    assert find(validate_packs(tmp_path / "b"), text="no pack files")

    assert find(validate_packs(tmp_path / "missing"), text="does not exist")

    not_a_pack = write(tmp_path / "c" / "p.json", [template("a")])
    assert find(validate_packs(tmp_path / "c"), file=not_a_pack, pointer="", text="must be object")


# -- semantic defects -------------------------------------------------------------------------


def test_duplicate_code_across_files_names_both(packs: Path) -> None:
    original = packs / "content" / "sample.json"
    dna = read(original)["templates"][0]
    copy_path = write(packs / "app" / "more.json", {"templates": [template("a"), dna]})
    report = validate_packs(packs)
    (issue,) = report.errors
    assert issue.template_code == "content/sample/dna/1.0/"
    # reported at the later of the two (files are read in path order: app/ first)
    assert issue.source_file == str(original) and issue.pointer == "/templates/0"
    assert str(original) in issue.message and str(copy_path) in issue.message


def test_unresolved_reference_is_an_error_when_strict_and_a_warning_otherwise(packs: Path) -> None:
    path = packs / "workflow" / "assay.json"
    edit(
        path,
        lambda d: d["templates"][2]["json_addl"]["expected_outputs"].append(
            "data/sequencing/run/9.0"
        ),
    )
    edit(
        packs / "generic" / "generic.json",
        lambda d: d["templates"][0]["json_addl"]["action_imports"].update(fly="action/core/fly/*"),
    )
    strict = validate_packs(packs)
    pointer = "/templates/2/json_addl/expected_outputs/3"
    (issue,) = find(strict, file=path, pointer=pointer)
    assert issue.template_code == "workflow/assay/whole-genome-sequencing/1.0/"
    assert "data/sequencing/run/9.0" in issue.message
    assert find(
        strict, pointer="/templates/0/json_addl/action_imports/fly", text="action/core/fly/*"
    )
    assert len(strict.errors) == 2 and not strict.ok

    lenient = validate_packs(packs, strict=False)
    assert lenient.ok and lenient.errors == [] and len(lenient.warnings) == 2
    assert find(lenient, level="warning", file=path, pointer=pointer)
    assert lenient.to_dict()["strict"] is False


def test_layout_child_reference_must_resolve(packs: Path) -> None:
    path = packs / "container" / "kit.json"
    edit(
        path,
        lambda d: d["templates"][0]["json_addl"]["instantiation_layouts"][0]["child_templates"][
            0
        ].update(template_code="container/tube/nope/1.0"),
    )
    report = validate_packs(packs)
    pointer = "/templates/0/json_addl/instantiation_layouts/0/child_templates/0/template_code"
    assert find(report, file=path, pointer=pointer, text="unknown template container/tube/nope/1.0")


def test_action_import_must_point_at_an_action_template(packs: Path) -> None:
    path = packs / "subject" / "subject.json"
    edit(
        path,
        lambda d: d["templates"][0]["json_addl"]["action_imports"].update(
            note="generic/generic/generic/1.0"
        ),
    )
    (issue,) = validate_packs(packs).errors
    assert issue.pointer == "/templates/0/json_addl/action_imports/note"
    assert "not an action template" in issue.message


def test_wildcard_reference_resolves_to_newest_version(packs: Path) -> None:
    dna = read(packs / "content" / "sample.json")["templates"][0]
    newer = copy.deepcopy(dna)
    newer["version"] = "1.10"
    write(packs / "app" / "dna.json", {"templates": [newer]})
    report = validate_packs(packs)
    assert report.ok, [str(i) for i in report.issues]
    known = [t.code_str for t in report.templates]
    assert resolve_reference("content/sample/dna/*", known) == "content/sample/dna/1.10/"


def test_template_cycle(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p" / "test" / "cycle.json",
        {
            "templates": [
                template("a", json_addl=children("test/node/b/1.0")),
                template("b", json_addl=children("test/node/c/*")),
                template("c", json_addl=children("test/node/a/1.0/")),
                template("self", json_addl=children("test/node/self/1.0")),
                template("d", json_addl=children("test/node/a/1.0")),  # leads into the cycle
            ]
        },
    )
    report = validate_packs(tmp_path / "p")
    cycles = find(report, text="cycle")
    assert len(cycles) == 2, [str(i) for i in report.issues]
    (abc,) = find(report, code="test/node/a/1.0/", text="cycle")
    assert abc.source_file == str(path)
    assert abc.pointer == "/templates/0/json_addl/instantiation_layouts/0/child_templates/0"
    assert (
        "test/node/a/1.0/ -> test/node/b/1.0/ -> test/node/c/1.0/ -> test/node/a/1.0/"
        in abc.message
    )
    (loop,) = find(report, code="test/node/self/1.0/", text="cycle")
    assert "test/node/self/1.0/ -> test/node/self/1.0/" in loop.message


@pytest.mark.parametrize(
    "length", [MAX_LAYOUT_DEPTH + 1, MAX_LAYOUT_DEPTH + 2, MAX_LAYOUT_DEPTH + 4]
)
def test_layout_depth_limit(tmp_path: Path, length: int) -> None:
    # a chain of `length` templates nests length - 1 levels below its first template
    chain = [
        template(f"n{i}", json_addl=children(f"test/node/n{i + 1}/1.0") if i + 1 < length else {})
        for i in range(length)
    ]
    write(tmp_path / "p" / "chain.json", {"templates": chain})
    report = validate_packs(tmp_path / "p")
    too_deep = find(report, text="levels deep")
    if length == MAX_LAYOUT_DEPTH + 1:  # exactly at the limit
        assert report.ok and report.issues == ()
        return
    assert [i.template_code for i in too_deep] == [
        f"test/node/n{i}/1.0/" for i in range(length - MAX_LAYOUT_DEPTH - 1)
    ]
    assert f"nest {length - 1} levels deep (limit {MAX_LAYOUT_DEPTH})" in too_deep[0].message
    assert too_deep[0].pointer == "/templates/0/json_addl/instantiation_layouts/0/child_templates/0"
    assert len(report.errors) == len(too_deep)


def test_invalid_json_addl_schema(packs: Path) -> None:
    path = packs / "equipment" / "equipment.json"
    edit(
        path, lambda d: d["templates"][2].update(json_addl_schema={"type": "bogus", "minimum": "0"})
    )
    report = validate_packs(packs)
    code = "equipment/sequencer/short-read/1.0/"
    assert find(
        report,
        file=path,
        pointer="/templates/2/json_addl_schema/type",
        code=code,
        text="not a valid JSON Schema",
    )
    assert find(report, file=path, pointer="/templates/2/json_addl_schema/minimum", code=code)
    assert all(i.template_code == code for i in report.errors)


def test_json_addl_schema_with_bad_regex_or_wrong_draft(packs: Path) -> None:
    path = packs / "equipment" / "equipment.json"

    def change(d: Any) -> None:
        d["templates"][0]["json_addl_schema"] = {"properties": {"properties": {"pattern": "(["}}}
        d["templates"][1]["json_addl_schema"]["$schema"] = "http://json-schema.org/draft-07/schema#"

    edit(path, change)
    report = validate_packs(packs)
    assert find(
        report, file=path, pointer="/templates/0/json_addl_schema/properties/properties/pattern"
    )
    assert find(
        report, file=path, pointer="/templates/1/json_addl_schema/$schema", text="draft 2020-12"
    )


def test_defaults_must_satisfy_own_schema(packs: Path) -> None:
    path = packs / "content" / "sample.json"

    def change(d: Any) -> None:
        d["templates"][0]["json_addl"]["properties"]["concentration"] = -1
        d["templates"][1]["json_addl"]["properties"]["rin"] = 11

    edit(path, change)
    report = validate_packs(packs)
    (conc,) = find(report, pointer="/templates/0/json_addl/properties/concentration")
    assert conc.template_code == "content/sample/dna/1.0/" and conc.source_file == str(path)
    assert "default properties violate" in conc.message and "-1" in conc.message
    assert find(
        report, pointer="/templates/1/json_addl/properties/rin", code="content/sample/rna/1.0/"
    )
    assert len(report.errors) == 2


def test_schema_must_accept_instance_keys(packs: Path) -> None:
    path = packs / "subject" / "subject.json"

    def change(d: Any) -> None:
        d["templates"][0]["json_addl_schema"]["additionalProperties"] = False
        d["templates"][1]["json_addl_schema"]["required"] = ["properties", "extra"]

    edit(path, change)
    report = validate_packs(packs)
    assert find(report, pointer="/templates/0/json_addl_schema", text="action_groups")
    assert find(
        report, pointer="/templates/1/json_addl_schema", text="'extra' is a required property"
    )


@pytest.mark.parametrize(
    ("index", "props", "text"),
    [
        (0, {"address": "Q1"}, "'Q1' does not match"),
        (0, {"address": "H13", "col_name": "13"}, "'H13' does not match"),
        (0, {"row_idx": 8}, "8 is greater than the maximum of 7"),
        (95, {"col_idx": -1}, "-1 is less than the minimum of 0"),
    ],
)
def test_well_position_outside_the_96_plate(
    packs: Path, index: int, props: dict[str, Any], text: str
) -> None:
    path = packs / "container" / "plate.json"
    edit(
        path,
        lambda d: d["templates"][0]["json_addl"]["instantiation_layouts"][0]["child_templates"][
            index
        ]["json_addl"]["properties"].update(props),
    )
    report = validate_packs(packs)
    field = next(iter(props))
    pointer = (
        "/templates/0/json_addl/instantiation_layouts/0"
        f"/child_templates/{index}/json_addl/properties/{field}"
    )
    issues = find(
        report, file=path, pointer=pointer, code="container/plate/fixed-plate-96/1.0/", text=text
    )
    assert issues, [str(i) for i in report.issues]
    assert "container/well/well-96/1.0/" in issues[0].message
    assert {i.template_code for i in report.errors} == {"container/plate/fixed-plate-96/1.0/"}


def test_384_addresses_are_not_valid_on_a_96_plate(packs: Path) -> None:
    path = packs / "container" / "plate.json"

    def change(d: Any) -> None:
        entry = d["templates"][0]["json_addl"]["instantiation_layouts"][0]["child_templates"][0]
        entry["json_addl"]["properties"].update(
            address="P24", row_name="P", col_name="24", row_idx=15, col_idx=23
        )
        # the same position is fine on the 384-well plate
        last = d["templates"][2]["json_addl"]["instantiation_layouts"][0]["child_templates"][-1]
        assert last["json_addl"]["properties"]["address"] == "P24"

    edit(path, change)
    report = validate_packs(packs)
    fields = {i.pointer.rsplit("/", 1)[-1] for i in report.errors if i.pointer}
    assert fields == {"address", "row_name", "col_name", "row_idx", "col_idx"}


def test_action_template_needs_action_definition(packs: Path) -> None:
    path = packs / "action" / "core.json"
    edit(path, lambda d: d["templates"][4]["json_addl"].pop("action_definition"))
    extra = write(
        packs / "app" / "actions.json",
        {"templates": [template("ping", category="action", type_="app", prefix="XX")]},
    )
    report = validate_packs(packs)
    (core,) = find(report, file=path)
    assert (
        core.pointer == "/templates/4/json_addl"
        and core.template_code == "action/core/attach-file/1.0/"
    )
    assert "action_definition" in core.message
    (app,) = find(report, file=extra)
    assert app.pointer == "/templates/0" and app.template_code == "action/app/ping/1.0/"


def test_action_definition_shape(packs: Path) -> None:
    path = packs / "action" / "core.json"
    edit(
        path,
        lambda d: d["templates"][0]["json_addl"]["action_definition"].update(
            method_name="create_note"
        ),
    )
    report = validate_packs(packs)
    assert find(report, file=path, pointer="/templates/0/json_addl/action_definition/method_name")


@pytest.mark.parametrize(
    ("prefix", "purpose"),
    [("GT", "templates"), ("GN", "lineage"), ("TDA", "users"), ("ADT", "audit")],
)
def test_reserved_prefix_collision(packs: Path, prefix: str, purpose: str) -> None:
    path = packs / "file" / "file.json"
    edit(path, lambda d: d["templates"][3].update(instance_prefix=prefix))
    (issue,) = validate_packs(packs).errors
    assert (issue.source_file, issue.pointer, issue.template_code) == (
        str(path),
        "/templates/3/instance_prefix",
        "file/file-set/generic/1.0/",
    )
    assert f"'{prefix}' is reserved for {purpose}" in issue.message


def test_configured_reserved_prefixes(packs: Path) -> None:
    path = packs / "file" / "file.json"
    edit(path, lambda d: d["templates"][0].update(instance_prefix="TDA"))
    assert validate_packs(packs, reserved_prefixes={"PPL": "users", "AUD": "audit rows"}).ok
    report = validate_packs(packs, reserved_prefixes=["FX"])
    assert len(report.errors) == 3  # the other file templates use FX
    assert not validate_packs(packs, reserved_prefixes={"FX": "x"}).ok
    # GT and GN stay reserved whatever is configured
    edit(path, lambda d: d["templates"][0].update(instance_prefix="GN"))
    assert find(validate_packs(packs, reserved_prefixes=[]), text="reserved for lineage edges")


def test_several_problems_are_reported_at_once(packs: Path) -> None:
    edit(packs / "subject" / "subject.json", lambda d: d["templates"][1].update(is_singelton=False))
    edit(packs / "data" / "data.json", lambda d: d["templates"][0].update(instance_prefix="GT"))
    edit(
        packs / "content" / "specimen.json",
        lambda d: d["templates"][0]["json_addl"]["properties"].update(volume_ul=-5),
    )
    edit(
        packs / "container" / "plate.json",
        lambda d: d["templates"][0]["json_addl"]["instantiation_layouts"][0]["child_templates"][5][
            "json_addl"
        ]["properties"].update(address="Q1"),
    )
    edit(
        packs / "file" / "file.json",
        lambda d: d["templates"][1]["json_addl"]["expected_inputs"].append("data/x/y/1"),
    )
    (packs / "zz_broken.json").write_text('{"templates": [\n  {"name": }\n]}\n', encoding="utf-8")
    report = validate_packs(packs)
    expected = [
        ("subject/subject.json", "/templates/1/is_singelton"),
        ("data/data.json", "/templates/0/instance_prefix"),
        ("content/specimen.json", "/templates/0/json_addl/properties/volume_ul"),
        (
            "container/plate.json",
            "/templates/0/json_addl/instantiation_layouts/0/child_templates/5/json_addl/properties/address",
        ),
        ("file/file.json", "/templates/1/json_addl/expected_inputs/1"),
        ("zz_broken.json", None),
    ]
    for relative, pointer in expected:
        assert find(report, file=packs / relative, pointer=pointer), (
            relative,
            [str(i) for i in report.issues],
        )
    assert len(report.errors) == len(expected)
    data = report.to_dict()
    assert data["errors"] == len(expected) and data["warnings"] == 0
    assert set(data["issues"][0]) == {"level", "message", "source_file", "template_code", "pointer"}
    assert "line 2" in find(report, file=packs / "zz_broken.json")[0].message


def test_load_packs_raises_with_the_report(packs: Path) -> None:
    edit(packs / "data" / "data.json", lambda d: d["templates"][0].update(instance_prefix="GT"))
    with pytest.raises(PackValidationError) as caught:
        load_packs([packs])
    assert len(caught.value.report.errors) == 1
    assert "reserved" in str(caught.value)
    unchecked = load_packs([packs], validate=False)
    assert len(unchecked) == len(load_packs([SEEDS]))


# -- several directories ------------------------------------------------------------------------


def test_app_packs_on_top_of_core_packs(tmp_path: Path) -> None:
    app = tmp_path / "app"
    write(
        app / "container" / "rack.json",
        {
            "templates": [
                template(
                    "rack-24",
                    category="container",
                    type_="rack",
                    prefix="RKX",
                    json_addl={
                        "properties": {"name": "rack"},
                        "action_imports": {"set_status": "action/core/set-status/*"},
                        "instantiation_layouts": [
                            {
                                "relationship_type": "holds",
                                "child_templates": [
                                    {
                                        "template_code": "container/tube/cryovial-2ml/1.0",
                                        "count": 24,
                                        "name_pattern": "{parent_name}-{index:02d}",
                                    }
                                ],
                            }
                        ],
                    },
                )
            ]
        },
    )
    alone = validate_packs(app)
    assert len(alone.errors) == 2  # the core templates it refers to are missing
    assert alone.to_dict()["config_dir"] == str(app)
    both = validate_packs([*core_pack_dirs(), app])
    assert both.ok and both.issues == ()
    assert both.to_dict()["config_dir"] == [str(SEEDS), str(app)]
    assert both.template_count == validate_packs(SEEDS).template_count + 1
    clash = write(
        app / "generic.json",
        {"templates": [template("generic", category="generic", type_="generic")]},
    )
    dup = validate_packs([SEEDS, app])
    (issue,) = dup.errors
    assert (
        issue.source_file == str(clash) and str(SEEDS / "generic" / "generic.json") in issue.message
    )


# -- scale ----------------------------------------------------------------------------------------


def test_scale_3000_templates_in_60_files(tmp_path: Path) -> None:
    files, per_file = 60, 50
    schema = {
        "type": "object",
        "properties": {
            "properties": {
                "type": "object",
                "properties": {"volume_ul": {"type": "number", "minimum": 0}},
            }
        },
    }
    root = tmp_path / "big"
    for f in range(files):
        entries = []
        for i in range(per_file):
            addl: dict[str, Any] = {
                "properties": {"name": f"item {f}-{i}", "volume_ul": i},
                "action_imports": {"note": "test/action/note/1.0"},
            }
            if f > 0:
                addl["expected_inputs"] = [f"test/f{f - 1}/t{i}/*"]
            if i + 1 < per_file and i % 5 != 4:  # short chains within a file
                addl["instantiation_layouts"] = [
                    {
                        "child_templates": [
                            {
                                "template_code": f"test/f{f}/t{i + 1}/1.0",
                                "count": 2,
                                "json_addl": {"properties": {"volume_ul": 1}},
                            }
                        ]
                    }
                ]
            entries.append(
                template(f"t{i}", type_=f"f{f}", json_addl=addl, json_addl_schema=schema)
            )
        write(root / f"group{f % 6}" / f"pack{f:02d}.json", {"templates": entries})
    action = template(
        "note",
        category="test",
        type_="action",
        prefix="XX",
        polymorphic_discriminator="action_template",
        json_addl={"action_definition": {"action_name": "Note", "method_name": "do_action_note"}},
    )
    write(root / "actions.json", {"templates": [action]})
    report = validate_packs(root)
    assert report.template_count == files * per_file + 1
    assert len(report.templates) == files * per_file + 1
    assert len(report.to_dict()["issues"]) == 0, [str(i) for i in report.issues[:5]]

    # one defect among 3000 is still found, with its place
    edit(
        root / "group3" / "pack33.json",
        lambda d: d["templates"][7]["json_addl"]["instantiation_layouts"][0]["child_templates"][
            0
        ].update(json_addl={"properties": {"volume_ul": -1}}),
    )
    report = validate_packs(root)
    (issue,) = report.errors
    assert issue.template_code == "test/f33/t7/1.0/"
    assert (
        issue.pointer == "/templates/7/json_addl/instantiation_layouts/0/child_templates/0"
        "/json_addl/properties/volume_ul"
    )
