#!/usr/bin/env python3
"""Write ``seeds/container/plate.json``: the 96- and 384-well plate templates and their wells.

A plate's wells come from its ``instantiation_layouts``: one object-form
child per well (``count: 1``), named ``{parent_name}_A1`` and carrying the
well's address in ``json_addl.properties``. Each plate format has its own
well template whose ``json_addl_schema`` only accepts addresses, row and
column names of that format and indices in range (A1..H12 and 0..7 x 0..11 for
96 wells, A1..P24 and 0..15 x 0..23 for 384).

Typing 480 wells by hand is error-prone, so the pack is generated. The output
is deterministic; the generated file is committed and a unit test checks it
is up to date.

    python scripts/generate_plate_packs.py           # (re)write the pack
    python scripts/generate_plate_packs.py --check   # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "seeds" / "container" / "plate.json"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
ROW_LETTERS = "ABCDEFGHIJKLMNOP"


@dataclass(frozen=True)
class PlateFormat:
    wells: int
    rows: int
    columns: int
    plate_subtype: str
    plate_name: str
    well_subtype: str
    well_max_volume_ul: int
    well_working_volume_ul: int

    @property
    def row_names(self) -> list[str]:
        return list(ROW_LETTERS[: self.rows])

    @property
    def col_names(self) -> list[str]:
        return [str(c) for c in range(1, self.columns + 1)]

    @property
    def well_code(self) -> str:
        return f"container/well/{self.well_subtype}/1.0/"


FORMATS = (
    PlateFormat(
        wells=96,
        rows=8,
        columns=12,
        plate_subtype="fixed-plate-96",
        plate_name="96-Well Plate",
        well_subtype="well-96",
        well_max_volume_ul=360,
        well_working_volume_ul=300,
    ),
    PlateFormat(
        wells=384,
        rows=16,
        columns=24,
        plate_subtype="fixed-plate-384",
        plate_name="384-Well Plate",
        well_subtype="well-384",
        well_max_volume_ul=120,
        well_working_volume_ul=100,
    ),
)

PLATE_ACTIONS = {
    "create_note": "action/core/create-note/1.0/",
    "set_status": "action/core/set-status/1.0/",
    "print_label": "action/core/print-label/1.0/",
    "move_to_queue": "action/core/move-to-queue/1.0/",
    "link_objects": "action/core/link-objects/1.0/",
    "attach_file": "action/core/attach-file/1.0/",
    "soft_delete": "action/core/soft-delete/1.0/",
}
WELL_ACTIONS = {
    "create_note": "action/core/create-note/1.0/",
    "link_objects": "action/core/link-objects/1.0/",
}


class Compact:
    """Marks a value to be written on one line."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _column_pattern(columns: int) -> str:
    """Regex alternation for the column numbers 1..columns (no leading zeros)."""
    parts = ["[1-9]"]
    tens = columns // 10
    for ten in range(1, tens + 1):
        last = 9 if ten < tens else columns % 10
        parts.append(f"{ten}[0-{last}]" if last > 0 else f"{ten}0")
    return "(?:" + "|".join(parts) + ")"


def address_pattern(fmt: PlateFormat) -> str:
    last_row = ROW_LETTERS[fmt.rows - 1]
    return f"^[A-{last_row}]{_column_pattern(fmt.columns)}$"


def well_schema(fmt: PlateFormat) -> dict[str, Any]:
    last_row = ROW_LETTERS[fmt.rows - 1]
    return {
        "$schema": DRAFT,
        "title": f"Well of a {fmt.wells}-well plate",
        "description": (
            f"Address {fmt.row_names[0]}1..{last_row}{fmt.columns}; row_idx 0..{fmt.rows - 1}, "
            f"col_idx 0..{fmt.columns - 1}. The position is set per well by the plate's "
            "layout, so it is optional here (the template's defaults have none), but "
            "address, row and column come together."
        ),
        "type": "object",
        "properties": {
            "properties": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "comments": {"type": "string"},
                    "address": {"type": "string", "pattern": address_pattern(fmt)},
                    "row_name": Compact({"enum": fmt.row_names}),
                    "col_name": Compact({"enum": fmt.col_names}),
                    "row_idx": {"type": "integer", "minimum": 0, "maximum": fmt.rows - 1},
                    "col_idx": {"type": "integer", "minimum": 0, "maximum": fmt.columns - 1},
                    "volume_ul": {
                        "type": "number",
                        "minimum": 0,
                        "maximum": fmt.well_max_volume_ul,
                    },
                    "max_volume_ul": {"const": fmt.well_max_volume_ul},
                },
                "dependentRequired": {
                    "address": ["row_name", "col_name", "row_idx", "col_idx"],
                    "row_name": ["address"],
                    "col_name": ["address"],
                    "row_idx": ["address"],
                    "col_idx": ["address"],
                },
            }
        },
    }


def well_template(fmt: PlateFormat) -> dict[str, Any]:
    return {
        "name": f"Well ({fmt.wells}-well plate)",
        "polymorphic_discriminator": "container_template",
        "category": "container",
        "type": "well",
        "subtype": fmt.well_subtype,
        "version": "1.0",
        "instance_prefix": "CWX",
        "is_singleton": False,
        "bstatus": "active",
        "json_addl": {
            "description": (
                f"One well of a {fmt.wells}-well plate; created by the plate's layout with "
                "its address, row and column."
            ),
            "properties": {
                "name": "Well",
                "comments": "",
                "volume_ul": 0,
                "max_volume_ul": fmt.well_max_volume_ul,
            },
            "action_imports": WELL_ACTIONS,
            "cogs": {"state": "active", "cost": "0.00", "allocation_type": ""},
        },
        "json_addl_schema": well_schema(fmt),
    }


def well_children(fmt: PlateFormat) -> list[Any]:
    children: list[Any] = []
    for row_idx, row in enumerate(fmt.row_names):
        for col_idx, col in enumerate(fmt.col_names):
            address = f"{row}{col}"
            children.append(
                Compact(
                    {
                        "template_code": fmt.well_code,
                        "count": 1,
                        "name_pattern": f"{{parent_name}}_{address}",
                        "json_addl": {
                            "properties": {
                                "address": address,
                                "row_name": row,
                                "col_name": col,
                                "row_idx": row_idx,
                                "col_idx": col_idx,
                            }
                        },
                    }
                )
            )
    return children


def plate_template(fmt: PlateFormat) -> dict[str, Any]:
    return {
        "name": fmt.plate_name,
        "polymorphic_discriminator": "container_template",
        "category": "container",
        "type": "plate",
        "subtype": fmt.plate_subtype,
        "version": "1.0",
        "instance_prefix": "CX",
        "is_singleton": False,
        "bstatus": "active",
        "json_addl": {
            "description": (
                f"SBS-format {fmt.wells}-well plate ({fmt.rows} rows x {fmt.columns} columns); "
                f"its {fmt.wells} wells ({fmt.well_code}) are created with it."
            ),
            "properties": {
                "name": fmt.plate_name,
                "comments": "",
                "barcode": "",
                "format": fmt.wells,
                "rows": fmt.rows,
                "columns": fmt.columns,
                "well_max_volume_ul": fmt.well_max_volume_ul,
                "well_working_volume_ul": fmt.well_working_volume_ul,
                "manufacturer": "",
                "catalog_number": "",
                "lot_number": "",
            },
            "action_imports": PLATE_ACTIONS,
            "expected_inputs": ["content/sample/dna/*", "content/sample/rna/*"],
            "default_status": "created",
            "instantiation_layouts": [
                {"relationship_type": "contains", "child_templates": well_children(fmt)}
            ],
            "cogs": {"state": "active", "cost": "4.50", "allocation_type": "per-plate"},
        },
        "json_addl_schema": {
            "$schema": DRAFT,
            "title": f"{fmt.wells}-well plate",
            "type": "object",
            "properties": {
                "properties": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "comments": {"type": "string"},
                        "barcode": {"type": "string"},
                        "format": {"const": fmt.wells},
                        "rows": {"const": fmt.rows},
                        "columns": {"const": fmt.columns},
                        "well_max_volume_ul": {"const": fmt.well_max_volume_ul},
                        "well_working_volume_ul": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": fmt.well_max_volume_ul,
                        },
                        "manufacturer": {"type": "string"},
                        "catalog_number": {"type": "string"},
                        "lot_number": {"type": "string"},
                    },
                }
            },
        },
    }


def build_pack() -> dict[str, Any]:
    templates: list[Any] = []
    for fmt in FORMATS:
        templates.append(plate_template(fmt))
        templates.append(well_template(fmt))
    return {
        "$comment": (
            "GENERATED by scripts/generate_plate_packs.py: do not edit by hand. "
            "Plates and the well templates their layouts create."
        ),
        "templates": templates,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, Compact):
        return _plain(value.value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def render() -> str:
    """The pack file's text: 2-space indents, each Compact value on one line."""
    compact: list[str] = []

    def swap(value: Any) -> Any:
        if isinstance(value, Compact):
            compact.append(json.dumps(_plain(value.value), separators=(", ", ": ")))
            return f"@@COMPACT{len(compact) - 1}@@"
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    text = json.dumps(swap(build_pack()), indent=2, ensure_ascii=False)
    text = re.sub(r'"@@COMPACT(\d+)@@"', lambda m: compact[int(m.group(1))], text)
    return text + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the pack is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"default: {OUTPUT}")
    args = parser.parse_args(argv)
    text = render()
    output: Path = args.output
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else None
        if current != text:
            print(f"{output} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        print(f"{output} is up to date")
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
