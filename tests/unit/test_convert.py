from __future__ import annotations

import datetime as dt
import json

import pytest

from tapdb_core.convert import structure_row, structure_strict, to_json
from tapdb_core.errors import ValidationError
from tapdb_core.values import AuditEntry, Instance

WHEN = dt.datetime(2026, 11, 26, 12, 0, 1, 5, tzinfo=dt.timezone.utc)
ROW = {
    "uuid": 7,
    "euid": "CX-19",
    "name": "plate",
    "polymorphic_discriminator": "container_instance",
    "category": "container",
    "type": "plate",
    "subtype": "fixed-plate-96",
    "version": "1.0",
    "template_uuid": 3,
    "json_addl": {"properties": {"address": "A1", "n": [1, 2.5, None, True]}},
    "bstatus": "created",
    "is_singleton": False,
    "is_deleted": False,
    "created_dt": WHEN,
    "modified_dt": WHEN,
    "created_xid": 991,  # a column the value does not have: ignored
}


def test_rows_become_values_and_round_trip_through_json() -> None:
    instance = structure_row(Instance, ROW)
    assert instance.euid == "CX-19" and instance.created_dt == WHEN
    data = json.loads(json.dumps(to_json(instance)))
    assert data["created_dt"] == WHEN.isoformat()
    assert data["json_addl"] == ROW["json_addl"]
    assert structure_strict(Instance, data) == instance


def test_untrusted_input_with_unknown_keys_is_refused() -> None:
    data = to_json(structure_row(Instance, ROW))
    with pytest.raises(ValidationError, match="sneaky"):
        structure_strict(Instance, {**data, "sneaky": 1})
    with pytest.raises(ValidationError, match="euid"):
        structure_strict(Instance, {k: v for k, v in data.items() if k != "euid"})


def test_audit_values_keep_any_json() -> None:
    entry = structure_row(
        AuditEntry,
        {
            "uuid": 1,
            "euid": "ADT-10",
            "rel_table_name": "generic_instance",
            "rel_table_uuid_fk": 7,
            "rel_table_euid_fk": "CX-19",
            "column_name": "json_addl",
            "operation_type": "UPDATE",
            "old_value": {"a": [1]},
            "new_value": "x",
            "changed_by": "alice",
            "changed_at": WHEN,
        },
    )
    assert entry.old_value == {"a": [1]} and entry.new_value == "x"
    assert to_json(entry)["changed_at"] == WHEN.isoformat()
